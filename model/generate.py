"""KV-cache text generation: one compiled program per (model, batch, prompt bucket, new-token bucket).

Prompts of different lengths are *left*-padded to a common length P so that every row writes its next token to the
same cache slot (``gpt.forward_cached`` takes one scalar cache index); each row keeps its own positions (its first
real token is position 0) and a key mask hides its padding. The prompt is prefilled in one pass, then a
``lax.while_loop`` decodes one token per iteration for all rows — no Python per token — and stops early once every
row has produced ``<|endoftext|>``. A row that has stopped emits nothing more.

Sampling follows the usual order: the repetition penalty (CTRL, Keskar et al. 2019, as transformers applies it: the
logit of every token already in the prompt or the output is divided by the penalty when positive and multiplied by it
when negative), ``<|endoftext|>`` barred before ``min_new_tokens``, logits / temperature, keep the top-k, then the
smallest set of tokens whose probability reaches top-p, then draw. Temperature 0 is greedy (argmax). Temperature,
top-k, top-p, the penalty, the minimum, the step count and the seed are traced values, so changing them never
recompiles; P and the new-token buffer are rounded up to powers
of two (capped at the context) so that nearby prompt lengths share one program.

Precision. Weights arrive in float32. With a narrower compute dtype (bfloat16) the program casts every weight matrix,
bias and embedding to it once, before the prefill, so that each decode step reads half the bytes (batch-1 decoding
is bound by reading the weights); LayerNorm parameters stay float32, as ``gpt.layer_norm`` computes in float32.
float32 decoding casts nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from model import gpt
from model.config import EOT_TOKEN, GPTConfig
from model.sampling import GenerationError, check_length, check_settings

MIN_BUCKET = 16
# Compiled decoders, keyed by everything that fixes their shapes (compile_cache_size() counts them).
_COMPILED: dict[tuple, object] = {}


@dataclass
class Generation:
    """New token ids per row (``<|endoftext|>`` not included), why each row stopped, and the measured speed.
    ``seconds`` is the run time of the compiled program (prefill + decode), ``compile_seconds`` the one-off compile
    (0 when the program was already compiled); ``tokens_per_s`` = generated tokens of all rows / ``seconds``."""

    tokens: list[list[int]]
    finish_reasons: list[str]
    seconds: float
    compile_seconds: float
    generated: int = 0
    tokens_per_s: float = field(init=False)

    def __post_init__(self):
        self.tokens_per_s = self.generated / self.seconds if self.seconds > 0 else 0.0


# GPTConfig fields that do not change the computation (name, init and training recipe): normalised away so that two
# checkpoints of the same architecture share compiled programs.
_NOT_ARCHITECTURE = ("name", "init_std", "batch_size", "learning_rate", "lr_decay", "adam_eps")


def architecture(cfg: GPTConfig) -> GPTConfig:
    """``cfg`` with the fields that do not affect the forward pass set to their defaults (a compile-cache key)."""
    return cfg.model_copy(update={f: GPTConfig.model_fields[f].default for f in _NOT_ARCHITECTURE})


def compile_cache_size() -> int:
    """How many decode programs this process has compiled and keeps: one per (architecture, batch, prompt bucket,
    new-token bucket, dtype). A ``generate`` call that reuses a program leaves it unchanged."""
    return len(_COMPILED)


def bucket(n: int, cap: int) -> int:
    """n rounded up to a power of two (at least MIN_BUCKET), capped at ``cap``; bounds the number of compiles."""
    return min(max(MIN_BUCKET, 1 << (max(n, 1) - 1).bit_length()), cap)


def generate(cfg: GPTConfig, params, prompts: list[list[int]], max_new_tokens: int, *, temperature: float = 0.0,
             top_k: int = 0, top_p: float = 1.0, seed: int = 0, eot_id: int = EOT_TOKEN,
             dtype=jnp.float32, vocab_limit: int | None = None, repetition_penalty: float = 1.0,
             min_new_tokens: int = 0) -> Generation:
    """Continue each prompt (a list of token ids) by up to ``max_new_tokens`` tokens.

    ``top_k=0`` and ``top_p=1`` switch those filters off; ``temperature=0`` is greedy. The same seed and inputs
    give the same tokens. ``repetition_penalty`` (1 = off, > 1 discourages tokens already seen) and
    ``min_new_tokens`` (no ``<|endoftext|>`` before that many new tokens) apply to greedy decoding too. ``vocab_limit``: ids at or above it are never generated (a model whose vocabulary is padded
    past its tokenizer's, e.g. 50304 for GPT-2's 50257; default: the whole vocabulary). ``dtype`` is the compute dtype (bfloat16: weights cast once per call, see the module
    docstring). Raises GenerationError for a prompt plus ``max_new_tokens`` beyond the context.
    """
    lengths = _check(cfg, prompts, max_new_tokens, temperature, top_k, top_p, repetition_penalty, min_new_tokens)
    cfg = architecture(cfg)
    B, P, N = len(prompts), bucket(max(lengths), cfg.max_seq_len), bucket(max_new_tokens, cfg.max_seq_len)
    tokens = np.zeros((B, P), np.int32)
    for i, p in enumerate(prompts):
        tokens[i, P - len(p):] = p  # left-pad: every row's last prompt token sits in slot P - 1
    args = (
        jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params), jnp.asarray(tokens),
        jnp.asarray(lengths, jnp.int32), jnp.int32(max_new_tokens), jnp.float32(temperature), jnp.int32(top_k),
        jnp.float32(top_p), jax.random.key(seed), jnp.int32(eot_id),
        jnp.int32(cfg.vocab_size if vocab_limit is None else min(vocab_limit, cfg.vocab_size)),
        jnp.float32(repetition_penalty), jnp.int32(min_new_tokens),
    )
    key = (cfg, B, P, N, jnp.dtype(dtype).name)
    compile_seconds = 0.0
    if key not in _COMPILED:
        t0 = time.perf_counter()
        _COMPILED[key] = _decode.lower(cfg, *args, new_bucket=N, dtype=dtype).compile()
        compile_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = np.asarray(jax.block_until_ready(_COMPILED[key](*args)))
    seconds = time.perf_counter() - t0
    rows, reasons, generated = [], [], 0
    for row in out[:, :max_new_tokens]:
        emitted = row[row >= 0].tolist()
        generated += len(emitted)
        if emitted and emitted[-1] == eot_id:
            rows.append(emitted[:-1])
            reasons.append("eot")
        else:
            rows.append(emitted)
            reasons.append("length")
    return Generation(rows, reasons, seconds, compile_seconds, generated)


def _check(cfg, prompts, max_new_tokens, temperature, top_k, top_p, repetition_penalty, min_new_tokens) -> list[int]:
    if not prompts:
        raise GenerationError("no prompts given")
    check_settings(max_new_tokens, temperature, top_k, top_p, repetition_penalty, min_new_tokens)
    lengths = [len(p) for p in prompts]
    if min(lengths) < 1:
        raise GenerationError("a prompt is empty; give at least one token (e.g. <|endoftext|> to start unconditioned)")
    for p in prompts:
        bad = [t for t in p if not 0 <= t < cfg.vocab_size]
        if bad:
            raise GenerationError(f"prompt token id {bad[0]} is outside the model vocabulary (size {cfg.vocab_size})")
    check_length(max(lengths), max_new_tokens, cfg.max_seq_len)
    return lengths


def sample(logits: jax.Array, key: jax.Array, temperature, top_k, top_p) -> jax.Array:
    """One token per row from float logits [B, V]: greedy when temperature is 0, else filtered sampling."""
    logits = logits.astype(jnp.float32)

    def draw(logits):
        scaled = logits / temperature
        scaled = jax.lax.cond((top_k > 0) | (top_p < 1.0), partial(filter_logits, top_k=top_k, top_p=top_p),
                              lambda x: x, scaled)
        return jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)

    def greedy(logits):
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)

    return jax.lax.cond(temperature > 0, draw, greedy, logits)


def filter_logits(logits: jax.Array, top_k, top_p) -> jax.Array:
    """Top-k then top-p (nucleus) filtering of float logits [B, V]: everything outside the ``top_k`` largest, then
    outside the smallest set of what is left whose probability reaches ``top_p``, is masked to -inf. ``top_k`` 0 and
    ``top_p`` 1 switch a filter off; both may be traced (int32, float32).

    Both cut-offs are found by an exact binary search over the float bit patterns (32 passes of compare-and-sum
    over the vocabulary) instead of sorting the 50257 logits at every step, which XLA's CPU sort makes the
    slowest part of a decode step. Ties at a cut-off are kept together.
    """
    keys = _ordered_bits(logits)  # uint32, same order as the logits
    everything = jnp.zeros(keys.shape[:-1], jnp.uint32)  # threshold 0 keeps every token (filter off)
    t_k = jax.lax.cond(top_k > 0, lambda: _largest_threshold(
        keys, lambda t: jnp.sum(keys >= t[:, None], axis=-1) >= top_k), lambda: everything)
    logits = jnp.where(keys >= t_k[:, None], logits, -jnp.inf)
    probs = jax.nn.softmax(logits, axis=-1)
    t_p = jax.lax.cond(top_p < 1.0, lambda: _largest_threshold(
        keys, lambda t: jnp.sum(jnp.where(keys >= t[:, None], probs, 0.0), axis=-1) >= top_p), lambda: everything)
    return jnp.where(keys >= t_p[:, None], logits, -jnp.inf)


def _ordered_bits(x: jax.Array) -> jax.Array:
    """float32 -> uint32 with the same order (flip the sign bit of positives, all bits of negatives)."""
    i = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    return jnp.where(i >> 31 == 0, i | jnp.uint32(0x80000000), ~i)


def _largest_threshold(keys: jax.Array, holds) -> jax.Array:
    """Per row, the largest uint32 t with ``holds(t)`` true, for a ``holds`` that is true at 0 and monotone
    (true up to some t, false beyond); 32 halvings of [0, 2^32 - 1]."""
    lo = jnp.zeros(keys.shape[:-1], jnp.uint32)
    hi = jnp.full(keys.shape[:-1], 0xFFFFFFFF, jnp.uint32)

    def step(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) // 2 + (lo < hi).astype(jnp.uint32)  # upper middle, never past hi
        ok = holds(mid)
        return jnp.where(ok, mid, lo), jnp.where(ok | (lo == hi), hi, mid - 1)

    lo, _ = jax.lax.fori_loop(0, 32, step, (lo, hi))
    return lo


_NORMS = ("ln_1", "ln_2", "ln_f")


def cast_weights(params, dtype):
    """Every parameter except the LayerNorms' (``ln_1``, ``ln_2``, ``ln_f``) cast to ``dtype``; same tree."""
    def cast(path, x):
        return x if any(getattr(k, "key", None) in _NORMS for k in path) else x.astype(dtype)

    return jax.tree_util.tree_map_with_path(cast, params)


