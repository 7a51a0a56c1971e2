"""Published outcomes the simulator is held against, each with its configuration, release, source and confidence, in
two tables kept apart as Calculon and Vidur keep theirs:

- ``CALIBRATION``: the outcomes the simulator's fitted parameters come from (wse.validation.fit reproduces every one
  of them from these rows: the four measured runs of issue 25) and the Cerebras-GPT paper's relative figures it is
  also held to (training FLOPs, Table 6's relative utilisations, linear scaling).
- ``VALIDATION``: measured outcomes no parameter was fitted to: every other measured Cerebras figure found (training
  runs across releases, batch sizes, models and CS-3; WaferLLM's and Cerebras' inference), kernel figures, and
  encoder or protein models planned through decoder-shaped proxies.

A row's ``kind`` says what is compared (wse.validation.compare plans it): ``train`` samples/s, ``prefill`` tokens/s,
``decode`` and ``output`` tokens/s per request (``output``: 1 / time per output token of a generate plan),
``generate`` end-to-end tokens/s per request, ``ttft`` seconds, ``relative``, ``scaling``, ``flops``, ``gemm``
(fraction of peak), ``gemv`` seconds. Systems: ``cs2``, ``cs3``, and ``waferllm`` (the 720 x 720 cores of a WSE-2
that WaferLLM ran on). ``systems`` 0: the count is unpublished, so the fewest that hold the model are planned. Tags as
in shared/reference: V vendor, P paper, S secondary, D derived here.
"""

from __future__ import annotations

from dataclasses import dataclass

CEREBRAS_GPT_CARD = "P/V: Cerebras-GPT paper (arXiv 2304.03208) Table 8 and the HF model cards' training table"
TRAINING_FLOPS = {"111M": 2.6e18, "256M": 1.3e19, "590M": 6.1e19, "1.3B": 2.8e20, "2.7B": 1.1e21, "6.7B": 6.3e21,
                  "13B": 2.3e22}
# Cerebras-GPT paper Sec. 5.3, Table 6: FLOP/s utilisation of a training run relative to one CS-2 training 111M
# (systems, sequences per system, relative utilisation). 256M's row was not read. The 13B row reads "12 systems,
# 1080 -> 45 per CS-2", which does not divide; 45 per system on 12 systems is planned.
TABLE6_SOURCE = "P: Cerebras-GPT paper, Table 6 (Andromeda utilisation relative to 1 CS-2 on 111M)"
TABLE6 = {"111M": (1, 120, 1.00), "590M": (1, 264, 0.92), "1.3B": (4, 132, 0.96), "2.7B": (4, 132, 0.96),
          "6.7B": (16, 65, 1.05), "13B": (12, 45, 1.02)}
LINEAR_SCALING = (0.91, "P: Cerebras-GPT paper Sec. 5.3: 'linear scaling within 9% for all model sizes and CS-2 "
                        "system counts'")
MEMORYX_PAIRINGS = ((1.2e15, 24e12, "V/S: CS-3 with 1,200 TB MemoryX for 24T-parameter models"),
                    (2.4e15, 120e12, "V/S: 2.4 PB MemoryX for 120T-parameter models"))
SANDIA_1T = "S: Cerebras and Sandia National Laboratories trained a ~1T-parameter model on 16 CS-3 systems (2024)"


@dataclass(frozen=True)
class Outcome:
    """One published outcome and the configuration it was measured in (module docstring for ``kind``)."""

    id: str
    kind: str
    model: str  # a name of wse.validation.shapes.shape
    system: str
    systems: int
    batch: int  # sequences per step (training) or concurrent requests (inference)
    seq_len: int  # tokens per sequence (training) or context (decode)
    published: float
    unit: str
    release: str
    source: str
    confidence: str
    prompt: int = 0
    new_tokens: int = 0
    mode: str = "streaming"
    note: str = ""


_ALCF = "V: ALCF AI-testbed docs (github.com/argonne-lcf/user-guides"
_USC = ("P: Zhang, Parikh, Zhang, Prasanna, 'Benchmarking the Performance of LLMs on the Cerebras WSE', IEEE HPEC 2024 "
        "(arXiv 2409.00287) Table V: 211,043,181 samples / (one-epoch hours x 3600)")
_WAFERLLM = "P: WaferLLM (He et al., OSDI 2025, arXiv 2502.04563)"
_USC_HOURS = {"256M": (157, 157), "590M": (294, 290), "2.7B": (1258, 1252), "6.7B": (2586, 2581),
              "13B": (4943, 4939), "20B": (7613, 7594)}

