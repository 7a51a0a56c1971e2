"""Writing a bench result: ``bench.json``, ``report.md`` and PNG plots (plots.py) in the output folder, and the
terminal table.

The Markdown is what the README's Performance section quotes: machine, date, command, then the tables.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks.plots import plots


def _f(x, fmt: str = ",.1f", none: str = "-") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return none
    return format(x, fmt)


def _mib(x) -> str:
    return "-" if not x else f"{x / 2**20:,.0f}"


def _json_default(obj):
    """The CLI's encoder, but a report never fails on a value it cannot encode: it writes its text instead."""
    from runtime.cli import json_default

    try:
        return json_default(obj)
    except TypeError:
        return str(obj)


# ----- Markdown ---------------------------------------------------------------------------------------------------
def training_table(result: dict) -> list[str]:
    lines = ["| model | mode | mesh (data x stage x model) | batch x seq | remat, attention | step (s) | tokens/s | MFU 6N | MFU alg. | "
             "predicted (s) | predicted/measured | host link MB/step (to device / to host) | compile (s) | "
             "device peak est. (MiB) | process RSS (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        mesh = r["mesh"]
        shape = f"{mesh['data']}x{mesh['stage']}x{mesh['model']}"
        if r.get("error"):
            lines.append(f"| {r['model']} | {r['mode']} | {shape} | {r['batch_size']}x{r['seq_len']} | - | "
                         f"failed: {r['error']} |  |  |  |  |  |  |  |  |  |")
            continue
        mem = r.get("memory") or {}
        lines.append(
            f"| {r['model']} | {r['mode']} | {shape} | {r['batch_size']}x{r['seq_len']} | {_remat(r)} | "
            f"{_f(r['step_time_s'], '.3f')} | "
            f"{_f(r['tokens_per_s'], ',.0f')} | {_f(100 * r['mfu'], '.1f')}% | {_f(100 * r['mfu_algorithmic'], '.1f')}% | "
            f"{_f(r.get('predicted_step_time_s'), '.3f')} | {_f(r.get('predicted_over_measured'), '.2f')} | "
            f"{_link(r.get('link_bytes_per_step'))} | {_f(r['compile_s'], '.1f')} | "
            f"{_mib(mem.get('peak_estimate'))} | {_mib(mem.get('process_peak_rss'))} |")
    return lines


def _link(link: dict | None) -> str:
    """Bytes over the host link per step, each way, in MB ('-' when the row has no figure)."""
    if not link:
        return "-"
    return f"{link['to_device'] / 1e6:,.1f} / {link['to_host'] / 1e6:,.1f}"


def _remat(row: dict) -> str:
    """The remat policy and attention kernel, the policy marked 'auto' when the plan chose it (not --remat)."""
    if row.get("remat") is None:
        return "-"
    auto = " (auto)" if row.get("remat_requested") == "auto" else ""
    return f"{row['remat']}{auto}, {row.get('attention', 'xla')}"


def markdown(result: dict) -> str:
    """The whole report.md text: the header, then one section per part of the bench that ran, in the order the
    README's Performance section quotes them."""
    out = header(result) + ceilings_section(result) + training_section(result)
    for section in (overhead_section, baseline_section, generation_section, planner_section, scaling_section,
                     targets_section, claims_section):
        out += section(result)
    return "\n".join(out)


def header(result: dict) -> list[str]:
    """Title, machine, date (with the load average at start and end), command, dtype and sizes, wall and CPU time."""
    env = result["environment"]
    return [
        "# wse bench report", "",
        f"- machine: {env['device']}, {env['host_cores']} cores visible, backend {env['backend']} "
        f"({result['devices']} devices), JAX {env['jax']}, Python {env['python']}",
        f"- date: {env['date']}; load average at start {', '.join(f'{x:.1f}' for x in env['load_average_start'])}"
        + (f", at end {', '.join(f'{x:.1f}' for x in env['load_average_end'])}" if env.get("load_average_end") else ""),
        f"- command: `{env['command']}`; compute dtype {result['dtype']}; {'quick' if result['quick'] else 'full'} sizes",
        f"- wall time {_f(result.get('wall_s'), ',.0f')} s, process CPU time {_f(result.get('cpu_s'), ',.0f')} s "
        f"({env['host_cores']} cores: a run that had the machine to itself uses up to {env['host_cores']} CPU-seconds "
        "per second)" + _load_note(env.get("machine_load")),
        "",
    ]


def _load_note(load: dict | None) -> str:
    if not load:
        return ""
    return (f"; meanwhile other processes took {load['others']:.0%} of the machine's CPU time and the hypervisor "
            f"{load['steal']:.0%} (steal)")


def ceilings_section(result: dict) -> list[str]:
    """The measured device ceilings (matmul GFLOP/s per dtype, copy and read GB/s, ...) and the peak MFU is taken
    against."""
    c = result["ceilings"]
    link = c.get("host_link_bytes_per_s") or {}
    gb = lambda key: _f(link[key] / 1e9) + " GB/s" if key in link else "-"  # noqa: E731
    adamw = c.get("host_adamw_params_per_s")
    return [
        "## Device ceilings", "",
        "| matmul float32 | matmul bfloat16 | memory copy | memory read | host to device | device to host | "
        "all-reduce link | host AdamW | dispatch | method |", "|---|---|---|---|---|---|---|---|---|---|",
        f"| {_f(c['matmul_flops']['float32'] / 1e9)} GFLOP/s | {_f(c['matmul_flops']['bfloat16'] / 1e9)} GFLOP/s | "
        f"{_f(c['copy_bytes_per_s'] / 1e9)} GB/s | {_f((c.get('read_bytes_per_s') or math.nan) / 1e9)} GB/s | "
        f"{gb('host_to_device')} | {gb('device_to_host')} | "
        f"{_f((c.get('all_reduce_link_bytes_per_s') or math.nan) / 1e9)} GB/s | "
        f"{_f(adamw / 1e6 if adamw else None, ',.0f')}M params/s | {_f(c.get('dispatch_s', 0) * 1e6, ',.0f')} us | "
        f"{c['method']} |",
        "",
        f"MFU is model FLOP/s over {_f(result['peak_matmul_flops'] / 1e9)} GFLOP/s ({result['peak_source']}).",
        "",
    ]


def training_section(result: dict) -> list[str]:
    """The training table and what its columns mean."""
    return [
        "## Training", "",
        *training_table(result), "",
        "Step time: median of the timed steps after warm-up and compile. MFU 6N: 6 x parameters x tokens/s; MFU alg.: "
        "the Cerebras-GPT algorithmic count (attention at the run's sequence length and the logit matmul). "
        "predicted/measured: the wse cost models with the measured ceilings (benchmarks/predict.py: the device cost "
        "model for data and streaming, the pipeline stage formula for pipelined). Host link: bytes over the host link "
        "per step (wse.devices.hostlink; 0 for data and pipelined). "
        "Device peak est.: XLA memory_analysis argument + output + temp - alias, per device. remat: the policy by "
        "which the backward pass recomputed activations (none, dots, full; auto: the plan's choice by memory, with its "
        "reason in bench.json), and the attention kernel (xla, or cuDNN's flash kernel).",
        "",
    ]


def overhead_section(result: dict) -> list[str]:
    """Pipelined and streaming step time against data mode's on the same devices, with the allowed overhead; empty
    when no row was compared."""
    over = [r for r in result["runs"] if r.get("vs_data")]
    if not over:
        return []
    out = ["### Pipelined and streaming against data mode (same devices)", "",
           "| model | mode | step vs data | overhead share of step | predicted bubble | allowed (bubble + 20%) |",
           "|---|---|---|---|---|---|"]
    for r in over:
        v = r["vs_data"]
        out.append(f"| {r['model']} | {r['mode']} | {v['step_time_ratio']:.2f}x | {v['overhead_fraction']:.0%} | "
                   f"{v['predicted_bubble']:.0%} | {v['allowed_overhead']:.0%} |")
    return out + [""]


def baseline_section(result: dict) -> list[str]:
    """``baseline_table`` when the baseline has rows, else nothing."""
    return baseline_table(result) if (result.get("baseline") or {}).get("rows") else []


def generation_section(result: dict) -> list[str]:
    """Decoding per model and batch: tokens/s against transformers, the decode step against the bandwidth roofline,
    and the step split into the device's work and the rest; empty when it did not run."""
    gen = result.get("generation") or {}
    if not gen.get("rows"):
        return []
    out = [f"## Generation ({', '.join(gen['models'])}, {gen.get('dtype', 'float32')}, greedy, KV cache)", "",
           "| model | batch | prompt + new | ours tokens/s | transformers tokens/s | ours / transformers | "
           "decode step | roofline step | of roofline | of the copy ceiling | fastest step (of roofline) | "
           "busy / overhead per step | MB per token | our compile (s) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in gen["rows"]:
        split = (f"{_f(g['busy_s'] * 1e3, '.2f')} / {_f(g['overhead_s'] * 1e3, '.2f')} ms" if "busy_s" in g
                 else g.get("profile_error", "-"))
        fastest = (f"{_f(g['fastest_step_s'] * 1e3, '.2f')} ms ({_f(_pct(g.get('fastest_roofline_fraction')), '.0f')}%)"
                   if g.get("fastest_step_s") else "-")
        out.append(f"| {g['model']} | {g['batch']} | {g['prompt_len']} + {g['new_tokens']} | {_f(g['tokens_per_s'])} | "
                   f"{_f(g.get('baseline_tokens_per_s'))} | {_f(g.get('ratio'), '.2f')} | "
                   f"{_f(g['step_s'] * 1e3, '.2f')} ms | {_f((g.get('roofline_step_s') or math.nan) * 1e3, '.2f')} ms | "
                   f"{_f(_pct(g.get('roofline_fraction')), '.1f')}% | "
                   f"{_f(_pct(g.get('copy_roofline_fraction')), '.1f')}% | {fastest} | {split} | "
                   f"{_f(g['bytes_per_token'] / 1e6, '.1f')} | {_f(g['compile_s'], '.1f')} |")
    bandwidths = ", ".join(f"{g['model']} {_f(g['bandwidth_bytes_per_s'] / 1e9)} GB/s" for g in gen["per_model"])
    out += ["", f"Roofline: a decode step reads the weights once ({gen.get('dtype', 'float32')}, LayerNorm float32) plus "
            f"each row's KV cache up to its position (mean over the decode), at {bandwidths} "
            f"({gen.get('bandwidth_source', 'measured')}; a step only reads, and the copy ceiling, read + write, "
            "is more traffic than reads alone reach on some hosts: it is given for comparison); "
            "'of roofline' is that time over the measured decode step (prefill excluded, best of the timed calls' "
            "mean step). Tokens/s are timed from prompt to last token, prefill included, weights prepared once per "
            "model. Busy: the device's operations per step in one traced call (XLA:CPU thunks or GPU kernels), "
            "overhead the rest of the step; fastest step: that call's shortest step, what a step takes when nothing "
            "else takes its cores (benchmarks/decode_profile.py)."]
    for g in gen.get("per_model", []):
        if g.get("baseline_error"):
            out.append(f"transformers baseline for {g['model']} not run: {g['baseline_error']}")
    for model, err in (gen.get("errors") or {}).items():
        out.append(f"{model}: generation failed: {err}")
    return out + [""]


def planner_section(result: dict) -> list[str]:
    """How long the planner took over every preset, mode and system; empty when it did not run."""
    pl = result.get("planner") or {}
    if not pl.get("plans"):
        return []
    return ["## Planner speed", "",
            f"{pl['plans']} plans ({len(pl['presets'])} presets x {len(pl['modes'])} modes x {len(pl['systems'])} "
            f"systems, {pl['fits']} fit) in {pl['total_s']:.2f} s; the {pl['published_presets']} published presets "
            f"alone in {pl['published_presets_s']:.2f} s. Slowest: {pl['slowest']['model']} {pl['slowest']['mode']} "
            f"on {pl['slowest']['system']}, {pl['slowest']['plan_seconds']:.3f} s.", ""]


def scaling_section(result: dict) -> list[str]:
    """``scaling_markdown`` when the scaling study ran, else nothing."""
    sc = result.get("scaling")
    return scaling_markdown(sc) if sc else []


def targets_section(result: dict) -> list[str]:
    """One line per target (targets.py): its measured value, met or not, and why."""
    if not result.get("targets"):
        return []
    out = ["## Targets", "", "| target | measured | met | note |", "|---|---|---|---|"]
    for t in result["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        out.append(f"| {t['target']} | {t['value'] if t['value'] is not None else '-'} | {met} | {t['note']} |")
    return out + [""]


def claims_section(result: dict) -> list[str]:
    """The `wse claims` verdicts (claims.py) as a table; empty when absent."""
    if not result.get("claims"):
        return []
    from benchmarks.claims import markdown_table

    return ["## Four claims about Cerebras hardware (`wse claims`)", "", markdown_table({"claims": result["claims"]}), ""]


def _pct(x):
    return None if x is None else 100 * x


def baseline_table(result: dict) -> list[str]:
    """The PyTorch baseline section: one line per model and variant (eager; on a GPU also torch.compile) with its
    tokens/s, our data mode's over it, and both peak device memories."""
    base = result["baseline"]
    where = "same GPU, each variant in its own process" if base.get("subprocess") else "same CPU, same run"
    out = [f"## PyTorch + transformers baseline (same shape, AdamW, {where})", "",
           "| model | variant | batch x seq | torch tokens/s | ours (data mode) tokens/s | ours / torch | "
           "torch peak device memory (MiB) | ours peak est. (MiB) | torch compile (s) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for b in base["rows"]:
        variant = b.get("variant", "eager")
        if b.get("error"):
            out.append(f"| {b['model']} | {variant} | | failed: {b['error']} | | | | | |")
            continue
        out.append(f"| {b['model']} | {variant} | {b['batch_size']}x{b['seq_len']} | {_f(b['tokens_per_s'], ',.0f')} | "
                   f"{_f(b.get('ours_data_tokens_per_s'), ',.0f')} | {_f(b.get('ratio'), '.2f')} | "
                   f"{_mib(b.get('peak_memory_bytes'))} | {_mib(b.get('ours_data_peak_memory_bytes'))} | "
                   f"{_f(b.get('compile_s'), '.1f')} |")
    first = next((b for b in base["rows"] if not b.get("error")), base["rows"][0])
    setup = (f"{first.get('framework', '')}, {first.get('threads', '')} threads, "
             f"attention kernel {first.get('attention', '')}")
    if base.get("subprocess"):
        setup += (f", on one GPU, autocast {first.get('autocast') or 'off'} over float32 master weights, "
                  f"{first.get('optimizer', '')}; torch peak device memory is torch.cuda.max_memory_allocated, "
                  "ours XLA's estimate")
    return out + ["", f"Baseline: {setup}.", ""]


def scaling_markdown(sc: dict) -> list[str]:
    out = ["## Scaling", "", "Simulated weight streaming, sequence length 2048 (strong: published global batch; "
           "weak: published batch per system).", "",
           "| model | system | tokens/s x1 | tokens/s x16 (strong) | strong eff. x16 | weak eff. x16 | hours to train x1 | x16 |",
           "|---|---|---|---|---|---|---|---|"]
    rows = sc["simulated"]["rows"]
    top = max(sc["simulated"]["counts"])
    for r1 in (r for r in rows if r["systems"] == 1):
        r16 = next((r for r in rows if r["model"] == r1["model"] and r["system"] == r1["system"] and r["systems"] == top), None)
        if not r16 or "tokens_per_s" not in r1["strong"] or "tokens_per_s" not in r16["strong"]:
            continue
        weak = r16["weak"].get("efficiency")
        out.append(f"| {r1['model']} | {r1['system']} | {_f(r1['strong']['tokens_per_s'], ',.0f')} | "
                   f"{_f(r16['strong']['tokens_per_s'], ',.0f')} | {_f(r16['strong']['efficiency'], '.2f')} | "
                   f"{_f(weak, '.2f')} | {_f(r1['strong']['time_to_train_s'] / 3600, ',.1f')} | "
                   f"{_f(r16['strong']['time_to_train_s'] / 3600, ',.1f')} |")
    m = sc.get("measured") or {}
    if m.get("rows"):
        out += ["", f"Measured strong scaling, {m['model']} data mode, global batch {m['batch_size']} x {m['seq_len']} "
                "(emulated CPU devices share the host's cores, so the ideal here is flat tokens/s):", "",
                "| devices | tokens/s | speedup vs 1 | efficiency |", "|---|---|---|---|"]
        for r in m["rows"]:
            if "error" in r:
                out.append(f"| {r['devices']} | failed: {r['error']} | | |")
            else:
                out.append(f"| {r['devices']} | {_f(r['tokens_per_s'], ',.0f')} | {_f(r.get('speedup'), '.2f')} | "
                           f"{_f(r.get('efficiency'), '.2f')} |")
    out.append("")
    return out


# ----- files ------------------------------------------------------------------------------------------------------
def write(result: dict, out: Path, final: Path | None = None) -> dict:
    """bench.json, report.md and the plots in ``out``; returns their paths as they will be in ``final`` (default
    ``out``: the folder ``out`` is renamed to once complete)."""
    out.mkdir(parents=True, exist_ok=True)
    final = Path(final) if final is not None else out
    files = {"json": str(final / "bench.json"), "markdown": str(final / "report.md")}
    files["plots"] = [str(final / Path(p).name) for p in plots(result, out)]
    result = {**result, "files": files}
    (out / "report.md").write_text(markdown(result) + "\n", encoding="utf-8")
    (out / "bench.json").write_text(json.dumps(result, indent=1, default=_json_default) + "\n", encoding="utf-8")
    return files


# ----- terminal ---------------------------------------------------------------------------------------------------
def render(result: dict, console) -> None:
    from rich.table import Table

    console.print(f"[bold]{result['device']}[/bold] x {result['devices']} ({result['platform']}), "
                  f"peak matmul {result['peak_matmul_flops'] / 1e9:,.1f} GFLOP/s ({result['dtype']})")
    t = Table(title="training", show_lines=False)
    for col in ("model", "mode", "mesh", "tokens/s", "MFU", "step s", "pred/meas", "link MB/step", "compile s"):
        t.add_column(col, justify="right" if col not in ("model", "mode", "mesh") else "left")
    for r in result["runs"]:
        m = r["mesh"]
        mesh = f"{m['data']}x{m['stage']}x{m['model']}"
        if r.get("error"):
            t.add_row(r["model"], r["mode"], mesh, "[red]failed[/red]", "", "", "", "", "")
            continue
        t.add_row(r["model"], r["mode"], mesh, _f(r["tokens_per_s"], ",.0f"), _f(100 * r["mfu"], ".1f") + "%",
                  _f(r["step_time_s"], ".3f"), _f(r.get("predicted_over_measured"), ".2f"),
                  _link(r.get("link_bytes_per_step")), _f(r["compile_s"], ".1f"))
    if result["runs"]:
        console.print(t)
    for b in (result.get("baseline") or {}).get("rows", []):
        if b.get("ratio") is not None:
            console.print(f"torch baseline {b['model']} ({b.get('variant', 'eager')}): {b['tokens_per_s']:,.0f} "
                          f"tokens/s; ours/torch {b['ratio']:.2f}")
    for g in (result.get("generation") or {}).get("rows", []):
        extra = f", transformers {g['baseline_tokens_per_s']:,.1f} ({g['ratio']:.2f}x)" if "ratio" in g else ""
        if g.get("roofline_fraction") is not None:
            extra += f", decode step {g['step_s'] * 1e3:.2f} ms = {g['roofline_fraction']:.0%} of roofline"
        console.print(f"generation {g['model']} batch {g['batch']}: {g['tokens_per_s']:,.1f} tokens/s{extra}")
    pl = result.get("planner") or {}
    if pl.get("plans"):
        console.print(f"planner: {pl['plans']} plans in {pl['total_s']:.2f} s")
    met = [t for t in result.get("targets", []) if t["met"] is not None]
    if met:
        console.print(f"targets met: {sum(t['met'] for t in met)}/{len(met)} (see report.md)")
    files = result.get("files") or {}
    if files:
        console.print(f"report: {files.get('markdown')}  json: {files.get('json')}")
