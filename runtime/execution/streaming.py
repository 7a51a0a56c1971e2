"""Weight-streaming execution (how Cerebras-GPT was trained): weights and optimizer state live in host memory — the
emulated MemoryX — and the devices see one layer at a time.

One slice of the batch (``_value_and_grad``), explicitly, without autodiff through the transfers:
- forward: a ``lax.scan`` over the layers whose carry holds the running layer's weights on the device while the body
  fetches the next layer's (``jax.device_put`` to memory kind ``device``, sharded over ``model`` so the whole mesh
  works on one layer): the next layer's transfer has no data dependence on the running layer's compute, so they
  overlap. Each layer's input is kept (one checkpoint per layer, as remat "full").
- backward: a reversed scan that fetches layer i - 1 while layer i recomputes its forward and runs its backward
  (``jax.vjp`` of one block); the forward's last prefetch is the backward's first layer. Each layer's float32
  gradients leave for host memory as soon as they exist (the data axis sums replicas' gradients before they leave:
  SwarmX's role).
- weights travel in the dtype the model computes with: matmul kernels and biases cast to the compute dtype in host
  memory (bf16 halves the traffic of a bf16 run), norm parameters and the embeddings in float32, then the device
  widens them to float32 (exact) so that every gradient is data mode's float32 gradient bit for bit.
- the parameters outside the blocks (gpt.outside_blocks: the token embedding, learned positions, the final norm, an
  untied head) travel once per slice: the tied embedding is used at both ends of the model.

The update runs where the state lives (``plan["host_update"]``): where the backend can compute in host memory
(``jax.experimental.compute_on("device_host")``; checked by compiling a probe once per platform), accumulation
over slices, the global norm and AdamW run there and the optimizer state never crosses the link. Elsewhere the
gradients are brought back layer by layer for the norm and the update, with weights and Adam moments (the fallback:
more traffic, same numbers). wse/devices/hostlink.py gives the bytes each way per step for both, and the test reads them
back from the traced step.

Memory kinds: ``pinned_host`` where the backend offers it (GPU, TPU, and JAX's CPU backend). On CPU host and device
memory are the same RAM and JAX 0.10's CPU lowering drops in-jit memory-kind moves, so there the mode is a functional
emulation: the program and the numbers are those of a GPU run, the transfers and the memory saving are not. Where no
host memory kind exists the weights stay in device memory and the plan says so.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from model import gpt
from runtime.execution import sharding as shd
from runtime.execution.base import Executor, in_blocks
from runtime.execution.optim import clip_fn


def _drop_layer_axis(sharding: NamedSharding, memory_kind) -> NamedSharding:
    spec = tuple(sharding.spec)[1:]
    return NamedSharding(sharding.mesh, P(*spec), memory_kind=memory_kind)


# Block leaves the model uses in the compute dtype (gpt.block casts them before its matmuls): the kernels and biases
# of the attention and FFN projections may travel in it. Every norm's parameters (ln_1/ln_2 scale and bias, the Q/K
# norms' scale under attn) are used in float32 and travel in float32.
_CAST_IN_BLOCK = ("attn", "mlp")


def travels_narrow(path) -> bool:
    """Whether a block leaf (a tree path inside one layer) travels in the compute dtype: a projection's kernel or
    bias, not a norm's scale."""
    names = gpt.path_names(path)
    return names[0] in _CAST_IN_BLOCK and names[-1] in ("kernel", "bias")


def on_host(fn):
    """``fn`` jitted to run in host memory, where the state lives (compute_on "device_host")."""
    from jax.experimental.compute_on import compute_on

    return compute_on("device_host")(jax.jit(fn))


_HOST_COMPUTE: dict = {}


def host_compute_available(mesh, memory_kind) -> tuple[bool, str]:
    """(whether this backend compiles computation in host memory the way this mode uses it, why not), probed once per
    platform by compiling a miniature of the step: a scan that slices a host-resident stack, casts the slice in host
    memory, moves it to the device and a result back, then an update in host memory. The answer picks where the
    update runs (see the module docstring)."""
    platform = mesh.devices.flat[0].platform
    if memory_kind is None:
        return False, "no host memory kind on this backend"
    if platform not in _HOST_COMPUTE:
        from model.errors import first_line

        host = NamedSharding(mesh, P(), memory_kind=memory_kind)
        device = NamedSharding(mesh, P(), memory_kind="device")

        def miniature(stack):
            def body(total, i):
                layer = jax.lax.dynamic_index_in_dim(stack, i, 0, keepdims=False)
                x = jax.device_put(on_host(lambda a: a.astype(jnp.bfloat16))(layer), device).astype(jnp.float32)
                return total + x.sum(), jax.device_put(x * 2.0, host)

            total, grads = jax.lax.scan(body, jnp.zeros((), jnp.float32), jnp.arange(stack.shape[0]))
            return on_host(lambda a, b: a - 0.1 * b)(stack, grads), total

        try:
            jax.jit(miniature, out_shardings=(host, None)).lower(
                jax.ShapeDtypeStruct((2, 8), jnp.float32, sharding=host)).compile()
            _HOST_COMPUTE[platform] = (True, "the backend computes in host memory (compute_on device_host)")
        except Exception as err:  # noqa: BLE001 - any failure means: not on this backend; the plan records why
            _HOST_COMPUTE[platform] = (False, f"no computation in host memory here: {first_line(err)}")
    return _HOST_COMPUTE[platform]


