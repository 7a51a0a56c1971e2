"""KV-cache text generation: a prefill program and a decode program per (model, batch, prompt bucket, new-token
bucket, dtype, sampler, layer loop), each compiled once per process (and once per machine where the caller turned
JAX's persistent compilation cache on, as `wse generate` does: runtime/platform/compile_cache.py).

Prompts of different lengths are *left*-padded to a common length P so that every row writes its next token to the
same cache slot (``gpt.forward_cached`` takes one scalar cache index); each row keeps its own positions (its first
real token is position 0) and a key mask hides its padding. The prompt is prefilled in one pass (logits of its last
position only), then a ``lax.while_loop`` decodes one token per iteration for all rows — no Python per token — and
stops early once every row has produced ``<|endoftext|>``. A row that has stopped emits nothing more. P and the
new-token buffer are rounded up to powers of two (capped at the context) so that nearby prompt lengths share one
program.

The decode step is straight-line code: nothing in it needs the host. Greedy or sampling, and which filters, are fixed
when the program is built (model/sampling.py's ``Sampler``, no ``cond``), and the filters need no loop. The layer
loop is built in one of LAYER_LOOPS: ``unroll`` (the default everywhere) runs each layer on its own weight and cache
arrays (``prepare_weights`` lays them out once per call, or once for many calls when the caller keeps the result);
``scan`` runs a ``lax.scan`` over the stacked layers. On XLA:CPU the scan copies each layer's weights out of the
stack before its matmuls (111M, batch 1: ~100 ms a step against ~20 unrolled, 2-core EPYC, jax 0.10.2); on XLA:GPU
each scan iteration is driven from the host (jax-ml/jax#2491), which unrolling removes at the price of a longer
compile (issue 29: 1.3B 5.6 s -> 33.8 s on an H200), paid once with the persistent cache. On CPU at batch 1 the tied
head is stored [d, V] and the block matrices in layers.matvec_layout (``default_transpose_head``), which XLA:CPU's
matrix-vector products stream faster.

Sampling follows the usual order: the repetition penalty (CTRL, Keskar et al. 2019, as transformers applies it: the
logit of every token already in the prompt or the output is divided by the penalty when positive and multiplied by it
when negative), ``<|endoftext|>`` barred before ``min_new_tokens``, logits / temperature, keep the top-k, then the
smallest set of tokens whose probability reaches top-p, then draw (model/sampling.py). Temperature 0 is greedy
(argmax). Temperature, top-k (within its Sampler's cap), top-p, the penalty, the minimum, the step count and the seed
are traced values: changing them never recompiles.

Precision. Weights arrive in float32. With a narrower compute dtype (bfloat16) ``prepare_weights`` casts every weight
matrix, bias and embedding to it once, so that each decode step reads half the bytes (batch-1 decoding is bound by
reading the weights); LayerNorm parameters stay float32, as ``gpt.layer_norm`` computes in float32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from model import gpt
from model.compile_options import compile_lowered, compiler_options
from model.config import EOT_TOKEN, GPTConfig
from model.generation_checks import GenerationError, check_length, check_settings
from model.host_memory import back_with_huge_pages
from model.layers import matvec_kernels
from model.sampling import Sampler, pick, sampler_for

MIN_BUCKET = 16
LAYER_LOOPS = ("unroll", "scan")
# Name of the host-side trace annotation around each decode loop (jax.profiler), from its call to its last token.
DECODE_TRACE = "wse.generate.decode"
# Compiled (prefill, decode) pairs keyed by everything that fixes their shapes (compile_cache_size() counts them),
# and compiled weight-preparation programs keyed by (architecture, dtype, layer loop).
_COMPILED: dict[tuple, tuple] = {}
_PREPARE: dict[tuple, object] = {}


@dataclass
class Generation:
    """New token ids per row (``<|endoftext|>`` not included), why each row stopped, and the measured speed.

    ``seconds`` is the run time of the compiled programs: laying out the weights (``prepare_seconds``, 0 when the
    caller passed prepared weights), the prefill (``prefill_seconds``, up to the first new token) and the decode loop
    (``decode_seconds`` over ``decode_steps`` steps, one token per row each; ``step_seconds`` is their ratio).
    ``compile_seconds`` is the one-off compile (0 when the programs were already compiled); ``tokens_per_s`` =
    generated tokens of all rows / ``seconds``."""

    tokens: list[list[int]]
    finish_reasons: list[str]
    seconds: float
    compile_seconds: float
    generated: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    decode_steps: int = 0
    prepare_seconds: float = 0.0
    tokens_per_s: float = field(init=False)
    step_seconds: float = field(init=False)

    def __post_init__(self):
        self.tokens_per_s = self.generated / self.seconds if self.seconds > 0 else 0.0
        self.step_seconds = self.decode_seconds / self.decode_steps if self.decode_steps else 0.0


@dataclass(frozen=True)
class DecodeWeights:
    """Weights laid out for decoding by ``prepare_weights``: ``tree`` holds the parameters outside the blocks
    (gpt.outside_blocks: the token embedding, learned positions, the final norm, an untied head), the head [d, V]
    when ``transposed_head`` (``wte_t`` for a tied model, ``lm_head/weight_t`` for an untied one; gpt.unembed), and
    ``blocks`` (a list of per-layer dicts for the ``unroll`` layer loop, the stacked dict for ``scan``), in compute
    ``dtype``. ``huge_page_bytes``: how many of their host bytes sit on transparent huge pages (model/host_memory.py;
    0 on an accelerator)."""

    tree: dict
    dtype: str
    layer_loop: str
    transposed_head: bool
    prepare_seconds: float = 0.0
    compile_seconds: float = 0.0
    huge_page_bytes: int = 0


# GPTConfig fields that do not change the computation (name, init and training recipe): normalised away so that two
# checkpoints of the same architecture share compiled programs.
_NOT_ARCHITECTURE = ("name", "init_std", "batch_size", "learning_rate", "lr_decay", "adam_eps")


def architecture(cfg: GPTConfig) -> GPTConfig:
    """``cfg`` with the fields that do not affect the forward pass set to their defaults (a compile-cache key)."""
    return cfg.model_copy(update={f: GPTConfig.model_fields[f].default for f in _NOT_ARCHITECTURE})


def compile_cache_size() -> int:
    """How many (prefill, decode) program pairs this process has compiled and keeps: one per (architecture, batch,
    prompt bucket, new-token bucket, dtype, sampler, layer loop). A ``generate`` call that reuses one leaves it
    unchanged."""
    return len(_COMPILED)


def bucket(n: int, cap: int) -> int:
    """n rounded up to a power of two (at least MIN_BUCKET), capped at ``cap``; bounds the number of compiles."""
    return min(max(MIN_BUCKET, 1 << (max(n, 1) - 1).bit_length()), cap)


def resolve_layer_loop(layer_loop: str = "auto") -> str:
    """A LAYER_LOOPS name: ``auto`` is ``unroll`` on every platform (the faster on CPU by ~5x at batch 1, and +18%
    on an H200 at 1.3B, issue 29). Raises GenerationError for an unknown name."""
    if layer_loop == "auto":
        return "unroll"
    if layer_loop not in LAYER_LOOPS:
        raise GenerationError(f"unknown layer loop '{layer_loop}'; use auto, {', '.join(LAYER_LOOPS)}")
    return layer_loop


def prepare_weights(cfg: GPTConfig, params, dtype=jnp.float32, layer_loop: str = "auto",
                    transpose_head: bool | None = None, batch: int = 1) -> DecodeWeights:
    """``params`` (the canonical tree, float32, host or device) cast to ``dtype`` and laid out for ``layer_loop``, in
    one compiled program on the default device. ``transpose_head`` stores the tied embedding [d, V] (gpt.unembed)
    and the block matrices in layers.matvec_layout (default: ``default_transpose_head(batch)``, for decoding
    ``batch`` rows). Costs one read and one write of the
    weights (the unrolled layout and a cast both copy; on the host, moving them onto huge pages another:
    model/host_memory.py); pass the result to ``generate`` in place of ``params`` to pay that once for many calls."""
    cfg, loop, dtype = architecture(cfg), resolve_layer_loop(layer_loop), jnp.dtype(dtype)
    if transpose_head is None:
        transpose_head = default_transpose_head(batch)
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    key = (cfg, dtype.name, loop, transpose_head)
    compile_seconds = 0.0
    if key not in _PREPARE:
        t0 = time.perf_counter()
        _PREPARE[key] = _prepare.lower(cfg, params, dtype=dtype, layer_loop=loop,
                                       transpose_head=transpose_head).compile()
        compile_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    tree = jax.block_until_ready(_PREPARE[key](params))
    huge = back_with_huge_pages(tree)  # host arrays only: XLA:CPU's decode reads them faster (model/host_memory.py)
    return DecodeWeights(tree, dtype.name, loop, transpose_head, time.perf_counter() - t0, compile_seconds, huge)


def default_transpose_head(batch: int) -> bool:
    """Whether ``prepare_weights`` lays the weights out for matrix-vector products when decoding ``batch`` rows: the
    tied head stored [d, V] and each block matrix in layers.matvec_layout (``kernel_t``: square and narrowing ones
    transposed, large widening ones cut into 16 blocks that two cores read at once). On CPU at batch 1 only: XLA:CPU
    runs a batch-1 matmul as a single-threaded matrix-vector kernel that streams long rows fastest, and runs more
    than 8 independent ones on two threads (layers.MATVEC_BLOCKS). From batch 2 on these are matrix products whose
    packing favours the stored layouts. The head, per decode step, from each operation's fastest run (2-core EPYC,
    jax 0.10.2, float32): 111M batch 1 19.9 ms [d, V] against 25.2 ms [V, d], batch 8 87.9 against 58.9; small
    batch 1 2.7 against 3.5, batch 8 17.3 against 15.8. The block matrices: layers.MATVEC_BLOCKS."""
    return jax.default_backend() == "cpu" and batch == 1


def generate(cfg: GPTConfig, params, prompts: list[list[int]], max_new_tokens: int, *, temperature: float = 0.0,
             top_k: int = 0, top_p: float = 1.0, seed: int = 0, eot_id: int = EOT_TOKEN,
             dtype=None, vocab_limit: int | None = None, repetition_penalty: float = 1.0,
             min_new_tokens: int = 0, layer_loop: str = "auto") -> Generation:
    """Continue each prompt (a list of token ids) by up to ``max_new_tokens`` tokens.

    ``params``: the canonical parameter tree, or ``DecodeWeights`` from ``prepare_weights`` (then ``dtype``,
    ``layer_loop`` and the head's layout are its own: prepare them for the batch you decode). ``top_k=0`` and ``top_p=1`` switch those filters off; ``temperature=0`` is greedy.
    The same seed and inputs give the same tokens. ``repetition_penalty`` (1 = off, > 1 discourages tokens already
    seen) and ``min_new_tokens`` (no ``<|endoftext|>`` before that many new tokens) apply to greedy decoding too.
    ``vocab_limit``: ids at or above it are never generated (a model whose vocabulary is padded past its tokenizer's,
    e.g. 50304 for GPT-2's 50257; default: the whole vocabulary). ``dtype`` is the compute dtype (default float32;
    bfloat16: weights cast once per call, see the module docstring). Raises GenerationError for a prompt plus
    ``max_new_tokens`` beyond the context, a bad sampling setting, or a ``dtype`` that contradicts prepared weights.
    """
    lengths = _check(cfg, prompts, max_new_tokens, temperature, top_k, top_p, repetition_penalty, min_new_tokens)
    cfg = architecture(cfg)
    if isinstance(params, DecodeWeights):
        if dtype is not None and jnp.dtype(dtype).name != params.dtype:
            raise GenerationError(f"dtype {jnp.dtype(dtype).name} given with weights prepared in {params.dtype}; "
                                  "prepare them in the compute dtype or leave dtype out")
        weights = params
    else:
        weights = prepare_weights(cfg, params, jnp.float32 if dtype is None else dtype, layer_loop,
                                  batch=len(prompts))
    B, P, N = len(prompts), bucket(max(lengths), cfg.max_seq_len), bucket(max_new_tokens, cfg.max_seq_len)
    tokens = np.zeros((B, P), np.int32)
    for i, p in enumerate(prompts):
        tokens[i, P - len(p):] = p  # left-pad: every row's last prompt token sits in slot P - 1
    knobs = {"max_new": jnp.int32(max_new_tokens), "temperature": jnp.float32(temperature), "top_k": jnp.int32(top_k),
             "top_p": jnp.float32(top_p), "key": jax.random.key(seed), "eot_id": jnp.int32(eot_id),
             "vocab_limit": jnp.int32(cfg.vocab_size if vocab_limit is None else min(vocab_limit, cfg.vocab_size)),
             "penalty": jnp.float32(repetition_penalty), "min_new": jnp.int32(min_new_tokens)}
    args = (weights.tree, jnp.asarray(tokens), jnp.asarray(lengths, jnp.int32), knobs)
    static = {"new_bucket": N, "dtype": jnp.dtype(weights.dtype), "penalise": repetition_penalty != 1.0,
              "bars": (vocab_limit is not None and vocab_limit < cfg.vocab_size) or min_new_tokens > 0,
              "sampler": sampler_for(temperature, top_k, top_p, cfg.vocab_size)}
    (prefill, decode), compile_seconds = _programs(cfg, (B, P, weights.layer_loop, weights.transposed_head), args,
                                                   static)
    t0 = time.perf_counter()
    state = jax.block_until_ready(prefill(*args))
    t1 = time.perf_counter()
    with jax.profiler.TraceAnnotation(DECODE_TRACE):  # marks the decode loop in a trace (benchmarks' profile split)
        final = decode(weights.tree, state, args[2], knobs)
        out, steps = np.asarray(final["out"]), int(final["t"]) - 1
    t2 = time.perf_counter()
    rows, reasons, generated = _rows(out[:, :max_new_tokens], eot_id)
    prepared_here = weights is not params
    prepare_s = weights.prepare_seconds if prepared_here else 0.0
    compile_seconds += weights.compile_seconds if prepared_here else 0.0
    return Generation(rows, reasons, prepare_s + t2 - t0, compile_seconds, generated, t1 - t0, t2 - t1, steps,
                      prepare_s)


def _programs(cfg, shape_key, args, static) -> tuple[tuple, float]:
    """The compiled (prefill, decode) pair for these shapes and static settings, and the seconds spent compiling it
    now (0 when this process already had it)."""
    key = (cfg, *shape_key, static["new_bucket"], static["dtype"].name, static["penalise"], static["bars"],
           static["sampler"])
    if key in _COMPILED:
        return _COMPILED[key], 0.0
    t0 = time.perf_counter()
    options = compiler_options()
    prefill = compile_lowered(_prefill.lower(cfg, *args, **static), options)
    state = jax.eval_shape(partial(_prefill, cfg, **static), *args)
    decode = compile_lowered(_decode.lower(cfg, args[0], state, args[2], args[3],
                                    **{k: v for k, v in static.items() if k != "new_bucket"}), options)
    _COMPILED[key] = (prefill, decode)
    return _COMPILED[key], time.perf_counter() - t0


def _rows(out: np.ndarray, eot_id: int) -> tuple[list[list[int]], list[str], int]:
    """(tokens per row without the end-of-text id, finish reason per row, tokens emitted in all) from the decode
    output [B, max_new] (-1 after a row stopped)."""
    rows, reasons, generated = [], [], 0
    for row in out:
        emitted = row[row >= 0].tolist()
        generated += len(emitted)
        if emitted and emitted[-1] == eot_id:
            rows.append(emitted[:-1])
            reasons.append("eot")
        else:
            rows.append(emitted)
            reasons.append("length")
    return rows, reasons, generated


def _check(cfg, prompts, max_new_tokens, temperature, top_k, top_p, penalty, min_new_tokens) -> list[int]:
    if not prompts:
        raise GenerationError("no prompts given")
    check_settings(max_new_tokens, temperature, top_k, top_p, penalty, min_new_tokens)
    lengths = [len(p) for p in prompts]
    if min(lengths) < 1:
        raise GenerationError("a prompt is empty; give at least one token (e.g. <|endoftext|> to start unconditioned)")
    for p in prompts:
        bad = [t for t in p if not 0 <= t < cfg.vocab_size]
        if bad:
            raise GenerationError(f"prompt token id {bad[0]} is outside the model vocabulary (size {cfg.vocab_size})")
    check_length(max(lengths), max_new_tokens, cfg.max_seq_len)
    return lengths


# The norms' gains and biases (the blocks' two, the final one, Qwen3's query/key RMSNorms) stay float32, as the model
# applies them.
NORM_PARAMS = ("ln_1", "ln_2", "ln_f", "q_norm", "k_norm")


def cast_weights(params, dtype):
    """Every parameter except the norms' (``NORM_PARAMS``) cast to ``dtype``; same tree."""
    def cast(path, x):
        return x if any(getattr(k, "key", None) in NORM_PARAMS for k in path) else x.astype(dtype)

    return jax.tree_util.tree_map_with_path(cast, params)


@partial(jax.jit, static_argnames=("cfg", "dtype", "layer_loop", "transpose_head"))
def _prepare(cfg, params, *, dtype, layer_loop, transpose_head):
    """The decode layout of ``params`` (see DecodeWeights): cast, the head and block matrices in the matrix-vector
    layout or not, and for ``unroll`` one array per layer."""
    if jnp.dtype(dtype) != jnp.float32:
        params = cast_weights(params, dtype)
    tree = {k: params[k] for k in gpt.outside_blocks(cfg)}
    blocks = params["blocks"]
    if transpose_head and cfg.tied_embeddings:
        tree["wte_t"] = tree.pop("wte").T  # vocabulary-minor: see gpt.unembed
    elif transpose_head:
        head = dict(tree["lm_head"])
        head["weight_t"] = head.pop("weight").T
        tree["lm_head"] = head
    if transpose_head:  # every block matrix too: see default_transpose_head
        blocks = {**blocks, "attn": matvec_kernels(blocks["attn"]), "mlp": matvec_kernels(blocks["mlp"])}
    tree["blocks"] = ([jax.tree.map(lambda a, i=i: a[i], blocks) for i in range(cfg.n_layers)]
                      if layer_loop == "unroll" else blocks)
    return tree


def _empty_cache(cfg, weights, batch: int, length: int, dtype):
    """``gpt.init_kv_cache`` in the layout of the weights' layer loop: per-layer lists when unrolled."""
    k, v = gpt.init_kv_cache(cfg, batch, length, dtype)
    if isinstance(weights["blocks"], list):
        return [k[i] for i in range(cfg.n_layers)], [v[i] for i in range(cfg.n_layers)]
    return k, v


def _next_token(sampler: Sampler, penalise: bool, bars: bool, logits, seen, t, knobs, beyond_vocab):
    """The next token per row (int32 [B]) from float logits [B, V] at new-token index t: the repetition penalty
    (when ``penalise``), then (when ``bars``) ``beyond_vocab`` ([V] float32, -inf at ids >= vocab_limit: _vocab_bar)
    and the end-of-text bar before ``min_new``, then the sampler. Each is one pass over V at most: fused with the
    sampler's reduction, a boolean mask over V cost XLA:CPU ~0.3 ms a step at batch 1, an added float vector ~0.05.
    ``bars`` is fixed when the program is built, as ``penalise`` is, so that a decode with neither bar (the whole
    vocabulary, no ``min_new_tokens``: the common case) makes no pass for them: after ``small``'s head on XLA:CPU the
    bar's add alone took 50-85 us of a ~2.5 ms step (jax.profiler, 2-core Xeon VM, jax 0.10.2; docs/performance.md)."""
    if penalise:
        penalty = knobs["penalty"]
        logits = jnp.where(seen, jnp.where(logits > 0, logits / penalty, logits * penalty), logits)
    if bars:
        logits = logits + beyond_vocab[None, :]
        eot = knobs["eot_id"]
        column = jnp.where(eot >= 0, eot, logits.shape[-1])  # an id outside the vocabulary bars nothing (dropped)
        held = jnp.where(t < knobs["min_new"], -jnp.inf, logits[:, jnp.clip(eot, 0, logits.shape[-1] - 1)])
        logits = logits.at[:, column].set(held, mode="drop")
    return pick(sampler, logits, jax.random.fold_in(knobs["key"], t), knobs["temperature"], knobs["top_k"],
                knobs["top_p"])


def _vocab_bar(vocab_size: int, knobs):
    """[V] float32: 0 for ids the sampler may choose, -inf at and above ``vocab_limit``."""
    return jnp.where(jnp.arange(vocab_size) >= knobs["vocab_limit"], -jnp.inf, 0.0).astype(jnp.float32)


def _key_mask(lengths, P: int, S: int):
    """[B, S] bool: False for each row's left padding, which is never attended to."""
    return jnp.arange(S)[None, :] >= (P - lengths)[:, None]


@partial(jax.jit, static_argnames=("cfg", "new_bucket", "dtype", "penalise", "bars", "sampler"))
def _prefill(cfg, weights, tokens, lengths, knobs, *, new_bucket, dtype, penalise, bars, sampler):
    """Prefill the left-padded prompts [B, P] and pick the first new token; returns the decode state."""
    B, P = tokens.shape
    S = P + new_bucket
    key_mask = _key_mask(lengths, P, S)
    positions = jnp.maximum(jnp.arange(P)[None, :] - (P - lengths)[:, None], 0)
    cache = _empty_cache(cfg, weights, B, S, dtype)
    logits, cache = gpt.forward_cached(cfg, weights, tokens, positions, cache, 0, key_mask, dtype=dtype,
                                       last_only=True)
    rows = jnp.arange(B)
    seen = jnp.zeros((B, cfg.vocab_size), bool).at[rows[:, None], tokens].max(key_mask[:, :P])  # not padding
    first = _next_token(sampler, penalise, bars, logits[:, 0].astype(jnp.float32), seen, 0, knobs,
                        _vocab_bar(cfg.vocab_size, knobs))
    return {"t": jnp.int32(1), "prev": first, "cache": cache, "done": first == knobs["eot_id"],
            "out": jnp.full((B, new_bucket), -1, jnp.int32).at[:, 0].set(first), "seen": seen.at[rows, first].set(True)}


@partial(jax.jit, static_argnames=("cfg", "dtype", "penalise", "bars", "sampler"), donate_argnames=("state",))
def _decode(cfg, weights, state, lengths, knobs, *, dtype, penalise, bars, sampler):
    """Decode from the prefill's state until ``max_new`` tokens or every row's end-of-text; returns the final state
    (its ``out`` [B, N] has -1 after a row stopped, ``t`` is one past the last new-token index). The state is
    donated and returned whole, so the loop updates the KV cache in the caller's buffers."""
    B, N = state["out"].shape
    S = jax.tree.leaves(state["cache"][1])[0].shape[-2]  # values [..., B K, S, D]
    P = S - N
    key_mask = _key_mask(lengths, P, S)
    rows = jnp.arange(B)
    beyond_vocab = _vocab_bar(cfg.vocab_size, knobs)  # loop-invariant

    def cond(s):
        return (s["t"] < knobs["max_new"]) & ~jnp.all(s["done"])

    def body(s):
        t = s["t"]
        feed = jnp.where(s["done"], knobs["eot_id"], s["prev"])[:, None]  # stopped rows compute on a valid id
        logits, cache = gpt.forward_cached(cfg, weights, feed, (lengths + t - 1)[:, None], s["cache"], P + t - 1,
                                           key_mask, dtype=dtype)
        new = _next_token(sampler, penalise, bars, logits[:, 0].astype(jnp.float32), s["seen"], t, knobs,
                          beyond_vocab)
        seen = s["seen"].at[rows, new].set(True)
        new = jnp.where(s["done"], -1, new)
        out = jax.lax.dynamic_update_slice_in_dim(s["out"], new[:, None], t, axis=1)
        return {"t": t + 1, "prev": new, "cache": cache, "done": s["done"] | (new == knobs["eot_id"]), "out": out,
                "seen": seen}

    return jax.lax.while_loop(cond, body, state)
