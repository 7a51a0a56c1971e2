"""The wafer's matmul and matrix-vector kernels: time as a function of the matrix shapes on the core grid.

GEMM (training, prefill). An M x K by K x N matmul on ``cells`` cores: the output is cut into m x n tiles, one per
core (N in g = ceil(N / n) column groups, M over the cells // g cores of a group), and the K reduction runs as a
wavefront: at each of the K steps a core receives max(m, n) operand values over its links and does min(m, n) vector
multiply-adds of length max(m, n), ceil(max(m, n) / simd) cycles each; every step also pays a fixed ``step`` cost
(receiving the broadcast operands, synchronising with the wavefront, starting the vector work), so per step

    cycles = max(min(m, n) * ceil(max(m, n) / simd) / work_fraction, max(m, n) / link_values_per_cycle) + step

and the matmul takes K steps plus a wavefront crossing the grid (2 sqrt(cells) hops). The tile width n is chosen to
minimise the time, so efficiency = ideal / actual, ideal = M K N / (cells * simd), is a function of the shapes and
the grid alone. Much work per step (many tokens per core) approaches peak; little pays the step cost, and tiles that do not
divide the matrix pay their ragged edge. Per-head attention matmuls run as independent groups, one per sequence and
head, each on its share of the cores.

Training kernels (Cerebras' compiler, weight streaming) keep fewer SIMD lanes busy than WaferLLM's fp16 kernels:
``work_fraction`` divides the vector work of a step (not its fixed cost), so the same shapes take longer, most of all
where the work dominates (many tokens per core). Training has its own step cost and work fraction, both fitted to the
measured training runs (wse.validation.fit); inference uses ``work_fraction`` 1.

Calibration (wse.validation.fit, from wse.validation.published's calibration table): the inference step cost is
solved so that a LLaMA3-8B prefill of 4,096 tokens on 720 x 720 WSE-2 cores, layer by layer on the whole grid, runs
at WaferLLM's measured 27,686 tokens/s (OSDI 2025). WaferLLM's other figure for its MeshGEMM, "above 70% of peak" on
720 x 720 cores at a matrix size not pinned down here, is then a check: ``meshgemm_side`` gives the smallest cube
the model runs at 70% or more.

GEMV (decode). A K x N weight matrix resident on an r x c region, weights stationary: each core holds a ceil(K/r) x
ceil(N/c) block and runs one local loop over it (one step cost, no wavefront per k); the input vector is broadcast
along one side and partial sums reduced along the other, each from the middle of the side (WaferLLM's MeshGEMV uses
a tree reduction), so the critical path is (r + c) / 2 hops:

    cycles = batch * ceil(K / r) * ceil(ceil(N / c) / simd) + step + hop_cycles * (r + c) / 2

WaferLLM reports about a microsecond for a 16K x 16K GEMV over a WSE-2; ``gemv_check()`` gives the model's figure.
Elementwise work (norms, activations, softmax) is not counted as work: per core it is a few operations per value,
small next to the matmuls at these shapes; what it costs in inference is the hand-off that ends each sequential phase
of a layer (``phase_sync_cycles``, wse.wafer.inference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# WaferLLM's MeshGEMM on WSE-2: at least this fraction of peak on 720 x 720 cores (matrix size not stated here)
MESHGEMM = {"cores_side": 720, "efficiency": 0.70,
            "source": "P: WaferLLM (OSDI 2025): MeshGEMM above 70% of peak at 720 x 720 WSE-2 cores"}
GEMV_CHECK = {"cores_side": 720, "matrix_side": 16384, "seconds": 1e-6,
              "source": "P: WaferLLM (OSDI 2025): a 16K x 16K GEMV over a WSE-2 takes about a microsecond"}


@dataclass(frozen=True)
class KernelModel:
    """What the kernel formulas need of a chip: SIMD lanes, step cost, link width, hop latency, clock, and the
    fraction of the lanes' rate the vector work keeps (``work_fraction``: 1 for fp16 inference kernels)."""

    simd: int
    step_cycles: float
    link_values_per_cycle: float
    hop_cycles: float
    clock_hz: float
    work_fraction: float = 1.0
    stationary: bool = False

    def matmul_s(self, M: int, K: int, N: int, cells: int) -> float:
        """Seconds for an M x K by K x N matmul on ``cells`` cores (module docstring): the wavefront, or with
        ``stationary`` the faster of it and the weights held still while the tokens stream through them."""
        cycles = _matmul_cycles(M, K, N, cells, self._key())
        if self.stationary:
            cycles = min(cycles, _stationary_cycles(M, K, N, cells, self._key() + (self.hop_cycles,)))
        return cycles / self.clock_hz

    def grouped_matmul_s(self, groups: int, M: int, K: int, N: int, cells: int) -> float:
        """Seconds for ``groups`` independent M x K by K x N matmuls sharing ``cells`` cores."""
        if groups <= cells:
            return self.matmul_s(M, K, N, cells // groups)
        return math.ceil(groups / cells) * self.matmul_s(M, K, N, 1)

    def gemv_s(self, batch: int, K: int, N: int, rows: int, cols: int) -> float:
        """Seconds for ``batch`` vectors through a K x N matrix resident on a rows x cols region (docstring)."""
        per_core = math.ceil(K / rows) * math.ceil(math.ceil(N / cols) / self.simd)
        return (batch * per_core + self.step_cycles + self.hop_cycles * (rows + cols) / 2) / self.clock_hz

    def efficiency(self, M: int, K: int, N: int, cells: int) -> float:
        """Ideal over modelled time of a matmul: the fraction of the cores' peak it sustains."""
        ideal = M * K * N / (cells * self.simd * self.clock_hz)
        return ideal / self.matmul_s(M, K, N, cells)

    def _key(self) -> tuple:
        return (self.simd, self.step_cycles, self.link_values_per_cycle, self.work_fraction)


def _candidates(N: int) -> np.ndarray:
    """Tile widths worth trying: every width up to 16, powers of two, and the widths of 2^j equal column groups."""
    powers = [2 ** j for j in range(int(math.log2(N)) + 2)]
    values = set(range(1, min(N, 16) + 1)) | {p for p in powers if p <= N} | {math.ceil(N / p) for p in powers}
    return np.array(sorted(v for v in values if 1 <= v <= N), dtype=np.int64)


@lru_cache(maxsize=65536)
def _matmul_cycles(M: int, K: int, N: int, cells: int, key: tuple) -> float:
    simd, step, link, fraction = key
    n = _candidates(N)
    groups = -(-N // n)
    waves = -(-groups // cells)
    per_group = np.maximum(cells // groups, 1)
    m = -(-M // per_group)
    longer, shorter = np.maximum(m, n), np.minimum(m, n)
    per_step = np.maximum(shorter * -(-longer // simd) / fraction, longer / link) + step
    return float(np.min(waves * K * per_step)) + 2.0 * math.sqrt(cells)


@lru_cache(maxsize=65536)
def _stationary_cycles(M: int, K: int, N: int, cells: int, key: tuple) -> float:
    """The weights spread over r x c cores (r <= K, c <= N), each token a GEMV through them: per token a core does
    its block's multiply-adds and passes ceil(K/r) inputs and ceil(N/c) partial sums; one step cost and the hops
    across the region fill the pipeline."""
    simd, step, link, fraction, hop = key
    r = _candidates(K)
    r = r[r <= cells]
    c = np.minimum(N, cells // r)
    kb, nb = -(-K // r), -(-N // c)
    per_token = np.maximum(kb * -(-nb // simd) / fraction, np.maximum(kb, nb) / link)
    return float(np.min(M * per_token + step + hop * (r + c) / 2))


def kernel_model(chip, step_cycles: float, activation_bytes: int, work_fraction: float = 1.0,
                 stationary: bool = False) -> KernelModel:
    """The kernel model of a chip (wse.wafer.hardware.Chip) with a step cost, a work fraction and, for training,
    the weight-stationary mapping as an alternative (``stationary``)."""
    return KernelModel(simd=chip.fp16_simd_width, step_cycles=step_cycles,
                       link_values_per_cycle=chip.link_bytes_per_cycle / activation_bytes,
                       hop_cycles=chip.hop_latency_cycles, clock_hz=chip.clock_hz, work_fraction=work_fraction,
                       stationary=stationary)


def meshgemm_efficiency(chip, step_cycles: float, matrix_side: int) -> float:
    """The model's efficiency for a matrix_side cube on MeshGEMM's 720 x 720 cores of ``chip``."""
    side = MESHGEMM["cores_side"]
    return kernel_model(chip, step_cycles, 2).efficiency(matrix_side, matrix_side, matrix_side, side * side)


def meshgemm_side(chip, step_cycles: float, efficiency: float = MESHGEMM["efficiency"]) -> int:
    """The smallest cube (a multiple of 1,024, up to 131,072) at which the model reaches ``efficiency`` on MeshGEMM's
    720 x 720 cores of ``chip``; 0 when none does."""
    sides = range(1024, 131073, 1024)
    return next((n for n in sides if meshgemm_efficiency(chip, step_cycles, n) >= efficiency), 0)


def gemv_check(chip, step_cycles: float) -> float:
    """The model's seconds for WaferLLM's 16K x 16K GEMV on 720 x 720 cores of ``chip``."""
    side, n = GEMV_CHECK["cores_side"], GEMV_CHECK["matrix_side"]
    return kernel_model(chip, step_cycles, 2).gemv_s(1, n, n, side, side)
