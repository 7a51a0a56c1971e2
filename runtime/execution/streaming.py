"""Weight-streaming execution (how Cerebras-GPT was trained): weights and optimizer state live in host memory — the
emulated MemoryX — and the devices see one layer at a time.

Forward: a ``lax.scan`` over the stacked layers whose body moves that layer's weights to the devices
(``jax.device_put`` to memory kind ``device`` inside the jitted scan, sharded over ``model`` so the whole mesh works
on the one layer) and applies it. The body is rematerialised, so the backward pass streams each layer in again
instead of keeping device copies; the weight gradients leave the devices per layer (the transpose of the host->device
move is a device->host move). The optimizer runs where the weights live, layer by layer: a second scan brings one
layer's weights, gradients and Adam moments to the devices, applies AdamW and sends them back (MemoryX's job).
Gradient accumulation, the global norm and clipping are streamed the same way. Device memory then holds one layer's
weights (plus its moments during the update), the activations, and the embedding table, which is brought over once
per step because the tied embedding is used at both ends of the model.

Memory kinds: ``pinned_host`` where the backend offers it (GPU, TPU, and JAX's CPU backend). On CPU host and device
memory are the same RAM, so there the mode is a functional emulation: the program, the transfers and the numbers are
those of a GPU run, the memory saving is not. Where no host memory kind exists the weights stay in device memory and
the plan says so.

The data axis (and the stage axis, as more replicas) splits the batch: replicas' gradients are summed before they
leave for the host (SwarmX's role).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from model import gpt
from runtime import sharding as shd
from runtime.execution.base import REST, Executor, in_blocks


def _drop_layer_axis(sharding: NamedSharding, memory_kind) -> NamedSharding:
    spec = tuple(sharding.spec)[1:]
    return NamedSharding(sharding.mesh, P(*spec), memory_kind=memory_kind)


class StreamingExecutor(Executor):
    mode = "streaming"

    def __init__(self, cfg, mesh, plan, **kw):
        super().__init__(cfg, mesh, plan, **kw)  # the plan forces remat: the backward pass streams each layer again
        host = self.memory_kind
        self.device_kind = "device" if host else None
        shapes = gpt.param_shapes(cfg)
        layer = _nbytes(jax.tree.map(lambda s: s[1:], shapes["blocks"], is_leaf=lambda x: isinstance(x, tuple)))
        rest = _nbytes({k: shapes[k] for k in REST})
        self.plan.update(
            host_memory_kind=host or "device (no host memory kind on this backend: weights stay in device memory)",
            layer_bytes=layer, embedding_bytes=rest, model_bytes=_nbytes(shapes),
            # fp32 weights one device holds at once: its shard of the embedding (whole step) and of one layer
            device_weight_bytes=self._device_weight_bytes(shapes),
        )

    def _memory_kind(self):
        return shd.host_memory_kind(self.mesh)

    def _device_weight_bytes(self, shapes) -> int:
        total = 0
        for key, tree in shapes.items():
            leaves = jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, tuple))
            for shape, sh in zip(leaves, jax.tree.leaves(self.param_shardings[key])):
                shard = sh.shard_shape(shape)
                total += 4 * math.prod(shard[1:] if key == "blocks" else shard)
        return total

    # ----- moving trees between host and device ---------------------------------------------------------------
    def _move(self, tree, shardings, *, layer: bool, to_device: bool):
        """device_put a parameter-shaped (sub)tree to the device or back to host memory, inside jit."""
        if self.device_kind is None:
            return tree
        kind = self.device_kind if to_device else self.memory_kind
        target = jax.tree.map(lambda s: _drop_layer_axis(s, kind) if layer else s.with_memory_kind(kind), shardings)
        return jax.device_put(tree, target)

    def _rest_sh(self):
        return {k: self.param_shardings[k] for k in REST}

    def _dev_rest(self, tree):
        return self._move({k: tree[k] for k in REST}, self._rest_sh(), layer=False, to_device=True)

    def _host_rest(self, tree):
        return self._move(tree, self._rest_sh(), layer=False, to_device=False)

    def _dev_layer(self, layer):
        return self._move(layer, self.param_shardings["blocks"], layer=True, to_device=True)

    def _host_layer(self, layer):
        return self._move(layer, self.param_shardings["blocks"], layer=True, to_device=False)

    # ----- the model ------------------------------------------------------------------------------------------
    def loss_sum(self, params, tokens, targets, mask):
        rest = self._dev_rest(params)
        x = gpt.embed(self.cfg, rest, tokens, dtype=self.dtype)
        x = jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, P(self.batch_axes)))

        @jax.checkpoint
        def body(h, layer_on_host):
            return gpt.block(self.cfg, self._dev_layer(layer_on_host), h, attention=self.attention), None

        x, _ = jax.lax.scan(body, x, params["blocks"])
        return self._head_loss(rest, x, targets, mask)

    # ----- host-resident tree arithmetic, one layer at a time -------------------------------------------------
    def _tmap(self, fn, *trees):
        rest = self._host_rest(jax.tree.map(fn, *[self._dev_rest(t) for t in trees]))

        def body(_, layers):
            out = jax.tree.map(fn, *[self._dev_layer(x) for x in layers])
            return None, self._host_layer(out)

        _, blocks = jax.lax.scan(body, None, tuple(t["blocks"] for t in trees))
        return {**rest, "blocks": blocks}

    def _sq_norm(self, tree):
        sq = lambda t: sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(t))  # noqa: E731
        total = sq(self._dev_rest(tree))

        def body(acc, layer):
            return acc + sq(self._dev_layer(layer)), None

        total, _ = jax.lax.scan(body, total, tree["blocks"])
        return total

    def _apply_update(self, opt, grads, opt_state, params, grad_fn):
        """AdamW where the weights live: the non-block parameters in one piece, then the blocks layer by layer.
        Exact because ``opt.tx`` is elementwise and its masks/labels follow the sub-tree (runtime/optim.py)."""
        if not opt.elementwise:
            # An arbitrary optax transformation may couple leaves: apply it to the whole tree (not streamed).
            return super()._apply_update(opt, grads, opt_state, params, grad_fn)
        keys = set(params)
        is_pdict = lambda x: isinstance(x, dict) and set(x) == keys  # noqa: E731
        restrict = lambda state, names: jax.tree.map(  # noqa: E731
            lambda d: {k: d[k] for k in names} if is_pdict(d) else d, state, is_leaf=is_pdict)
        state_sh = self.state_shardings(opt)["opt_state"]

        # Non-block parameters: one device round trip.
        st_rest = restrict(opt_state, REST)
        st_rest_sh = restrict(state_sh, REST)
        p_rest = self._dev_rest(params)
        st_dev = jax.device_put(st_rest, jax.tree.map(lambda s: s.with_memory_kind(self.device_kind), st_rest_sh)) \
            if self.device_kind else st_rest
        updates, st_rest_new = opt.tx.update(jax.tree.map(grad_fn, self._dev_rest(grads)), st_dev, p_rest)
        new_rest = self._host_rest(optax.apply_updates(p_rest, updates))
        if self.device_kind:
            st_rest_new = jax.device_put(st_rest_new, st_rest_sh)

        # Blocks: scan over layers; optimizer leaves under 'blocks' are sliced per layer, the others (step counts)
        # are shared by every layer.
        st_blocks = restrict(opt_state, ("blocks",))
        st_blocks_sh = restrict(state_sh, ("blocks",))
        flat, treedef = jax.tree_util.tree_flatten_with_path(st_blocks)
        flat_sh = jax.tree.leaves(st_blocks_sh)
        layered = [i for i, (path, _) in enumerate(flat) if in_blocks(path)]
        to_dev = lambda xs, shs: [jax.device_put(x, _drop_layer_axis(s, self.device_kind)) if self.device_kind  # noqa: E731
                                  else x for x, s in zip(xs, shs)]
        to_host = lambda xs, shs: [jax.device_put(x, _drop_layer_axis(s, self.memory_kind)) if self.device_kind  # noqa: E731
                                   else x for x, s in zip(xs, shs)]
        lay_sh = [flat_sh[i] for i in layered]

        def body(_, xs):
            p, g, st_layer = xs
            p = self._dev_layer(p)
            g = jax.tree.map(grad_fn, self._dev_layer(g))
            leaves = [x for _, x in flat]
            for i, x in zip(layered, to_dev(st_layer, lay_sh)):
                leaves[i] = x
            st = jax.tree_util.tree_unflatten(treedef, leaves)
            updates, st = opt.tx.update({"blocks": g}, st, {"blocks": p})
            new_p = optax.apply_updates({"blocks": p}, updates)["blocks"]
            new_leaves = jax.tree.leaves(st)
            return None, (self._host_layer(new_p), to_host([new_leaves[i] for i in layered], lay_sh))

        _, (new_blocks, new_layered) = jax.lax.scan(
            body, None, (params["blocks"], grads["blocks"], [flat[i][1] for i in layered]))

        # Reassemble the full optimizer state by tree path.
        by_path = {gpt.path_names(p): x for p, x in jax.tree_util.tree_flatten_with_path(st_rest_new)[0]}
        for i, x in zip(layered, new_layered):
            by_path[gpt.path_names(flat[i][0])] = x
        full_flat, full_def = jax.tree_util.tree_flatten_with_path(opt_state)
        new_state = jax.tree_util.tree_unflatten(full_def, [by_path[gpt.path_names(p)] for p, _ in full_flat])
        return {**new_rest, "blocks": new_blocks}, new_state


def _nbytes(shapes, itemsize: int = 4) -> int:
    return sum(math.prod(s) * itemsize for s in jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(x, tuple)))

