"""The planners' own assumptions: each is a named field with its default and the reason for it.

None of these is published for Cerebras hardware. A plan lists the ones it used (with their values) under
``assumptions``, so a reader sees what the numbers rest on; a system file's ``planner:`` section or the Python API
can change them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, replace

from wse.errors import PlanError


def assumed(default, reason: str, modes: tuple[str, ...] = ("pipelined", "streaming", "inference")):
    return field(default=default, metadata={"reason": reason, "modes": modes})


@dataclass(frozen=True)
class PlanOptions:
    compute_efficiency: float = assumed(
        0.5, "fraction of a cell's peak FLOP/s its matmul kernels sustain in layer-pipelined mode and on device grids; "
        "unpublished for Cerebras, 0.5 is the usual achieved fraction for large dense training matmuls on accelerators "
        "(the fabric limit is modelled separately). Weight streaming and inference on a wafer use the kernel model "
        "(wse.wafer.kernels) instead", ("pipelined",))
    kernel_step_cycles: float = assumed(
        105.0, "D: the fixed cost of one wavefront step of a wafer matmul kernel in inference (receive, synchronise, "
        "start the vector work) and of one GEMV; fitted (python -m wse.validation.fit) so that LLaMA3-8B's prefill of "
        "4,096 tokens on 720 x 720 WSE-2 cores, each layer on the whole grid, runs at WaferLLM's measured 27,686 "
        "tokens/s (OSDI 2025). WaferLLM's MeshGEMM 'above 70% of peak' then holds from a 23.5K cube", ("inference",))
    train_step_cycles: float = assumed(
        140.0, "D: the same fixed cost per wavefront step in the training kernels of Cerebras' compiler (weight "
        "streaming); fitted with train_work_fraction to the measured training runs (GPT-J on 2 CS-2, LLaMA-7B on 1 "
        "CS-2) and the Cerebras-GPT paper's relative utilisations (Table 6): python -m wse.validation.fit",
        ("streaming",))
    train_work_fraction: float = assumed(
        0.37, "D: the fraction of a core's fp16 SIMD rate a training multiply-add sustains: Cerebras trains with fp32 "
        "accumulation (precision levels 0 and 1 of its docs), which a WSE core runs at about half its fp16 width, and "
        "the vector units also do the norms, activations and softmax between matmuls. Fitted with train_step_cycles "
        "(python -m wse.validation.fit); applies per multiply-add, so it costs the same at any batch",
        ("streaming",))
    phase_sync_cycles: float = assumed(
        60.0, "D: the grid-wide hand-off that ends each sequential phase of a layer in inference (norm, each matmul, "
        "softmax, activation, residual add: wse.costs.Layer.phases; WaferLLM's kernels wait for one before the "
        "next); fitted so that LLaMA3-8B's end-to-end generation (4,096-token prompt, 4,096 new tokens) on 720 x 720 "
        "WSE-2 cores runs at WaferLLM's measured 2,459 tokens/s (python -m wse.validation.fit)", ("inference",))
    weight_bytes: int = assumed(2, "16-bit weights for compute: the Cerebras-GPT models were trained in bf16 mixed precision")
    grad_bytes: int = assumed(2, "16-bit weight gradients (mixed precision), the same width as the weights",
                              ("pipelined", "streaming"))
    optimizer_bytes: int = assumed(
        12, "fp32 master weight plus AdamW's two fp32 moments per parameter (the usual mixed-precision accounting)",
        ("pipelined", "streaming"))
    grad_accumulator_bytes: int = assumed(
        4, "an fp32 gradient accumulator per parameter in MemoryX (micro-batches and systems add into it before the "
        "optimizer step); with the weights and optimizer state, 18 bytes per parameter, under the 20 that Cerebras' "
        "2.4 PB-for-120T pairing allows", ("streaming",))
    activation_bytes: int = assumed(2, "16-bit activations and activation gradients")
    attention_probs_stashed: bool = assumed(
        True, "the backward pass reads the stored softmax probabilities (heads x context per token, full square, the "
        "same convention as the FLOP count) rather than recomputing them; weight streaming on a wafer never stores "
        "them (each attention backward recomputes its scores, flash-style)", ("pipelined",))
    microbatch_seqs: int = assumed(
        1, "layer-pipelined mode streams samples through the regions one sequence at a time", ("pipelined",))
    recompute: str = assumed(
        "auto", "weight streaming keeps each layer's activations for its backward pass; 'auto' may instead keep one "
        "checkpoint per layer (its input) and recompute the layer's internals in the backward pass, whichever is "
        "faster; or 'never'/'always'", ("streaming",))
    offload: str = assumed(
        "auto", "V/U: activations that do not fit on the wafer stream to MemoryX in the forward pass and back in the "
        "backward (Cerebras software R2.0 documents 'dynamic memory offload'; how it is scheduled is unpublished: "
        "here the layers that run last keep theirs on the wafer); 'auto' lets the planner choose, 'never' forbids",
        ("streaming",))
    weight_tile_bytes: int = assumed(
        256_000_000, "U: weights stream in tiles of a matrix (column blocks) of at most this many bytes, double-"
        "buffered with one gradient tile; small next to a wafer's 40 GB, large enough that a tile's wavefront fill "
        "(~2,000 cycles) is negligible", ("streaming",))
    inter_system_latency_s: float = assumed(
        5e-6, "U: one hop of activations between two wafers of an inference pipeline (system I/O, a 100 GbE switch and "
        "both NICs); unpublished", ("inference",))

    def __post_init__(self):
        if not 0 < self.compute_efficiency <= 1:
            raise PlanError(f"compute_efficiency must be in (0, 1], got {self.compute_efficiency}")
        for name in ("weight_bytes", "grad_bytes", "activation_bytes", "microbatch_seqs", "weight_tile_bytes"):
            if getattr(self, name) < 1:
                raise PlanError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.train_work_fraction <= 1:
            raise PlanError(f"train_work_fraction must be in (0, 1], got {self.train_work_fraction}")
        for name in ("optimizer_bytes", "grad_accumulator_bytes", "kernel_step_cycles", "train_step_cycles",
                     "phase_sync_cycles", "inter_system_latency_s"):
            if getattr(self, name) < 0:
                raise PlanError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.recompute not in ("auto", "never", "always"):
            raise PlanError(f"recompute must be auto, never or always, got '{self.recompute}'")
        if self.offload not in ("auto", "never"):
            raise PlanError(f"offload must be auto or never, got '{self.offload}'")

    @property
    def resident_bytes_per_param(self) -> int:
        """Bytes per parameter when weights, gradients and optimizer state all stay on the wafer (pipelined)."""
        return self.weight_bytes + self.grad_bytes + self.optimizer_bytes

    @property
    def memoryx_bytes_per_param(self) -> int:
        """Bytes per parameter MemoryX holds in weight streaming: weights, optimizer state, gradient accumulator."""
        return self.weight_bytes + self.optimizer_bytes + self.grad_accumulator_bytes

    def assumptions(self, mode: str) -> dict[str, dict]:
        return {f"plan.{f.name}": {"value": getattr(self, f.name), "reason": f.metadata["reason"]}
                for f in fields(self) if mode in f.metadata["modes"]}

    def updated(self, overrides: dict) -> "PlanOptions":
        """A copy with fields changed by name; unknown names are refused with the closest valid one."""
        names = [f.name for f in fields(self)]
        for key in overrides:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise PlanError(f"unknown planner assumption '{key}'{hint}; valid: {', '.join(names)}")
        typed = {}
        for key, value in overrides.items():
            kind = type(getattr(self, key))
            try:
                if kind is bool and not isinstance(value, bool):
                    raise ValueError
                typed[key] = kind(value) if kind is not bool else value
                if kind is int and float(value) != typed[key]:
                    raise ValueError
            except (TypeError, ValueError):
                raise PlanError(f"planner assumption '{key}' must be a {kind.__name__}, got {value!r}") from None
        return replace(self, **typed)
