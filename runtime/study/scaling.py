"""`wse study scaling`: the compute-optimal scaling law in miniature. A family of sizes is trained at a fixed number of
tokens per parameter (20, as every Cerebras-GPT size), the final loss of all but the largest is fitted against
training compute (runtime.study.fit), the largest is predicted from that fit *before* it is trained (the prediction
is printed and saved in ``prediction.json`` first), then trained, and the prediction's error reported.

What counts: N is the non-embedding parameter count (Kaplan et al. 2020's N: blocks and final norm, not the token or
position tables), D = tokens_per_param x N rounded up to whole steps, and the fitted compute C = 6 N D. Why not the
paper's total parameters: at these sizes the embedding is most of the parameters (2x48: 25K of 81K with the default
512-token vocabulary; 2.4M of 2.5M with GPT-2's), so "20 tokens per parameter" would mostly count table rows that
cost one lookup per token, and the family would not be compute-optimal in any sense; Kaplan et al. found the laws
cleanest in non-embedding N. Each point also records the paper's algorithmic FLOPs (its Appendix F convention:
model.config.GPTConfig.flops_per_token_paper) and 6 x total parameters x D, for comparison.
"""

from __future__ import annotations

import json
import math

from runtime.study.sweep import Point, model_fields

PREDICTION_FILE = "prediction.json"
# More passes over the data than this bend the law (repeated tokens are worth less: Muennighoff et al. 2023 measured
# up to ~4 epochs as nearly as good as fresh data), so the study warns.
MAX_EPOCHS = 4.0


def family(settings, vocab: int) -> list[Point]:
    """The sizes, in the given order, each with its tokens, steps and compute in ``info``."""
    from model.config import build_config

    out = []
    per_step = settings.batch_size * settings.seq_len
    for layers, width in settings.layer_widths():
        label = f"{layers}x{width}"
        fields = model_fields(f"{settings.param}-{label}", layers, width, settings.d_head, vocab, settings.seq_len,
                              settings.param)
        cfg = build_config(fields)
        n = cfg.non_embedding_parameters
        steps = max(1, math.ceil(settings.tokens_per_param * n / per_step))
        tokens = steps * per_step
        info = {"label": [f"{label:<6}", f"N {n:>9,}", f"D {tokens:>11,}"], "size": label, "non_embedding": n,
                "parameters": cfg.parameters, "tokens": tokens, "compute": 6.0 * n * tokens,
                "compute_6n_total": 6.0 * cfg.parameters * tokens,
                "compute_paper": cfg.flops_per_token_paper(settings.seq_len) * tokens}
        out.append(Point(f"{settings.param}-{label}", fields, steps, settings.lr, info))
    return out


def predict(out, fitted: list, held: Point) -> dict:
    """The fit of the trained sizes and its prediction for the held-out size, made now and saved, or the one saved
    by an earlier run of this study (made before the held-out size was trained, which is the point of it)."""
    from runtime.study import fit, workdir

    path = out / PREDICTION_FILE
    compute = [o.point.info["compute"] for o in fitted]
    losses = [o.val_loss for o in fitted]
    chosen = fit.choose_fit(compute, losses)
    mid, low, high = chosen["law"].interval(held.info["compute"])
    made = {"size": held.info["size"], "compute": held.info["compute"], "loss": mid, "low": low, "high": high,
            "confidence": fit.CONFIDENCE, "fit": chosen["chosen"], "fitted_sizes": [o.point.info["size"] for o in fitted]}
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("fitted_sizes") == made["fitted_sizes"] and saved.get("compute") == made["compute"]:
            return {**chosen, "prediction": saved}
    workdir.write_json(path, made)
    return {**chosen, "prediction": made}


def epoch_warning(points: list[Point], train_tokens: int) -> str | None:
    """A warning when the largest size would see the data more than MAX_EPOCHS times."""
    epochs = points[-1].info["tokens"] / train_tokens
    if epochs <= MAX_EPOCHS:
        return None
    return (f"the largest size trains on {points[-1].info['tokens']:,} tokens, {epochs:.1f} passes over the data's "
            f"{train_tokens:,}: repeated tokens bend the law; give data= with at least "
            f"{points[-1].info['tokens'] / MAX_EPOCHS:,.0f} tokens")


