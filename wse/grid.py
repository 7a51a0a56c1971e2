"""A logical grid of cells: the one abstraction both planners work on.

A cell has memory, a compute rate and links to its four neighbours. A wafer is a grid of cores (48 KB, a few GFLOP/s,
4 bytes per cycle to each neighbour); an accelerator mesh is a grid of devices (GBs, TFLOP/s, a link per neighbour).
Planning over both with the same code is what lets runtime place layers on a JAX mesh with the plan the wafer would
use, and lets benchmarks compare the plan's predicted step time with a measured one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wse.errors import PlanError


@dataclass(frozen=True)
class Region:
    """A rectangle of cells: top-left ``(row, col)`` and its size in rows and columns."""

    row: int
    col: int
    rows: int
    cols: int

    @property
    def cells(self) -> int:
        return self.rows * self.cols

    def inside(self, rows: int, cols: int) -> bool:
        return self.row >= 0 and self.col >= 0 and self.rows > 0 and self.cols > 0 and \
            self.row + self.rows <= rows and self.col + self.cols <= cols

    def overlaps(self, other: "Region") -> bool:
        return not (self.row + self.rows <= other.row or other.row + other.rows <= self.row or
                    self.col + self.cols <= other.col or other.col + other.cols <= self.col)

    def shared_edge(self, other: "Region") -> int:
        """Number of neighbour links between the two rectangles (0 when they do not touch along an edge)."""
        row_overlap = min(self.row + self.rows, other.row + other.rows) - max(self.row, other.row)
        col_overlap = min(self.col + self.cols, other.col + other.cols) - max(self.col, other.col)
        if self.col + self.cols == other.col or other.col + other.cols == self.col:
            return max(row_overlap, 0)
        if self.row + self.rows == other.row or other.row + other.rows == self.row:
            return max(col_overlap, 0)
        return 0

    def to_dict(self) -> dict:
        return {"row": self.row, "col": self.col, "rows": self.rows, "cols": self.cols}


@dataclass(frozen=True)
class Grid:
    """``rows`` x ``cols`` identical cells.

    memory_bytes_per_cell: what a plan may use (a wafer core's SRAM less what its program and runtime reserve).
    flops_per_cell: peak dense FP16 FLOP/s of one cell.
    link_bytes_per_s: bandwidth of one link to one neighbour, one direction.
    hop_latency_s: time for a message to cross one link.
    layer_switch_s: time for a cell to switch from one layer's kernel to another's (reloading routes and code on a
        wafer; about zero on a device that runs one compiled program).
    """

    name: str
    kind: str  # "wafer" or "devices"
    rows: int
    cols: int
    memory_bytes_per_cell: int
    flops_per_cell: float
    link_bytes_per_s: float
    hop_latency_s: float
    layer_switch_s: float = 0.0

    def __post_init__(self):
        for name in ("rows", "cols", "memory_bytes_per_cell", "flops_per_cell", "link_bytes_per_s"):
            if not getattr(self, name) > 0:
                raise PlanError(f"grid '{self.name}': {name} must be positive, got {getattr(self, name)}")
        for name in ("hop_latency_s", "layer_switch_s"):
            if getattr(self, name) < 0:
                raise PlanError(f"grid '{self.name}': {name} must not be negative, got {getattr(self, name)}")

    @property
    def cells(self) -> int:
        return self.rows * self.cols

    @property
    def peak_flops(self) -> float:
        return self.cells * self.flops_per_cell

    @property
    def memory_bytes(self) -> int:
        return self.cells * self.memory_bytes_per_cell

    def to_dict(self) -> dict:
        return {"rows": self.rows, "cols": self.cols}


def mesh_shape(n: int) -> tuple[int, int]:
    """The most nearly square ``rows x cols = n`` with rows <= cols (8 -> 2 x 4), as a device mesh is usually laid out."""
    rows = int(math.isqrt(n))
    while n % rows:
        rows -= 1
    return rows, n // rows


def device_grid(
    n_devices: int,
    flops_per_device: float,
    memory_per_device: float,
    link_bandwidth: float,
    *,
    hop_latency_s: float = 5e-6,
    layer_switch_s: float = 0.0,
    rows: int | None = None,
    cols: int | None = None,
    name: str = "devices",
) -> Grid:
    """A grid of accelerator devices (a JAX mesh), so the wafer planners can place layers on it.

    ``link_bandwidth`` is bytes/s from one device to one neighbour. ``hop_latency_s`` defaults to 5 microseconds, the
    order of one collective step on NVLink/ICI or a host memory copy between emulated CPU devices; pass a measured
    value when there is one. ``rows x cols`` defaults to the most nearly square factorisation of ``n_devices``.
    """
    if n_devices < 1:
        raise PlanError(f"device grid needs at least one device, got {n_devices}")
    if rows is None and cols is None:
        rows, cols = mesh_shape(n_devices)
    elif rows is None:
        rows = n_devices // cols
    elif cols is None:
        cols = n_devices // rows
    if rows * cols != n_devices:
        raise PlanError(f"device grid {rows} x {cols} does not hold {n_devices} devices; give rows * cols = {n_devices}")
    return Grid(
        name=name, kind="devices", rows=rows, cols=cols, memory_bytes_per_cell=int(memory_per_device),
        flops_per_cell=float(flops_per_device), link_bytes_per_s=float(link_bandwidth),
        hop_latency_s=float(hop_latency_s), layer_switch_s=float(layer_switch_s),
    )
