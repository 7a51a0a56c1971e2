"""Layer-pipelined execution (the wafer's original mode): each pipeline stage holds a contiguous run of layers and
microbatches flow through the stages. Two schedules, one function each (Megatron's schedules.py): ``one_f_one_b``
(1F1B, the default and what the wafer simulator assumes, wse/schedule.py) and ``gpipe``. The executor picks one by
name (SCHEDULES, ``plan["schedule"]``); the model and the trainer do not know which runs.

Layout. The stacked blocks ``[L, ...]`` are stored as ``[S * slots, ...]`` sharded over ``stage``: stage s owns
slots ``s*slots .. s*slots + slots - 1``, its layers first, then zero padding when the planner's split is uneven
(5 layers over 2 stages -> 3 + 2, the second stage has one padded slot). A static validity mask makes padded slots
the identity; their weights get zero gradients, so AdamW leaves them at exactly zero. With an even split the layout
is the canonical one. ``canonical``/``export_state`` convert back for checkpoints.

Both schedules run in ``jax.shard_map`` manual over ``stage`` only (``data`` and ``model`` stay automatic, so
replicas and tensor parallelism compose with the pipeline through ordinary shardings), as a ``lax.scan`` over ticks
with ``lax.ppermute`` between neighbouring stages after every tick.

1F1B. The simulator's op order (wse.schedule.stage_order: stage s of S runs S - s - 1 warm-up forwards, then
alternates one forward and one backward, then drains its backwards), timed with unit durations, is a table of
2 (M + S - 1) ticks in which every stage runs at most one op (timetable). Each tick a stage's forward output goes to
s + 1 and its backward's input cotangent to s - 1. The backward is explicit: ``jax.vjp`` of the stage applied to its
stashed input, recomputing the stage's forward (see one_f_one_b for why). A stage stashes the inputs of the
microbatches it has received but not yet run backward — at most min(M, S - s + 1, S) — in a buffer of min(M, S)
slots indexed by microbatch mod its size, so its activation memory is bounded by the stage count, not by M (stage s
has min(M, S - s) microbatches in flight, the simulator's ``in_flight``). The loss gradient is needed inside the
pipeline (the last stage starts microbatch 0's backward right after its forward), so the embedding runs on the first
stage and the final norm + head + loss on the last, per microbatch inside the tick; the last stage's forward tick is
folded into its backward tick (one pass computes the loss and its gradient). The loss sum and the gradients
accumulate in the scan carry; the gradients of the parameters outside the blocks (``wte``, ``wpe`` with learned
positions, ``ln_f``, an untied ``lm_head``: gpt.outside_blocks; embedding on the first stage, head on the last) are
summed over ``stage`` once at the end.

GPipe. A ``lax.scan`` runs M + S - 1 forward ticks: at tick t stage 0 takes microbatch t, every stage applies its
layers, and the last stage's outputs of ticks S-1 .. M+S-2 are the M results. Ticks outside a stage's window work on
zeros that never reach a result (the bubble). The backward pass is autodiff through the scan and the ppermutes, so
every stage keeps activations for all M microbatches (and the bubble ticks); each stage application is wrapped in
the plan's remat policy. The embedding and the tied head + loss run outside the pipeline on the whole mesh, the
head's rows split over data x stage. ``eval_loss`` (forward only) runs GPipe's forward under either schedule: with
no backward to interleave, GPipe's M + S - 1 forward ticks are the shortest forward-only schedule.

Both schedules idle a stage (S - 1) / (M + S - 1) of the time (placement.set_bubble); 1F1B buys its bounded memory
with one more forward per stage and microbatch (the recomputation), as GPipe does under remat "full".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from model import gpt
from runtime.errors import UserError
from runtime.execution import placement as planner
from runtime.execution.base import Executor, merge_rows, split_rows
from wse import schedule as wse_schedule

SCHEDULES = planner.SCHEDULES  # ("1f1b", "gpipe"): defined where no JAX is imported, so configs can check names
IDLE, FORWARD, BACKWARD = 0, 1, 2  # a stage's op in one tick of the 1F1B timetable


def _varying(x, axis: str):
    """Mark a value as varying over a manual mesh axis (scan carries must be, as ppermuted values are)."""
    if hasattr(jax.lax, "pcast"):
        return jax.lax.pcast(x, (axis,), to="varying")
    return jax.lax.pvary(x, (axis,))  # JAX releases before pcast


def timetable(n_stages: int, microbatches: int) -> dict[str, np.ndarray]:
    """The 1F1B schedule as per-tick tables, each int32 [2 (M + S - 1), S]: ``op`` (IDLE/FORWARD/BACKWARD),
    ``microbatch`` (of the op; 0 when idle) and ``arriving`` (the microbatch whose activation reaches the stage at the
    start of the tick, sent by s - 1 the tick before; -1 for none). The ops and their order are the simulator's
    (wse.schedule.lockstep_ticks: one_f_one_b with unit durations, the last stage's forward IDLE since its backward
    recomputes it together with the head and loss)."""
    S, M = n_stages, microbatches
    ticks = wse_schedule.lockstep_ticks(S, M)
    op = np.full((len(ticks), S), IDLE, np.int32)
    mb = np.zeros((len(ticks), S), np.int32)
    arriving = np.full((len(ticks), S), -1, np.int32)
    done = {}
    for t, row in enumerate(ticks):
        for s, entry in enumerate(row):
            if entry is None:
                continue
            kind, m = entry
            op[t, s], mb[t, s] = (FORWARD if kind == "F" else BACKWARD), m
            done[kind, s, m] = t
            if kind == "F" and s + 1 < S:
                arriving[t + 1, s + 1] = m
    # a cotangent is used the tick after it is sent (one carry, no buffer); activations may wait in the stash
    assert all(done["B", s, m] == done["B", s + 1, m] + 1 for s in range(S - 1) for m in range(M))
    return {"op": op, "microbatch": mb, "arriving": arriving}


def apply_stage(ex: PipelinedExecutor, blocks, valid, h, remat: str = "none"):
    """This stage's slots on h [mb, T, d] (padded slots pass h through unchanged), each block wrapped in ``remat``."""
    def body(h, layer):
        p, ok = layer
        return jnp.where(ok, gpt.block(ex.cfg, p, h, attention=ex.attention), h), None

    return jax.lax.scan(gpt.rematerialised(body, remat), h, (blocks, valid))[0]


