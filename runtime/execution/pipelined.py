"""Layer-pipelined execution (the wafer's original mode): each pipeline stage holds a contiguous run of layers and
microbatches flow through the stages, GPipe style.

Layout. The stacked blocks ``[L, ...]`` are stored as ``[S * slots, ...]`` sharded over ``stage``: stage s owns
slots ``s*slots .. s*slots + slots - 1``, its layers first, then zero padding when the planner's split is uneven
(5 layers over 2 stages -> 3 + 2, the second stage has one padded slot). A static validity mask makes padded slots
the identity; their weights get zero gradients, so AdamW leaves them at exactly zero. With an even split the layout
is the canonical one. ``canonical``/``export_state`` convert back for checkpoints.

Schedule. ``jax.shard_map`` is manual over ``stage`` only (``data`` and ``model`` stay automatic, so replicas and
tensor parallelism compose with the pipeline through ordinary shardings). A ``lax.scan`` runs M + S - 1 ticks: at
tick t stage 0 takes microbatch t, every stage applies its layers, and ``lax.ppermute`` hands each stage's output
to the next; the last stage's outputs of ticks S-1 .. M+S-2 are the M results. Ticks outside a stage's window work
on zeros that never reach a result (the bubble, (S-1)/(M+S-1) of the time). The backward pass is autodiff through
the scan and the ppermutes; each stage application is wrapped in the plan's remat policy (with "full" a stage keeps
only its M + S - 1 input activations between the passes; the plan recomputes only when keeping every tick's
activations would not fit the stage's devices; see placement.resolve_remat).

Embedding and head. ``wte``/``wpe``/``ln_f`` are replicated over ``stage`` (sharded by the model/fsdp rules like
any weight) and the embedding lookup and the tied head + loss run outside the pipeline on the whole mesh, the head's
rows split over data x stage. Why: the tied embedding is needed at both ends of the pipe; giving it to one stage
would make that stage the bottleneck (the vocabulary matmul is the largest single layer of the small presets) and
would need its gradient shipped between the first and last stages anyway.
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


def _varying(x, axis: str):
    """Mark a value as varying over a manual mesh axis (the scan carry must be, as the ppermuted output is)."""
    if hasattr(jax.lax, "pcast"):
        return jax.lax.pcast(x, (axis,), to="varying")
    return jax.lax.pvary(x, (axis,))  # JAX releases before pcast


class PipelinedExecutor(Executor):
    mode = "pipelined"

    def __init__(self, cfg, mesh, plan, **kw):
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

    def _stage(self, blocks, valid, h):
        """Apply this stage's slots to h; padded slots pass h through unchanged."""
        def body(h, layer):
            p, ok = layer
            return jnp.where(ok, gpt.block(self.cfg, p, h, attention=self.attention), h), None

        return jax.lax.scan(body, h, (blocks, valid))[0]

    def _pipeline(self, blocks, xs):
        """GPipe over ``stage``: xs [M, mb, T, d] -> the last stage's outputs [M, mb, T, d]."""
        S, M, dtype = self.n_stages, xs.shape[0], xs.dtype
        stage_fn = gpt.rematerialised(self._stage, self.remat)

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
        run = jax.shard_map(per_stage, mesh=self.mesh, in_specs=(block_specs, P("stage"), P()),
                            out_specs=P("stage"), axis_names=frozenset({"stage"}))
        # [S, M, mb, T, d]: each stage's view; the last stage's is the result
        out = run(blocks, jnp.asarray(self.valid), xs.astype(jnp.float32))
        assert out.shape[1] == M
        return out[S - 1].astype(dtype)

    def _loss_sum(self, params, tokens, targets, mask):
        B = tokens.shape[0]
        M = self.microbatches(B)
        x = gpt.embed(self.cfg, params, tokens, dtype=self.dtype)
        x = jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, P("data")))
        xs = jax.lax.with_sharding_constraint(split_rows(x, M), NamedSharding(self.mesh, P(None, "data")))
        y = merge_rows(self._pipeline(params["blocks"], xs))
        return self._head_loss(params, y, targets, mask)  # rows spread over data x stage (x model)
