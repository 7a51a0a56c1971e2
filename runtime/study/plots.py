"""The two figures, drawn as the papers draw them (matplotlib, written atomically as PNG).

- ``mup_figure``: the muTransfer figure (Yang et al. 2022, "Tensor Programs V", Fig. 1; EleutherAI/Cerebras
  nanoGPT-mup's ``mutransfer_lr`` plots): final validation loss against learning rate on a log2 axis, one line per
  width (darker = wider), each width's best rate marked, one panel per parametrisation, a shared loss axis.
- ``scaling_figure``: the family's final loss against training compute, log-log, with the fit and its 95% band, the
  held-out size and its prediction; beside it the paper's published family and law (Cerebras-GPT Fig. 2's axes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

TITLES = {"sp": "standard parametrisation (SP)", "mup": "muP (Cerebras-GPT-muP)"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_log_y(ax) -> None:
    """Loss ticks as plain numbers on a log axis (2.0, 2.5 rather than 2 x 10^0)."""
    from matplotlib.ticker import FormatStrFormatter

    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
    ax.tick_params(axis="y", which="minor", labelsize=7)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    _pyplot().close(fig)
    os.replace(tmp, path)
    return path


def mup_figure(sweep: dict, path: Path, caption: str = "", notes: dict | None = None) -> Path:
    """``sweep``: {param: {width: [(lr, loss or None), ...]}} (None: diverged); ``notes``: {param: a line under its
    panel's title}. Writes the PNG at ``path``."""
    plt = _pyplot()
    params = list(sweep)
    widths = sorted({w for p in params for w in sweep[p]})
    colors = plt.get_cmap("viridis")(np.linspace(0.85, 0.05, len(widths)))
    finite = [loss for p in params for w in sweep[p] for _, loss in sweep[p][w] if loss is not None]
    low = min(finite) if finite else 0.0
    top = min(max(finite), low + 1.5) if finite else 1.0
    fig, axes = plt.subplots(1, len(params), figsize=(5.2 * len(params), 4.2), sharey=True, squeeze=False)
    for ax, param in zip(axes[0], params):
        for color, width in zip(colors, widths):
            points = sorted(sweep[param].get(width, []))
            ok = [(lr, loss) for lr, loss in points if loss is not None]
            if ok:
                ax.plot(*zip(*ok), "o-", color=color, markersize=3.5, linewidth=1.4, label=f"{width}")
                best = min(ok, key=lambda t: t[1])
                ax.plot(*best, "o", color="red", markersize=6, zorder=5)
            for lr, loss in points:
                if loss is None:
                    ax.plot(lr, top, "x", color=color, markersize=6)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("peak learning rate" + (" (base rate, hidden matrices at lr / m_w)" if param == "mup" else ""))
        ax.set_title(TITLES.get(param, param) + (f"\n{notes[param]}" if notes and param in notes else ""),
                     fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("final validation loss (nats/token)")
    axes[0][0].set_ylim(low - 0.05 * (top - low) - 0.01, top + 0.05 * (top - low) + 0.01)
    axes[0][0].legend(title="width", fontsize=8, title_fontsize=8)
    if caption:
        fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.04 if caption else 0, 1, 1))
    return _save(fig, path)


def scaling_figure(family: list[dict], fit, held_out: dict, prediction: tuple, paper: dict, path: Path,
                   caption: str = "") -> Path:
    """``family``: the fitted sizes ({"label", "compute", "val_loss"}); ``fit``: the chosen law (callable, with
    ``interval``); ``held_out``: the largest size (its ``val_loss`` None until trained); ``prediction``: (L, low,
    high) at its compute; ``paper``: {"points": {param: [(name, flops, loss)]}, "law": callable}."""
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.3))
    xs = np.array([p["compute"] for p in family] + [held_out["compute"]])
    grid = np.logspace(np.log10(xs.min()) - 0.15, np.log10(xs.max()) + 0.15, 100)
    band = np.array([fit.interval(c)[1:] for c in grid])
    ax.fill_between(grid, band[:, 0], band[:, 1], color="C0", alpha=0.15, label="95% prediction interval")
    ax.plot(grid, fit(grid), "-", color="C0", label="fit to the smaller sizes")
    ax.plot([p["compute"] for p in family], [p["val_loss"] for p in family], "o", color="C0", label="trained, fitted")
    for p in family:
        ax.annotate(p["label"], (p["compute"], p["val_loss"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    mid, lo, hi = prediction
    ax.errorbar([held_out["compute"]], [mid], yerr=[[mid - lo], [hi - mid]], fmt="s", color="C1", capsize=4,
                mfc="none", label="predicted before training")
    if held_out.get("val_loss") is not None:
        ax.plot([held_out["compute"]], [held_out["val_loss"]], "*", color="C3", markersize=11, label="held out: measured")
    ax.annotate(held_out["label"], (held_out["compute"], mid), textcoords="offset points", xytext=(6, -10), fontsize=7)
    ax.set(xscale="log", yscale="log", xlabel="training compute C = 6 N D (FLOPs, N non-embedding)",
           ylabel="final validation loss (nats/token)", title="this study (miniature)")
    ax.grid(alpha=0.3, which="both")
    _plain_log_y(ax)
    ax.legend(fontsize=7)
    _paper_panel(bx, paper)
    if caption:
        fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.04 if caption else 0, 1, 1))
    return _save(fig, path)


def _paper_panel(ax, paper: dict) -> None:
    """The paper's family and its law, on its own axes (another corpus, tokenizer and FLOP count: not comparable
    with this study's losses, only in shape)."""
    flops = [f for pts in paper["points"].values() for _, f, _ in pts]
    grid = np.logspace(np.log10(min(flops)) - 0.3, np.log10(max(flops)) + 0.3, 100)
    ax.plot(grid, paper["law"](grid), "-", color="0.3", label=paper["label"])
    for param, marker in (("sp", "o"), ("mup", "^")):
        pts = paper["points"].get(param, [])
        ax.plot([f for _, f, _ in pts], [l for _, _, l in pts], marker, mfc="none",
                label=f"Cerebras-GPT {'SP' if param == 'sp' else 'muP'}")
    for name, f, loss in paper["points"].get("sp", []):
        ax.annotate(name, (f, loss), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(xscale="log", yscale="log", xlabel="pre-training FLOPs (the paper's algorithmic count)",
           ylabel="Pile test loss (nats/token)", title="the paper (arXiv 2304.03208, Eq. 1, Table 8)")
    ax.grid(alpha=0.3, which="both")
    _plain_log_y(ax)
    ax.legend(fontsize=7)
