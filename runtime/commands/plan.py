"""`wse plan`: how a Cerebras wafer (or a cluster of them), or a mesh of GPUs or CPU devices, would train a model, from
the simulator in wse/ (no JAX)."""

from __future__ import annotations

HELP = ("plan a model on a Cerebras system: training (layer-pipelined or weight-streaming) or inference (decode, "
        "prefill, generate), or training on GPUs (h100, h200, a device file); --published holds the simulator "
        "against published figures (calibration and validation)")


def add_arguments(parser) -> None:
    parser.add_argument("--model", default=None, help="a preset (111M ... 13B, 111M-mup ..., tiny, small, demo; the "
                        "families: llama-tiny, mistral-tiny, qwen3-tiny, gptj-tiny, llama3.1-8b/70b/405b, llama2-7b, "
                        "llama-7b, mistral-7b, qwen3-32b, gptj-6b), a planning-only published shape (llama3-8b, "
                        "qwen2-72b, gpt2-small, gpt3-20b, gpt-1t, gpt-24t), a YAML/JSON model file (ModelZoo configs "
                        "included) or a HuggingFace model directory (its config.json)")
    parser.add_argument("--task", choices=["train", "decode", "prefill", "generate"], default="train",
                        help="train (default); decode, prefill or generate (a prompt, then new tokens: time to first "
                        "token, time per output token, end-to-end tokens/s): the model resident on --systems wafers")
    parser.add_argument("--system", default=None,
                        help="cs1, cs2 (default), cs3, a cluster (andromeda, cg1, cg3), a YAML system file, or a "
                        "device mesh: h100, h200 or a YAML file with 'kind: device'")
    parser.add_argument("--systems", type=int, default=None,
                        help="number of systems (data parallel, weight streaming only; default 1, or the cluster's "
                        "size), or of devices on a device mesh (default the description's)")
    parser.add_argument("--mode", choices=["auto", "pipelined", "streaming", "data"], default="auto",
                        help="auto: layer-pipelined when the model fits on one wafer, else weight streaming; on a "
                        "device mesh: data (default when it fits) or streaming (weights in host memory)")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default=None,
                        help="compute dtype on a device mesh (default bfloat16)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="global batch in sequences (default: the preset's published one; a model without one: "
                        "GPT-3's batch by model size, Brown et al. 2020, and the plan says so); inference: requests")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default 2048, capped at the model's context)")
    parser.add_argument("--picture", default=None, help="write the stage regions (or the streaming memory profile) to this PNG")
    parser.add_argument("--timeline", default=None, help="write the pipeline schedule (or per-layer compute vs streaming) to this PNG")
    parser.add_argument("--overwrite", action="store_true", help="replace --picture/--timeline files that already exist")
    parser.add_argument("--memoryx", default=None,
                        help="MemoryX size (12TB, 1200TB, 2.4PB); default: the smallest sold for the system that holds the model")
    parser.add_argument("--prompt-len", type=int, default=None,
                        help="prefill and generate: prompt tokens per request (prefill: default --seq-len; generate: "
                        "default 1000, Artificial Analysis' workload)")
    parser.add_argument("--new-tokens", type=int, default=None,
                        help="generate: new tokens per request after the prompt (default 1000)")
    parser.add_argument("--published", action="store_true",
                        help="print the simulator against every published figure it is held to: the calibration table "
                        "(what python -m wse.validation.fit fits to) and the validation table (no --model needed)")


def run(args) -> dict:
    from runtime.errors import UserError
    from runtime.planning import plan_model, published_comparison

    if args.published:
        return published_comparison()
    if args.model is None:
        raise UserError("wse plan needs --model (or --published for the table of published figures)")
    return plan_model(args.model, args.system, systems=args.systems, mode=args.mode, batch_size=args.batch_size,
                      seq_len=args.seq_len, picture=args.picture, timeline=args.timeline, task=args.task,
                      memoryx=args.memoryx, prompt_len=args.prompt_len, new_tokens=args.new_tokens, dtype=args.dtype,
                      overwrite=args.overwrite)


