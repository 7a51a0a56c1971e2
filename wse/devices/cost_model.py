"""The device cost model: one training step on a mesh of GPUs or CPU devices, from the figures of the device.

Each device runs the whole model on its share of the batch (pure data parallelism), ``accum`` slices per step. Per
slice of ``tokens`` tokens on one device, each layer of wse.costs (embedding, whole blocks, head) takes:

- matmuls: its forward FLOPs at ``compute_efficiency`` of the device's matmul rate in the compute dtype (the compute
  term of ``wse.costs.device_layer_seconds``, the formula that predicts device grids for the planners; the
  fabric term does not apply: a device holds whole layers). Backward: twice the forward, plus the attention's QK^T
  once more (the runtime keeps only the log-sum-exp and recomputes the scores), plus the whole forward again when
  the backward rematerialises the layer (remat ``full``).
- memory traffic at the device's memory bandwidth (``ASSUMPTIONS``): every value a layer keeps per token
  (``Layer.stash_values_per_token``) is written and read once forward and read once, its gradient written and read
  once, backward; the attention scores and probabilities, unless a fused kernel keeps them on chip; the loss's float32
  logits, exponentials and gradient. Remat ``dots`` or ``full`` pays the forward traffic again.

Matmuls and traffic share the device, so they add. Per step:

- ``data``: accum x the slice's layers, forward and backward; then the gradient all-reduce over the device link (a
  ring: 2 (n - 1) / n x 4 bytes per parameter) and the AdamW update in device memory; then ``step_overhead_s``.
- ``streaming`` (runtime/execution/streaming.py; the bytes are ``wse.devices.hostlink``'s, the timeline moves the same):
  per slice the non-overlapped first fetch (the embeddings and layer 0), then each forward layer beside the fetch of
  the next, the head, each backward layer beside the fetch of the one before it and the gradient of the one after it
  leaving (all-reduced over the data axis first), then the last gradients leaving. "Beside" is max(compute,
  transfer) on a device with copy engines, their sum on one without; the two directions of the host link add unless
  the link is full duplex. Then the host-side AdamW update at the host's rate, after the whole backward (the global
  norm needs every gradient): every device's copy of the state is updated, so n x parameters at the host's rate. Or,
  where the update cannot run in host memory (``host_update=False``), weights and moments come to the device and go
  back, in sequence with the update there. A device whose host memory is its own memory (JAX's CPU backend) moves
  nothing: its transfers take no time.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from wse.assumptions import PlanOptions
from wse.costs import device_layer_seconds, model_layers, training_flops_per_token
from wse.devices.hostlink import GRAD_BYTES, streaming_link_bytes
from wse.devices.specs import Device
from wse.grid import device_grid
from wse.shape import as_shape

DTYPE_BYTES = {"bfloat16": 2, "float32": 4}
REMATS = ("none", "dots", "full")  # model.remat.REMAT_POLICIES (wse/ may not import model/; a test holds them equal)

# The model's own figures: name -> (value, "TAG: reason"). Listed in every device plan's assumptions.
ASSUMPTIONS: dict[str, tuple[float, str]] = {
    "forward_accesses": (2, "D: a value a layer keeps is written once by the op that makes it and read once by the "
                            "op that uses it"),
    "backward_accesses": (3, "D: the backward reads a kept value once for its local derivative and writes and reads "
                             "its gradient once"),
    "score_forward_accesses": (4, "D: attention scores and probabilities, heads x T float32 values per token "
                                  "outside a fused kernel: the forward writes and reads each once"),
    "score_backward_accesses": (8, "D: the backward recomputes scores and probabilities (4; model.gpt keeps only the "
                                   "log-sum-exp) and writes and reads their gradients (4)"),
    "logit_accesses": (6, "D: the loss holds float32 logits, their exponentials and their gradient per token and "
                          "vocabulary entry (MemoryModel.logit_bytes counts the same three), each "
                          "written and read once"),
    "logit_bytes": (12, "D: bytes per logit the loss holds: float32 logits, exponentials and gradient"),
    "softmax_stat_bytes": (4, "D: the attention keeps one float32 log-sum-exp per query head and token for its "
                              "backward (model/attention.py's XLA kernel and cuDNN's flash kernel alike)"),
    "adamw_bytes_per_param": (32, "D: AdamW with global-norm clipping in device memory: the norm reads the float32 "
                                  "gradient (4), the update reads weight, gradient and both moments (16) and writes "
                                  "weight and moments (12)"),
    "train_state_bytes_per_param": (16, "D: data mode keeps float32 weights and gradients and both float32 moments on "
                                        "every device (the runtime's placement reads this figure)"),
    "host_state_bytes_per_param": (16, "D: streaming keeps float32 weights, both moments and the gradient "
                                       "accumulator in host memory"),
    "loss_chunk_tokens": (4096, "D: the loss materialises logits for at most 4,096 tokens at a time "
                                "(model.gpt.LOSS_CHUNK_TOKENS)"),
}


# Values per token one block keeps for its backward pass under remat "none" when XLA compiles the runtime's step, per
# unit of each width: d_model (6 in a sequential block: both norms' inputs and outputs, the attention context and the
# residual; 3 with a parallel residual, which has one norm), the query width n_heads x d_head and the K/V width
# n_kv_heads x d_head (2 each: the projection's output and the attention kernel's heads-first copy), d_ffn (2 plain:
# the activation's input and output; 4 gated: gate, up, the activated gate and the product) and, with Q/K norms, 2 per
# query and K/V width (the norms' inputs and outputs). F: fitted to XLA's memory_analysis() of the compiled training
# step (the temp bytes of each policy minus "full"), XLA:CPU, JAX 0.10.2, 8-layer models of width 256 at 4 x 256
# tokens: GPT-2 (10 d + 2 d_ffn: also what 1.3B at 8 x 2048 and 111M at 8 x 1024 keep, within 15 %), Llama with 4 and
# 1 K/V heads, d_ffn 1024 and 2048, heads of 96, Qwen3's Q/K norms, GPT-J's parallel block: every one within 0.2 %.
XLA_KEPT_VALUES = {"d": 6, "d_parallel": 3, "q": 2, "kv": 2, "ffn": 2, "ffn_gated": 4, "qk_norm": 2}


class MemoryModel:
    """What one device holds for a training step, by remat policy: the one memory model, asked by the device planner
    (wse.devices.plan) and by the runtime's remat decision (runtime/execution/placement.py).

    Per token and block, the values the backward pass keeps under each policy (model/remat.py's vocabulary):

    - ``none``: what XLA keeps of the block (XLA_KEPT_VALUES, from the shape's widths: Q and K/V at their own widths,
      a gated FFN's third matrix, Q/K norms, a parallel block's one norm) plus the attention's float32 softmax
      statistic (the log-sum-exp, n_heads values: both attention kernels keep only that, never the scores);
    - ``dots``: the weight matmuls' outputs (``Layer.matmul_output_values_per_token`` of wse.costs: Q, K, V at their
      widths, the attention output, the FFN's two or three matmuls; a parallel block's two output projections are
      summed in one value);
    - ``full``: the block's input;

    and under ``dots`` and ``full`` the block being recomputed holds its ``none`` values while its gradient is taken.
    For GPT-2 shapes: 10 d + 2 d_ffn, 5 d + d_ffn and d values. ``width``: bytes per kept value (XLA:CPU keeps bfloat16
    activations in float32: 4 there whatever the compute dtype).
    """

    def __init__(self, shape, width: float):
        self.shape, self.width = as_shape(shape), width
        # the attention keeps no scores, so a block's values per token do not depend on the context
        self.block = model_layers(self.shape, 1, split_blocks=False, attention_probs_stashed=False)[1]

    def block_values(self, remat: str) -> float:
        """Values per token one block keeps for its backward pass under ``remat`` (see the class docstring)."""
        s, k = self.shape, XLA_KEPT_VALUES
        if remat == "none":
            q, kv = s.q_width, s.kv_width
            return float(k["d_parallel" if s.parallel_residual else "d"] * s.d_model + k["q"] * q + k["kv"] * kv
                         + k["ffn_gated" if s.ffn_gated else "ffn"] * s.d_ffn + (k["qk_norm"] * (q + kv) if s.qk_norm else 0))
        if remat == "dots":
            return self.block.matmul_output_values_per_token - (s.d_model if s.parallel_residual else 0)
        if remat == "full":
            return float(self.block.input_values_per_token)
        raise ValueError(f"remat must be one of {', '.join(REMATS)}, got {remat!r}")

    def block_bytes(self, remat: str) -> float:
        """Bytes per token one block keeps under ``remat``: its values, and under ``none`` the softmax statistic."""
        stats = assumption("softmax_stat_bytes") * self.shape.n_heads if remat == "none" else 0.0
        return self.width * self.block_values(remat) + stats

    def activation_bytes(self, tokens: float, blocks: float, remat: str) -> float:
        """Bytes ``blocks`` blocks keep for the backward pass over ``tokens`` tokens under ``remat``, plus under
        ``dots`` and ``full`` the one block being recomputed."""
        kept = float(blocks) * tokens * self.block_bytes(remat)
        return kept + (tokens * self.block_bytes("none") if remat != "none" else 0.0)

    def stash_bytes(self, tokens: float, copies: float) -> float:
        """Bytes of ``copies`` [tokens, d_model] activations (a pipeline stage's stashed inputs and messages)."""
        return copies * tokens * self.shape.d_model * self.width

    def logit_bytes(self, tokens: float) -> float:
        """Bytes the loss holds for ``tokens`` tokens of one chunk: float32 logits, exponentials and gradient."""
        return assumption("logit_bytes") * tokens * self.shape.vocab_size

    def policy_bytes(self, tokens: float, blocks: float) -> dict[str, float]:
        """``activation_bytes`` of every policy, cheapest in compute first."""
        return {p: self.activation_bytes(tokens, blocks, p) for p in REMATS}


def cheapest_fitting(need: dict[str, float], budget: float) -> str | None:
    """The first policy of ``need`` (REMATS order: cheapest in compute first) whose bytes fit ``budget``, or None."""
    return next((p for p in REMATS if p in need and need[p] <= budget), None)


def assumption(name: str) -> float:
    """The value of the named model figure in ``ASSUMPTIONS``."""
    return ASSUMPTIONS[name][0]


def model_assumptions() -> dict[str, dict]:
    """``ASSUMPTIONS`` as a plan lists them: ``model.<name>`` -> {value, reason (with its tag)}."""
    return {f"model.{k}": {"value": v, "reason": why} for k, (v, why) in ASSUMPTIONS.items()}


def ring_all_reduce_s(n_bytes: float, devices: int, link_bytes_per_s: float) -> float:
    """Seconds of a ring all-reduce of ``n_bytes`` over ``devices`` (each sends 2 (n - 1) / n of it); 0 for one."""
    return 0.0 if devices <= 1 else 2 * (devices - 1) / devices * n_bytes / link_bytes_per_s


class DeviceModel:
    """Per-layer times of one model on one ``Device`` at ``seq_len`` tokens per sequence in ``dtype`` (see the
    module docstring). ``options.compute_efficiency`` is the fraction of the matmul rate the step's matmuls reach."""

    def __init__(self, shape, device: Device, seq_len: int, dtype: str, options: PlanOptions | None = None):
        self.shape, self.device, self.seq_len, self.dtype = as_shape(shape), device, seq_len, dtype
        device.matmul_flops(dtype)  # refuses a dtype the device has no figure for
        self.width = DTYPE_BYTES[dtype]
        self.options = options or PlanOptions()
        self.layers = model_layers(self.shape, seq_len, split_blocks=False, attention_probs_stashed=False)
        self.parameters = sum(layer.params for layer in self.layers)
        self.blocks = np.array([layer.name.startswith("block") for layer in self.layers])
        self.n_layers = self.shape.n_layers
        self.layer_params = self.layers[1].params  # a block's (the blocks are equal)
        self.memory = MemoryModel(self.shape, self.width)
        self.rest_params = self.parameters - self.n_layers * self.layer_params  # embeddings and the final LayerNorm

    def layer_seconds(self, tokens: float, remat: str) -> tuple[np.ndarray, np.ndarray]:
        """(forward, backward) seconds per layer for ``tokens`` tokens on one device under ``remat``."""
        d, s = self.device, self.shape
        one = device_grid(1, d.matmul_flops(self.dtype), d.memory_bytes, d.device_link_bytes_per_s, name=d.name)
        f_mm, _ = device_layer_seconds(self.layers, one, tokens, self.options)
        attention = np.array([l.attention_flops_per_token for l in self.layers]) * tokens / (
            d.matmul_flops(self.dtype) * self.options.compute_efficiency)
        kept = np.array([l.stash_values_per_token for l in self.layers]) * tokens * self.width
        scores = 0.0 if d.fused_attention else s.n_heads * self.seq_len * tokens * 4.0
        attn = np.array([l.attention_flops_per_token > 0 for l in self.layers]) * scores
        logits = np.array([l.name == "head" for l in self.layers]) * s.vocab_size * tokens * 4.0
        f_mem = (kept * assumption("forward_accesses") + attn * assumption("score_forward_accesses")
                 + logits * assumption("logit_accesses") / 2) / d.memory_bytes_per_s
        b_mem = (kept * assumption("backward_accesses") + attn * assumption("score_backward_accesses")
                 + logits * assumption("logit_accesses") / 2) / d.memory_bytes_per_s
        if remat not in REMATS:
            raise ValueError(f"remat must be one of {', '.join(REMATS)}, got {remat!r}")
        again = self.blocks * (f_mem + (f_mm if remat == "full" else 0.0)) if remat != "none" else 0.0
        return f_mm + f_mem, 2 * f_mm + attention / 2 + b_mem + again

    def device_update_s(self) -> float:
        """Seconds of the AdamW update (with the global norm) in device memory."""
        return self.parameters * assumption("adamw_bytes_per_param") / self.device.memory_bytes_per_s

    def data_step(self, tokens: float, accum: int, remat: str) -> dict:
        """The parts (seconds) of a data-mode step of ``accum`` slices of ``tokens`` tokens per device."""
        fwd, bwd = self.layer_seconds(tokens, remat)
        d = self.device
        compute = accum * float(fwd.sum() + bwd.sum())
        all_reduce = ring_all_reduce_s(self.parameters * GRAD_BYTES, d.devices, d.device_link_bytes_per_s)
        parts = {"compute_s": compute, "all_reduce_s": all_reduce, "device_update_s": self.device_update_s(),
                 "first_fetch_s": 0.0, "link_s": 0.0, "exposed_link_s": 0.0, "host_update_s": 0.0,
                 "fixed_s": d.step_overhead_s}
        parts["step_time_s"] = compute + all_reduce + parts["device_update_s"] + d.step_overhead_s
        return parts

    def link_split(self, accum: int, host_update: bool) -> dict:
        """Bytes of each transfer of a streaming step, from wse.devices.hostlink's totals: one layer's weights
        (``layer``, 2L + 1 fetches per slice) and the rest's (``rest``, once per slice), the float32 gradients of a
        layer and of the rest leaving as they are produced (``layer_out``, ``rest_out``), and what the update adds each
        way (``update_in``, ``update_out``: 0 when it runs in host memory). A layer's bytes are the per-slice figure's
        growth from L to L + 1 layers over 2 (each layer is fetched twice), so every width hostlink uses is kept."""
        total = streaming_link_bytes(self.shape, compute_bytes=self.width, accum=accum, host_update=host_update)
        longer = streaming_link_bytes(replace(self.shape, n_layers=self.n_layers + 1), compute_bytes=self.width,
                                      accum=accum, host_update=host_update)
        per_slice = total["per_slice_weights"]
        layer = (longer["per_slice_weights"] - per_slice) / 2
        return {"total": total, "layer": layer, "rest": per_slice - (2 * self.n_layers + 1) * layer,
                "layer_out": GRAD_BYTES * self.layer_params, "rest_out": GRAD_BYTES * self.rest_params,
                "update_in": total["to_device"] - accum * per_slice,
                "update_out": total["to_host"] - accum * GRAD_BYTES * self.parameters}

    def transfer_seconds(self, split: dict) -> dict:
        """Seconds of each transfer of ``link_split``, and of a layer's and the rest's gradient all-reduce over the
        device link (``reduce``, ``rest_reduce``). Host-link times are 0 when host and device memory are one
        (``host_memory_separate`` False: the step moves nothing)."""
        d = self.device
        moves = 1.0 if d.host_memory_separate else 0.0
        there, back = moves / d.host_to_device_bytes_per_s, moves / d.device_to_host_bytes_per_s
        ring = lambda n: ring_all_reduce_s(n, d.devices, d.device_link_bytes_per_s)  # noqa: E731
        return {"fetch": split["layer"] * there, "rest_in": split["rest"] * there, "out": split["layer_out"] * back,
                "rest_out": split["rest_out"] * back, "reduce": ring(split["layer_out"]),
                "rest_reduce": ring(split["rest_out"]), "update_in": split["update_in"] * there,
                "update_out": split["update_out"] * back}

    def streaming_slice(self, tokens: float, t: dict) -> dict:
        """Seconds of one streaming slice of ``tokens`` tokens with the transfer times ``t`` (``transfer_seconds``):
        the timeline of the module docstring; also its compute, its transfers and its first fetch."""
        d = self.device
        fwd, bwd = self.layer_seconds(tokens, "full")
        both = (lambda a, b: max(a, b)) if d.link_full_duplex else (lambda a, b: a + b)
        beside = (lambda c, x: max(c, x)) if d.copy_engines else (lambda c, x: c + x)
        first = t["rest_in"] + t["fetch"]
        time = first + sum(beside(float(c), t["fetch"]) for c in fwd[self.blocks])
        time += float(fwd[~self.blocks].sum() + bwd[~self.blocks].sum())  # embedding and head: nothing beside them
        leaving = 0.0  # the gradient of the layer whose backward ran before this one's (none before the last layer)
        for c in bwd[self.blocks][::-1]:
            time += beside(float(c), both(t["fetch"], leaving))
            leaving = t["reduce"] + t["out"]
        tail = leaving + t["rest_reduce"] + t["rest_out"]
        L = self.n_layers
        link = (2 * L + 1) * t["fetch"] + t["rest_in"] + L * (t["out"] + t["reduce"]) + t["rest_out"] + t["rest_reduce"]
        return {"slice_s": time + tail, "compute_s": float(fwd.sum() + bwd.sum()), "link_s": link,
                "first_fetch_s": first}

    def streaming_step(self, tokens: float, accum: int, host_update: bool = True) -> dict:
        """The parts (seconds) of a streaming step of ``accum`` slices of ``tokens`` tokens per device, and the bytes
        over the host link per step (``link_bytes``: wse.devices.hostlink.streaming_link_bytes). ``step_time_s`` =
        compute + exposed link + host update + device update + fixed (the per-layer all-reduce is part of the link
        time)."""
        d = self.device
        split = self.link_split(accum, host_update)
        t = self.transfer_seconds(split)
        sl = self.streaming_slice(tokens, t)
        round_trip = max(t["update_in"], t["update_out"]) if d.link_full_duplex else t["update_in"] + t["update_out"]
        host = d.devices * self.parameters / d.host_update_params_per_s if host_update else 0.0
        dev_update = 0.0 if host_update else self.device_update_s()
        compute = accum * sl["compute_s"]
        parts = {"compute_s": compute, "link_s": accum * sl["link_s"] + round_trip,
                 "exposed_link_s": accum * sl["slice_s"] - compute + round_trip,
                 "first_fetch_s": accum * sl["first_fetch_s"], "host_update_s": host, "device_update_s": dev_update,
                 "all_reduce_s": 0.0, "fixed_s": d.step_overhead_s}
        parts["step_time_s"] = accum * sl["slice_s"] + round_trip + host + dev_update + d.step_overhead_s
        parts["link_bytes"] = {k: split["total"][k] for k in ("to_device", "to_host")}
        return parts

    def pipelined_step(self, tokens: float, microbatches: int, slots: int, stages: int) -> dict:
        """The parts (seconds) of a 1F1B step (runtime/execution/pipelined.py) of ``microbatches`` microbatches of
        ``tokens`` tokens per data replica, over ``stages`` stages of ``slots`` layer slots each (padded slots of an
        uneven split compute too), in lockstep ticks (wse.schedule.lockstep_ticks): a forward is the stage's blocks (the
        first stage's adds the embedding); a backward recomputes them and runs their backward (remat ``full``), on the
        last stage with the head and the loss, whose forward it folds in. A tick lasts as long as its slowest stage
        (the stages exchange activations after every tick), plus passing an activation and a cotangent to the
        neighbours over the device link. Even emulated CPU devices that share a host's cores: an idle stage does not
        lend its share to a busy one (measured, wse bench --quick on a 2-core Xeon: the 1F1B rows of tiny and small came
        out at 0.94 and 0.95 of the measured step this way, 0.49 and 0.50 if a busy stage took the idle cores). Then
        the data axis's gradient all-reduce, the update in device memory and the fixed cost."""
        from wse.schedule import lockstep_ticks

        d = self.device
        fwd, bwd = self.layer_seconds(tokens, "full")
        block_f, block_b = float(fwd[self.blocks][0]), float(bwd[self.blocks][0])
        embed = (float(fwd[0]), float(bwd[0]))
        head = float(fwd[-1] + bwd[-1])  # the head and loss: no remat, its forward folded into the backward
        last = stages - 1
        op_s = {("F", s): slots * block_f + (embed[0] if s == 0 else 0.0) for s in range(stages)}
        op_s.update({("B", s): slots * block_b + (embed[1] if s == 0 else 0.0) + (head if s == last else 0.0)
                     for s in range(stages)})
        hand_off = 2 * tokens * self.shape.d_model * self.width / d.device_link_bytes_per_s
        pipe = 0.0
        for row in lockstep_ticks(stages, microbatches):
            busy = [op_s[kind, s] for s, (kind, _) in ((s, e) for s, e in enumerate(row) if e is not None)]
            pipe += max(busy, default=0.0) + hand_off
        replicas = max(d.devices // stages, 1)
        held = self.rest_params + self.n_layers * self.layer_params / stages  # a stage's layers and the embeddings
        all_reduce = ring_all_reduce_s(held * GRAD_BYTES, replicas, d.device_link_bytes_per_s)
        update = self.device_update_s() * held / self.parameters
        parts = {"compute_s": pipe, "all_reduce_s": all_reduce, "device_update_s": update, "first_fetch_s": 0.0,
                 "link_s": 0.0, "exposed_link_s": 0.0, "host_update_s": 0.0, "fixed_s": d.step_overhead_s,
                 "ticks": 2 * (microbatches + stages - 1)}
        parts["step_time_s"] = pipe + all_reduce + update + d.step_overhead_s
        return parts

    def model_flops(self, tokens: float) -> float:
        """This project's training FLOPs (wse.costs) for ``tokens`` tokens, no recomputation counted."""
        return training_flops_per_token(self.layers) * tokens