@partial(jax.jit, static_argnames=("cfg", "new_bucket", "dtype"))
def _decode(cfg, params, tokens, lengths, max_new, temperature, top_k, top_p, key, eot_id, vocab_limit, penalty,
            min_new, *, new_bucket, dtype):
    """Prefill the left-padded prompts, then decode up to ``max_new`` tokens; -1 marks slots after a row stopped.
    Ids at or above ``vocab_limit`` get -inf logits: never sampled, never the argmax."""
    if jnp.dtype(dtype) != jnp.float32:
        params = cast_weights(params, dtype)  # once, outside the loop: every step then reads compute-dtype weights
    B, P = tokens.shape
    S = P + new_bucket
    pad = P - lengths  # [B]
    key_mask = jnp.arange(S)[None, :] >= pad[:, None]  # [B, S]: padding slots are never attended to
    positions = jnp.maximum(jnp.arange(P)[None, :] - pad[:, None], 0)
    cache = gpt.init_kv_cache(cfg, B, S, dtype)
    logits, cache = gpt.forward_cached(cfg, params, tokens, positions, cache, 0, key_mask, dtype=dtype)
    vocab = jnp.arange(cfg.vocab_size)
    rows = jnp.arange(B)[:, None]
    seen = jnp.zeros((B, cfg.vocab_size), bool).at[rows, tokens].max(key_mask[:, :P])  # prompt tokens, not padding

    def pick(logits, seen, t):
        """The next token from float logits [B, V] at new-token index t."""
        logits = jnp.where(seen, jnp.where(logits > 0, logits / penalty, logits * penalty), logits)
        barred = (vocab >= vocab_limit)[None, :] | ((vocab == eot_id)[None, :] & (t < min_new))
        return sample(jnp.where(barred, -jnp.inf, logits), jax.random.fold_in(key, t), temperature, top_k, top_p)

    first = pick(logits[:, -1].astype(jnp.float32), seen, 0)
    out = jnp.full((B, new_bucket), -1, jnp.int32).at[:, 0].set(first)
    state = (jnp.int32(1), first, cache, out, first == eot_id, seen.at[rows[:, 0], first].set(True))

    def cond(state):
        t, _, _, _, done, _ = state
        return (t < max_new) & ~jnp.all(done)

    def body(state):
        t, prev, cache, out, done, seen = state
        feed = jnp.where(done, eot_id, prev)[:, None]  # stopped rows keep computing on a valid id, output ignored
        pos = (lengths + t - 1)[:, None]
        logits, cache = gpt.forward_cached(cfg, params, feed, pos, cache, P + t - 1, key_mask, dtype=dtype)
        new = pick(logits[:, 0].astype(jnp.float32), seen, t)
        seen = seen.at[rows[:, 0], new].set(True)
        new = jnp.where(done, -1, new)
        out = jax.lax.dynamic_update_slice_in_dim(out, new[:, None], t, axis=1)
        return t + 1, new, cache, out, done | (new == eot_id), seen

    out = jax.lax.while_loop(cond, body, state)[3]
    return out