def _time(s: float) -> str:
    if s >= 86400:
        return f"{s / 86400:,.1f} days"
    if s >= 3600:
        return f"{s / 3600:,.1f} h"
    if s >= 1:
        return f"{s:,.2f} s"
    if s >= 1e-3 or s == 0:
        return f"{s * 1e3:,.2f} ms"
    return f"{s * 1e6:,.1f} us"


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} B"


def _collapse_blocks(layers: list[dict]) -> list[tuple[str, dict]]:
    """Blocks are identical in shape, so when every block's attention (or FFN) row has the same timings it is shown
    once as 'block0..39.attention (each)' instead of forty equal rows."""
    blocks = [l for l in layers if l["name"].startswith("block")]
    if not blocks:
        return [(l["name"], l) for l in layers]
    parts: dict[str, list[dict]] = {}
    for l in blocks:
        parts.setdefault(l["name"].partition(".")[2], []).append(l)
    timing = lambda l: (l["compute_time_s"], l["stream_time_s"], l["bound"], l["fabric_bound"])  # noqa: E731
    if not all(len({timing(l) for l in rows}) == 1 for rows in parts.values()):
        return [(l["name"], l) for l in layers]
    n = len(next(iter(parts.values())))
    middle = [(f"block0..{n - 1}{'.' + part if part else ''} (each)", rows[0]) for part, rows in parts.items()]
    return [(l["name"], l) for l in layers if l["name"] == "embedding"] + middle + \
        [(l["name"], l) for l in layers if not l["name"].startswith("block") and l["name"] != "embedding"]


def render(result: dict, console) -> None:
    if "published" in result:
        return _render_published(result["published"], console)
    if result.get("mode") == "inference":
        return _render_inference(result, console)
    if result.get("kind") == "devices":
        return _render_devices(result, console)
    _render_training(result, console)


def _print_rows(title: str, rows: list[tuple[str, str]], console) -> None:
    """A plan's summary: one two-column table of (figure, value) rows under ``title``."""
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def _summary_line(name: str, summary: dict) -> str:
    if not summary.get("rows"):
        return f"{name}: no numeric rows"
    return (f"{name}: {summary['rows']} rows, mean |error| {summary['mean_abs_error']:.1%}, max "
            f"{summary['max_abs_error']:.1%}; within 10%: {summary['within_10']}, within 25%: {summary['within_25']}")


def _render_published(result: dict, console) -> None:
    """The calibration table, the validation table (each with its summary line) and the capacity checks."""
    from rich.table import Table

    fmt = lambda v: f"{v:,.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    titles = {"calibration": "calibration (python -m wse.validation.fit fits to C1-C4 and picks the training step "
                             "cost by the paper's relative figures)",
              "validation": "validation (no parameter fitted to these)",
              "checks": "capacity checks (not throughput)"}
    for key, title in titles.items():
        t = Table(title=title)
        for col in ("outcome", "published", "simulated", "distance", "source"):
            t.add_column(col, overflow="fold")
        for r in result[key]:
            source = r["source"] + (f" [{r['release']}; {r['confidence']}]" if r.get("release") else "") + \
                (f" ({r['note']})" if r.get("note") else "")
            t.add_row(r["outcome"], fmt(r["published"]), fmt(r["simulated"]), r["distance"], source)
        console.print(t)
        if key in result["summary"]:
            console.print(_summary_line(key, result["summary"][key]))
        if key == "validation":
            for group, line in result.get("validation_groups", {}).items():
                console.print(f"  {_summary_line(group, line)}")


