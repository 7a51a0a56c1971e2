"""`wse demo`: the main job, end to end on a fresh machine in a few minutes on two CPU cores.

1. plans the `demo` Cerebras-GPT-shaped model (8 layers x 96, GPT-2 vocabulary) on a CS-2 (the `wse plan`
   simulator) and draws the plan;
2. prepares the built-in python-docs corpus (tokenised once, then cached) and measures its unigram entropy;
3. trains the model on one CPU device (the fastest on two cores), with checkpoints;
4. fine-tunes the trained checkpoint on the built-in task set (loss on the completions only) into a second run dir,
   as `wse finetune` in a child process on an emulated 8-device mesh, data parallel (one sequence per device);
5. evaluates (validation loss against the unigram entropy; task loss before and after fine-tuning) and generates.

It is the tutorial workflow (runtime/workflow.py) with the demo's settings, so every step writes what the command
line writes (run dirs with checkpoints, metrics.jsonl, loss.png). Narration goes to stderr; the result (and
``summary.json`` in the output directory) holds the figures.
"""

from __future__ import annotations

HELP = ("the main job: plan on a CS-2, prepare data, train, fine-tune on an emulated 8-device mesh, evaluate, "
        "generate")

# Pre-training runs in this process on one CPU device; fine-tuning runs as `wse finetune` in a child process on an
# emulated 8-device mesh, data parallel. On 2 cores one device trains fastest: measured on the 2-core Xeon, tiny at
# 8 x 128 tokens trains at 1,440 tokens/s on one device alone, 1,245 on one of 8 emulated devices of one process, and
# ~800 data parallel over all 8 (every device's share of the work plus the emulation's thread traffic on the same two
# cores); two emulated devices, data parallel, 1,330 against one device's 1,500 (2026-11-30). So pre-training, the
# bulk of the demo, takes the single device and the short fine-tuning shows the sharded 8-device run.
PRETRAIN_DEVICES = 1
FINETUNE_DEVICES = 8
MODE = "data"
SYSTEM = "cs2"
# The model: the `demo` preset (model.config), the width that learns the most per CPU-second on 2 cores (its table
# is there); `tiny`, the tutorial's default, is a third wider and 1.5x slower a step for the same loss.
PRESET = "demo"
# Pre-training: the short-run recipe (runtime.config.recipes.SHORT_RUN: 128-token windows, peak LR 2e-3, linear decay) in
# batches of BATCH_SIZE sequences for STEPS steps (512K tokens, 0.8 epochs of the corpus). Measured for the demo
# preset on the 2-core Xeon, one device, validation loss over the whole held-out split (2026-11-30): 1,000 x 4 at LR
# 2e-3 5.412 (189 s); at 3e-3 5.405 (seed 0; 176 s alone, 3,045 tokens/s) and 5.463 (seed 1), but its samples hold
# fewer corpus words (24 against 30 per 64 tokens, mean of 24 samples); 900 x 4 at 2e-3 5.478, at 3e-3 5.437 (seed 0)
# and 5.482 (seed 1); 800 x 4 at 3e-3 5.536. For tiny (before the demo preset), more, smaller steps learn
# more per token: measured on the 2-core Xeon, one device, seed 0, validation loss over the whole held-out split
# (2026-11-30): 900 x 4 sequences 5.47 (1,930 tokens/s, 251 s); 1,000 x 4 5.40 (283-300 s); 600 x 8 5.34 for a third
# more tokens (614K, 400 s); 800 x 4 5.52; 450 x 4 x 256-token windows 5.66; 1,600 x 2 5.73. Against the corpus'
# unigram entropy 6.271 (a context-free model fitted on the training split scores 6.586 on the validation split; a
# bigram model fitted there, interpolated with the unigram, 5.07). The model's 50257-way output layer is ~60% of a
# step's time.
STEPS = 1000
BATCH_SIZE = 4
# Validation covers the whole held-out split (about 20K tokens = 39 batches of 4 x 128) at the middle and the end: the
# figure the tutorial's model.evaluate() gives for the same weights.
EVAL_BATCHES = 1_000
# Fine-tuning steps: one epoch of the built-in task set (126 windows of 128 tokens, FINETUNE_BATCH_SIZE per step) at
# the fine-tuning defaults' LR (a tenth of pre-training's). The default of three epochs costs another half minute.
FINETUNE_STEPS = 16
FINETUNE_BATCH_SIZE = 8  # one sequence per device of the fine-tuning mesh
# Prompts the corpus itself uses (16 and 23 times), so a model that learned the corpus has something to continue.
PROMPTS = ("This module provides", "Return a new")


