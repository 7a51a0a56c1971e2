"""The wafer wing: Cerebras CS systems (WSE-1/2/3 wafers, MemoryX, SwarmX, clusters) and their planners.

- hardware: the chips, systems, MemoryX, SwarmX and clusters as data, every figure with its source; systems: a system
  by name, cluster or YAML file (``get_system``) and a file's planner overrides.
- kernels: a matmul's or matrix-vector product's time from its shapes on the core grid (inference kernels calibrated
  on WaferLLM, training kernels on measured Cerebras training runs).
- pipelined, streaming (+ streaming_model): the two training modes' planners; inference: decode and prefill with the
  model resident on wafers; generate: a prompt then new tokens, end to end; plan: the task, the training mode and the
  MemoryX of a plan on CS systems.
- pictures: region and memory pictures, pipeline and streaming timelines.

It builds on the shared floor (wse.shape, wse.costs, wse.grid, ...) and never imports the device wing (wse.devices).
"""
