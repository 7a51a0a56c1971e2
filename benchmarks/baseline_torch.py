"""The baseline a user would otherwise pick: PyTorch + ``transformers`` of the same model, on the same CPU.

Same model (``GPT2LMHeadModel`` built from model/hf.py's config: exact GELU, tied embeddings, no dropout; for the
families their own class, e.g. ``LlamaForCausalLM``; and, when given, the very same weights), same batch and sequence length, same loss (mean next-token cross-entropy over every
position), the same optimizer recipe (AdamW betas 0.9/0.95, weight decay 0.1 on matrices and embeddings only,
global-norm clipping 1.0), float32, and all the host's cores (``torch.set_num_threads``). Timing as for our rows:
median step after warm-up, each step ending when its loss is known. transformers picks its default attention
kernel (PyTorch's scaled_dot_product_attention), as a user would get.

Threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless the user set it, applied before torch is first imported):
OpenMP's default active spin-wait makes a PyTorch step up to ~50x slower when the cores are shared with other work
(measured here: a micro GPT-2 step 0.7 s spinning vs 10 ms passive on a loaded 2-core machine); passive waiting gives
the baseline its best case on a shared machine.

On a GPU the baseline is what a strong user would run there: the same model on ``cuda`` with
``attn_implementation="sdpa"``, float32 master weights under ``torch.autocast`` at the bench's dtype (bfloat16),
fused AdamW (``fused=True``), in two variants, ``eager`` and ``torch.compile(model)``; the row adds the peak device
memory (``torch.cuda.max_memory_allocated``) and, for ``compile``, the compile seconds (the warm-up steps' excess
over a timed step; ``compile`` gets at least 2 warm-up steps, as its backward pass compiles on the first one and
the first optimizer steps may still retrace). Each GPU row runs in a child process (``run_in_subprocess``, i.e.
``python -m benchmarks.baseline_torch``, JSON on stdout) so that JAX and PyTorch never hold the device at the same
time: JAX keeps the 75% of the device memory it preallocates until its process exits.

Generation: ``model.generate`` with the KV cache on, greedy, exactly ``new_tokens`` per row (``min_new_tokens``
keeps a random-weight model from stopping at ``<|endoftext|>``), best of the timed calls after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("eager", "compile")
# Warm-up steps torch.compile needs before its steps are steady (the backward graph compiles on the first step).
COMPILE_WARMUP = 2


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


def build_model(cfg, params=None, *, attn_implementation: str | None = None):
    """The ``transformers`` model of ``cfg``'s architecture (GPT2LMHeadModel for Cerebras-GPT, LlamaForCausalLM,
    GPTJForCausalLM ...: model/hf.py's export class) with its shape; with ``params`` (our canonical tree) their
    weights. ``attn_implementation`` (e.g. "sdpa") pins the attention kernel; None leaves transformers' default."""
    _passive_threads()
    import torch
    import transformers

    from model.hf_configs import config_to_hf  # JAX-free: the child process of a GPU row must not start JAX

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    hf = config_to_hf(cfg, tied=not cfg.mup)
    kw = {k: v for k, v in hf.items() if k not in ("architectures", "torch_dtype", "model_type")}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    config = transformers.AutoConfig.for_model(hf["model_type"], **kw)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    if params is not None:
        from model.hf import params_to_hf

        state = {k: torch.from_numpy(v.copy()) for k, v in params_to_hf(cfg, params, hf["architectures"][0]).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        real_missing = [k for k in missing if not k.endswith(("attn.bias", "masked_bias")) and k != "lm_head.weight"]
        if real_missing or unexpected:
            raise RuntimeError(f"weights did not map onto the transformers model: missing {real_missing[:3]}, "
                               f"unexpected {unexpected[:3]}")
        model.tie_weights()
    return model


class TorchRun:
    """The PyTorch training step of ``cfg``, ready to be stepped (and interleaved with ours, see training.TrainingRun).

    ``device="cpu"`` (the default) is the CPU baseline: float32, transformers' default attention, plain AdamW.
    Any other device (``"cuda"``) is the GPU setup of the module docstring: SDPA attention, fused AdamW, autocast to
    ``dtype`` over float32 master weights unless ``dtype`` is float32, and ``compile=True`` for torch.compile."""

    def __init__(self, cfg, *, batch_size: int, seq_len: int, params=None, seed: int = 0, device: str = "cpu",
                 dtype: str = "float32", compile: bool = False):
        _passive_threads()
        import torch

        from benchmarks.training import random_batch

        self.cfg, self.batch_size, self.seq_len = cfg, batch_size, seq_len
        self.device = torch.device(device)
        self.variant = "compile" if compile else "eager"
        gpu = self.device.type != "cpu"
        self.dtype = dtype if gpu else "float32"  # the CPU baseline stays float32, whatever the bench's dtype
        if gpu:
            # float32 matmuls on TensorFloat-32, as JAX's default precision does on the same GPU
            torch.set_float32_matmul_precision("high")
        self.model = build_model(cfg, params, attn_implementation="sdpa" if gpu else None).to(self.device)
        self.model.train()
        decay, no_decay = [], []
        for p in self.model.parameters():
            (decay if p.ndim >= 2 else no_decay).append(p)  # matrices and embeddings; not LayerNorm or biases
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                     lr=cfg.learning_rate, betas=(0.9, 0.95), eps=cfg.adam_eps,
                                     **({"fused": True} if gpu else {}))
        # the weights stay float32 (the optimizer's master copy); autocast runs the matmuls in the compute dtype
        self.autocast_dtype = getattr(torch, self.dtype) if self.dtype != "float32" else None
        self.forward = torch.compile(self.model) if compile else self.model
        tokens_np, targets_np = random_batch(cfg.vocab_size, batch_size, seq_len, seed)
        self.tokens = torch.from_numpy(tokens_np.astype("int64")).to(self.device)
        self.targets = torch.from_numpy(targets_np.astype("int64")).to(self.device)
        self.attention = getattr(self.model.config, "_attn_implementation", None)
        self.times: list[float] = []
        self.warmup_times: list[float] = []
        self.losses: list[float] = []

    def step(self, timed: bool = True) -> float:
        """One optimizer step, ending when its loss is on the host (which also waits for the GPU); returns its
        seconds, recorded as a timed step or, with ``timed=False``, as a warm-up step."""
        import contextlib

        import torch
        import torch.nn.functional as F

        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        cast = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype is not None
                else contextlib.nullcontext())
        with cast:
            logits = self.forward(input_ids=self.tokens).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), self.targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.losses.append(loss.item())
        dt = time.perf_counter() - t0
        (self.times if timed else self.warmup_times).append(dt)
        return dt

    def close(self) -> None:
        self.model = self.opt = self.forward = None

    def row(self) -> dict:
        """The summary: median timed step, tokens/s, losses, the setup, and on a GPU the peak device memory in bytes
        (None on CPU); for ``compile`` the compile seconds (warm-up time beyond that many median steps)."""
        import torch

        step = statistics.median(self.times)
        gpu = self.device.type != "cpu"
        return {
            "framework": f"torch {torch.__version__} + transformers {_transformers_version()}",
            "architecture": type(self.model).__name__ if self.model is not None else None,
            "threads": torch.get_num_threads(), "model": self.cfg.name, "batch_size": self.batch_size,
            "seq_len": self.seq_len, "step_time_s": step, "step_times_s": list(self.times),
            "tokens_per_s": self.batch_size * self.seq_len / step, "losses": list(self.losses),
            "attention": self.attention, "variant": self.variant,
            "device": torch.cuda.get_device_name(self.device) if gpu else "cpu", "dtype": self.dtype,
            "autocast": str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else None,
            "optimizer": "AdamW (fused)" if gpu else "AdamW", "warmup_times_s": list(self.warmup_times),
            "compile_s": (max(0.0, sum(self.warmup_times) - len(self.warmup_times) * step)
                          if self.variant == "compile" else None),
            "peak_memory_bytes": int(torch.cuda.max_memory_allocated(self.device)) if gpu else None,
            "torch": torch.__version__, "transformers": _transformers_version(),
        }


