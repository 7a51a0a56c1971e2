"""`wse study mup`: the muTransfer result in miniature. Models of several widths at one depth are trained at every
rate of a learning-rate grid, in standard parametrisation and in muP, on the same tokens; the study reports each
width's best rate and loss in both, how far the best rate drifts across widths, and what using the narrowest model's
best rate (the proxy's) at every width costs in loss: near zero under muP is the paper's claim.

Measures, per parametrisation (``summarise``):
- ``best``: per width, the grid's best rate and loss, and a finer estimate of the optimum: the vertex of the parabola
  in log2(rate) through the best grid point and its two neighbours (None when the best is at the grid's edge, where
  the optimum may lie outside the grid: then the drift is a bound, and ``at_edge`` says so);
- ``drift``: log2 of (best rate at the widest / best rate at the narrowest), on the grid and from the vertices
  (0: the rate transfers; -3: the widest wants 8x less), and the spread (max / min over all widths);
- ``transfer_penalty``: per width, its loss at the narrowest width's best rate minus its own best loss.
"""

from __future__ import annotations

import math

from runtime.study.sweep import Outcome, Point, lr_label, model_fields


def points(settings, vocab: int) -> list[Point]:
    """Every (width, parametrisation, rate), grouped so that one width and parametrisation's rates run back to back
    (they share one compiled step)."""
    out = []
    for width in settings.widths:
        for param in settings.params:
            name = f"{param}-w{width}"
            model = model_fields(name, settings.layers, width, settings.d_head, vocab, settings.seq_len, param)
            for lr in settings.lrs:
                out.append(Point(f"{name}-{lr_label(lr)}", model, settings.steps, lr,
                                 {"param": param, "width": width, "label": [f"{param:<3}", f"w{width:<5}", f"{lr_label(lr):<9}"]}))
    return out


def losses_by_width(outcomes: list[Outcome]) -> dict:
    """{param: {width: [(lr, val loss or None)]}} (what the figure draws)."""
    table: dict = {}
    for o in outcomes:
        table.setdefault(o.point.info["param"], {}).setdefault(o.point.info["width"], []).append(
            (o.point.lr, o.val_loss))
    return table


def vertex(lrs: list[float], losses: list[float | None], i: int) -> float | None:
    """The rate at the vertex of the parabola through (log2 lr, loss) at i - 1, i, i + 1, when i is interior, its
    neighbours are finite and the parabola opens upward; None otherwise."""
    if i == 0 or i == len(lrs) - 1 or losses[i - 1] is None or losses[i + 1] is None:
        return None
    x = [math.log2(lrs[j]) for j in (i - 1, i, i + 1)]
    y = [losses[j] for j in (i - 1, i, i + 1)]
    d1, d2 = (y[1] - y[0]) / (x[1] - x[0]), (y[2] - y[1]) / (x[2] - x[1])
    curvature = (d2 - d1) / (x[2] - x[0])
    if curvature <= 0:
        return None
    vx = (x[0] + x[1]) / 2 - d1 / (2 * curvature)
    return 2.0 ** min(max(vx, x[0]), x[2])


def best_per_width(curves: dict) -> dict:
    """{width: {"lr", "loss", "lr_vertex", "at_edge"}} of one parametrisation (widths with no finite point left out)."""
    best = {}
    for width, pts in sorted(curves.items()):
        pts = sorted(pts)
        lrs, losses = [lr for lr, _ in pts], [loss for _, loss in pts]
        finite = [j for j, loss in enumerate(losses) if loss is not None]
        if not finite:
            continue
        i = min(finite, key=lambda j: losses[j])
        best[width] = {"lr": lrs[i], "loss": losses[i], "lr_vertex": vertex(lrs, losses, i),
                       "at_edge": i in (0, len(lrs) - 1)}
    return best


def summarise(outcomes: list[Outcome]) -> dict:
    """The study's measures per parametrisation (see the module doc)."""
    out = {}
    for param, curves in losses_by_width(outcomes).items():
        best = best_per_width(curves)
        if len(best) < 2:
            out[param] = {"best": best, "drift": None, "transfer_penalty": {}}
            continue
        widths = sorted(best)
        narrow, wide = best[widths[0]], best[widths[-1]]
        grid = [math.log2(best[w]["lr"]) for w in widths]
        vertices = [best[w]["lr_vertex"] for w in widths]
        drift = {"log2_grid": math.log2(wide["lr"] / narrow["lr"]), "spread_grid": 2 ** (max(grid) - min(grid)),
                 "log2_vertex": (math.log2(vertices[-1] / vertices[0]) if None not in (vertices[0], vertices[-1])
                                 else None),
                 "bound_only": any(best[w]["at_edge"] for w in widths)}
        at_proxy = {w: dict(curves[w]).get(narrow["lr"]) for w in widths}  # each width's loss at the proxy's rate
        penalty = {w: None if at_proxy[w] is None else at_proxy[w] - best[w]["loss"] for w in widths}
        out[param] = {"best": best, "drift": drift, "transfer_penalty": penalty}
    return out


