"""runtime/: where the model and the wafer simulator meet — sharded execution, training, data, checkpoints, CLI.

Kept import-light (no JAX at import time) so that the `wse` command line starts fast.
"""
