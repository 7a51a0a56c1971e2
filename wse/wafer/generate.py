"""End-to-end generation: a prompt, then new tokens one at a time, on a model resident on one or more wafers.

The prompt is prefilled (wse.wafer.inference: layer by layer on the whole wafer) and yields the first token: the time
to first token (TTFT). Each further token is a decode step whose attention reads the KV cache as it has grown, so the
time per output token (TPOT) rises with the context; a decode step's time is linear in the context it attends to, so
the mean over the new tokens is the step at their mean context. A request takes TTFT + (new tokens - 1) x TPOT, and
its end-to-end rate is new tokens over that (the figure WaferLLM and Artificial Analysis report per request).

The model is placed once for both phases: the KV cache of the whole context (prompt + new tokens) and the prefill's
working set must fit. Offered N wafers, the plan uses the n <= N with the shortest request.
"""

from __future__ import annotations

from wse.assumptions import PlanOptions
from wse.costs import model_layers
from wse.errors import PlanError
from wse.plans import InferencePlan
from wse.shape import as_shape
from wse.wafer.hardware import System, unpublished
from wse.wafer.inference import (LayerTimes, decode_step, idle_wafers, inference_memory, layer_rows, place,
                                 prefill_step)

# Artificial Analysis' default workload (about 1,000 input and 1,000 output tokens; artificialanalysis.ai methodology)
WORKLOAD = (1000, 1000, "S: Artificial Analysis' default benchmark workload, ~1,000 input and ~1,000 output tokens")


def workload(s, prompt_len: int | None, new_tokens: int | None) -> tuple[int, int, str | None]:
    """(prompt, new tokens, a note when defaulted): Artificial Analysis' 1,000 + 1,000, halved until it fits the
    context. PlanError when either is below 1 or their sum exceeds the model's context."""
    note = None
    if prompt_len is None or new_tokens is None:
        p, n = WORKLOAD[0], WORKLOAD[1]
        while p + n > s.max_seq_len and p > 1:
            p, n = max(1, p // 2), max(1, n // 2)
        prompt_len = p if prompt_len is None else prompt_len
        new_tokens = n if new_tokens is None else new_tokens
        note = f"--prompt-len {prompt_len} --new-tokens {new_tokens} by default ({WORKLOAD[2].split(': ', 1)[1]})"
    if prompt_len < 1 or new_tokens < 1:
        raise PlanError(f"--prompt-len and --new-tokens must be at least 1, got {prompt_len} and {new_tokens}")
    if prompt_len + new_tokens > s.max_seq_len:
        raise PlanError(f"--prompt-len {prompt_len} + --new-tokens {new_tokens} = {prompt_len + new_tokens} tokens "
                        f"exceeds the model's context ({s.max_seq_len}); give at most {s.max_seq_len} in all")
    return prompt_len, new_tokens, note


def plan_generate(shape, system: System, *, wafers: int = 1, batch_size: int = 1, prompt_len: int | None = None,
                  new_tokens: int | None = None, options: PlanOptions | None = None,
                  model_name: str | None = None) -> InferencePlan:
    """Prefill ``batch_size`` prompts of ``prompt_len`` tokens, then generate ``new_tokens`` each (module docstring),
    on up to ``wafers`` wafers of ``system``. PlanError when it does not fit (advice true when followed) or the
    prompt and new tokens exceed the model's context."""
    options = options or PlanOptions()
    s = as_shape(shape)
    if batch_size < 1 or wafers < 1:
        raise PlanError(f"need batch >= 1 and systems >= 1, got {batch_size} and {wafers}")
    prompt, new, note = workload(s, prompt_len, new_tokens)
    context = prompt + new
    layers = model_layers(s, context, attention_probs_stashed=False)
    placed = place(s, system, layers, options, wafers, batch_size, context, batch_size * prompt)
    mem, capacity, need = placed["mem"], placed["capacity"], placed["need"]
    prompt_layers = model_layers(s, prompt, attention_probs_stashed=False)
    times = LayerTimes(layers, system, options, attended=prompt + new / 2)
    runs = {}
    for n in range(need, wafers + 1):
        first = prefill_step(prompt_layers, mem, system, n, batch_size, prompt, s.d_model, options, capacity)
        step = decode_step(times, mem, system, n, batch_size, s.d_model, options, capacity)
        if first is not None and step is not None:
            runs[n] = (first, step, first["seconds"] + (new - 1) * step["seconds"])
    used = min(runs, key=lambda n: runs[n][2])
    first, step, total = runs[used]
    per_request = new / total
    details = {"wafers_used": step["wafers"], "fewest_wafers": need, "mappings": step["mappings"],
               "end_to_end_s_by_wafers": {n: r[2] for n, r in runs.items()},
               "decode_tokens_per_s_per_request": 1.0 / step["seconds"], "mean_context": prompt + new / 2,
               "parameters": int(sum(l.params for l in layers)), "n_kv_heads": s.n_kv_heads, "ffn_gated": s.ffn_gated,
               **idle_wafers(wafers, step["wafers"], "generate")}
    if note:
        details["workload_note"] = note
    return InferencePlan(
        model=model_name or s.name, system=system.name, systems=wafers, task="generate", mode="inference", fits=True,
        grid=system.grid().to_dict(), batch_size=batch_size, seq_len=context, prompt_len=prompt,
        token_latency_s=step["seconds"], tokens_per_s_per_request=per_request, tokens_per_s=per_request * batch_size,
        time_to_first_token_s=first["seconds"],
        memory=inference_memory(s, layers, mem, step, system, options, batch_size, context, placed["working"]),
        layers=layer_rows(layers, mem, step), assumptions={**unpublished(system.chip), **options.assumptions("inference")},
        details=details, new_tokens=new, time_per_output_token_s=step["seconds"], end_to_end_s=total,
    )