def unigram_baselines(directory) -> dict:
    """What a model that ignores context scores, three ways (nats/token):

    ``unigram_entropy``: entropy of the whole corpus' token frequencies (training and validation splits together);
    ``unigram_model_val_loss``: cross-entropy on the validation split of the training split's frequencies (add-one
    smoothed over the vocabulary), i.e. the validation loss of the best context-free model one can fit;
    ``unigram_entropy_val``: entropy of the validation split's own frequencies, a bound no context-free model reaches.
    """
    import numpy as np

    from runtime.data import TokenDataset

    counts = {}
    for split in ("train", "val"):
        ds = TokenDataset(directory, split)
        counts[split] = sum(np.bincount(s, minlength=ds.vocab_size) for s in ds.shards()).astype(np.float64)

    def entropy(c):
        p = c[c > 0] / c.sum()
        return float(-(p * np.log(p)).sum())

    train, val = counts["train"], counts["val"]
    fitted = (train + 1.0) / (train.sum() + train.size)
    return {"unigram_entropy": entropy(train + val), "unigram_model_val_loss": float(-(val * np.log(fitted)).sum() / val.sum()),
            "unigram_entropy_val": entropy(val)}


def add_arguments(parser) -> None:
    parser.add_argument("--steps", type=int, default=STEPS, metavar="N", help=f"pre-training steps (default {STEPS})")
    parser.add_argument("--finetune-steps", type=int, default=FINETUNE_STEPS, metavar="N",
                        help=f"fine-tuning steps (default {FINETUNE_STEPS})")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="new or empty directory for everything the demo writes (default runs/demo-<time>)")


def _out_dir(given: str | None):
    import time
    from pathlib import Path

    from runtime.errors import UserError

    out = Path(given) if given else Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} is not an empty directory; give a new one (the demo never writes over earlier results)")
    return out


def run(args) -> dict:
    import json
    import time

    from rich.console import Console

    from runtime.commands.shared import quiet_libraries
    from runtime.errors import UserError
    from runtime.platform import ensure_cpu_devices
    from runtime.workflow import initialize_model

    t0 = time.perf_counter()
    for flag, value in (("--steps", args.steps), ("--finetune-steps", args.finetune_steps)):
        if value < 1:
            raise UserError(f"{flag} must be positive, got {value}")
    out = _out_dir(args.out)
    say = Console(stderr=True, highlight=False, soft_wrap=True)
    ensure_cpu_devices(PRETRAIN_DEVICES)  # before JAX starts; the fine-tuning child process gets its own 8
    model = initialize_model(PRESET, devices=PRETRAIN_DEVICES, mesh={"data": PRETRAIN_DEVICES}, mode=MODE,
                             run_dir=out / "pretrain")
    out.mkdir(parents=True, exist_ok=True)
    plan = _plan(model, out, say)
    data, baselines = _data(say)
    quiet_libraries()
    trained = _pretrain(model, data, args.steps, baselines["unigram_entropy"], say)
    before, tuned = _finetune(model, out, args.finetune_steps, say)
    samples, words = _generate(model, say)
    result = _summary(model.config, plan, trained, tuned, before, baselines, samples, out)
    result["sample_words_in_corpus"] = words
    result["wall_s"] = time.perf_counter() - t0
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    result["summary"] = str(out / "summary.json")
    return result


def demo_recipe(steps: int):
    """The demo's settings over the tutorial's short-run recipe: an evaluation over the whole held-out split and a
    checkpoint at the middle and the end (short runs: one of each)."""
    from runtime.config.recipes import Recipe

    half = steps // 2 if steps >= 20 else steps
    return Recipe.train("demo", batch_size=BATCH_SIZE, eval_every=half, eval_batches=EVAL_BATCHES, checkpoint_every=half)


def _plan(model, out, say) -> dict:
    """1. The wafer plan (simulator, no JAX), with its pictures."""
    cfg = model.config
    plan = model.plan(SYSTEM, picture=out / "plan.png", timeline=out / "plan-timeline.png")
    d = plan["details"]
    say.rule("[bold]1. wafer plan")
    say.print(f"{cfg.name}: {cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.parameters:,} parameters (GPT-2 vocabulary)")
    say.print(f"on a {plan['system']}: {plan['mode']}"
              + (f", {d['n_stages']} stages in {d['lanes']} lane(s), {d['microbatches']} microbatches" if plan["mode"] == "pipelined" else "")
              + f"; step {plan['step_time_s'] * 1e3:.3f} ms for {plan['batch_size']} x {plan['seq_len']} tokens, "
              f"{plan['tokens_per_s']:,.0f} tokens/s, {plan['utilization']:.1%} of peak, "
              f"{plan['memory']['peak_bytes_per_core']:,.0f} of {plan['memory']['capacity_bytes_per_core']:,} bytes per core")
    say.print(f"pictures: {plan['picture']}, {plan['timeline']}")
    return plan