def gpipe(ex: PipelinedExecutor, blocks, xs):
    """GPipe over ``stage``: xs [M, mb, T, d] -> the last stage's outputs [M, mb, T, d]; differentiate by autodiff."""
    S, M, dtype = ex.n_stages, xs.shape[0], xs.dtype
    stage_fn = gpt.rematerialised(lambda b, v, h: apply_stage(ex, b, v, h), ex.remat)

    def per_stage(blocks, valid, xs):
        s = jax.lax.axis_index("stage")
        # xs (float32 here) is replicated over stage, so its cotangent is a sum over stage; marking it varying
        # up front makes that one float32 all-reduce outside the tick loop instead of one per tick in the
        # compute dtype (a bfloat16 all-reduce inside the loop also crashes XLA's CPU compiler).
        feed = _varying(jnp.concatenate([xs, jnp.zeros((S - 1,) + xs.shape[1:], xs.dtype)]), "stage")
        feed = feed.astype(dtype)

        def tick(incoming, x):
            h = stage_fn(blocks, valid, jnp.where(s == 0, x, incoming))
            return jax.lax.ppermute(h, "stage", [(i, i + 1) for i in range(S - 1)]), h

        init = _varying(jnp.zeros(xs.shape[1:], dtype), "stage")
        _, outs = jax.lax.scan(tick, init, feed)
        return outs[None, S - 1:]

    block_specs = jax.tree.map(lambda _: P("stage"), blocks)
    run = jax.shard_map(per_stage, mesh=ex.mesh, in_specs=(block_specs, P("stage"), P()),
                        out_specs=P("stage"), axis_names=frozenset({"stage"}))
    # [S, M, mb, T, d]: each stage's view; the last stage's is the result
    out = run(blocks, jnp.asarray(ex.valid), xs.astype(jnp.float32))
    assert out.shape[1] == M
    return out[S - 1].astype(dtype)


def _stage_input(ex, rest, x, tokens, first):
    """The stage's input [mb, T, d]: the embedding of tokens [mb, T] on the first stage, else x (what arrived)."""
    return jax.lax.cond(first, lambda: gpt.embed(ex.cfg, rest, tokens, dtype=ex.dtype), lambda: x)


def _stage_loss(ex, blocks, valid, rest, x, batch, first, last):
    """One stage on one microbatch as a differentiable function of (blocks, rest, x): its input (_stage_input), its
    layers under the plan's remat policy, and on the last stage the head's summed loss against ``batch["targets"]``
    [mb, T] where ``batch["mask"]`` keeps. -> (output [mb, T, d], loss sum: float32 scalar, 0 off the last stage)."""
    h = apply_stage(ex, blocks, valid, _stage_input(ex, rest, x, batch["tokens"], first), ex.remat)
    zero = _varying(jnp.zeros((), jnp.float32), "stage")
    loss = jax.lax.cond(last, lambda: gpt.head_nll_sum(ex.cfg, rest, h, batch["targets"], batch["mask"]),
                        lambda: zero)
    return h, loss


