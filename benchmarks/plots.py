"""The bench's PNG plots: training throughput and prediction against measurement, generation against transformers,
and the scaling study. Matplotlib's Agg backend (no display needed), imported only when a plot is drawn.
"""

from __future__ import annotations

from pathlib import Path


def plots(result: dict, out: Path) -> list[str]:
    """training.png, generation.png and scaling.png in ``out``, each for a part of the bench that ran; their paths."""
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
        written.append(generation_plot(gen, out / "generation.png", plt))
    if result.get("scaling"):
        written.append(scaling_plot(result["scaling"], out / "scaling.png", plt))
    return written


def generation_plot(gen: dict, path, plt):
    """Per (model, batch): tokens/s against transformers (log scale), and the decode step's share of the roofline."""
    rows = gen["rows"]
    fig, (ax, rf) = plt.subplots(1, 2, figsize=(10, 4))
    xs = range(len(rows))
    labels = [f"{g['model']}\nbatch {g['batch']}" for g in rows]
    ax.bar([x - 0.2 for x in xs], [g["tokens_per_s"] for g in rows], 0.4, label="ours (JAX, KV cache)")
    ax.bar([x + 0.2 for x in xs], [g.get("baseline_tokens_per_s") or 0 for g in rows], 0.4,
           label="transformers generate")
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("generated tokens/s (prefill included)")
    ax.set_title(f"generation, {gen.get('dtype', 'float32')}")
    ax.legend(fontsize=8)
    rf.bar(list(xs), [100 * (g.get("roofline_fraction") or 0) for g in rows], 0.5)
    rf.axhline(70, color="grey", linestyle="--", linewidth=1)
    rf.set_xticks(list(xs), labels, fontsize=8)
    rf.set_ylabel("decode step: % of the bandwidth roofline")
    rf.set_title("decode step against the roofline")
    fig.tight_layout()
    return _save(fig, path)


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