CALIBRATION: tuple[Outcome, ...] = (
    Outcome("C1", "train", "gptj-6b", "cs2", 2, 120, 2048, 43.70, "samples/s", "R2.0.3, 2023-11-29",
            f"{_ALCF} @a8a674de), GPT-J example log", "high"),
    Outcome("C2", "train", "llama-7b", "cs2", 1, 99, 2048, 20.45, "samples/s", "R2.1.1, 2024-03-21",
            f"{_ALCF} @9fa2df7b), LLaMA-7B example log", "high"),
    Outcome("C3", "generate", "llama3-8b", "waferllm", 1, 1, 8192, 2459, "tokens/s per request", "WSE-2, 2025",
            f"{_WAFERLLM} v3: end to end, 4,096-token prompt, 4,096 new tokens, batch 1", "high", prompt=4096,
            new_tokens=4096, note="model-level figures are one timed layer x 32 (WaferLLM's code) on a proxy shape"),
    Outcome("C4", "prefill", "llama3-8b", "waferllm", 1, 1, 4096, 27686, "tokens/s", "WSE-2, 2025",
            f"{_WAFERLLM}: prefill of a 4,096-token prompt on 720 x 720 cores", "high", prompt=4096,
            note="timed as one layer x 32 on a proxy shape (d 4,320, 1 head, FFN 14,400) in WaferLLM's code"),
)

_T = [
    ("T1", "gptj-6b", "cs2", 2, 130, 2048, 27.5, "R1.7.1, 2023-03-16", " @c17ccbc3), 130,000 samples in 1,000 steps", "high",
     "an older release: the same job ran 1.59x faster by R2.0.3 (C1)"),
    ("T2", "gptj-6b", "cs2", 2, 130, 2048, 33.9, "R1.8.0, 2023-05-17", " @ba547969), 65,000 samples in 500 steps", "high",
     "an older release (C1 is R2.0.3)"),
    ("T3", "gptj-6b", "cs2", 1, 66, 2048, 19.8, "R1.9.2, 2023-11-10",
     "; ai-science-training-series @548f22f1), 333.4 s per 100 steps", "high (1 system inferred)", ""),
    ("T4", "gptj-6b", "cs3", 1, 120, 2048, 44.75, "image 2.5.1 / cluster 3.0.1, 2025-10-10",
     " @2f884f51), 24,000 samples in 200 steps", "high", ""),
    ("T5", "llama2-7b", "cs3", 1, 1024, 4096, 31.98, "image 2.5.1 / cluster 3.0.1, 2025-10-13",
     "), 204,800 samples in 200 steps; seq 4,096 from ModelZoo's params_llama2_7b.yaml", "high (seq from ModelZoo)",
     "its measured rate per FLOP is 1.7x T4's on the same system (batch 8.5x, sequence 2x)"),
    ("T6", "llama3-8b", "cs3", 1, 960, 2048, 19.4, "image 2.5.1 / cluster 3.0.1, 2025-10-08",
     "; ALCF_Hands_on_HPC_Workshop @d52173bd), 49.3 s per step", "medium (batch inferred)",
     "the job got 3 activation servers where T5 got 24; only 5 steps logged"),
    ("T7", "gpt2-small", "cs2", 1, 112, 2048, 494.0, "R2.0.3, 2024-03-14",
     "; ai-science-training-series @0c06ed08), 'Effective batch size is 112'", "high", "this config has dropout 0.1"),
    ("T8", "cerebras-gpt-111M", "cs2", 1, 2, 2048, 396.0, "R2.0.3, 2023-11-29",
     " @db8c3655), 4,000 samples in 2,000 steps", "medium (seq 2,048 assumed)", ""),
]
_TRAINING = tuple(Outcome(i, "train", m, sy, n, b, L, v, "samples/s", rel, f"{_ALCF}{where}", conf, note=note)
                  for i, m, sy, n, b, L, v, rel, where, conf, note in _T)
_USC_ROWS = tuple(
    Outcome(f"U{k}-{b}", "train", "gpt3-20b" if k == "20B" else f"cerebras-gpt-{k}", "cs2", 1, b, 2048,
            round(211_043_181 / (hours * 3600), 2), "samples/s", "release not stated, 2024", _USC, "high")
    for k, pair in _USC_HOURS.items() for b, hours in zip((128, 256), pair))