def _one_f_one_b_tick(ex, blocks, valid, rest, batches, scale):
    """The scan body of one_f_one_b: carry (stash [K, mb, T, d] with K = min(M, S), activation and cotangent
    received [mb, T, d], loss sum, block and rest gradient sums), row of the timetable for this tick -> new carry.
    The microbatches a stage holds (received, backward not yet run) are consecutive and at most K (a property of the
    schedule, tests/test_pipeline_schedule.py), so slot m mod K is free when microbatch m arrives."""
    S = ex.n_stages
    s = jax.lax.axis_index("stage")
    first, last = s == 0, s == S - 1

    def tick(carry, row):
        stash, got_x, got_dy, loss, d_blocks, d_rest = carry
        op, m, arriving = (row[k][s] for k in ("op", "microbatch", "arriving"))
        K = stash.shape[0]
        slot = jnp.maximum(arriving, 0) % K  # an arriving activation waits in the stash until its forward
        stash = jax.lax.dynamic_update_index_in_dim(
            stash, jnp.where(arriving >= 0, got_x, stash[slot]), slot, 0)
        x = stash[m % K]
        batch = jax.tree.map(lambda a: a[m], batches)

        def forward(loss, d_blocks, d_rest):
            h = apply_stage(ex, blocks, valid, _stage_input(ex, rest, x, batch["tokens"], first))
            return h, jnp.zeros_like(got_dy), loss, d_blocks, d_rest

        def backward(loss, d_blocks, d_rest):
            (_, l), vjp = jax.vjp(lambda b, r, x_in: _stage_loss(ex, b, valid, r, x_in, batch, first, last),
                                  blocks, rest, x)
            # the last stage seeds the loss (scaled: d mean / d sum) and has no successor to take a cotangent
            # from; the others pass the received one on
            dy = jnp.where(last, jnp.zeros_like(got_dy), got_dy)
            g_blocks, g_rest, dx = vjp((dy, jnp.where(last, scale, 0.0).astype(jnp.float32)))
            add = lambda a, b: a + b  # noqa: E731
            return (jnp.zeros_like(x), dx.astype(x.dtype), loss + l, jax.tree.map(add, d_blocks, g_blocks),
                    jax.tree.map(add, d_rest, g_rest))

        def idle(loss, d_blocks, d_rest):
            return jnp.zeros_like(x), jnp.zeros_like(got_dy), loss, d_blocks, d_rest

        send_x, send_dx, loss, d_blocks, d_rest = jax.lax.switch(op, [idle, forward, backward],
                                                                 loss, d_blocks, d_rest)
        # collectives stay outside the branches: every stage sends every tick (zeros when it has nothing)
        got_x = jax.lax.ppermute(send_x, "stage", [(i, i + 1) for i in range(S - 1)])
        got_dy = jax.lax.ppermute(send_dx, "stage", [(i + 1, i) for i in range(S - 1)])
        return (stash, got_x, got_dy, loss, d_blocks, d_rest), None

    return tick


def one_f_one_b(ex: PipelinedExecutor, params, batches, scale):
    """1F1B over ``stage``: params in the pipelined layout, ``batches`` {"tokens", "targets", "mask"} of [M, mb, T]
    -> (summed loss, float32 scalar; gradients of ``scale`` x the summed loss, float32, laid out like params).

    Backward by recomputation: a backward tick runs ``jax.vjp`` of the stage on its stashed input and applies it at
    once. Keeping the forward's vjp residuals instead would stash, per microbatch in flight, every activation the
    remat policy keeps and a copy of the stage's weights (they are residuals of the matmuls' vjp); recomputing
    stashes only the stage input [mb, T, d] — the bound the simulator assumes — at the cost of one more forward,
    and the plan's remat policy (per block) then bounds the one microbatch being differentiated."""
    S, M = ex.n_stages, batches["tokens"].shape[0]
    table = {k: jnp.asarray(v) for k, v in timetable(S, M).items()}
    rest = {k: params[k] for k in ex.rest}
    mb_shape = batches["tokens"].shape[1:] + (ex.cfg.d_model,)

    def per_stage(blocks, valid, rest, batches, scale, table):
        # varying copies: each stage's embedding/head gradients are its own until the psum at the end
        rest = _varying(rest, "stage")
        zeros = lambda shape, dtype: _varying(jnp.zeros(shape, dtype), "stage")  # noqa: E731
        carry = (zeros((min(M, S),) + mb_shape, ex.dtype), zeros(mb_shape, ex.dtype), zeros(mb_shape, ex.dtype),
                 zeros((), jnp.float32), jax.tree.map(lambda b: zeros(b.shape, jnp.float32), blocks),
                 jax.tree.map(lambda r: zeros(r.shape, jnp.float32), rest))
        tick = _one_f_one_b_tick(ex, blocks, valid, rest, batches, scale)
        (_, _, _, loss, d_blocks, d_rest), _ = jax.lax.scan(tick, carry, table)
        return jax.lax.psum(loss, "stage"), d_blocks, jax.lax.psum(d_rest, "stage")

    block_specs = jax.tree.map(lambda _: P("stage"), params["blocks"])
    run = jax.shard_map(per_stage, mesh=ex.mesh,
                        in_specs=(block_specs, P("stage"), P(), P(), P(), P()),
                        out_specs=(P(), block_specs, P()), axis_names=frozenset({"stage"}))
    loss, d_blocks, d_rest = run(params["blocks"], jnp.asarray(ex.valid), rest, batches,
                                 jnp.asarray(scale, jnp.float32), table)
    return loss, {"blocks": d_blocks, **d_rest}


