"""benchmarks/: measures throughput, memory and prediction error; checks the source document claims."""