def _data(say):
    """2. The built-in corpus (prepared once, then cached) and what a context-free model scores on it."""
    import sys
    import time

    from runtime.data import TokenDataset
    from runtime.workflow import load_pretrain_data

    say.rule("[bold]2. data")
    t = time.perf_counter()
    data = load_pretrain_data(progress=sys.stderr.isatty())
    meta = TokenDataset(data.directory, "train").meta["splits"]
    baselines = unigram_baselines(data.directory)
    say.print(f"built-in corpus python-docs: {meta['train']['tokens']:,} training + {meta['val']['tokens']:,} validation "
              f"tokens in {data.directory} ({time.perf_counter() - t:.1f} s)")
    say.print(f"unigram entropy of the corpus: {baselines['unigram_entropy']:.3f} nats/token; a context-free model fitted "
              f"on the training split scores {baselines['unigram_model_val_loss']:.3f} on the validation split, whose own "
              f"unigram entropy is {baselines['unigram_entropy_val']:.3f}")
    return data, baselines


def _pretrain(model, data, steps: int, unigram: float, say) -> dict:
    """3. Pre-training on the emulated mesh; the `wse train` result plus ``train_s``."""
    import time

    from runtime.config.recipes import SHORT_RUN

    say.rule("[bold]3. training")
    say.print(f"one CPU device (the fastest on 2 cores), {MODE} mode; "
              f"{steps} steps of {BATCH_SIZE} x {SHORT_RUN['seq_len']} tokens, peak LR {SHORT_RUN['lr']:g}")
    t = time.perf_counter()
    trained = model.train(data, steps=steps, recipe=demo_recipe(steps))
    trained["train_s"] = time.perf_counter() - t
    say.print(f"trained in {trained['train_s']:.0f} s ({trained['tokens_per_s']:,.0f} tokens/s): training loss "
              f"{trained['final_loss']:.3f}, validation loss {trained['val_loss']:.3f} vs unigram entropy {unigram:.3f}")
    used = trained["plan"]
    stages = f", stages {used['stages']}, {used['microbatches']} microbatches" if used.get("mode") == "pipelined" else ""
    say.print(f"executed: {used.get('mode')} mode on mesh {trained['mesh']}{stages}; run dir {trained['run_dir']}")
    return trained


def finetune_command(out, steps: int) -> list[str]:
    """The `wse finetune` command line the demo runs for step 4 (one a user can run as it is): evaluations at the
    middle and the end and one checkpoint, where the fine-tuning defaults take four and two."""
    return ["wse", "finetune", "--from", str(out / "pretrain"), "--data", "builtin", f"train.steps={steps}",
            f"train.batch_size={FINETUNE_BATCH_SIZE}", f"train.eval_every={max(1, steps // 2)}",
            f"train.checkpoint_every={steps}", f"train.run_dir={out / 'finetune'}", f"mesh.devices={FINETUNE_DEVICES}",
            f"execution.mode={MODE}"]


def _finetune(model, out, steps: int, say) -> tuple[dict, dict]:
    """4. Fine-tuning on the built-in task set, as `wse finetune` in a child process on an emulated 8-device mesh
    (this process has one CPU device): (task loss before, the `wse finetune --json` result plus ``finetune_s``).
    The model then holds the fine-tuned weights. UserError when the child fails (its error line is above)."""
    import json
    import os
    import subprocess
    import sys
    import time

    from runtime.errors import UserError
    from runtime.workflow import load_task_data

    say.rule("[bold]4. fine-tuning")
    before = model.evaluate(load_task_data())
    command = finetune_command(out, steps)
    say.print("$ " + " ".join(command), highlight=False)
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env = {**os.environ, "XLA_FLAGS": " ".join([*flags, f"--xla_force_host_platform_device_count={FINETUNE_DEVICES}"])}
    t = time.perf_counter()
    child = subprocess.run([sys.executable, "-m", "runtime.cli", *command[1:], "--json"], env=env,
                           stdout=subprocess.PIPE, text=True)  # its progress and errors go to our stderr
    if child.returncode != 0 or not child.stdout.strip():
        raise UserError(f"the fine-tuning step failed (exit status {child.returncode}); its error is above. Rerun it "
                        f"alone with: {' '.join(command)}")
    tuned = json.loads(child.stdout.strip().splitlines()[-1])
    tuned["finetune_s"] = time.perf_counter() - t
    model.load(tuned["run_dir"])
    ex = tuned["train_examples"]
    say.print(f"{ex['examples']} prompt/completion examples in {ex['windows']} windows, {tuned['steps']} steps at peak LR "
              f"{tuned['defaults_applied'].get('lr', float('nan')):g} in {tuned['finetune_s']:.0f} s, data parallel on "
              f"mesh {tuned['mesh']}")
    say.print(f"held-out completion loss: {before['val_loss']:.3f} before, {tuned['val_loss']:.3f} after; run dir {tuned['run_dir']}")
    return before, tuned


