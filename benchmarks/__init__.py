"""benchmarks/: measures throughput, memory and prediction error; checks four claims made about Cerebras hardware."""
