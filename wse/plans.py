"""The plan a planner returns: plain dataclasses that serialise to the JSON the command line prints (wafer plans,
inference plans, and device-mesh plans from wse.devices.plan)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from wse.grid import Region


@dataclass
class Stage:
    """One pipeline stage: a contiguous run of layers on a rectangular region.

    ``region`` is the rectangle the stage owns; ``active_cells`` those of its rows that compute (the last stage of a
    snake lane owns the rows down to the lane's end so that the next lane starts next to it, but the time and memory
    figures count only the rows the planner allotted). ``in_flight`` is how many microbatches' activations it holds.
    """

    layers: tuple[int, int]
    names: tuple[str, str]
    region: Region
    active_cells: int
    memory_bytes_per_core: float
    time_s: float
    in_flight: int


@dataclass
class LayerTiming:
    """One layer of a weight-streaming step (all micro-batches of one system): time on the wafer vs time streaming."""

    name: str
    compute_time_s: float
    stream_time_s: float
    forward_compute_s: float
    backward_compute_s: float
    forward_stream_s: float
    backward_stream_s: float
    fabric_bound: bool
    bound: str  # "compute" or "stream"
    weight_bytes: float  # streamed in per pass
    activation_bytes: float  # what it keeps on the wafer for the backward pass, largest micro-batch


@dataclass
class ScalingPoint:
    """Tokens/s on ``systems`` offered (``systems_used`` of them), ``efficiency`` against that many times one
    system's, and ``note``: why it is off linear by more than 2%, when it is."""

    systems: int
    systems_used: int
    tokens_per_s: float
    efficiency: float
    note: str = ""


@dataclass
class Plan:
    model: str
    system: str
    systems: int
    mode: str
    fits: bool
    grid: dict
    batch_size: int
    seq_len: int
    step_time_s: float
    tokens_per_s: float
    utilization: float
    time_to_train_s: float
    memory: dict
    stages: list[Stage] = field(default_factory=list)
    layers: list = field(default_factory=list)
    scaling: list[ScalingPoint] = field(default_factory=list)
    assumptions: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: tuples become lists, nested dataclasses dicts."""
        out = asdict(self)
        for stage in out["stages"]:
            stage["layers"] = list(stage["layers"])
            stage["names"] = list(stage["names"])
        return out


@dataclass(kw_only=True)
class PlanRecord:
    """What the inference and device plans share after their own fields: per-layer rows, the unpublished figures the
    plan used (``assumptions``), the plan's own details; and their JSON form."""

    layers: list = field(default_factory=list)
    assumptions: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class InferencePlan(PlanRecord):
    """A model resident on ``wafers_used`` wafers serving ``batch_size`` concurrent requests (decode, prefill or
    generate).

    ``token_latency_s``: decode, the time between two tokens of one request (one step for the whole batch); prefill,
    the time to first token of the batch's prompts; generate, the time per output token averaged over the new tokens
    (the KV cache grows as they come). ``tokens_per_s``: generated (decode), prompt (prefill) or new tokens over the
    whole request, first token included (generate) per second over all requests; ``tokens_per_s_per_request`` one
    request's share. Generate also gives ``new_tokens``, ``time_per_output_token_s`` and ``end_to_end_s`` (time to
    first token plus the other new tokens).
    """

    model: str
    system: str
    systems: int
    task: str
    mode: str
    fits: bool
    grid: dict
    batch_size: int
    seq_len: int
    prompt_len: int
    token_latency_s: float
    tokens_per_s_per_request: float
    tokens_per_s: float
    time_to_first_token_s: float | None
    memory: dict
    new_tokens: int | None = None
    time_per_output_token_s: float | None = None
    end_to_end_s: float | None = None


@dataclass
class DevicePlan(PlanRecord):
    """A training step on ``systems`` devices (a GPU or CPU mesh, wse.devices.specs), from the device cost model.

    ``parts``: seconds of the step's parts (compute, exposed link, host update, device update, all-reduce, fixed;
    link_s is every transfer, hidden or not). ``link_bytes``: bytes over the host link per step, each way (0 in data
    mode). ``memory``: bytes per device (and in host memory for streaming). ``layers``: forward and backward seconds
    of each layer for one slice.
    """

    model: str
    system: str
    systems: int
    kind: str
    mode: str
    fits: bool
    batch_size: int
    seq_len: int
    dtype: str
    step_time_s: float
    tokens_per_s: float
    utilization: float
    time_to_train_s: float
    memory: dict
    link_bytes: dict
    parts: dict
