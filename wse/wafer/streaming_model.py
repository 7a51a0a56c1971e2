"""The per-layer time and memory arrays of weight streaming, for one (model, system, sequence length, options).

Time (seconds, per micro-batch of q sequences on one system). On a wafer each layer's forward is the sum of its
matmuls under the kernel model of Cerebras' training kernels (wse.wafer.kernels with ``train_step_cycles`` and
``train_work_fraction``: the time depends on the matrix shapes on the core grid); on a device
grid (a JAX mesh in the benchmarks) it is FLOPs at ``compute_efficiency`` or the fabric term, whichever is slower.
The backward is twice the forward, plus the attention scores once more on a wafer (the probabilities are never
stored: the attention backward recomputes them, flash-style), plus the whole forward when the layer keeps only a
checkpoint (recompute). Streaming runs beside it: a layer's weights in (prefetched while the previous layer runs),
its gradients out, and offloaded activations out in the forward pass and back in with the weights in the backward.

Memory (bytes on the wafer). Weights arrive in tiles of a matrix (``weight_tile_bytes``): two weight tiles (current
and prefetched) and a gradient tile. A micro-batch needs its working set (the running layer's internals and the
activation gradients in and out, per sequence) and the activations each layer keeps for its backward pass: all of
its internals (its stash) or, recomputing, its input alone (one checkpoint per layer). What does not fit is offloaded
to MemoryX when ``offload`` allows; the layers that run last keep theirs on the wafer (their backward comes first).
"""

from __future__ import annotations

import numpy as np

from wse.assumptions import PlanOptions
from wse.costs import device_layer_seconds, model_layers, parameters, wafer_bytes_per_sequence
from wse.shape import as_shape
from wse.wafer.hardware import System
from wse.wafer.kernels import kernel_model


def weight_buffer_bytes(layers, options: PlanOptions) -> tuple[float, float]:
    """(tile parameters, wafer bytes of two weight tiles and a gradient tile): a tile is a column block of the
    largest matrix, at most ``weight_tile_bytes``."""
    largest = max(max((m.k * m.n for m in l.matmuls if m.heads == 0), default=l.weight_params) for l in layers)
    tile = min(largest, options.weight_tile_bytes // options.weight_bytes)
    return tile, tile * (2 * options.weight_bytes + options.grad_bytes)


class StreamingModel:
    """Per-layer time and memory of one (model, system, seq_len, options); see the module docstring."""

    def __init__(self, shape, system: System, seq_len: int, options: PlanOptions):
        self.shape = as_shape(shape)
        grid = system.grid()
        self.wafer = grid.kind == "wafer"
        self.layers = model_layers(self.shape, seq_len,
                                   attention_probs_stashed=options.attention_probs_stashed and not self.wafer)
        self.system, self.options, self.seq_len, self.grid = system, options, seq_len, grid
        self.kernels = kernel_model(system.chip, options.train_step_cycles, options.activation_bytes,
                                    options.train_work_fraction, stationary=True)
        self.bandwidth = system.stream_bandwidth_bytes_per_s()
        weights = np.array([l.weight_params for l in self.layers], dtype=float)
        self.weight_bytes = weights * options.weight_bytes
        self.stream_in = self.weight_bytes / self.bandwidth
        self.stream_out = weights * options.grad_bytes / self.bandwidth
        self.recomputable = np.array([l.recomputable for l in self.layers])
        self.switch = grid.layer_switch_s
        self.parameters = parameters(self.layers)
        self.tile_params, self.buffer_bytes = weight_buffer_bytes(self.layers, options)
        self.working, self.kept = wafer_bytes_per_sequence(self.layers, self.shape.d_model, seq_len,
                                                           options.activation_bytes)
        self.free = grid.memory_bytes - self.buffer_bytes
        fits = lambda per_seq: max(int(self.free // per_seq), 0) if self.free > 0 else 0  # noqa: E731
        self.max_seqs = {"offload": fits(self.working),
                         False: fits(self.working + self.kept[False].sum()),
                         True: fits(self.working + self.kept[True].sum())}
        self._forward: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cache: dict = {}

    def forward(self, seqs: int) -> tuple[np.ndarray, np.ndarray]:
        """(forward seconds per layer, attention-score seconds per layer) for a micro-batch of ``seqs``."""
        if seqs not in self._forward:
            self._forward[seqs] = self._wafer_forward(seqs) if self.wafer else self._device_forward(seqs)
        return self._forward[seqs]

    def _wafer_forward(self, seqs: int) -> tuple[np.ndarray, np.ndarray]:
        tokens, cells, km = seqs * self.seq_len, self.grid.cells, self.kernels
        per_kind: dict[tuple, tuple[float, float]] = {}  # blocks repeat: time each distinct layer once
        for matmuls in {layer.matmuls for layer in self.layers}:
            total = scores = 0.0
            for m in matmuls:
                if m.heads:
                    t = km.grouped_matmul_s(seqs * m.heads, self.seq_len, m.k, m.n, cells)
                    scores += t if m.kind == "scores" else 0.0
                else:
                    t = km.matmul_s(tokens, m.k, m.n, cells)
                total += t
            per_kind[matmuls] = (total, scores)
        times = np.array([per_kind[layer.matmuls] for layer in self.layers])
        return times[:, 0], times[:, 1]

    def _device_forward(self, seqs: int) -> tuple[np.ndarray, np.ndarray]:
        compute, fabric = device_layer_seconds(self.layers, self.grid, seqs * self.seq_len, self.options)
        return np.maximum(compute, fabric), np.zeros(len(self.layers))

    def offloaded(self, seqs: int, recompute: bool) -> np.ndarray | None:
        """Bytes per layer a micro-batch of ``seqs`` offloads to MemoryX (None: its working set does not fit)."""
        budget = self.free - seqs * self.working
        if budget < 0:
            return None
        kept = seqs * self.kept[recompute]
        after = np.concatenate([np.cumsum(kept[::-1])[::-1][1:], [0.0]])  # kept by the layers that run later
        on_wafer = np.clip(budget - after, 0.0, kept)
        return kept - on_wafer

    def micro_time(self, seqs: int, recompute: bool) -> tuple[float, float, float] | None:
        """(micro-batch time, its backward time, its offloaded bytes) for ``seqs`` sequences, or None if no fit."""
        key = (seqs, recompute)
        if key not in self._cache:
            self._cache[key] = self._micro_time(seqs, recompute)
        return self._cache[key]

    def _micro_time(self, seqs: int, recompute: bool):
        off = self.offloaded(seqs, recompute)
        if off is None or (off.sum() > 0 and self.options.offload == "never"):
            return None
        fwd, bwd = self.passes(seqs, recompute, off)
        return float(fwd.sum() + bwd.sum()), float(bwd.sum()), float(off.sum())

    def passes(self, seqs: int, recompute: bool, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-layer forward and backward seconds for one micro-batch, streaming and offload included."""
        fwd_work, scores = self.forward(seqs)
        bwd_work = 2 * fwd_work + scores + (fwd_work * self.recomputable if recompute else 0)
        off_s = off / self.bandwidth
        fwd = np.maximum(np.maximum(fwd_work, self.stream_in), off_s) + self.switch
        bwd = np.maximum(np.maximum(bwd_work, self.stream_in + off_s), self.stream_out) + self.switch
        return fwd, bwd

    def longest_seq_len(self) -> int:
        """The longest sequence whose working set fits beside the weight tiles (kept activations can offload)."""
        per_token = self.working / self.seq_len
        return int(self.free // per_token) if self.free > 0 else 0