_PROXY = "decoder-shaped proxy of an encoder"
_OTHER_TRAINING = (
    Outcome("B1", "train", "bert-large", "cs2", 1, 1024, 128, 6875, "samples/s", "R1.7.1-R1.8.0, 2023",
            f"{_ALCF} @3788298b, @b27fdb6f), BERT-large MSL 128, 6,300-7,450 (mid-range)", "medium",
            mode="pipelined", note=f"{_PROXY}; layer-pipelined mode"),
    Outcome("B2", "train", "bert-large", "cs2", 1, 1024, 128, 4040, "samples/s", "R2.0.3, 2023-11-29",
            f"{_ALCF} @a8a674de), BERT-large MSL 128", "low (a 2024 rerun logged 930-1,390)", note=_PROXY),
    Outcome("B3a", "train", "bert-base", "cs2", 1, 2048, 128, 16190, "samples/s", "release not stated, 2024",
            f"{_USC[:96]} Table IV (SST-2, 67,350 samples per epoch)", "medium", note=_PROXY),
    Outcome("B3b", "train", "bert-large", "cs2", 1, 1024, 128, 5311, "samples/s", "release not stated, 2024",
            f"{_USC[:96]} Table IV", "medium", note=_PROXY),
    Outcome("B3c", "train", "bert-large", "cs2", 1, 8192, 128, 7250, "samples/s", "release not stated, 2024",
            f"{_USC[:96]} Table IV", "medium", note=_PROXY),
    Outcome("B4", "train", "esm2-35m", "cs3", 1, 2048, 1026, 990, "samples/s", "2025-10-10",
            f"{_ALCF} HEAD), ESM-2 example", "medium",
            note="decoder-shaped proxy of a protein encoder; 1M tokens/s through 35M parameters is 1.3% of peak: "
                 "probably input-bound"),
)
_AA = "S: Artificial Analysis (1k input, 1k output tokens), as quoted by Cerebras and the press"
_SERVICE = "a service under load (concurrency unpublished), not batch-1 WaferLLM kernels"
_INFERENCE = (
    Outcome("I1", "decode", "llama3-8b", "waferllm", 1, 1, 6144, 2700, "tokens/s per request", "WSE-2, 2025",
            f"{_WAFERLLM} v2 abstract: 2,700 tokens/s/request decode", "high",
            note="not independent of C3: with C4 it implies C3's end-to-end rate; context: C3's mean"),
    Outcome("I2", "decode", "qwen2-72b", "waferllm", 0, 1, 6144, 840, "tokens/s per request", "WSE-2, 2025",
            f"{_WAFERLLM} v2 abstract: 840 tokens/s/request decode on Qwen2-72B", "medium",
            note="145 GB cannot fit one WSE-2: one layer timed x 80 (WaferLLM's code); planned on the fewest grids"),
    Outcome("I4a", "output", "llama3.1-8b", "cs3", 1, 1, 2000, 1800, "tokens/s per request", "Aug 2024",
            f"{_AA}; Cerebras Inference launch", "medium (concurrency unpublished)", prompt=1000, new_tokens=1000, note=_SERVICE),
    Outcome("I4b", "output", "llama3.1-70b", "cs3", 4, 1, 2000, 446, "tokens/s per request", "Aug 2024",
            f"{_AA}; 70B on four CS-3 (V)", "medium (concurrency unpublished)", prompt=1000, new_tokens=1000, note=_SERVICE),
    Outcome("I5a", "output", "llama3.1-405b", "cs3", 0, 1, 2000, 969, "tokens/s per request", "Nov 2024",
            "V/S: Cerebras, Tom's Hardware 2024-11-20 (AA-measured): 969 tokens/s", "medium (wafers unpublished)",
            prompt=1000, new_tokens=1000, note=_SERVICE),
    Outcome("I5b", "ttft", "llama3.1-405b", "cs3", 0, 1, 2000, 0.24, "s", "Nov 2024",
            "V/S: Cerebras, Tom's Hardware 2024-11-20: time to first token 0.24 s", "medium (includes network)",
            prompt=1000, new_tokens=1000, note=_SERVICE),
    Outcome("I6a", "output", "llama3.1-70b", "cs3", 4, 1, 2000, 2314, "tokens/s per request", "late 2024",
            "S: AA figures quoted by a Cerebras SVP (Llama 3.3 70B, same shape)", "low (may use speculative decoding)",
            prompt=1000, new_tokens=1000, note=_SERVICE),
    Outcome("I6b", "ttft", "llama3.1-70b", "cs3", 4, 1, 2000, 0.17, "s", "late 2024",
            "S: AA figures quoted by a Cerebras SVP (Llama 3.3 70B): ~170 ms", "low", prompt=1000, new_tokens=1000, note=_SERVICE),
)
_KERNELS = (
    Outcome("K1", "gemm", "", "waferllm", 1, 0, 0, 0.70, "of peak", "WSE-2, 2025",
            f"{_WAFERLLM}: MeshGEMM above 70% of peak on 720 x 720 cores (size not stated)", "high (a lower bound)"),
    Outcome("K2", "gemv", "", "waferllm", 1, 0, 0, 1e-6, "s", "WSE-2, 2025",
            f"{_WAFERLLM}: a 16K x 16K GEMV takes about a microsecond", "medium ('about')"),
)
VALIDATION: tuple[Outcome, ...] = _TRAINING + _USC_ROWS + _OTHER_TRAINING + _INFERENCE + _KERNELS


def row(outcome: str, published, simulated, source: str, unit: str = "", distance: str | None = None,
        error: float | None = None, **extra) -> dict:
    """One table row; ``error`` is simulated / published - 1 when both are numbers (and ``distance`` its text)."""
    if error is None and isinstance(published, (int, float)) and isinstance(simulated, (int, float)) and published:
        error = simulated / published - 1
    if distance is None:
        distance = f"{error:+.0%}" if error is not None else ""
    return {"outcome": outcome, "published": published, "simulated": simulated, "unit": unit, "distance": distance,
            "error": error, "source": source, **extra}
