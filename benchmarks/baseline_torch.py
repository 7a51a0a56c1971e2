"""The baseline a user would otherwise pick: PyTorch + ``transformers`` GPT-2 of the same shape, on the same CPU.

Same model (``GPT2LMHeadModel`` built from model/hf.py's config: exact GELU, tied embeddings, no dropout, and, when
given, the very same weights), same batch and sequence length, same loss (mean next-token cross-entropy over every
position), the same optimizer recipe (AdamW betas 0.9/0.95, weight decay 0.1 on matrices and embeddings only,
global-norm clipping 1.0), float32, and all the host's cores (``torch.set_num_threads``). Timing as for our rows:
median step after warm-up, each step ending when its loss is known. transformers picks its default attention
kernel (PyTorch's scaled_dot_product_attention), as a user would get.

Threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless the user set it, applied before torch is first imported):
OpenMP's default active spin-wait makes a PyTorch step up to ~50x slower when the cores are shared with other work
(measured here: a micro GPT-2 step 0.7 s spinning vs 10 ms passive on a loaded 2-core machine); passive waiting gives
the baseline its best case on a shared machine.

Generation: ``model.generate`` with the KV cache on, greedy, exactly ``new_tokens`` per row (``min_new_tokens``
keeps a random-weight model from stopping at ``<|endoftext|>``), best of the timed calls after one warm-up.
"""

from __future__ import annotations

import os
import statistics
import time


def _passive_threads() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def torch_available() -> bool:
    _passive_threads()
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def build_model(cfg, params=None):
    """A ``transformers`` GPT2LMHeadModel with ``cfg``'s shape; with ``params`` (our canonical tree) their weights."""
    _passive_threads()
    import torch
    import transformers

    from model.hf import config_to_hf, params_to_hf

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    hf = config_to_hf(cfg, tied=not cfg.mup)
    config = transformers.GPT2Config(**{k: v for k, v in hf.items() if k not in ("architectures", "torch_dtype")})
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    if params is not None:
        state = {k: torch.from_numpy(v.copy()) for k, v in params_to_hf(cfg, params).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        real_missing = [k for k in missing if not k.endswith("attn.bias") and k != "lm_head.weight"]
        if real_missing or unexpected:
            raise RuntimeError(f"weights did not map onto the transformers model: missing {real_missing[:3]}, "
                               f"unexpected {unexpected[:3]}")
        model.tie_weights()
    return model


class TorchRun:
    """The PyTorch training step of ``cfg``, ready to be stepped (and interleaved with ours, see training.TrainingRun)."""

    def __init__(self, cfg, *, batch_size: int, seq_len: int, params=None, seed: int = 0):
        _passive_threads()
        import torch

        from benchmarks.training import random_batch

        self.cfg, self.batch_size, self.seq_len = cfg, batch_size, seq_len
        self.model = build_model(cfg, params)
        self.model.train()
        decay, no_decay = [], []
        for p in self.model.parameters():
            (decay if p.ndim >= 2 else no_decay).append(p)  # matrices and embeddings; not LayerNorm or biases
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                     lr=cfg.learning_rate, betas=(0.9, 0.95), eps=cfg.adam_eps)
        tokens_np, targets_np = random_batch(cfg.vocab_size, batch_size, seq_len, seed)
        self.tokens = torch.from_numpy(tokens_np.astype("int64"))
        self.targets = torch.from_numpy(targets_np.astype("int64"))
        self.attention = getattr(self.model.config, "_attn_implementation", None)
        self.times: list[float] = []
        self.losses: list[float] = []

    def step(self, timed: bool = True) -> float:
        import torch
        import torch.nn.functional as F

        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(input_ids=self.tokens).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), self.targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.losses.append(loss.item())
        dt = time.perf_counter() - t0
        if timed:
            self.times.append(dt)
        return dt

    def close(self) -> None:
        self.model = self.opt = None

    def row(self) -> dict:
        import torch

        step = statistics.median(self.times)
        return {
            "framework": f"torch {torch.__version__} + transformers {_transformers_version()}",
            "threads": torch.get_num_threads(), "model": self.cfg.name, "batch_size": self.batch_size,
            "seq_len": self.seq_len, "step_time_s": step, "step_times_s": list(self.times),
            "tokens_per_s": self.batch_size * self.seq_len / step, "losses": list(self.losses),
            "attention": self.attention,
        }


def train_tokens_per_s(cfg, *, batch_size: int, seq_len: int, steps: int, warmup: int = 1, params=None,
                       seed: int = 0) -> dict:
    """Median step time and tokens/s of PyTorch training (see module docstring)."""
    run = TorchRun(cfg, batch_size=batch_size, seq_len=seq_len, params=params, seed=seed)
    for i in range(warmup + steps):
        run.step(timed=i >= warmup)
    row = run.row()
    run.close()
    return row


def hf_generate(model, prompts: list[list[int]], new_tokens: int) -> tuple[float, int]:
    """(seconds, generated tokens) of one greedy KV-cache ``transformers`` generate call on equal-length prompts."""
    _passive_threads()
    import torch

    ids = torch.tensor(prompts, dtype=torch.int64)
    model.eval()
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, use_cache=True,
                             pad_token_id=model.config.vocab_size - 1)
        seconds = time.perf_counter() - t0
    return seconds, int((out.shape[1] - ids.shape[1]) * ids.shape[0])


def _transformers_version() -> str:
    import transformers

    return transformers.__version__
