"""`wse demo`: the main job, end to end on a fresh machine in a few minutes on two CPU cores.

1. plans the tiny Cerebras-GPT-shaped model on a CS-2 (the `wse plan` simulator) and draws the plan;
2. prepares the built-in python-docs corpus (tokenised once, then cached) and measures its unigram entropy;
3. trains the model on an emulated 8-device CPU mesh, data parallel (one sequence per device), with checkpoints;
4. fine-tunes the trained checkpoint on the built-in task set (loss on the completions only) into a second run dir;
5. evaluates (validation loss against the unigram entropy; task loss before and after fine-tuning) and generates.

It is the tutorial workflow (runtime/workflow.py) with the demo's settings, so every step writes what the command
line writes (run dirs with checkpoints, metrics.jsonl, loss.png). Narration goes to stderr; the result (and
``summary.json`` in the output directory) holds the figures.
"""

from __future__ import annotations

from runtime.recipes import SHORT_RUN_STEPS

HELP = ("the main job: plan on a CS-2, prepare data, train, fine-tune on an emulated 8-device mesh, evaluate, "
        "generate")

# The process emulates 8 CPU devices; pre-training runs on one of them and fine-tuning on all 8 (data parallel). On
# 2 cores one device trains fastest: measured on the 2-core Xeon, tiny at 8 x 128 tokens trains at 1,440 tokens/s on one
# device alone, 1,245 on one of 8 emulated devices, and ~800 data parallel over all 8 (every device's share of the work
# plus the emulation's thread traffic on the same two cores). Fine-tuning is short, so it shows the sharded 8-device
# run for little time; the plan in step 1 shows the wafer layout.
DEVICES = 8
PRETRAIN_MESH = {"devices": 1, "axes": {"data": 1}}
FINETUNE_MESH = {"devices": 8, "axes": {"data": 8}}
MODE = "data"
SYSTEM = "cs2"
# Pre-training: the short-run recipe (runtime.recipes.SHORT_RUN: 8 x 128 tokens, peak LR 2e-3) for SHORT_RUN_STEPS
# steps. Measured there: validation loss 5.35 nats/token after 600 steps against the corpus' unigram entropy 6.271 (a
# context-free model fitted on the training split scores 6.586 on the validation split; a bigram model fitted there,
# interpolated with the unigram, 5.07); 5.87 after 300. The model's 50257-way output layer is 80% of its arithmetic.
STEPS = SHORT_RUN_STEPS
# Validation covers the whole held-out split (about 20K tokens = 20 batches of 8 x 128) at the middle and the end.
EVAL_BATCHES = 20
# Fine-tuning steps: 1.5 epochs of the built-in task set (126 windows of 128 tokens, 8 per step) at the fine-tuning
# defaults' LR (a tenth of pre-training's). The full default of three epochs costs another minute.
FINETUNE_STEPS = 24
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
    from runtime.mesh import ensure_cpu_devices
    from runtime.workflow import initialize_model

    t0 = time.perf_counter()
    for flag, value in (("--steps", args.steps), ("--finetune-steps", args.finetune_steps)):
        if value < 1:
            raise UserError(f"{flag} must be positive, got {value}")
    out = _out_dir(args.out)
    say = Console(stderr=True, highlight=False, soft_wrap=True)
    ensure_cpu_devices(DEVICES)  # before JAX starts: the fine-tuning mesh needs all 8
    import jax

    jax.devices()  # start the backend with them: pre-training then runs on the first one
    model = initialize_model("tiny", devices=PRETRAIN_MESH["devices"], mesh=PRETRAIN_MESH["axes"], mode=MODE,
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
    from runtime.recipes import Recipe

    half = steps // 2 if steps >= 20 else steps
    return Recipe.train("demo", eval_every=half, eval_batches=EVAL_BATCHES, checkpoint_every=half)


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

    from runtime.recipes import SHORT_RUN

    say.rule("[bold]3. training")
    say.print(f"one of {DEVICES} emulated CPU devices (the fastest on 2 cores), {MODE} mode; "
              f"{steps} steps of {SHORT_RUN['batch_size']} x {SHORT_RUN['seq_len']} tokens, peak LR {SHORT_RUN['lr']:g}")
    t = time.perf_counter()
    trained = model.train(data, steps=steps, recipe=demo_recipe(steps))
    trained["train_s"] = time.perf_counter() - t
    say.print(f"trained in {trained['train_s']:.0f} s ({trained['tokens_per_s']:,.0f} tokens/s): training loss "
              f"{trained['final_loss']:.3f}, validation loss {trained['val_loss']:.3f} vs unigram entropy {unigram:.3f}")
    used = trained["plan"]
    stages = f", stages {used['stages']}, {used['microbatches']} microbatches" if used.get("mode") == "pipelined" else ""
    say.print(f"executed: {used.get('mode')} mode on mesh {trained['mesh']}{stages}; run dir {trained['run_dir']}")
    return trained


def _finetune(model, out, steps: int, say) -> tuple[dict, dict]:
    """4. Fine-tuning on the built-in task set: (task loss before, the `wse finetune` result plus ``finetune_s``)."""
    import time

    from runtime.workflow import load_task_data

    say.rule("[bold]4. fine-tuning")
    tasks = load_task_data()
    before = model.evaluate(tasks)
    t = time.perf_counter()
    tuned = model.fine_tune(tasks, run_dir=out / "finetune", steps=steps, mesh=FINETUNE_MESH)
    tuned["finetune_s"] = time.perf_counter() - t
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


def _sampling_flags() -> str:
    """The tutorial's sampling (runtime.workflow.SAMPLING) as `wse generate` flags: the same kind of text."""
    from runtime.workflow import GENERATE_TOKENS, SAMPLING

    flags = {"max-new-tokens": GENERATE_TOKENS, **{k.replace("_", "-"): v for k, v in SAMPLING.items()}}
    return " ".join(f"--{k} {v}" for k, v in flags.items())


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
        f"next: wse generate --checkpoint {result['finetune_dir']} --prompt \"Return a new\" {_sampling_flags()}",
    ]
    for line in lines:
        console.print(line, highlight=False)