def _render_devices(result: dict, console) -> None:
    """A device-mesh plan: the step, its parts, memory and host-link bytes, then the assumptions."""

    d, mem, parts, link = result["details"], result["memory"], result["parts"], result["link_bytes"]
    title = f"{result['model']} on {result['systems']} x {result['system']}: {result['mode']}"
    rows = [("batch", f"{result['batch_size']} sequences x {result['seq_len']} tokens, {result['dtype']}; "
                      f"{d['per_device_batch']} per device in {d['accum']} slice(s) of {d['slice_seqs']}, remat "
                      f"{d['remat']}"),
            ("step time", _time(result["step_time_s"])),
            ("tokens/s", f"{result['tokens_per_s']:,.0f}"),
            ("utilisation of peak", f"{result['utilization']:.1%} of {d['peak_flops'] / 1e12:,.0f} TFLOP/s"),
            ("time to train (20 tokens/param)", _time(result["time_to_train_s"])),
            ("device memory", f"{_bytes(mem['device_bytes'])} of {_bytes(mem['capacity_bytes'])} (weights and state "
                              f"{_bytes(mem['weights_and_state_bytes'])}, activations "
                              f"{_bytes(mem['activations_bytes'])}, logits {_bytes(mem['logits_bytes'])})")]
    if result["mode"] == "streaming":
        rows += [("host memory", _bytes(mem["host_bytes"])),
                 ("host link per step", f"{_bytes(link['to_device'])} to each device, {_bytes(link['to_host'])} back")]
    rows += [("compute", _time(parts["compute_s"])),
             ("link (waited for / all transfers)", f"{_time(parts['exposed_link_s'])} / {_time(parts['link_s'])}"),
             ("host update", _time(parts["host_update_s"])),
             ("device update, all-reduce", f"{_time(parts['device_update_s'])}, {_time(parts['all_reduce_s'])}"),
             ("fixed", _time(parts["fixed_s"]))]
    _print_rows(title, rows, console)
    _render_notes(result, console)
    _render_assumptions(result, console)


def _render_inference(result: dict, console) -> None:
    """A decode, prefill or generate plan: wafers, requests, the latencies and rates, memory, notes, assumptions."""
    d, mem, task = result["details"], result["memory"], result["task"]
    title = f"{result['model']} {task} on up to {result['systems']} x {result['system']}"
    shape = {"prefill": f" (prompt {result['prompt_len']})",
             "generate": f" (prompt {result['prompt_len']} + {result.get('new_tokens')} new tokens)"}.get(task, "")
    rows = [("wafers used", f"{d['wafers_used']} (fewest that hold it: {d['fewest_wafers']}; mapping "
                            f"{', '.join(sorted(set(d['mappings'])))})"),
            ("requests x context", f"{result['batch_size']} x {result['seq_len']} tokens{shape}")]
    if task == "generate":
        rows += [("time to first token", _time(result["time_to_first_token_s"])),
                 ("time per output token", f"{_time(result['time_per_output_token_s'])} (mean over the new tokens, "
                                           f"at context {d['mean_context']:,.0f}; "
                                           f"{d['decode_tokens_per_s_per_request']:,.0f} tokens/s)"),
                 ("end to end per request", f"{_time(result['end_to_end_s'])}: "
                                            f"{result['tokens_per_s_per_request']:,.0f} new tokens/s")]
    else:
        rows += [("time to first token" if task == "prefill" else "time per token", _time(result["token_latency_s"])),
                 ("tokens/s per request", f"{result['tokens_per_s_per_request']:,.0f}")]
    rows += [("tokens/s, all requests", f"{result['tokens_per_s']:,.0f}"),
             ("weights / KV cache", f"{_bytes(mem['weights_bytes'])} / {_bytes(mem['kv_cache_bytes'])} of "
                                    f"{_bytes(mem['capacity_bytes'])} SRAM")]
    _print_rows(title, rows, console)
    _render_notes(result, console)
    _render_assumptions(result, console)


def _render_notes(result: dict, console) -> None:
    """The one-line notes a plan carries: the system defaulted, the batch or workload defaulted, systems left idle."""
    d = result.get("details", {})
    for note in (result.get("system_note"), d.get("batch_note"), d.get("workload_note"), d.get("idle_note")):
        if note:
            console.print(f"[dim]{note}[/dim]")