def _generate(model, say) -> tuple[dict, dict]:
    """5. Generation with the fine-tuned weights: ({prompt: continuation}, {prompt: words of it the corpus has})."""
    from runtime.data import corpus
    from runtime.workflow import SAMPLING

    say.rule("[bold]5. generation")
    say.print("fine-tuned weights, " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in SAMPLING.items()) + ":")
    known = {w for doc in corpus.documents("python-docs") for w in doc.split()}
    samples, words = {}, {}
    for prompt in PROMPTS:
        samples[prompt] = model.generate_text(prompt)  # sampled, seeded (runtime.workflow.SAMPLING)
        words[prompt] = sum(w in known for w in samples[prompt].split())
        say.print(f"[bold]{prompt}[/bold]{samples[prompt]}")
        say.print(f"[dim]  ({words[prompt]} of its {len(samples[prompt].split())} words occur in the corpus)[/dim]")
    return samples, words


def _summary(cfg, plan, trained, tuned, before, baselines, samples, out) -> dict:
    """The demo's result (and summary.json): the figures of every step."""
    return {
        "model": cfg.name, "parameters": cfg.parameters, "mesh": trained["mesh"], "mode": trained["mode"],
        "finetune_mesh": tuned["mesh"],
        "steps": trained["steps"], "tokens_per_step": trained["tokens_per_step"], "tokens_per_s": trained["tokens_per_s"],
        "train_loss": trained["final_loss"], "val_loss": trained["val_loss"], "val_perplexity": trained["val_perplexity"],
        **baselines, "below_unigram_nats": baselines["unigram_entropy"] - trained["val_loss"],
        "task_loss_before_finetune": before["val_loss"], "finetune_steps": tuned["steps"],
        "finetune_val_loss": tuned["val_loss"], "finetune_lr": tuned["defaults_applied"].get("lr"),
        "sample": samples[PROMPTS[0]], "samples": samples,
        "plan": {"system": plan["system"], "mode": plan["mode"], "step_time_s": plan["step_time_s"],
                 "tokens_per_s": plan["tokens_per_s"], "utilization": plan["utilization"]},
        "out": str(out), "run_dir": trained["run_dir"], "finetune_dir": tuned["run_dir"],
        "plan_picture": plan["picture"], "plan_timeline": plan["timeline"],
        "loss_plot": str(out / "pretrain" / "loss.png"), "finetune_loss_plot": str(out / "finetune" / "loss.png"),
        "train_s": trained["train_s"], "finetune_s": tuned["finetune_s"],
    }


def render(result: dict, console) -> None:
    console.rule("[bold]demo done")
    lines = [
        f"validation loss {result['val_loss']:.3f} nats/token (perplexity {result['val_perplexity']:.1f}) vs unigram entropy "
        f"{result['unigram_entropy']:.3f}: {result['below_unigram_nats']:.2f} nats below",
        f"held-out completion loss {result['task_loss_before_finetune']:.3f} -> {result['finetune_val_loss']:.3f} after "
        f"{result['finetune_steps']} fine-tuning steps",
        f"wall time {result['wall_s']:.0f} s (training {result['train_s']:.0f} s, fine-tuning {result['finetune_s']:.0f} s)",
        f"plan pictures   {result['plan_picture']}, {result['plan_timeline']}",
        f"pre-training    {result['run_dir']}  (checkpoints/, metrics.jsonl, loss.png)",
        f"fine-tuning     {result['finetune_dir']}  (checkpoints/, metrics.jsonl, loss.png)",
        f"summary         {result['summary']}",
        f"next: wse generate --checkpoint {result['finetune_dir']} --prompt \"Return a new\"   (its defaults are the "
        "sampling above)",
    ]
    for line in lines:
        console.print(line, highlight=False)
