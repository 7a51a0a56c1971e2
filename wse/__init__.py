"""wse: a simulator of how a Cerebras wafer-scale engine (or a mesh of GPUs or CPU devices) would train a GPT model.

Pure Python and NumPy (Matplotlib only inside the picture functions): no JAX, and no import of model/; a model is any
object with the shape fields (n_layers, d_model, n_heads, d_head, d_ffn, vocab_size, max_seq_len).

- plan: the one entry. ``make_plan(shape, target, ...)`` reads the target (a CS system, a cluster, a device such as
  h100/h200, a YAML file by its ``kind:``) and hands the plan to the wing that makes it; ``plan_all`` is the sweep.
- The shared floor: shape (a model shape, planning-only GQA, gated FFN, untied embeddings), costs (the model as
  layers: parameters, FLOPs in three conventions, matmul shapes, bytes kept, per-layer seconds at a rate), assumptions
  (the planners' named unpublished figures, PlanOptions), grid (the cells both wings place layers on), partition
  (optimal contiguous layers onto pipeline stages, for a JAX mesh's stage axis), schedule (1F1B op by op), plans (the
  plan dataclasses and their JSON), errors (PlanError).
- wafer/: CS systems. hardware (WSE-1/2/3, CS-1/2/3, MemoryX, SwarmX, clusters as data with sources), systems (a
  system by name or YAML file: get_system), kernels (a wafer matmul's time from its shapes: inference kernels and
  Cerebras' training kernels), pipelined and streaming (+ streaming_model, the training planners), inference (decode,
  prefill), generate (a prompt, then new tokens: TTFT, TPOT, end to end), plan (task, mode and MemoryX), pictures.
- devices/: GPU and CPU meshes. specs (H100, H200 as data with sources), files (``kind: device`` YAML), hostlink (the
  bytes the runtime's streaming step moves), cost_model (a training step on the mesh), plan (the device plan).
- validation/: published (the calibration and validation tables: measured and published outcomes with their
  configuration, release and source), shapes (the published models' planning shapes), compare (the simulator held
  against both tables: `wse plan --published`) and fit (``python -m wse.validation.fit``: the calibrated parameters
  from the calibration table alone).

Neither wing imports the other; only the entry (wse.plan) knows both.
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
