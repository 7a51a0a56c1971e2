"""What every execution mode shares: placement, the loss and gradient contract, and the one-jit training step.

A mode supplies ``loss_sum`` (the summed masked next-token loss of a batch, as a function of the placed parameters);
``_value_and_grad`` (loss and gradients of a row slice) is autodiff of it unless the mode's schedule runs the backward
pass itself (the pipelined mode's 1F1B). A mode whose parameters do not live in device memory or in the canonical
layout also supplies ``_tmap`` / ``_sq_norm`` / ``_apply_update`` / the layout conversions. Everything else —
gradients, accumulation, clipping, the optimizer step, donation, shardings of the optimizer state — is written once
here, so the modes cannot drift apart numerically.

Loss normalisation: the loss is the mean over all unmasked positions of the *whole* batch. Each microbatch or
accumulation slice contributes ``sum(nll) / n_total`` with ``n_total`` counted from the full mask before any split
(it does not depend on the weights), so the gradients of the slices simply add up to the full-batch gradient.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from model import gpt
from model.config import GPTConfig
from runtime.errors import UserError
from runtime.execution import sharding as shd
from runtime.execution.optim import Optimizer, as_optimizer, clip_fn
from runtime.execution.placement import Remat, decide_remat
from runtime.platform import mesh_shape

Params = dict[str, Any]


def count_positions(tokens: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.asarray(float(tokens.size), jnp.float32)
    return jnp.maximum(mask.astype(jnp.float32).sum(), 1.0)


def split_rows(x: jax.Array, n: int) -> jax.Array:
    """[B, ...] -> [n, B/n, ...], slice i holding rows i, n+i, 2n+i ...: with rows sharded contiguously over the
    data axis every device keeps its own rows (no resharding) as long as n divides its share."""
    return x.reshape(x.shape[0] // n, n, *x.shape[1:]).swapaxes(0, 1)


def merge_rows(x: jax.Array) -> jax.Array:
    """Inverse of split_rows."""
    return x.swapaxes(0, 1).reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def in_blocks(path) -> bool:
    """Whether a tree path (jax.tree_util keys) lies under ``blocks``, the stacked transformer layers."""
    return "blocks" in gpt.path_names(path)


class TrainStep:
    """The training step: ``step(state, tokens, targets, mask=None) -> (state, metrics)``; one jitted function per
    mask/no-mask variant. ``lower`` is there for ahead-of-time compilation and memory analysis."""

    def __init__(self, make_jit):
        self._make_jit = make_jit
        self._jits: dict[bool, Any] = {}

    def _fn(self, has_mask: bool):
        if has_mask not in self._jits:
            self._jits[has_mask] = self._make_jit(has_mask)
        return self._jits[has_mask]

    def __call__(self, state, tokens, targets, mask=None):
        return self._fn(mask is not None)(state, tokens, targets, *(() if mask is None else (mask,)))

    def lower(self, state, tokens, targets, mask=None):
        return self._fn(mask is not None).lower(state, tokens, targets, *(() if mask is None else (mask,)))

    def trace(self, state, tokens, targets, mask=None):
        """The traced step (``jax.stages.Traced``: its ``.jaxpr`` is the program, e.g. for transfers.link_bytes)."""
        return self._fn(mask is not None).trace(state, tokens, targets, *(() if mask is None else (mask,)))


class Executor:
    """Runs the GPT of ``cfg`` on ``mesh`` in one execution mode. See runtime/execution/__init__.py for the API."""

    mode = "base"

    def __init__(self, cfg: GPTConfig, mesh, plan: dict, *, dtype=jnp.float32, fsdp: bool = False,
                 compiler_options: dict | None = None, remat: Remat | None = None):
        self.cfg, self.mesh, self.plan = cfg, mesh, plan
        self.dtype, self.fsdp = dtype, fsdp
        self.compiler_options = compiler_options
        self.shape = mesh_shape(mesh)
        # the top-level parameters beside the layer stack (wte; wpe with learned positions; ln_f; lm_head untied)
        self.rest = gpt.outside_blocks(cfg)
        self.rules = shd.rules_for(self.mode, fsdp=fsdp)
        self.param_specs = shd.param_specs(cfg, mesh, self.rules, self.internal_shapes())
        self.memory_kind = self._memory_kind()
        self.param_shardings = shd.named(mesh, self.param_specs, self.memory_kind)
        self.batch_axes = self._batch_axes()
        self.batch_sharding = NamedSharding(mesh, P(self.batch_axes))
        self.replicated = shd.replicated(mesh)
        # the remat decision as a value (placement.Remat), made where the batch size is known: by build_executor when
        # it was given one, else when the first batch is traced (_settle_remat)
        self.remat_decision = remat
        self._jits: dict[Any, Any] = {}

    @property
    def remat(self) -> str:
        """The blocks' remat policy (model/remat.py; the decision ``remat_decision`` carries). Still undecided (an
        "auto" run whose batch size is not seen yet) reads as "none": only a forward pass can run before one is
        seen."""
        return self.remat_decision.policy if self.remat_decision else "none"

    @property
    def attention(self) -> str:
        """The attention kernel (model.gpt.ATTENTION_KERNELS) the plan chose."""
        return self.plan["attention"]

    def _settle_remat(self, batch_size: int, seq_len: int) -> None:
        """Decide remat from the first batch's shape when the plan could not (batch size unknown when it was made);
        the decision is recorded in the plan's JSON too."""
        if self.remat_decision is None:
            self.remat_decision = decide_remat(self.plan, self.cfg, batch_size=batch_size, seq_len=seq_len)
            self.remat_decision.record(self.plan)

    # ----- hooks a mode may override ------------------------------------------------------------------------
    def _memory_kind(self) -> str | None:
        """Where parameters and optimizer state live (None: the devices' default memory)."""
        return None

    def _batch_axes(self) -> tuple[str, ...]:
        """Mesh axes the batch rows are split over: outside the pipelined mode the stage axis is more replicas."""
        return tuple(a for a in ("data", "stage") if self.shape[a] > 1) or ("data",)

    def internal_shapes(self) -> Params:
        """Parameter shapes in this mode's layout (the canonical gpt.param_shapes except for padded pipelines)."""
        return gpt.param_shapes(self.cfg)

    def _blocks_to_internal(self, x: np.ndarray) -> np.ndarray:
        return x

    def _blocks_to_canonical(self, x: jax.Array) -> jax.Array:
        return x

    def loss_sum(self, params: Params, tokens, targets, mask) -> jax.Array:
        """Summed masked next-token loss (nats) of a batch under the placed ``params``: tokens/targets int32 [B, T]
        sharded like put_batch, mask bool [B, T] or None (every position counts); each mode supplies it."""
        raise NotImplementedError

    def _value_and_grad(self, params: Params, tokens, targets, mask, n_total):
        """(sum of the loss over [b, T] tokens / n_total, its gradients laid out like params) for one row slice.
        Autodiff of loss_sum unless the mode's schedule computes gradients itself (pipelined 1F1B)."""
        return jax.value_and_grad(lambda p: self.loss_sum(p, tokens, targets, mask) / n_total)(params)

    def _head_loss(self, params: Params, x, targets, mask) -> jax.Array:
        """Final norm, unembedding (the tied token table or the untied ``lm_head``) and summed loss (in chunks of
        tokens, gpt.head_nll_sum), with the rows of ``x`` spread over every mesh axis that would otherwise compute
        the same logits twice: ``stage`` (the pipeline's output is needed once), and ``model`` when the head's
        vocabulary is not sharded over it (GPT-2's 50257 is prime to 2, 4, 8). The vocabulary matmul is the largest
        layer of the small presets, so redundant copies of it cost the most."""
        head_spec = self.param_specs["wte"] if self.cfg.tied_embeddings else self.param_specs["lm_head"]["weight"]
        vocab_sharded = "model" in tuple(head_spec)[:1]
        axes = tuple(a for a in ("data", "stage", "model")
                     if self.shape[a] > 1 and not (a == "model" and vocab_sharded))
        if axes and x.shape[0] % int(np.prod([self.shape[a] for a in axes])) == 0:
            x = jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, P(axes)))
        return gpt.head_nll_sum(self.cfg, params, x, targets, mask)

    def _tmap(self, fn, *trees):
        """Elementwise map over parameter-shaped trees, executed where the parameters live."""
        return jax.tree.map(fn, *trees)

    def _sq_norm(self, tree) -> jax.Array:
        return sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree))

    def _apply_update(self, opt: Optimizer, grads, opt_state, params, norm):
        """One optimizer step: each gradient leaf clipped by the global ``norm``, then ``opt.tx``."""
        updates, opt_state = opt.tx.update(jax.tree.map(clip_fn(norm, opt.clip_norm), grads), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    # ----- layout and placement -----------------------------------------------------------------------------
    def _convert(self, tree, fn):
        return jax.tree_util.tree_map_with_path(lambda p, x: fn(x) if in_blocks(p) else x, tree)

    def place(self, params: Params) -> Params:
        """Canonical parameters (numpy or jax, any placement) -> this mode's layout, placed per param_shardings."""
        host = jax.tree.map(_to_numpy, params)
        gpt.check_params(self.cfg, host)
        return _put(self._convert(host, self._blocks_to_internal), self.param_shardings)

    def layout_is_canonical(self) -> bool:
        return self.internal_shapes() == gpt.param_shapes(self.cfg)

    def canonical(self, tree):
        """A tree in this mode's layout (params, grads, a whole training state) -> the canonical gpt layout."""
        if self.layout_is_canonical():
            return tree
        if "canonical" not in self._jits:  # one compiled gather instead of one eager op per tensor
            self._jits["canonical"] = jax.jit(lambda t: self._convert(t, self._blocks_to_canonical),
                                              compiler_options=self.compiler_options)
        return self._jits["canonical"](tree)

    def put_batch(self, array) -> jax.Array:
        """A global [B, T] batch, identical on every process, -> a jax.Array with rows over the batch axes."""
        array = np.asarray(array)
        return jax.make_array_from_callback(array.shape, self.batch_sharding, lambda idx: array[idx])

    def put_local_batch(self, local) -> jax.Array:
        """This process's rows of the batch (processes in order) -> the global jax.Array."""
        return jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(local))

    # ----- loss and gradients -------------------------------------------------------------------------------
    def accumulated_grads(self, params, tokens, targets, mask, accum: int):
        """(loss, grads) of the whole batch, computed ``accum`` row-slices at a time (lax.scan)."""
        n_total = count_positions(tokens, mask)
        self._settle_remat(tokens.shape[0] // accum, tokens.shape[1])
        if accum == 1:
            return self._value_and_grad(params, tokens, targets, mask, n_total)
        B = tokens.shape[0]
        if B % accum:
            raise UserError(f"batch of {B} sequences does not split into {accum} accumulation steps")
        spec = P(None, self.batch_axes)
        parts = [jax.lax.with_sharding_constraint(split_rows(x, accum), NamedSharding(self.mesh, spec))
                 if x is not None else None for x in (tokens, targets, mask)]
        first = [None if x is None else x[0] for x in parts]
        rest = tuple(None if x is None else x[1:] for x in parts)
        loss, grads = self._value_and_grad(params, *first, n_total)

        def body(carry, xs):
            loss, grads = carry
            l_i, g_i = self._value_and_grad(params, *xs, n_total)
            return (loss + l_i, self._tmap(jnp.add, grads, g_i)), None

        (loss, grads), _ = jax.lax.scan(body, (loss, grads), rest)
        return loss, grads

    def _batch_jit(self, name: str, fn, mask, out_shardings):
        """``fn(params, tokens, targets, mask)`` jitted with explicit shardings, once per mask/no-mask variant."""
        key = (name, mask is None)
        if key not in self._jits:
            in_sh = (self.param_shardings,) + (self.batch_sharding,) * (2 if mask is None else 3)
            wrapped = (lambda p, t, y: fn(p, t, y, None)) if mask is None else fn
            self._jits[key] = jax.jit(wrapped, in_shardings=in_sh, out_shardings=out_shardings,
                                      compiler_options=self.compiler_options)
        return self._jits[key]

    def loss_and_grads(self, params: Params, tokens, targets, mask=None):
        """(loss, grads) for placed params and a [B, T] batch; grads in the params' layout and placement.
        The loss is the mean over unmasked positions; one jitted function with explicit shardings."""
        fn = self._batch_jit("loss_and_grads", lambda p, t, y, m: self.accumulated_grads(p, t, y, m, 1), mask,
                             (self.replicated, self.param_shardings))
        return fn(params, tokens, targets) if mask is None else fn(params, tokens, targets, mask)

    def eval_loss(self, params: Params, tokens, targets, mask=None) -> jax.Array:
        """The loss alone (validation): mean over unmasked positions, no gradients; jitted with explicit shardings."""
        fn = self._batch_jit("eval_loss", lambda p, t, y, m: self.loss_sum(p, t, y, m) / count_positions(t, m),
                             mask, self.replicated)
        return fn(params, tokens, targets) if mask is None else fn(params, tokens, targets, mask)

    # ----- optimizer state and the training step --------------------------------------------------------------
    def state_shardings(self, optimizer) -> dict:
        """Shardings of {"params", "opt_state", "step"}: optimizer leaves shaped like a parameter (found by the
        parameter path at the end of their tree path) share its sharding; scalars (step counts) are replicated."""
        opt = as_optimizer(optimizer)
        shapes = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, jnp.float32), self.internal_shapes(),
                              is_leaf=lambda x: isinstance(x, tuple))
        opt_shapes = jax.eval_shape(opt.init, shapes)
        by_path = {}
        for path, sh in jax.tree_util.tree_flatten_with_path(self.param_shardings)[0]:
            by_path[gpt.path_names(path)] = sh
        flat_shapes = {gpt.path_names(p): s.shape for p, s in jax.tree_util.tree_flatten_with_path(shapes)[0]}

        def pick(path, leaf):
            names = gpt.path_names(path)
            for i in range(len(names)):
                if names[i:] in by_path and flat_shapes[names[i:]] == leaf.shape:
                    return by_path[names[i:]]
            return self.replicated

        opt_sh = jax.tree_util.tree_map_with_path(pick, opt_shapes)
        return {"params": self.param_shardings, "opt_state": opt_sh, "step": self.replicated}

    def init_state(self, params: Params, optimizer) -> dict:
        """Canonical parameters -> the placed training state {"params", "opt_state", "step"}."""
        opt = as_optimizer(optimizer)
        sh = self.state_shardings(opt)
        placed = self.place(params)
        opt_state = jax.jit(opt.init, out_shardings=sh["opt_state"], compiler_options=self.compiler_options)(placed)
        step = jax.device_put(jnp.zeros((), jnp.int32), self.replicated)
        return {"params": placed, "opt_state": opt_state, "step": step}

    def export_state(self, state: dict) -> dict:
        """The training state in the canonical layout (what a checkpoint stores, whatever the mode)."""
        return self.canonical(state)

    def import_state(self, state: dict, optimizer) -> dict:
        """A canonical training state (e.g. restored from a checkpoint) -> placed in this mode's layout."""
        host = jax.tree.map(_to_numpy, state)
        return _put(self._convert(host, self._blocks_to_internal), self.state_shardings(optimizer))

    def make_train_step(self, optimizer, accum_steps: int = 1) -> TrainStep:
        """step(state, tokens, targets, mask=None) -> (state, {"loss", "grad_norm", "finite", "lr"}): gradients
        (accumulated over ``accum_steps`` row slices), global-norm clipping, the optimizer update; one jax.jit with
        explicit in/out shardings, the state donated. ``finite`` (a bool) says the loss and the gradient norm are both
        finite: a NaN gradient leaves a finite loss but NaN weights, and the loop reads the flag with the loss, in the
        same transfer, before it saves anything."""
        opt = as_optimizer(optimizer)
        state_sh = self.state_shardings(opt)
        metric_names = ("loss", "grad_norm", "finite") + (("lr",) if opt.schedule is not None else ())
        metrics_sh = {k: self.replicated for k in metric_names}

        def step(state, tokens, targets, mask=None):
            params = state["params"]
            loss, grads = self.accumulated_grads(params, tokens, targets, mask, accum_steps)
            norm = jnp.sqrt(self._sq_norm(grads))
            new_params, new_opt = self._apply_update(opt, grads, state["opt_state"], params, norm)
            metrics = {"loss": loss, "grad_norm": norm, "finite": jnp.isfinite(loss) & jnp.isfinite(norm)}
            if opt.schedule is not None:
                metrics["lr"] = jnp.asarray(opt.schedule(state["step"]), jnp.float32)
            return {"params": new_params, "opt_state": new_opt, "step": state["step"] + 1}, metrics

        def make_jit(has_mask: bool):
            in_sh = (state_sh, self.batch_sharding, self.batch_sharding) + ((self.batch_sharding,) if has_mask else ())
            fn = step if has_mask else (lambda s, t, y: step(s, t, y, None))
            return jax.jit(fn, in_shardings=in_sh, out_shardings=(state_sh, metrics_sh), donate_argnums=(0,),
                           compiler_options=self.compiler_options)

        return TrainStep(make_jit)

    def compiled_memory(self, step: TrainStep, state, tokens, targets, mask=None) -> dict:
        """XLA's memory analysis of the compiled step (bytes per device); see memory_figures."""
        return memory_figures(step.lower(state, tokens, targets, mask).compile())


def memory_figures(compiled) -> dict:
    """A compiled executable's memory_analysis() as a dict of byte counts per device, plus
    peak_estimate = argument + output + temp - alias (what must be resident at once)."""
    stats = compiled.memory_analysis()
    fields = ("generated_code_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes",
              "alias_size_in_bytes", "temp_size_in_bytes", "host_generated_code_size_in_bytes",
              "host_argument_size_in_bytes", "host_output_size_in_bytes", "host_alias_size_in_bytes",
              "host_temp_size_in_bytes", "peak_memory_in_bytes")
    out = {f.removesuffix("_in_bytes"): int(getattr(stats, f)) for f in fields if hasattr(stats, f)}
    out["peak_estimate"] = out["argument_size"] + out["output_size"] + out["temp_size"] - out["alias_size"]
    return out


def _to_numpy(x):
    """Host copy of a leaf; arrays spread over several processes are gathered first."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def _put(tree, shardings):
    """Place host arrays per shardings; works for any memory kind and for meshes spanning several processes
    (each process supplies the slices its devices hold)."""
    return jax.tree.map(lambda x, s: jax.make_array_from_callback(x.shape, s, lambda idx: x[idx]), tree, shardings)