class PipelinedExecutor(Executor):
    mode = "pipelined"

    def __init__(self, cfg, mesh, plan, *, schedule: str | None = None, **kw):
        schedule = schedule or plan.get("schedule") or SCHEDULES[0]
        if schedule not in SCHEDULES:
            raise UserError(f"unknown pipeline schedule '{schedule}'; use one of {', '.join(SCHEDULES)}")
        self.schedule = plan["schedule"] = schedule
        self.stages = [tuple(s) for s in plan["stages"]]
        self.n_stages = len(self.stages)
        self.slots = plan["slots_per_stage"]
        # slot index of each layer, in layer order
        self.layer_slots = np.array([s * self.slots + j for s, (a, b) in enumerate(self.stages)
                                     for j in range(b - a + 1)])
        self.valid = np.zeros(self.n_stages * self.slots, bool)
        self.valid[self.layer_slots] = True
        self.requested_microbatches = plan.get("microbatches")
        super().__init__(cfg, mesh, plan, **kw)
        plan["embedding"] = f"{'/'.join(self.rest)} replicated over stage; {plan['embedding']}"

    def _batch_axes(self):
        return ("data",)

    def internal_shapes(self):
        n = self.n_stages * self.slots
        shapes = gpt.param_shapes(self.cfg)
        shapes["blocks"] = jax.tree.map(lambda s: (n,) + s[1:], shapes["blocks"], is_leaf=lambda x: isinstance(x, tuple))
        return shapes

    def _blocks_to_internal(self, x):
        out = np.zeros((self.n_stages * self.slots,) + x.shape[1:], x.dtype)
        out[self.layer_slots] = x
        return out

    def _blocks_to_canonical(self, x):
        if x.shape[0] == self.cfg.n_layers and self.n_stages * self.slots == self.cfg.n_layers:
            return x
        return jnp.take(x, jnp.asarray(self.layer_slots), axis=0)

    def microbatches(self, batch: int) -> int:
        """Microbatches for a batch (per accumulation step) of ``batch`` rows: the user's count, or the planner's
        choice for this batch size; the plan records the count last used."""
        D = self.shape["data"]
        if batch % D:
            raise UserError(f"batch of {batch} sequences does not split over data={D} replicas")
        M = self.requested_microbatches or planner.choose_microbatches(batch // D, self.n_stages)
        if batch % (D * M):
            raise UserError(f"batch of {batch} sequences per step does not split into {M} microbatches on each of "
                            f"{D} replicas; set execution.microbatches to a divisor of {batch // D}")
        self.plan["microbatches"] = M
        planner.set_bubble(self.plan)
        return M

    def _split(self, x, M):
        """[B, ...] -> [M, B/M, ...] microbatches, each device keeping its own rows (see split_rows)."""
        return jax.lax.with_sharding_constraint(split_rows(x, M), NamedSharding(self.mesh, P(None, "data")))

    def loss_sum(self, params, tokens, targets, mask):
        """GPipe's forward: the embedding and the head outside the pipeline (gradients by autodiff through it)."""
        M = self.microbatches(tokens.shape[0])
        x = gpt.embed(self.cfg, params, tokens, dtype=self.dtype)
        x = jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, P("data")))
        y = merge_rows(gpipe(self, params["blocks"], self._split(x, M)))
        return self._head_loss(params, y, targets, mask)  # rows spread over data x stage (x model)

    def _value_and_grad(self, params, tokens, targets, mask, n_total):
        if self.schedule == "gpipe":
            return super()._value_and_grad(params, tokens, targets, mask, n_total)
        M = self.microbatches(tokens.shape[0])
        mask = jnp.ones(tokens.shape, bool) if mask is None else mask  # x 1.0 leaves every loss term as it is
        batches = {k: self._split(v, M) for k, v in (("tokens", tokens), ("targets", targets), ("mask", mask))}
        loss, grads = one_f_one_b(self, params, batches, 1.0 / n_total)
        return loss / n_total, grads
