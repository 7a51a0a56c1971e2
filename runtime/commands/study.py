"""`wse study mup|scaling [--quick] [--out DIR] [KEY=VALUE ...]`: the Cerebras-GPT paper's two results in miniature.

``mup``: widths x learning rates in SP and muP (the muTransfer figure, the drift of the best rate); ``scaling``: a
family at 20 tokens per parameter, a power law of loss against compute, the largest size predicted before it is
trained. Both train every point with the ordinary trainer in its own run dir under ``--out`` (running the same
command again resumes and reuses finished points), write ``study.json`` and a PNG, and print what the paper's full
family would cost on CS-2 systems and H100s (`wse plan`'s numbers). The defaults are sized for one GPU; ``--quick``
for two CPU cores in about 10 minutes each (runtime/study/settings.py). Settings are checked before JAX starts.
"""

from __future__ import annotations

HELP = ("the Cerebras-GPT paper's results in miniature: muTransfer (study mup) and the compute scaling law (study "
        "scaling); --quick fits two CPU cores")
QUICK_NOTE = ("--quick: sized for 2 CPU cores, about 10 minutes each (measured on an otherwise idle 2-core EPYC: mup "
              "7.6, scaling 5.8 minutes; docs/study.md); a loaded machine takes longer, and each point's time is "
              "printed; the defaults are the full study for a GPU")


def add_arguments(parser) -> None:
    import argparse

    from runtime.study.settings import KINDS, MupSettings, ScalingSettings, preset_text

    parser.add_argument("kind", choices=KINDS, help="mup: learning rate x width in SP and muP; scaling: loss vs compute")
    parser.add_argument("--quick", action="store_true", help="the preset for 2 CPU cores (about 10 minutes)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="the study's directory (default runs/study-<kind>[-quick]); the same command resumes it")
    shared = [k for k in MupSettings.model_fields if k in ScalingSettings.model_fields]
    parser.add_argument("settings", nargs="*", metavar="KEY=VALUE",
                        help=f"settings over the preset: shared {', '.join(shared)}; mup "
                             f"{', '.join(k for k in MupSettings.model_fields if k not in shared)}; scaling "
                             f"{', '.join(k for k in ScalingSettings.model_fields if k not in shared)} "
                             "(lists comma-separated: widths=32,64,128)")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # the presets' lines as written
    parser.epilog = "presets (KEY=VALUE changes any of them):\n" + "\n".join(
        f"  {kind} {'--quick' if quick else '(GPU)'}: {preset_text(kind, quick)}" for kind in KINDS
        for quick in (True, False)) + "\n" + QUICK_NOTE


def run(args) -> dict:
    import sys
    from pathlib import Path

    from runtime.study import vocabulary, workdir
    from runtime.study.settings import describe, parse_settings

    settings = parse_settings(args.kind, args.quick, list(args.settings or []))  # before JAX: one error line
    vocabulary.check(settings.data, settings.vocab)  # before anything is written
    out = Path(args.out) if args.out else workdir.default_out(args.kind, args.quick)
    resumed = workdir.open_study(out, args.kind, describe(settings))

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.quick:
        say(QUICK_NOTE)
    say(f"{'resuming' if resumed else 'starting'} wse study {args.kind} in {out}")
    from runtime.commands.shared import quiet_libraries

    quiet_libraries()
    if args.kind == "mup":
        from runtime.study import mup

        return mup.run(settings, out, quick=args.quick, say=say)
    from runtime.study import scaling

    return scaling.run(settings, out, quick=args.quick, say=say)


def render(result: dict, console) -> None:
    from runtime.study.costs import cost_lines

    lines = mup_lines(result) if result["study"] == "mup" else scaling_lines(result)
    m = result["machine"]
    lines.append(f"measured on {m['device']} ({m['cpu']}, {m['cores']} cores; load {m.get('load_1_5_15')} at the "
                 f"start, {m.get('load_at_end')} at the end): {result['wall_s']:.0f} s ({result['cpu_s']:.0f} CPU-s), "
                 f"{result['trained']} points "
                 f"trained, {result['reused']} reused")
    lines += cost_lines(result["costs"])
    lines.append(f"figure {result['figure']}, result {result['out']}/study.json, run dirs {result['out']}/points/")
    for line in lines:
        console.print(line, highlight=False)


def mup_lines(result: dict) -> list[str]:
    from runtime.study.mup import summary_lines

    return summary_lines(result["summary"])


def scaling_lines(result: dict) -> list[str]:
    f, p, h = result["fit"], result["prediction"], result["held_out"]
    pl = f["power_law"]
    lines = [f"fit ({f['chosen']}: {f['why']}): L = {pl['a']:.4g} * C^({pl['b']:.4f} +- {pl['b_stderr']:.4f}) over "
             f"{pl['points']} sizes, residual {pl['residual_std_log']:.4f} in ln L"]
    if f.get("with_floor"):
        w = f["with_floor"]
        lines.append(f"  with an irreducible term: L = {w['c']:.3f} + {w['a']:.3g} (C/{w['C_mid']:.3g})^{w['b']:.3f}")
    lines.append(f"held out {p['size']}: predicted {p['loss']:.4f} [{p['low']:.4f}, {p['high']:.4f}] before training"
                 + (f", measured {h['measured']:.4f} ({100 * h['error']:+.2f}%, "
                    f"{'inside' if h['within_interval'] else 'outside'} the interval)" if h["measured"] else ""))
    paper = result["paper"]
    lines.append(f"the paper: {paper['form']} ({paper['source']}); its local exponent over 111M..13B "
                 f"{paper['local_exponent'][0]:.4f}..{paper['local_exponent'][1]:.4f}")
    if result.get("warning"):
        lines.append(f"warning: {result['warning']}")
    return lines