class StreamingExecutor(Executor):
    mode = "streaming"

    def __init__(self, cfg, mesh, plan, *, host_update: bool | None = None, **kw):
        super().__init__(cfg, mesh, plan, **kw)  # the plan forces remat: the backward pass streams each layer again
        host = self.memory_kind
        self.device_kind = "device" if host else None
        available, why = host_compute_available(mesh, host)
        if host_update and not available:
            why = f"asked for, but {why}"
        self.host_update = bool(available if host_update is None else host_update and available)
        shapes = gpt.param_shapes(cfg)
        layer = _nbytes(jax.tree.map(lambda s: s[1:], shapes["blocks"], is_leaf=lambda x: isinstance(x, tuple)))
        rest = _nbytes({k: shapes[k] for k in self.rest})
        self.plan.update(
            host_memory_kind=host or "device (no host memory kind on this backend: weights stay in device memory)",
            layer_bytes=layer, embedding_bytes=rest, model_bytes=_nbytes(shapes),
            # fp32 weights one device holds at once: its shard of the embedding (whole step) and of one layer
            device_weight_bytes=self._device_weight_bytes(shapes),
            host_update=self.host_update,
            host_update_reason=why if self.host_update or host_update is None else "turned off by the caller",
            stream_dtype=jnp.dtype(self.dtype).name if self.host_update else "float32",
        )
        self.link_bytes(1)

    def link_bytes(self, accum: int) -> dict:
        """Bytes over the host link per training step of ``accum`` slices (wse.devices.hostlink), also put in the
        plan."""
        from wse.devices.hostlink import streaming_link_bytes

        width = jnp.dtype(self.dtype).itemsize if self.host_update else 4
        out = streaming_link_bytes(self.cfg, compute_bytes=width, accum=accum, host_update=self.host_update)
        self.plan["link_bytes_per_step"] = {"accum": accum, "to_device": out["to_device"], "to_host": out["to_host"]}
        return out

    def make_train_step(self, optimizer, accum_steps: int = 1):
        self.link_bytes(accum_steps)
        return super().make_train_step(optimizer, accum_steps)

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
        return {k: self.param_shardings[k] for k in self.rest}

    def _dev_rest(self, tree):
        return self._move({k: tree[k] for k in self.rest}, self._rest_sh(), layer=False, to_device=True)

    def _host_rest(self, tree):
        return self._move(tree, self._rest_sh(), layer=False, to_device=False)

    def _dev_layer(self, layer):
        return self._move(layer, self.param_shardings["blocks"], layer=True, to_device=True)

    def _host_layer(self, layer):
        return self._move(layer, self.param_shardings["blocks"], layer=True, to_device=False)

    def _fetch_layer(self, blocks, i):
        """Layer ``i`` (a traced index) of the host-resident stack, on the device, widened to float32. Under
        host_update its matmul weights are cast to the compute dtype in host memory first, so they travel narrow."""
        layer = jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, i, 0, keepdims=False), blocks)
        narrow = self.host_update and jnp.dtype(self.dtype) != jnp.float32 and self.device_kind is not None
        if narrow:
            flat, treedef = jax.tree_util.tree_flatten_with_path(layer)
            picked = [j for j, (path, _) in enumerate(flat) if travels_narrow(path)]
            cast = on_host(lambda xs: [a.astype(self.dtype) for a in xs])([flat[j][1] for j in picked])
            leaves = [a for _, a in flat]
            for j, a in zip(picked, cast):
                leaves[j] = a
            layer = jax.tree_util.tree_unflatten(treedef, leaves)
        return jax.tree.map(lambda a: a.astype(jnp.float32), self._dev_layer(layer))

    # ----- the model ------------------------------------------------------------------------------------------
    def _embed(self, rest, tokens):
        x = gpt.embed(self.cfg, rest, tokens, dtype=self.dtype)
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, P(self.batch_axes)))

    def _block(self, w, h):
        return gpt.block(self.cfg, w, h, attention=self.attention)

    def _forward_layers(self, blocks, x):
        """(output, the last layer's weights still on the device, every layer's input [L, B, T, d])."""
        L = self.cfg.n_layers

        def body(carry, i):
            h, w = carry
            w_next = self._fetch_layer(blocks, jnp.minimum(i + 1, L - 1))  # in flight while this layer runs
            return (self._block(w, h), w_next), h

        (x, w_last), inputs = jax.lax.scan(body, (x, self._fetch_layer(blocks, 0)), jnp.arange(L))
        return x, w_last, inputs

    def loss_sum(self, params, tokens, targets, mask):
        rest = self._dev_rest(params)
        x, _, _ = self._forward_layers(params["blocks"], self._embed(rest, tokens))
        return self._head_loss(rest, x, targets, mask)

    def _value_and_grad(self, params, tokens, targets, mask, n_total):
        """(loss of the slice / n_total, gradients in host memory): the forward and backward scans of the module
        docstring; equal to autodiff of loss_sum."""
        blocks, L = params["blocks"], self.cfg.n_layers
        rest = self._dev_rest(params)
        x0, embed_vjp = jax.vjp(lambda r: self._embed(r, tokens), rest)
        x, w_last, inputs = self._forward_layers(blocks, x0)
        loss, head_vjp = jax.vjp(lambda r, h: self._head_loss(r, h, targets, mask) / n_total, rest, x)
        d_rest, dx = head_vjp(jnp.ones_like(loss))

        def body(carry, xs):
            dh, w = carry
            i, h_in = xs
            w_prev = self._fetch_layer(blocks, jnp.maximum(i - 1, 0))  # in flight while this layer runs backward
            _, block_vjp = jax.vjp(self._block, w, h_in)
            dw, dh_in = block_vjp(dh)
            return (dh_in, w_prev), self._host_layer(dw)

        (dx0, _), d_blocks = jax.lax.scan(body, (dx, w_last), (jnp.arange(L), inputs), reverse=True)
        d_rest = jax.tree.map(jnp.add, d_rest, embed_vjp(dx0)[0])
        return loss, {**self._host_rest(d_rest), "blocks": d_blocks}

    # ----- host-resident tree arithmetic: in host memory (host_update), else one layer at a time on the device ----
    def _tmap(self, fn, *trees):
        if self.host_update:
            return on_host(lambda *ts: jax.tree.map(fn, *ts))(*trees)
        return self._tmap_on_device(fn, *trees)

    def _sq_norm(self, tree):
        if self.host_update:
            sq = on_host(lambda t: sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(t)))(tree)
            return jax.device_put(sq, self.replicated)  # one scalar to the device: the metrics report it
        return self._sq_norm_on_device(tree)

    def _apply_update(self, opt, grads, opt_state, params, norm):
        """AdamW where the state lives: in host memory when the backend computes there (the few leaves kept on the
        device, the step counts, join the state for the update and go back), else layer by layer on the device."""
        if not self.host_update:
            return self._update_on_device(opt, grads, opt_state, params, clip_fn(norm, opt.clip_norm))
        state_sh = self.state_shardings(opt)["opt_state"]
        host = jax.device_put(opt_state, jax.tree.map(lambda s: s.with_memory_kind(self.memory_kind), state_sh))
        host_norm = jax.device_put(norm, self.replicated.with_memory_kind(self.memory_kind))

        def update(grads, state, params, norm):
            updates, state = opt.tx.update(jax.tree.map(clip_fn(norm, opt.clip_norm), grads), state, params)
            return optax.apply_updates(params, updates), state

        new_params, new_state = on_host(update)(grads, host, params, host_norm)
        return new_params, jax.device_put(new_state, state_sh)

    def _tmap_on_device(self, fn, *trees):
        rest = self._host_rest(jax.tree.map(fn, *[self._dev_rest(t) for t in trees]))

        def body(_, layers):
            out = jax.tree.map(fn, *[self._dev_layer(x) for x in layers])
            return None, self._host_layer(out)

        _, blocks = jax.lax.scan(body, None, tuple(t["blocks"] for t in trees))
        return {**rest, "blocks": blocks}

    def _sq_norm_on_device(self, tree):
        sq = lambda t: sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(t))  # noqa: E731
        total = sq(self._dev_rest(tree))

        def body(acc, layer):
            return acc + sq(self._dev_layer(layer)), None

        total, _ = jax.lax.scan(body, total, tree["blocks"])
        return total

    def _update_on_device(self, opt, grads, opt_state, params, grad_fn):
        """AdamW where the weights live: the non-block parameters in one piece, then the blocks layer by layer.
        Exact because ``opt.tx`` is elementwise and its masks/labels follow the sub-tree (runtime/execution/optim.py)."""
        if not opt.elementwise:
            # An arbitrary optax transformation may couple leaves: apply it to the whole tree (not streamed).
            updates, state = opt.tx.update(jax.tree.map(grad_fn, grads), opt_state, params)
            return optax.apply_updates(params, updates), state
        keys = set(params)
        is_pdict = lambda x: isinstance(x, dict) and set(x) == keys  # noqa: E731
        restrict = lambda state, names: jax.tree.map(  # noqa: E731
            lambda d: {k: d[k] for k in names} if is_pdict(d) else d, state, is_leaf=is_pdict)
        state_sh = self.state_shardings(opt)["opt_state"]

        # Non-block parameters: one device round trip.
        st_rest = restrict(opt_state, self.rest)
        st_rest_sh = restrict(state_sh, self.rest)
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

