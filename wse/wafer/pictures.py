"""Pictures of a plan: where the stages sit on the grid (or how wafer memory rises and falls through a streamed step),
and when things happen (the pipeline schedule, or each layer's compute against its streaming).

Matplotlib is imported inside the functions (with the file-only Agg backend) so that importing wse stays light.
"""

from __future__ import annotations

from pathlib import Path

from wse.plans import Plan
from wse.schedule import makespan, one_f_one_b


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _fmt_time(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def draw_picture(plan: Plan, path: str | Path) -> Path:
    """Pipelined: the grid with each stage's region drawn and labelled. Streaming: wafer memory through a step."""
    return (_regions if plan.mode == "pipelined" else _streaming_memory)(plan, Path(path))


def draw_timeline(plan: Plan, path: str | Path) -> Path:
    """Pipelined: the 1F1B schedule over microbatches. Streaming: per-layer compute versus streaming over a step."""
    return (_pipeline_schedule if plan.mode == "pipelined" else _streaming_timeline)(plan, Path(path))


# A stage's full label (4 lines) goes inside its region only when the region is at least this many text lines tall;
# smaller regions get their stage number alone and the full labels move to a legend beside the grid, so thin stages
# (the demo's 8 stages of `tiny` on a CS-2) never print over each other.
LABEL_LINE_HEIGHT = 1.35  # line spacing in font sizes (matplotlib's default is 1.2, plus the box margins)


def _regions(plan: Plan, path: Path) -> Path:
    plt = _pyplot()
    from matplotlib.patches import Patch, Rectangle

    rows, cols = plan.grid["rows"], plan.grid["cols"]
    height = 7 * rows / cols if cols >= rows else 7
    fontsize = max(5, 9 - len(plan.stages) // 6)
    points_per_row = 0.78 * height * 72 / rows  # the axes take ~78% of the figure's height (title, x label)
    labels = []
    for s, st in enumerate(plan.stages):
        first, last = st.names
        labels.append((f"stage {s}", (f"{first}" + (f" .. {last}" if last != first else "")),
                       f"{_fmt_time(st.time_s)}, {_fmt_bytes(st.memory_bytes_per_core)}/cell"))
    fits = [st.region.rows * points_per_row >= 4 * LABEL_LINE_HEIGHT * fontsize for st in plan.stages]
    legend = not all(fits)
    fig, ax = plt.subplots(figsize=(7 + (4 if legend else 0), height))
    ax.add_patch(Rectangle((0, 0), cols, rows, fill=False, lw=1.5, color="black"))
    cmap = plt.get_cmap("tab20")
    centres = []
    for s, st in enumerate(plan.stages):
        r = st.region
        ax.add_patch(Rectangle((r.col, r.row), r.cols, r.rows, facecolor=cmap(s % 20), edgecolor="black", lw=0.8,
                               alpha=0.85))
        centres.append((r.col + r.cols / 2, r.row + r.rows / 2))
        name, layers, cost = labels[s]
        if fits[s]:
            text = f"{name}\n{layers.replace(' .. ', chr(10) + '..')}\n{cost}"
        else:
            text = str(s) if r.rows * points_per_row >= LABEL_LINE_HEIGHT * fontsize else ""
        if text:
            ax.text(*centres[-1], text, ha="center", va="center", fontsize=fontsize)
    for a, b in zip(centres, centres[1:]):
        ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="->", color="black", lw=1, alpha=0.6))
    if legend:
        handles = [Patch(facecolor=cmap(s % 20), edgecolor="black", label=f"{n}: {l}; {c}")
                   for s, (n, l, c) in enumerate(labels)]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_aspect("equal")
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    ax.set_title(f"{plan.model} on {plan.system}: {len(plan.stages)} stages on a {rows} x {cols} grid\n"
                 f"step {_fmt_time(plan.step_time_s)}, {plan.tokens_per_s:,.0f} tokens/s, "
                 f"utilisation {plan.utilization:.1%}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _streaming_memory(plan: Plan, path: Path) -> Path:
    """Activations pile up layer by layer in the forward pass and are released in the backward pass; the weight
    buffers (current and prefetched layer, one layer of gradients) stay."""
    plt = _pyplot()
    layers = plan.layers
    buffers = plan.memory["weights_bytes"]
    kept = [l.activation_bytes for l in layers]
    total = plan.memory["total_bytes"]
    seq, names, level = [], [], 0.0
    for l, k in zip(layers, kept):
        level += k
        seq.append(level)
        names.append(l.name)
    for l, k in zip(reversed(layers), reversed(kept)):
        seq.append(level)
        level -= k
        names.append(l.name)
    x = list(range(len(seq)))
    fig, ax = plt.subplots(figsize=(max(7, len(seq) * 0.12), 4.5))
    ax.fill_between(x, 0, [buffers / 1e9] * len(x), step="mid", color="tab:orange", alpha=0.7,
                    label="weight + gradient buffers")
    ax.fill_between(x, [buffers / 1e9] * len(x), [(buffers + a) / 1e9 for a in seq], step="mid", color="tab:blue",
                    alpha=0.7, label="activations kept for backward")
    n = len(layers)
    working = plan.memory["activations_bytes"] - sum(kept)  # one layer's internals while it is recomputed
    if plan.details["recompute"] and working > 0:
        top = [(buffers + a) / 1e9 for a in seq]
        ax.fill_between(x[n:], top[n:], [t + working / 1e9 for t in top[n:]], step="mid", color="tab:green",
                        alpha=0.6, label="recompute working set (one layer)")
    ax.axhline(total / 1e9, color="red", ls="--", lw=1, label=f"wafer memory {total / 1e9:.1f} GB")
    ax.axvline(n - 0.5, color="gray", lw=0.8)
    ax.text(n / 2, total / 1e9 * 1.02, "forward", ha="center", fontsize=8)
    ax.text(n * 1.5, total / 1e9 * 1.02, "backward", ha="center", fontsize=8)
    step = max(1, len(x) // 24)
    ax.set_xticks(x[::step])
    ax.set_xticklabels(names[::step], rotation=70, fontsize=6)
    ax.set_ylabel("GB on the wafer")
    ax.set_ylim(0, total / 1e9 * 1.1)
    d = plan.details
    ax.set_title(f"{plan.model} weight streaming on {plan.system}: micro-batch of {d['micro_batch_seqs']} sequences "
                 f"x {plan.seq_len} tokens{', recomputing' if d['recompute'] else ''}", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _pipeline_schedule(plan: Plan, path: Path) -> Path:
    plt = _pyplot()
    M = plan.details["microbatches"]
    fwd = [st.time_s / 3 for st in plan.stages]  # forward ~ 1/3 of a stage's forward + backward
    bwd = [st.time_s * 2 / 3 for st in plan.stages]
    ops = one_f_one_b(fwd, bwd, M)
    span = makespan(ops)
    S = len(plan.stages)
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.45 * S))
    cmap = plt.get_cmap("tab20")
    for kind, alpha in (("F", 0.45), ("B", 0.95)):
        for s in range(S):
            bars = [(op.start * 1e3, (op.end - op.start) * 1e3) for op in ops if op.stage == s and op.kind == kind]
            colors = [cmap(op.microbatch % 20) for op in ops if op.stage == s and op.kind == kind]
            ax.broken_barh(bars, (s - 0.4, 0.8), facecolors=colors, alpha=alpha, edgecolor="none")
    ax.set_yticks(range(S))
    ax.set_yticklabels([f"stage {s}" for s in range(S)])
    ax.invert_yaxis()
    ax.set_xlabel("time (ms); light = forward, dark = backward, colour = microbatch")
    ax.set_title(f"{plan.model} on {plan.system}: 1F1B over {M} microbatches, simulated {_fmt_time(span)} "
                 f"(plan's bound {_fmt_time(plan.step_time_s)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _streaming_timeline(plan: Plan, path: Path) -> Path:
    """One micro-batch: each layer's slot is the longer of its compute and its streaming (the shorter hides)."""
    plt = _pyplot()
    n_micro = plan.details["micro_batches"]
    seq = [(l.name, l.forward_compute_s, l.forward_stream_s) for l in plan.layers]
    seq += [(l.name, l.backward_compute_s, l.backward_stream_s) for l in reversed(plan.layers)]
    fig, ax = plt.subplots(figsize=(11, 3.2))
    t = 0.0
    compute_bars, stream_bars, slots = [], [], []
    for name, c, s in seq:
        c, s = c / n_micro * 1e3, s / n_micro * 1e3
        slot = max(c, s)
        compute_bars.append((t, c))
        stream_bars.append((t, s))
        slots.append((t, slot, name, c >= s))
        t += slot
    ax.broken_barh(compute_bars, (1.05, 0.8), facecolors="tab:blue", edgecolor="white", lw=0.3)
    ax.broken_barh(stream_bars, (0.05, 0.8), facecolors="tab:orange", edgecolor="white", lw=0.3)
    ax.axvline(sum(slot for _, slot, _, _ in slots[:len(plan.layers)]), color="gray", lw=0.8)
    ax.set_yticks([0.45, 1.45])
    ax.set_yticklabels(["streaming\n(weights in,\ngrads out)", "wafer\ncompute"])
    ax.set_xlabel("time in one micro-batch (ms); forward, then backward in reverse layer order")
    stream_bound = sum(1 for *_, compute_bound in slots if not compute_bound)
    ax.set_title(f"{plan.model} weight streaming on {plan.system}: one of {n_micro} micro-batch(es), "
                 f"{stream_bound} of {len(slots)} layer passes streaming-bound", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