def drift_notes(summary: dict) -> dict:
    """{param: "best rate 2^-7 at width 32, 2^-9 at width 256"} (matplotlib math text) for the panels' titles."""
    notes = {}
    for param, s in summary.items():
        if s["drift"]:
            widths = sorted(s["best"])
            lo, hi = s["best"][widths[0]]["lr"], s["best"][widths[-1]]["lr"]
            notes[param] = (f"best rate $2^{{{math.log2(lo):.0f}}}$ at width {widths[0]}, "
                            f"$2^{{{math.log2(hi):.0f}}}$ at width {widths[-1]}")
    return notes


def summary_lines(summary: dict) -> list[str]:
    """The measures as text, one line per width and a drift line per parametrisation."""
    lines = []
    for param, s in summary.items():
        lines.append(f"{param}: best learning rate per width (grid; parabola vertex), loss, and the loss lost at the "
                     f"narrowest width's best rate")
        for width, b in s["best"].items():
            v = f"{b['lr_vertex']:.2e}" if b["lr_vertex"] else "edge" if b["at_edge"] else "-"
            pen = s["transfer_penalty"].get(width)
            lines.append(f"  width {width:>5}: lr {b['lr']:.2e} ({v})  loss {b['loss']:.4f}"
                         + (f"  penalty {pen:+.4f}" if pen is not None else "  penalty n/a (diverged)"))
        d = s["drift"]
        if d:
            vx = f", {d['log2_vertex']:+.2f} from the vertices" if d["log2_vertex"] is not None else ""
            lines.append(f"  drift of the best rate, narrowest -> widest: {d['log2_grid']:+.0f} octaves on the grid"
                         f"{vx}; spread over widths {d['spread_grid']:.0f}x"
                         + (" (a best rate sits at the grid's edge: a bound)" if d["bound_only"] else ""))
    return lines


def run(settings, out, *, quick: bool, say) -> dict:
    """The whole study in ``out`` (runtime.study.workdir, already opened): the data, every point (trained or read
    back), the measures, the figure ``mup.png``, the full-scale costs; the result (also ``study.json``)."""
    import time

    from runtime.study import costs, plots, vocabulary, workdir
    from runtime.study.sweep import Sweep

    t0, c0, before = time.perf_counter(), time.process_time(), workdir.machine()
    data = vocabulary.prepare(settings.data, settings.vocab, out)
    grid = points(settings, data.vocab_size)
    tokens = settings.steps * settings.batch_size * settings.seq_len
    say(f"data: {data.line()}")
    say(f"{len(grid)} points: widths {settings.widths} x {len(settings.lrs)} rates x {settings.params}, "
        f"{settings.layers} layers; each {settings.steps} steps of {settings.batch_size} x {settings.seq_len} tokens "
        f"({tokens:,} tokens, {tokens / data.train_tokens:.2f} epochs)")
    outcomes = Sweep(out, data, settings).run(grid)
    summary = summarise(outcomes)
    caption = (f"{settings.layers} layers, widths {settings.widths[0]}-{settings.widths[-1]}, {settings.steps} steps "
               f"of {settings.batch_size}x{settings.seq_len} tokens of {data.source} ({data.vocab_size}-token "
               f"vocabulary); red: each width's best rate. {before['cpu']} ({before['cores']} cores), {before['time']}")
    figure = plots.mup_figure(losses_by_width(outcomes), out / "mup.png", caption=caption, notes=drift_notes(summary))
    result = {
        "study": "mup", "quick": quick, "settings": settings.model_dump(), "data": data.describe(),
        "points": [o.describe() for o in outcomes], "summary": summary, "figure": str(figure),
        "costs": costs.family_costs(costs.SP_FAMILY + costs.MUP_FAMILY),
        "machine": {**before, "device": workdir.accelerator(), "load_at_end": workdir.machine().get("load_1_5_15")},
        "trained": sum(o.status == "trained" for o in outcomes), "reused": sum(o.status == "reused" for o in outcomes),
        "diverged": sum(o.status == "diverged" for o in outcomes), "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "out": str(out),
    }
    workdir.write_json(out / workdir.RESULT_FILE, result)
    return result