def _render_training(result: dict, console) -> None:

    d, mem = result["details"], result["memory"]
    grid = result["grid"]
    rows = [
        ("grid", f"{grid['rows']} x {grid['cols']} cells"),
        ("batch", f"{result['batch_size']} sequences x {result['seq_len']} tokens"),
        ("step time", _time(result["step_time_s"])),
        ("tokens/s", f"{result['tokens_per_s']:,.0f}"),
        ("utilisation of peak", f"{result['utilization']:.1%}"),
        ("time to train (20 tokens/param)", _time(result["time_to_train_s"])),
        ("memory per core", f"{mem['peak_bytes_per_core'] / 1024:,.1f} KiB of {mem['capacity_bytes_per_core'] / 1024:,.1f} KiB"),
        ("weights / optimizer / activations", f"{_bytes(mem['weights_bytes'])} / {_bytes(mem['optimizer_bytes'])} / {_bytes(mem['activations_bytes'])}"),
    ]
    if result["mode"] == "pipelined":
        rows += [("stages x lanes", f"{d['n_stages']} stages in {d['lanes']} lane(s)"),
                 ("microbatches", f"{d['microbatches']} (bubble {d['bubble_fraction']:.1%})")]
    else:
        rows += [("utilisation, paper's FLOPs", f"{d['utilization_paper']:.1%} (kernels at "
                                                f"{d['kernel_efficiency']:.1%} of peak)"),
                 ("systems used", str(d["systems_used"])),
                 ("micro-batches", f"{d['micro_batches']} of {d['micro_batch_seqs']} seqs"
                                   f"{' with recomputation' if d['recompute'] else ''}"
                                   f"{', activations offloaded' if d['offload'] else ''}"),
                 ("MemoryX", f"{_bytes(mem['memoryx_bytes'])} of {_bytes(mem['memoryx_capacity_bytes'])}"),
                 ("largest micro-batch per system", _largest(d["max_batch_per_system"]))]
    _print_rows(f"{result['model']} on {result['systems']} x {result['system']}: {result['mode']}", rows, console)
    _render_notes(result, console)
    _render_details(result, console)
    for key in ("picture", "timeline"):
        if key in result:
            console.print(f"{key}: {result[key]}")


def _largest(fit: dict) -> str:
    """The largest micro-batch that fits one system, keeping activations, recomputing, or offloading them."""
    parts = [f"{fit[key]} seqs {how}" for key, how in (("no_recompute", "keeping every activation"),
                                                       ("recompute", "recomputing"), ("offload", "offloading"))
             if fit[key] >= 1]
    return ", ".join(parts) if parts else "none fits"


def _render_details(result: dict, console) -> None:
    """The pipelined plan's stages, or the streaming plan's layers and scaling; then the plan's assumptions."""
    from rich.table import Table

    if result["mode"] == "pipelined":
        t = Table(title="stages")
        for col in ("stage", "layers", "region (row, col, rows x cols)", "memory/core", "time/microbatch", "in flight"):
            t.add_column(col)
        for i, st in enumerate(result["stages"]):
            r = st["region"]
            t.add_row(str(i), f"{st['names'][0]} .. {st['names'][1]}", f"({r['row']}, {r['col']}) {r['rows']} x {r['cols']}",
                      f"{st['memory_bytes_per_core'] / 1024:,.1f} KiB", _time(st["time_s"]), str(st["in_flight"]))
        console.print(t)
    else:
        t = Table(title="layers (one step, all micro-batches)")
        for col in ("layer", "compute", "streaming", "bound"):
            t.add_column(col)
        for name, layer in _collapse_blocks(result["layers"]):
            bound = layer["bound"] + (" (fabric)" if layer["fabric_bound"] and layer["bound"] == "compute" else "")
            t.add_row(name, _time(layer["compute_time_s"]), _time(layer["stream_time_s"]), bound)
        console.print(t)
        s = Table(title="data-parallel scaling (same global batch)")
        for col in ("systems", "used", "tokens/s", "efficiency", "why"):
            s.add_column(col, overflow="fold")
        for p in result["scaling"]:
            s.add_row(str(p["systems"]), str(p["systems_used"]), f"{p['tokens_per_s']:,.0f}", f"{p['efficiency']:.1%}",
                      p.get("note", ""))
        console.print(s)
    _render_assumptions(result, console)


def _render_assumptions(result: dict, console) -> None:
    from rich.table import Table

    a = Table(title="assumptions (unpublished figures this plan used)")
    a.add_column("parameter")
    a.add_column("value")
    a.add_column("why", overflow="fold")
    for name, item in result["assumptions"].items():
        a.add_row(name, str(item["value"]), item["reason"])
    console.print(a)
