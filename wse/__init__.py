"""wse: a simulator of how a Cerebras wafer-scale engine (or a grid of accelerators) would train a GPT model.

Pure Python and NumPy (Matplotlib only inside the picture functions): no JAX, and no import of model/; a model is any
object with the shape fields (n_layers, d_model, n_heads, d_head, d_ffn, vocab_size, max_seq_len).

- hardware: WSE-1/2/3, CS-1/2/3, MemoryX (and the sizes sold), SwarmX and clusters as data, every figure with its
  source; systemfile: custom systems from YAML.
- grid: the logical grid of cells (a wafer's cores or a mesh's devices) both planners run on.
- shape, costs: a model shape (planning-only GQA, gated FFN, untied embeddings) as layers with parameters, FLOPs in
  three conventions, matmul shapes, fabric traffic, activations and KV cache.
- kernels: a matmul's or matrix-vector product's time from its shapes on the core grid (calibrated on WaferLLM).
- partition: optimal contiguous partition of layers onto pipeline stages (for a JAX mesh's stage axis).
- pipelined / streaming (+ streaming_model): the two training modes' planners; inference: decode and prefill with
  the model resident on wafers; plan: task, mode and MemoryX choice and ``make_plan``.
- device, devicefile, devicemodel, deviceplan: GPUs (H100, H200) and CPU devices as data with sources, device
  descriptions from YAML, the cost model of a training step on a device mesh (data or weight streaming over the
  host link) and its plan; hostlink: the bytes the runtime's streaming step moves over the host link.
- published, validation: published outcomes with sources, and the simulator held against them.
- pictures, schedule: region and memory pictures, pipeline and streaming timelines.
"""

from wse.assumptions import PlanOptions
from wse.errors import PlanError
from wse.grid import Grid, Region, device_grid
from wse.partition import partition_layers
from wse.plan import make_plan, plan_all
from wse.plans import Plan
from wse.wafer.hardware import CLUSTERS, SYSTEMS
from wse.wafer.systems import get_system

__all__ = [
    "CLUSTERS", "Grid", "Plan", "PlanError", "PlanOptions", "Region", "SYSTEMS", "device_grid", "get_system",
    "make_plan", "partition_layers", "plan_all",
]