def error_of(prediction: dict, measured: float | None) -> dict:
    """The held-out prediction beside the measurement: relative error and whether the interval holds it."""
    if measured is None:
        return {"measured": None, "error": None, "within_interval": None}
    return {"measured": measured, "error": (measured - prediction["loss"]) / prediction["loss"],
            "within_interval": prediction["low"] <= measured <= prediction["high"]}


def paper_reference() -> dict:
    """The paper's law and family as the figure and the result show them, with the law's local exponent over the
    family (what a pure power law fitted there would find)."""
    from runtime.study import fit

    flops = [f for _, f, _ in fit.PAPER_POINTS["sp"]]
    return {**fit.PAPER_LAW, "points": fit.PAPER_POINTS,
            "local_exponent": [fit.paper_local_exponent(flops[0]), fit.paper_local_exponent(flops[-1])]}


def run(settings, out, *, quick: bool, say) -> dict:
    """The whole study in ``out`` (already opened): the data, the family but its largest size, the fit and the
    prediction (printed first), the largest size, the error, the figure ``scaling.png``, the full-scale costs."""
    import time

    from runtime.study import costs, fit, plots, vocabulary, workdir
    from runtime.study.sweep import Sweep

    t0, c0, before = time.perf_counter(), time.process_time(), workdir.machine()
    data = vocabulary.prepare(settings.data, settings.vocab, out)
    sizes = family(settings, data.vocab_size)
    say(f"data: {data.line()}")
    say(f"{len(sizes)} sizes in {settings.param} at {settings.tokens_per_param:g} tokens per non-embedding parameter, "
        f"peak lr {settings.lr:g}, batches of {settings.batch_size} x {settings.seq_len}; the largest "
        f"({sizes[-1].info['size']}) is held out")
    warning = epoch_warning(sizes, data.train_tokens)
    if warning:
        say(f"warning: {warning}")
    sweep = Sweep(out, data, settings)
    fitted = sweep.run(sizes[:-1], total=len(sizes))
    usable = [o for o in fitted if o.val_loss is not None]
    if len(usable) < 3:
        from runtime.errors import UserError

        raise UserError(f"only {len(usable)} of the smaller sizes trained to a finite loss; a fit needs 3: lower lr")
    law = predict(out, usable, sizes[-1])
    p = law["prediction"]
    say(f"prediction for {p['size']} before training it ({law['chosen']} fit to {len(usable)} sizes): loss "
        f"{p['loss']:.4f}, {p['confidence']:.0%} interval [{p['low']:.4f}, {p['high']:.4f}]")
    held = sweep.run(sizes[-1:], first=len(sizes), total=len(sizes))[0]
    err = error_of(p, held.val_loss)
    if err["error"] is not None:
        say(f"measured {held.val_loss:.4f}: {100 * err['error']:+.2f}% from the prediction "
            f"({'inside' if err['within_interval'] else 'outside'} the interval)")
    points = [{"label": o.point.info["size"], "compute": o.point.info["compute"], "val_loss": o.val_loss}
              for o in usable]
    held_pt = {"label": sizes[-1].info["size"], "compute": sizes[-1].info["compute"], "val_loss": held.val_loss}
    caption = (f"{settings.param}, {settings.tokens_per_param:g} tokens per non-embedding parameter, peak lr "
               f"{settings.lr:g}, {data.source} ({data.vocab_size}-token vocabulary); {before['cpu']} "
               f"({before['cores']} cores), {before['time']}")
    paper = {"points": fit.PAPER_POINTS, "law": fit.paper_loss, "label": f"{fit.PAPER_LAW['form']} (paper Eq. 1)"}
    figure = plots.scaling_figure(points, law["law"], held_pt, (p["loss"], p["low"], p["high"]), paper,
                                  out / "scaling.png", caption=caption)
    outcomes = fitted + [held]
    result = {
        "study": "scaling", "quick": quick, "settings": settings.model_dump(), "data": data.describe(),
        "points": [o.describe() for o in outcomes], "warning": warning,
        "fit": {k: v for k, v in law.items() if k not in ("law", "prediction")}, "prediction": p,
        "held_out": err, "paper": paper_reference(), "figure": str(figure), "costs": costs.family_costs(),
        "machine": {**before, "device": workdir.accelerator(), "load_at_end": workdir.machine().get("load_1_5_15")},
        "trained": sum(o.status == "trained" for o in outcomes), "reused": sum(o.status == "reused" for o in outcomes),
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0, "out": str(out),
    }
    workdir.write_json(out / workdir.RESULT_FILE, result)
    return result
