"""Writing a bench result: ``bench.json``, ``report.md`` and PNG plots in the output folder, and the terminal table.

The Markdown is what the README's Performance section quotes: machine, date, command, then the tables. Plots use
Matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path


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
             "predicted/measured | compile (s) | device peak est. (MiB) | process RSS (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        mesh = r["mesh"]
        shape = f"{mesh['data']}x{mesh['stage']}x{mesh['model']}"
        if r.get("error"):
            lines.append(f"| {r['model']} | {r['mode']} | {shape} | {r['batch_size']}x{r['seq_len']} | - | "
                         f"failed: {r['error']} |  |  |  |  |  |  |  |")
            continue
        mem = r.get("memory") or {}
        lines.append(
            f"| {r['model']} | {r['mode']} | {shape} | {r['batch_size']}x{r['seq_len']} | {_remat(r)} | "
            f"{_f(r['step_time_s'], '.3f')} | "
            f"{_f(r['tokens_per_s'], ',.0f')} | {_f(100 * r['mfu'], '.1f')}% | {_f(100 * r['mfu_algorithmic'], '.1f')}% | "
            f"{_f(r.get('predicted_over_measured'), '.2f')} | {_f(r['compile_s'], '.1f')} | "
            f"{_mib(mem.get('peak_estimate'))} | {_mib(mem.get('process_peak_rss'))} |")
    return lines


def _remat(row: dict) -> str:
    """The remat policy and attention kernel, the policy marked 'auto' when the plan chose it (not --remat)."""
    if row.get("remat") is None:
        return "-"
    auto = " (auto)" if row.get("remat_requested") == "auto" else ""
    return f"{row['remat']}{auto}, {row.get('attention', 'xla')}"


def markdown(result: dict) -> str:
    env, c = result["environment"], result["ceilings"]
    out = [
        "# wse bench report", "",
        f"- machine: {env['device']}, {env['host_cores']} cores visible, backend {env['backend']} "
        f"({result['devices']} devices), JAX {env['jax']}, Python {env['python']}",
        f"- date: {env['date']}; load average at start {', '.join(f'{x:.1f}' for x in env['load_average_start'])}"
        + (f", at end {', '.join(f'{x:.1f}' for x in env['load_average_end'])}" if env.get("load_average_end") else ""),
        f"- command: `{env['command']}`; compute dtype {result['dtype']}; {'quick' if result['quick'] else 'full'} sizes",
        f"- wall time {_f(result.get('wall_s'), ',.0f')} s, process CPU time {_f(result.get('cpu_s'), ',.0f')} s "
        f"({env['host_cores']} cores: a run that had the machine to itself uses up to {env['host_cores']} CPU-seconds "
        "per second)",
        "",
        "## Device ceilings", "",
        "| matmul float32 | matmul bfloat16 | memory copy | method |", "|---|---|---|---|",
        f"| {_f(c['matmul_flops']['float32'] / 1e9)} GFLOP/s | {_f(c['matmul_flops']['bfloat16'] / 1e9)} GFLOP/s | "
        f"{_f(c['copy_bytes_per_s'] / 1e9)} GB/s | {c['method']} |",
        "",
        f"MFU is model FLOP/s over {_f(result['peak_matmul_flops'] / 1e9)} GFLOP/s ({result['peak_source']}).",
        "",
        "## Training", "",
        *training_table(result), "",
        "Step time: median of the timed steps after warm-up and compile. MFU 6N: 6 x parameters x tokens/s; MFU alg.: "
        "the Cerebras-GPT algorithmic count (attention at the run's sequence length and the logit matmul). "
        "predicted/measured: the wse cost model over a device grid with the measured ceilings (benchmarks/predict.py). "
        "Device peak est.: XLA memory_analysis argument + output + temp - alias, per device. remat: the policy by "
        "which the backward pass recomputed activations (none, dots, full; auto: the plan's choice by memory, with its "
        "reason in bench.json), and the attention kernel (xla, or cuDNN's flash kernel).",
        "",
    ]
    over = [r for r in result["runs"] if r.get("vs_data")]
    if over:
        out += ["### Pipelined and streaming against data mode (same devices)", "",
                "| model | mode | step vs data | overhead share of step | predicted bubble | allowed (bubble + 20%) |",
                "|---|---|---|---|---|---|"]
        for r in over:
            v = r["vs_data"]
            out.append(f"| {r['model']} | {r['mode']} | {v['step_time_ratio']:.2f}x | {v['overhead_fraction']:.0%} | "
                       f"{v['predicted_bubble']:.0%} | {v['allowed_overhead']:.0%} |")
        out.append("")
    base = result.get("baseline") or {}
    if base.get("rows"):
        out += baseline_table(result)
    gen = result.get("generation") or {}
    if gen.get("rows"):
        out += [f"## Generation ({gen['model']}, {gen.get('dtype', 'float32')}, greedy, KV cache)", "",
                "| batch | prompt + new | ours tokens/s | transformers tokens/s | ours / transformers | roofline tokens/s | "
                "of roofline | our compile (s) |", "|---|---|---|---|---|---|---|---|"]
        for g in gen["rows"]:
            out.append(f"| {g['batch']} | {g['prompt_len']} + {g['new_tokens']} | {_f(g['tokens_per_s'])} | "
                       f"{_f(g.get('baseline_tokens_per_s'))} | {_f(g.get('ratio'), '.2f')} | "
                       f"{_f(g.get('roofline_tokens_per_s'), ',.0f')} | {_f(_pct(g.get('roofline_fraction')), '.1f')}% | "
                       f"{_f(g['compile_s'], '.1f')} |")
        if gen.get("bandwidth_bytes_per_s"):
            out.append("")
            out.append(f"Roofline: batch x {_f(gen['bandwidth_bytes_per_s'] / 1e9)} GB/s (measured copy bandwidth) / "
                       f"{_f(gen['weight_bytes'] / 1e6)} MB of {gen['dtype']} weights read once per decode step "
                       "(KV cache and activations left out: an upper bound, tightest at batch 1). Timed from prompt "
                       "to last token, prefill included.")
        if gen.get("baseline_error"):
            out.append(f"transformers baseline not run: {gen['baseline_error']}")
        out.append("")
    pl = result.get("planner") or {}
    if pl.get("plans"):
        out += ["## Planner speed", "",
                f"{pl['plans']} plans ({len(pl['presets'])} presets x {len(pl['modes'])} modes x {len(pl['systems'])} "
                f"systems, {pl['fits']} fit) in {pl['total_s']:.2f} s; the {pl['published_presets']} published presets "
                f"alone in {pl['published_presets_s']:.2f} s. Slowest: {pl['slowest']['model']} {pl['slowest']['mode']} "
                f"on {pl['slowest']['system']}, {pl['slowest']['plan_seconds']:.3f} s.", ""]
    sc = result.get("scaling")
    if sc:
        out += scaling_markdown(sc)
    if result.get("targets"):
        out += ["## Targets", "", "| target | measured | met | note |", "|---|---|---|---|"]
        for t in result["targets"]:
            met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
            out.append(f"| {t['target']} | {t['value'] if t['value'] is not None else '-'} | {met} | {t['note']} |")
        out.append("")
    if result.get("claims"):
        from benchmarks.claims import markdown_table

        out += ["## Four claims about Cerebras hardware (`wse claims`)", "", markdown_table({"claims": result["claims"]}), ""]
    return "\n".join(out)


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


# ----- plots ------------------------------------------------------------------------------------------------------
def plots(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    runs = [r for r in result["runs"] if r.get("step_time_s")]
    if runs:
        fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
        labels = [f"{r['model']}\n{r['mode']}" for r in runs]
        a.bar(range(len(runs)), [r["tokens_per_s"] for r in runs], color=[_mode_color(r["mode"]) for r in runs])
        for b_row in (result.get("baseline") or {}).get("rows", []):
            if b_row.get("tokens_per_s"):
                idx = [i for i, r in enumerate(runs) if r["model"] == b_row["model"]]
                if idx:
                    a.hlines(b_row["tokens_per_s"], min(idx) - 0.4, max(idx) + 0.4, colors="k", linestyles="--")
        a.set_xticks(range(len(runs)), labels, fontsize=8)
        a.set_ylabel("tokens/s")
        a.set_yscale("log")
        a.set_title("training throughput (dashed: PyTorch + transformers)")
        pred = [r for r in runs if r.get("predicted_step_time_s")]
        if pred:
            xs = [r["step_time_s"] for r in pred]
            ys = [r["predicted_step_time_s"] for r in pred]
            lo, hi = min(xs + ys) * 0.5, max(xs + ys) * 2
            b.plot([lo, hi], [lo, hi], "k-", lw=0.8)
            b.fill_between([lo, hi], [0.75 * lo, 0.75 * hi], [1.33 * lo, 1.33 * hi], color="0.85")
            for r, x, y in zip(pred, xs, ys):
                b.scatter(x, y, color=_mode_color(r["mode"]))
                b.annotate(f"{r['model']} {r['mode'][:4]}", (x, y), fontsize=7)
            b.set_xscale("log")
            b.set_yscale("log")
            b.set_xlabel("measured step time (s)")
            b.set_ylabel("predicted step time (s)")
            b.set_title("prediction vs measurement (band: 0.75-1.33)")
        fig.tight_layout()
        written.append(_save(fig, out / "training.png"))
    gen = result.get("generation") or {}
    if gen.get("rows"):
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = range(len(gen["rows"]))
        ax.bar([x - 0.2 for x in xs], [g["tokens_per_s"] for g in gen["rows"]], 0.4, label="ours (JAX, KV cache)")
        ax.bar([x + 0.2 for x in xs], [g.get("baseline_tokens_per_s") or 0 for g in gen["rows"]], 0.4,
               label="transformers generate")
        ax.set_xticks(list(xs), [f"batch {g['batch']}" for g in gen["rows"]])
        ax.set_ylabel("generated tokens/s")
        ax.set_title(f"generation, {gen['model']}")
        ax.legend()
        fig.tight_layout()
        written.append(_save(fig, out / "generation.png"))
    if result.get("scaling"):
        written.append(scaling_plot(result["scaling"], out / "scaling.png", plt))
    return written


def scaling_plot(sc: dict, path: Path, plt) -> str:
    """Top: simulated efficiency per system (strong solid, weak dashed) and measured CPU tokens/s; bottom: simulated
    time to train (strong scaling) and the measured speedup."""
    rows = sc["simulated"]["rows"]
    systems = list(dict.fromkeys(r["system"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(2, len(systems) + 1, figsize=(5 * (len(systems) + 1), 8), squeeze=False)
    for col, name in enumerate(systems):
        eff, ttt = axes[0][col], axes[1][col]
        for i, model in enumerate(models):
            pts = [r for r in rows if r["system"] == name and r["model"] == model]
            c = colors[i % len(colors)]
            for kind, style in (("strong", "o-"), ("weak", "x--")):
                ok = [p for p in pts if p[kind].get("efficiency") is not None]
                eff.plot([p["systems"] for p in ok], [p[kind]["efficiency"] for p in ok], style, color=c,
                         label=model if kind == "strong" else None)
            ok = [p for p in pts if "time_to_train_s" in p["strong"]]
            ttt.plot([p["systems"] for p in ok], [p["strong"]["time_to_train_s"] / 86400 for p in ok], "o-", color=c,
                     label=model)
        eff.set_title(f"simulated {name}: efficiency (strong -, weak --)")
        eff.set_ylim(0, 1.05)
        ttt.set_title(f"simulated {name}: days to train (Chinchilla)")
        ttt.set_yscale("log")
        for ax in (eff, ttt):
            ax.set_xscale("log", base=2)
            ax.set_xlabel(f"{name} systems")
        eff.legend(fontsize=7)
    m = sc.get("measured") or {}
    pts = [r for r in m.get("rows", []) if "tokens_per_s" in r]
    tps, spd = axes[0][-1], axes[1][-1]
    if pts:
        name = Path(m["model"]).stem if ("/" in m["model"] or m["model"].endswith((".json", ".yaml"))) else m["model"]
        tps.plot([p["devices"] for p in pts], [p["tokens_per_s"] for p in pts], "o-")
        tps.set_title(f"measured {name}, data mode: tokens/s")
        spd.plot([p["devices"] for p in pts], [p["speedup"] for p in pts], "o-", label="measured")
        spd.plot([p["devices"] for p in pts], [1.0] * len(pts), "k--", lw=0.8, label="ideal on shared cores")
        spd.set_title("measured speedup vs 1 device")
        spd.legend(fontsize=7)
        for ax in (tps, spd):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("emulated CPU devices")
    else:
        tps.set_visible(False)
        spd.set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def _mode_color(mode: str) -> str:
    return {"data": "tab:blue", "pipelined": "tab:orange", "streaming": "tab:green"}.get(mode, "tab:gray")


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def write(result: dict, out: Path) -> dict:
    """bench.json, report.md and the plots in ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "bench.json"), "markdown": str(out / "report.md")}
    files["plots"] = plots(result, out)
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
    for col in ("model", "mode", "mesh", "tokens/s", "MFU", "step s", "pred/meas", "compile s"):
        t.add_column(col, justify="right" if col not in ("model", "mode", "mesh") else "left")
    for r in result["runs"]:
        m = r["mesh"]
        mesh = f"{m['data']}x{m['stage']}x{m['model']}"
        if r.get("error"):
            t.add_row(r["model"], r["mode"], mesh, "[red]failed[/red]", "", "", "", "")
            continue
        t.add_row(r["model"], r["mode"], mesh, _f(r["tokens_per_s"], ",.0f"), _f(100 * r["mfu"], ".1f") + "%",
                  _f(r["step_time_s"], ".3f"), _f(r.get("predicted_over_measured"), ".2f"), _f(r["compile_s"], ".1f"))
    console.print(t)
    for b in (result.get("baseline") or {}).get("rows", []):
        if b.get("ratio") is not None:
            console.print(f"torch baseline {b['model']} ({b.get('variant', 'eager')}): {b['tokens_per_s']:,.0f} "
                          f"tokens/s; ours/torch {b['ratio']:.2f}")
    for g in (result.get("generation") or {}).get("rows", []):
        extra = f", transformers {g['baseline_tokens_per_s']:,.1f} ({g['ratio']:.2f}x)" if "ratio" in g else ""
        if g.get("roofline_fraction") is not None:
            extra += f", {g['roofline_fraction']:.0%} of roofline"
        console.print(f"generation batch {g['batch']}: {g['tokens_per_s']:,.1f} tokens/s{extra}")
    pl = result.get("planner") or {}
    if pl.get("plans"):
        console.print(f"planner: {pl['plans']} plans in {pl['total_s']:.2f} s")
    met = [t for t in result.get("targets", []) if t["met"] is not None]
    if met:
        console.print(f"targets met: {sum(t['met'] for t in met)}/{len(met)} (see report.md)")
    files = result.get("files") or {}
    if files:
        console.print(f"report: {files.get('markdown')}  json: {files.get('json')}")
