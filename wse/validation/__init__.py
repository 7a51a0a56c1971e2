"""The simulator held against what is published: published (outcomes with their sources, and the shapes of published
models Cerebras serves) and compare (each outcome planned and set beside its published figure)."""
