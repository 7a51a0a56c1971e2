"""The planners' own assumptions: each is a named field with its default and the reason for it.

None of these is published for Cerebras hardware. A plan lists the ones it used (with their values) under
``assumptions``, so a reader sees what the numbers rest on; a system file's ``planner:`` section or the Python API
can change them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, replace

from wse.errors import PlanError


def assumed(default, reason: str, modes: tuple[str, ...] = ("pipelined", "streaming")):
    return field(default=default, metadata={"reason": reason, "modes": modes})


@dataclass(frozen=True)
class PlanOptions:
    compute_efficiency: float = assumed(
        0.5, "fraction of a cell's peak FLOP/s its matmul kernels sustain; unpublished for Cerebras, 0.5 is the usual "
        "achieved fraction for large dense training matmuls on accelerators (the fabric limit is modelled separately)")
    weight_bytes: int = assumed(2, "16-bit weights for compute: the Cerebras-GPT models were trained in bf16 mixed precision")
    grad_bytes: int = assumed(2, "16-bit weight gradients (mixed precision), the same width as the weights")
    optimizer_bytes: int = assumed(
        12, "fp32 master weight plus AdamW's two fp32 moments per parameter (the usual mixed-precision accounting)")
    activation_bytes: int = assumed(2, "16-bit activations and activation gradients")
    attention_probs_stashed: bool = assumed(
        True, "the backward pass reads the stored softmax probabilities (heads x context per token, full square, the "
        "same convention as the FLOP count) rather than recomputing them")
    microbatch_seqs: int = assumed(
        1, "layer-pipelined mode streams samples through the regions one sequence at a time", ("pipelined",))
    recompute: str = assumed(
        "auto", "weight streaming keeps activations on the wafer; when the per-system batch does not fit, recompute "
        "each layer's internals in the backward pass from a stored input ('auto'), or 'never'/'always'", ("streaming",))

    def __post_init__(self):
        if not 0 < self.compute_efficiency <= 1:
            raise PlanError(f"compute_efficiency must be in (0, 1], got {self.compute_efficiency}")
        for name in ("weight_bytes", "grad_bytes", "activation_bytes", "microbatch_seqs"):
            if getattr(self, name) < 1:
                raise PlanError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.optimizer_bytes < 0:
            raise PlanError(f"optimizer_bytes must not be negative, got {self.optimizer_bytes}")
        if self.recompute not in ("auto", "never", "always"):
            raise PlanError(f"recompute must be auto, never or always, got '{self.recompute}'")

    @property
    def resident_bytes_per_param(self) -> int:
        """Bytes per parameter when weights, gradients and optimizer state all stay on the wafer (pipelined)."""
        return self.weight_bytes + self.grad_bytes + self.optimizer_bytes

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
