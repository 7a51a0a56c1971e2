"""GPUs and CPU devices as data: the figures of one device and how many form the mesh, each with its source.

The device cost model (wse.devices.cost_model) predicts a training step on a mesh of such devices from these figures
alone, the way wse.wafer.hardware's specs drive the wafer planners. Sources carry wse.wafer.hardware's tags (V
vendor, P paper, S press, D derived here, U unpublished: a named figure with its value and reason, F from a user's
file or a measurement).

Built in: NVIDIA H100 SXM and H200 (SXM), ``h100`` and ``h200``; a YAML file (``kind: device``, wse.devices.files)
starts from one of them or gives every figure, and ``wse bench`` turns its measured ceilings into one
(benchmarks/predict.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Mapping

from wse.errors import PlanError

DTYPES = ("bfloat16", "float32")


@dataclass(frozen=True)
class Device:
    """``devices`` identical devices on one mesh (pure data parallelism), each with these figures.

    matmul_flops_bfloat16, matmul_flops_float32: dense matmul FLOP/s of one device in that compute dtype.
    memory_bytes: the device's memory; memory_fraction: the share of it a JAX process may use.
    memory_bytes_per_s: device memory bandwidth, bytes read plus bytes written per second.
    host_to_device_bytes_per_s, device_to_host_bytes_per_s: one device's link to pinned host memory, each direction.
    host_memory_separate: host memory is a memory of its own that the link copies to and from (False: host and
        device memory are the same RAM and a step moves nothing over a link, as on JAX's CPU backend).
    link_full_duplex: both directions of the host link run at full rate at once (else they share it).
    copy_engines: host-link transfers run beside the device's compute (else they take turns with it).
    fused_attention: attention scores stay in on-chip memory (a flash-attention kernel), else they are written out.
    device_link_bytes_per_s: from one device to its peers, one direction (the gradient all-reduce of data parallelism).
    host_update_params_per_s: parameters per second the AdamW update runs at in host memory, the whole host (the
        devices of one description share one host; each device's copy of the state is updated).
    step_overhead_s: seconds of fixed cost per training step (dispatching the step, reading its loss back).
    sources: field name -> "TAG: where the figure comes from".
    """

    name: str
    devices: int
    matmul_flops_bfloat16: float
    matmul_flops_float32: float
    memory_bytes: float
    memory_fraction: float
    memory_bytes_per_s: float
    host_to_device_bytes_per_s: float
    device_to_host_bytes_per_s: float
    host_memory_separate: bool
    link_full_duplex: bool
    copy_engines: bool
    fused_attention: bool
    device_link_bytes_per_s: float
    host_update_params_per_s: float
    step_overhead_s: float
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "sources"):
                continue
            if f.type == "bool":
                if not isinstance(value, bool):
                    raise PlanError(f"device '{self.name}': {f.name} must be true or false, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PlanError(f"device '{self.name}': {f.name} must be a number, got {value!r}")
            if value < 0 or (value == 0 and f.name != "step_overhead_s"):
                raise PlanError(f"device '{self.name}': {f.name} must be {'>= 0' if f.name == 'step_overhead_s' else 'positive'}, "
                                f"got {value!r}")
        if self.memory_fraction > 1:
            raise PlanError(f"device '{self.name}': memory_fraction must be at most 1, got {self.memory_fraction}")
        if int(self.devices) != self.devices:
            raise PlanError(f"device '{self.name}': devices must be a whole number, got {self.devices!r}")

    def matmul_flops(self, dtype: str) -> float:
        """Dense matmul FLOP/s of one device in ``dtype`` (bfloat16 or float32); PlanError for another dtype."""
        if dtype not in DTYPES:
            raise PlanError(f"compute dtype '{dtype}' has no matmul figure; give one of {', '.join(DTYPES)}")
        return getattr(self, f"matmul_flops_{dtype}")

    @property
    def usable_memory_bytes(self) -> float:
        """Bytes of one device a plan may fill: memory_bytes x memory_fraction."""
        return self.memory_bytes * self.memory_fraction


FIGURES = tuple(f.name for f in fields(Device) if f.name not in ("name", "sources"))

_DATASHEET_H100 = "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM)"
_DATASHEET_H200 = "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM)"
_HOST_UPDATE_WHY = (
    "U: the host of a DGX H100/H200 has 2 x Intel Xeon Platinum 8480C (V: DGX datasheets), each with 8 channels of "
    "DDR5-4800 (V: Intel), 614 GB/s of DRAM bandwidth in all (D); AdamW in host memory reads the float32 weight, "
    "gradient and two moments and writes the weight, the moments and the bf16 copy that streams, 30 bytes per "
    "parameter (D); half the DRAM peak is assumed sustained by a vectorised update over all cores (unpublished): "
    "614.4e9 x 0.5 / 30 = 1.02e10 parameters/s for the whole host"
)
_STEP_OVERHEAD_WHY = (
    "U: dispatching one compiled step and reading its scalar loss back costs JAX tens of microseconds on a GPU; "
    "1e-4 s is assumed (unpublished)"
)


def _gpu_sources(datasheet: str, memory: str, bandwidth: str) -> dict[str, str]:
    return {
        "devices": "V: 8 GPUs per HGX/DGX board",
        "matmul_flops_bfloat16": f"V: {datasheet}: BF16 Tensor Core 1,979 TFLOP/s with sparsity, 989.4 dense",
        "matmul_flops_float32": f"V: {datasheet}: TF32 Tensor Core 989 TFLOP/s with sparsity, 494.7 dense; JAX runs "
                                "float32 matmuls on TF32 tensor cores by default on recent GPUs (JAX docs, 'Matmul "
                                "precision')",
        "memory_bytes": f"V: {datasheet}: {memory}",
        "memory_fraction": "V: JAX preallocates 75% of GPU memory by default (JAX docs, 'GPU memory allocation')",
        "memory_bytes_per_s": f"V: {datasheet}: {bandwidth}",
        "host_to_device_bytes_per_s": f"V: {datasheet}: PCIe Gen5, 128 GB/s both directions = 64 GB/s each, nominal "
                                      "(pinned host memory; `wse bench` measures the achieved rate)",
        "device_to_host_bytes_per_s": "V: as host_to_device_bytes_per_s",
        "host_memory_separate": "V: host memory is the CPU's DRAM, reached over PCIe",
        "link_full_duplex": "V: a PCIe lane is a pair of links, one per direction (PCI Express Base Specification)",
        "copy_engines": "V: NVIDIA GPUs copy to and from host memory on copy engines beside running kernels (CUDA C++ "
                        "Programming Guide, 'Overlap of Data Transfer and Kernel Execution')",
        "fused_attention": "V: on NVIDIA GPUs the runtime's attention is cuDNN's flash kernel (jax.nn."
                           "dot_product_attention, implementation 'cudnn'), which keeps scores on chip",
        "device_link_bytes_per_s": f"V: {datasheet}: NVLink 900 GB/s per GPU, both directions = 450 GB/s each",
        "host_update_params_per_s": _HOST_UPDATE_WHY,
        "step_overhead_s": _STEP_OVERHEAD_WHY,
    }


_GPU_COMMON = dict(devices=8, matmul_flops_bfloat16=989.4e12, matmul_flops_float32=494.7e12, memory_fraction=0.75,
                   host_to_device_bytes_per_s=64e9, device_to_host_bytes_per_s=64e9, host_memory_separate=True,
                   link_full_duplex=True, copy_engines=True, fused_attention=True, device_link_bytes_per_s=450e9,
                   host_update_params_per_s=1.02e10, step_overhead_s=1e-4)

H100 = Device(name="NVIDIA H100 SXM", memory_bytes=80e9, memory_bytes_per_s=3.35e12, **_GPU_COMMON,
              sources=_gpu_sources(_DATASHEET_H100, "80 GB HBM3", "3.35 TB/s"))
H200 = Device(name="NVIDIA H200", memory_bytes=141e9, memory_bytes_per_s=4.8e12, **_GPU_COMMON,
              sources=_gpu_sources(_DATASHEET_H200, "141 GB HBM3e", "4.8 TB/s"))

DEVICES: dict[str, Device] = {"h100": H100, "h200": H200}


def device_assumptions(device: Device) -> dict[str, dict]:
    """The U (unpublished) and F (file or measured) figures of ``device``: ``device.<field>`` -> {value, reason}."""
    out = {}
    for name in FIGURES:
        source = device.sources.get(name, "")
        tags = set(source.split(":", 1)[0].strip().split("/"))
        if tags & {"U", "F"}:
            out[f"device.{name}"] = {"value": getattr(device, name), "reason": source.split(":", 1)[1].strip()}
    return out