def train_tokens_per_s(cfg, *, batch_size: int, seq_len: int, steps: int, warmup: int = 1, params=None,
                       seed: int = 0, device: str = "cpu", dtype: str = "float32", compile: bool = False) -> dict:
    """Median step time and tokens/s of PyTorch training (see module docstring); ``compile`` takes at least
    COMPILE_WARMUP warm-up steps."""
    run = TorchRun(cfg, batch_size=batch_size, seq_len=seq_len, params=params, seed=seed, device=device, dtype=dtype,
                   compile=compile)
    warmup = max(warmup, COMPILE_WARMUP) if compile else warmup
    for i in range(warmup + steps):
        run.step(timed=i >= warmup)
    row = run.row()
    run.close()
    return row


def run_in_subprocess(model: str, *, batch_size: int, seq_len: int, steps: int, warmup: int = 1,
                      dtype: str = "bfloat16", variant: str = "eager", device: str = "cuda",
                      timeout_s: float = 3600.0) -> dict:
    """One baseline row (``train_tokens_per_s``) measured in a fresh Python process, for a device JAX may hold.

    The child is ``python -m benchmarks.baseline_torch``; it never imports JAX (its environment drops every
    ``XLA_*``/``JAX_*`` variable and tells transformers to use PyTorch only) and prints the row as JSON on its last
    stdout line. A child that fails, or prints no row, gives ``{"model", "variant", "error"}`` with its last error
    line, so one failed variant never stops the bench."""
    root = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_"))}
    env.update(USE_TORCH="1", USE_FLAX="0", USE_TF="0", PYTHONPATH=os.pathsep.join(
        [root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])))
    cmd = [sys.executable, "-m", "benchmarks.baseline_torch", "--model", model, "--batch-size", str(batch_size),
           "--seq-len", str(seq_len), "--steps", str(steps), "--warmup", str(warmup), "--dtype", dtype,
           "--variant", variant, "--device", device]
    failed = {"model": model, "variant": variant, "batch_size": batch_size, "seq_len": seq_len}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {**failed, "error": f"timed out after {timeout_s:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    tail = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return {**failed, "error": (tail[-1] if tail else f"exit status {proc.returncode}")[:300]}


def main(argv=None) -> int:
    """The child's entry: measure one baseline row and print it as one JSON line on stdout."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline_torch", description=main.__doc__)
    parser.add_argument("--model", required=True, help="preset name or model file")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--seq-len", type=int, required=True)
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (compile: at least 2)")
    parser.add_argument("--dtype", default="bfloat16", help="autocast dtype on a GPU (float32: no autocast)")
    parser.add_argument("--variant", choices=VARIANTS, default="eager")
    parser.add_argument("--device", default="cuda", help="cuda (the GPU baseline) or cpu")
    args = parser.parse_args(argv)
    from model.config import get_config

    row = train_tokens_per_s(get_config(args.model), batch_size=args.batch_size, seq_len=args.seq_len,
                             steps=args.steps, warmup=args.warmup, device=args.device, dtype=args.dtype,
                             compile=args.variant == "compile")
    row.update(model=args.model, variant=args.variant, subprocess=True, jax_imported="jax" in sys.modules)
    print(json.dumps(row))
    return 0


def hf_generate(model, prompts: list[list[int]], new_tokens: int) -> tuple[float, int]:
    """(seconds, generated tokens) of one greedy KV-cache ``transformers`` generate call on equal-length prompts, on
    whatever device (and dtype) ``model`` is."""
    _passive_threads()
    import torch

    ids = torch.tensor(prompts, dtype=torch.int64, device=model.device)
    model.eval()
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, use_cache=True,
                             pad_token_id=model.config.vocab_size - 1)
        if out.is_cuda:
            torch.cuda.synchronize(out.device)  # the last token is computed, not just queued
        seconds = time.perf_counter() - t0
    return seconds, int((out.shape[1] - ids.shape[1]) * ids.shape[0])


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


if __name__ == "__main__":
    sys.exit(main())
