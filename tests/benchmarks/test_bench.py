"""`wse bench` pieces on a micro model: ceilings, a training row per mode with its prediction, the JSON contract of a
reduced run, planner speed, the scaling study and target evaluation. No timing is asserted (CI machines are shared);
only that every figure is there, positive and finite."""

import contextlib
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

MICRO = dict(name="micro", n_layers=2, d_model=32, n_heads=2, d_head=16, d_ffn=128, vocab_size=512, max_seq_len=64,
             batch_size=4)


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "micro.json"
    path.write_text(json.dumps(MICRO))
    return str(path)


@pytest.fixture(scope="module")
def small_ceilings():
    import jax

    from benchmarks import ceilings

    sizes, adamw = dict(ceilings.SIZES), dict(ceilings.ADAMW_PARAMS)
    ceilings.SIZES["cpu"] = {"quick": (128, 1 << 20), "full": (128, 1 << 20)}
    ceilings.ADAMW_PARAMS.update(quick=1 << 16, full=1 << 16)
    try:
        yield ceilings.measure_ceilings(jax.devices()[0], quick=True, n_devices=8)
    finally:
        ceilings.SIZES.clear()
        ceilings.SIZES.update(sizes)
        ceilings.ADAMW_PARAMS.update(adamw)


def _finite_positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_ceilings_positive(small_ceilings):
    c = small_ceilings
    assert all(_finite_positive(v) for v in c["matmul_flops"].values())
    assert _finite_positive(c["copy_bytes_per_s"]) and _finite_positive(c["read_bytes_per_s"])
    assert c["per_device"]["matmul_flops"]["float32"] == pytest.approx(c["matmul_flops"]["float32"] / 8)
    assert c["device"]
    # the host link each way (JAX's CPU backend has a pinned_host memory kind), the host's AdamW rate, the all-reduce
    # over the 8 devices and the dispatch cost
    assert set(c["host_link_bytes_per_s"]) == {"host_to_device", "device_to_host"}
    assert all(_finite_positive(v) for v in c["host_link_bytes_per_s"].values())
    assert c["per_device"]["host_link_bytes_per_s"]["host_to_device"] == pytest.approx(
        c["host_link_bytes_per_s"]["host_to_device"] / 8)
    for key in ("host_adamw_params_per_s", "all_reduce_link_bytes_per_s", "dispatch_s"):
        assert _finite_positive(c[key]), key


def test_ceilings_become_a_device_description(small_ceilings):
    from benchmarks.predict import device_from_ceilings

    d = device_from_ceilings(small_ceilings, 8, 1 << 30)
    assert d.devices == 8 and d.matmul_flops_float32 == pytest.approx(small_ceilings["matmul_flops"]["float32"] / 8)
    assert d.host_update_params_per_s == small_ceilings["host_adamw_params_per_s"]
    assert d.device_link_bytes_per_s == small_ceilings["all_reduce_link_bytes_per_s"]
    assert not d.host_memory_separate and not d.copy_engines  # CPU: one RAM, copies on the computing cores
    assert d.sources["memory_bytes_per_s"].startswith("F: measured by wse bench")


def test_mode_axes():
    from benchmarks.training import mode_axes

    assert mode_axes("data", 8, 10) == {"data": 8, "stage": 1, "model": 1}
    assert mode_axes("pipelined", 8, 10) == {"data": 1, "stage": 8, "model": 1}
    assert mode_axes("pipelined", 8, 2) == {"data": 4, "stage": 2, "model": 1}
    assert mode_axes("streaming", 4, 2) == {"data": 4, "stage": 1, "model": 1}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["pipelined", "streaming"])  # data mode: test_reduced_run_json_contract
def test_training_row_has_every_field_and_a_finite_prediction(micro, small_ceilings, mode):
    from benchmarks.predict import predict
    from benchmarks.training import measure_training, mode_axes
    from runtime.platform import build_mesh

    mesh = build_mesh("cpu", 2, mode_axes(mode, 2, MICRO["n_layers"]))
    # --remat full reaches the executor (the data-mode row below shows the plan's own decision)
    row = measure_training(micro, mode, mesh, batch_size=4, seq_len=16, steps=1, warmup=1, peak_flops=1e10,
                           remat="full")
    assert row["remat"] == "full" and row["plan"]["remat"] == "full" and row["attention"] == "xla"
    for key in ("model", "mode", "mesh", "tokens_per_s", "mfu", "mfu_algorithmic", "step_time_s", "compile_s",
                "model_flops_6n", "model_flops_algorithmic", "memory"):
        assert key in row, key
    assert row["mode"] == mode
    assert _finite_positive(row["tokens_per_s"]) and _finite_positive(row["mfu"]) and _finite_positive(row["compile_s"])
    assert row["memory"]["process_peak_rss"] > 0 and row["memory"]["temp_size"] >= 0
    assert all(math.isfinite(loss) for loss in row["losses"])
    pred = predict(row, small_ceilings, 1 << 30)
    assert _finite_positive(pred["predicted_step_time_s"]) and _finite_positive(pred["ratio"])
    if mode == "pipelined":
        assert pred["bubble_fraction"] == pytest.approx(row["plan"]["bubble_fraction"])
        assert pred["link_bytes"] == {"to_device": 0, "to_host": 0}
    else:  # the device cost model's parts, and wse.devices.hostlink's bytes at the row's dtype and update placement
        from model.config import get_config
        from wse.devices.hostlink import streaming_link_bytes

        link = streaming_link_bytes(get_config(micro), compute_bytes=4, host_update=row["plan"]["host_update"])
        assert pred["link_bytes"] == {"to_device": link["to_device"], "to_host": link["to_host"]}
        assert pred["parts"]["compute_s"] > 0 and pred["remat"] == "full"


@pytest.mark.slow
def test_reduced_run_json_contract(micro, tmp_path, monkeypatch):
    """`wse bench --json` on the micro model, data mode only: the last stdout line holds the contract's keys."""
    from benchmarks import ceilings
    from runtime.cli import main

    monkeypatch.setitem(ceilings.SIZES, "cpu", {"quick": (128, 1 << 20), "full": (128, 1 << 20)})
    monkeypatch.setitem(ceilings.ADAMW_PARAMS, "quick", 1 << 16)
    out = tmp_path / "bench"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["bench", "--quick", "--json", "--models", micro, "--modes", "data", "--devices", "2",
                   "--batch-size", "4", "--seq-len", "16", "--steps", "1", "--gen-model", micro, "--out", str(out),
                   "--profile", f"{micro}:data"])
    assert rc == 0
    result = json.loads(buf.getvalue().strip().splitlines()[-1])
    for key in ("device", "peak_matmul_flops", "runs", "baseline", "generation", "planner"):
        assert key in result, key
    (run,) = result["runs"]
    for key in ("model", "mode", "mesh", "tokens_per_s", "mfu", "step_time_s", "predicted_step_time_s", "memory"):
        assert key in run, key
    assert math.isfinite(run["predicted_over_measured"])
    assert run["link_bytes_per_step"] == {"to_device": 0, "to_host": 0}  # data mode moves nothing over the link
    # --profile: the row's steps traced after its timed ones, in a folder TensorBoard and Perfetto read
    trace = Path(run["profile"])
    assert trace.parent == out / "profile" / "plugins" / "profile" and (trace / "perfetto_trace.json.gz").is_file()
    # remat left to the plan, as `wse train` does: the micro model fits, so nothing is recomputed, and the row says why
    assert run["remat"] == "none" and run["remat_requested"] == "auto" and "cheapest" in run["remat_reason"]
    assert run["attention"] == "xla" and "GPU" in run["attention_reason"]
    assert result["baseline"]["rows"][0]["tokens_per_s"] > 0
    gen = result["generation"]
    assert [(g["model"], g["batch"]) for g in gen["rows"]] == [(micro, 1), (micro, 8)]
    assert all(g["tokens_per_s"] > 0 and g["decode_steps"] == g["new_tokens"] - 1 for g in gen["rows"])
    # the roofline, per model: the best read, of the ceilings' and those sampled between its decode calls at its
    # batch-1 step's size (a step only reads); the float32 weights plus the KV cache read
    c = result["ceilings"]
    (m,) = gen["per_model"]
    assert m["bandwidth_samples"] and m["bandwidth_bytes_per_s"] == max([c["read_bytes_per_s"]] + m["bandwidth_samples"])
    assert m["probe_bytes"] == int(m["weight_bytes"] + gen["rows"][0]["kv_bytes_per_row"])
    for g in gen["rows"]:
        per_step = g["weight_bytes"] + g["batch"] * g["kv_bytes_per_row"]
        assert g["bytes_per_token"] == pytest.approx(per_step / g["batch"])
        assert g["bandwidth_bytes_per_s"] == m["bandwidth_bytes_per_s"]
        assert g["roofline_step_s"] == pytest.approx(per_step / m["bandwidth_bytes_per_s"])
        assert g["copy_roofline_fraction"] == pytest.approx(per_step / c["copy_bytes_per_s"] / g["step_s"])
        assert g["roofline_fraction"] == pytest.approx(g["roofline_step_s"] / g["step_s"])
        # the profile split of a decode step: the device's operations and the rest, adding up to the traced step
        assert g["busy_s"] > 0 and g["overhead_s"] >= 0
        assert g["busy_s"] + g["overhead_s"] == pytest.approx(g["profile_step_s"])
    assert any("decode >= 70% of the CPU bandwidth roofline" in t["target"] for t in result["targets"])
    assert result["planner"]["plans"] > 0
    assert {t["target"] for t in result["targets"]}
    for name in ("bench.json", "report.md", "training.png", "generation.png"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "## Training" in report and "host link MB/step" in report and "host AdamW" in report
    assert "| of roofline | of the copy ceiling |" in report
    # the folder was written whole (from a hidden sibling) and is never replaced without --overwrite (issue 28)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert main(["bench", "--quick", "--models", micro, "--modes", "data", "--out", str(out)]) == 2


@pytest.mark.slow
def test_a_llama_family_row_beside_its_pytorch_baseline(tmp_path, small_ceilings):
    """`wse bench --quick` adds one Llama-family row, in data mode only; a family model's row runs our model and its
    baseline transformers' class of the same architecture (LlamaForCausalLM) at the same shape."""
    from benchmarks.sizes import FULL, QUICK
    from benchmarks.suite import MODES
    from benchmarks.training_rows import training_rows

    for sizes in (QUICK, FULL):
        rows = {m: sizes.model_modes(m, MODES) for m in sizes.models}
        assert rows["llama-tiny"] == ["data"] and rows["tiny"] == list(MODES)
        assert sum(len(v) for m, v in rows.items() if m.startswith("llama")) == 1
    path = tmp_path / "llama-micro.json"
    path.write_text(json.dumps({"preset": "llama-tiny", **MICRO, "n_kv_heads": 1, "tied_embeddings": False}))
    sizes = replace(QUICK, models=(str(path),), batch_size={str(path): 4}, seq_len={str(path): 16}, steps=1,
                    modes={str(path): ("data",)})
    rows, baseline = training_rows(sizes, MODES, 2, "cpu", "float32", "auto", small_ceilings, 1e10, lambda line: None)
    (row,) = rows
    assert row["mode"] == "data" and _finite_positive(row["tokens_per_s"]) and math.isfinite(row["predicted_over_measured"])
    (torch_row,) = baseline["rows"]
    assert torch_row["architecture"] == "LlamaForCausalLM" and _finite_positive(torch_row["tokens_per_s"])
    assert all(math.isfinite(x) for x in torch_row["losses"] + row["losses"])


def test_bench_user_errors_are_one_line(capsys):
    from runtime.cli import main

    assert main(["bench", "--models", "112M"]) == 2
    assert main(["bench", "--modes", "data,pipe"]) == 2
    assert main(["bench", "--quick", "--modes", "data", "--profile", "tiny:pipelined"]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 3 and "Traceback" not in err and "--profile tiny:pipelined names no row" in err


def test_planner_speed_subset():
    from benchmarks.planner import planner_speed

    r = planner_speed(presets=["tiny", "13B"], systems=("cs1", "cs2"))
    assert r["plans"] == 2 * 2 * 2
    assert 0 < r["fits"] < r["plans"]  # 13B pipelined and CS-1 streaming cannot be planned
    assert r["total_s"] > 0


def test_simulated_scaling_subset():
    from benchmarks.scaling import simulated_scaling

    r = simulated_scaling(sizes=("1.3B",), systems=("cs2",), counts=(1, 2, 4))
    assert [row["systems"] for row in r["rows"]] == [1, 2, 4]
    assert r["rows"][0]["strong"]["efficiency"] == pytest.approx(1.0)
    for row in r["rows"]:
        assert 0 < row["strong"]["efficiency"] <= 1.0 + 1e-9
        assert row["weak"]["batch_size"] == 528 * row["systems"]
    assert r["rows"][-1]["strong"]["tokens_per_s"] > r["rows"][0]["strong"]["tokens_per_s"]


def test_targets_follow_the_figures():
    from benchmarks.targets import evaluate_targets

    def result(ratio, mfu, overhead_ratio, roofline=0.8):
        data = {"model": "111M", "mode": "data", "step_time_s": 1.0, "mfu": mfu, "model_flops_6n": 1e9, "remat": True,
                "batch_size": 8, "seq_len": 128, "predicted_step_time_s": ratio, "predicted_over_measured": ratio}
        pipe = {"model": "111M", "mode": "pipelined", "step_time_s": overhead_ratio, "predicted_step_time_s": 1.0,
                "predicted_over_measured": 1.0 / overhead_ratio,
                "vs_data": {"step_time_ratio": overhead_ratio, "overhead_fraction": 1 - 1 / overhead_ratio,
                            "predicted_bubble": 0.2, "allowed_overhead": 0.4}}
        return {"runs": [data, pipe], "peak_matmul_flops": 2e9, "platform": "cpu", "device": "cpu",
                "baseline": {"available": True, "rows": [{"model": "111M", "ratio": 1.2, "tokens_per_s": 10.0,
                                                          "ours_data_tokens_per_s": 12.0, "batch_size": 8, "seq_len": 128}]},
                "generation": {"models": ["111M"], "dtype": "float32",
                               "rows": [{"model": "111M", "batch": 1, "ratio": 0.8, "tokens_per_s": 8.0,
                                         "baseline_tokens_per_s": 10.0, "roofline_fraction": roofline,
                                         "step_s": 0.03, "roofline_step_s": 0.03 * roofline,
                                         "bytes_per_token": 4.5e8, "bandwidth_bytes_per_s": 2e10}]}}

    def met(targets, prefix):
        return next(t["met"] for t in targets if t["target"].startswith(prefix))

    good = evaluate_targets(result(1.0, 0.6, 1.5))
    bad = evaluate_targets(result(2.0, 0.3, 2.0))
    assert met(good, "111M data: predicted") and not met(bad, "111M data: predicted")
    assert met(good, "111M data-mode MFU") and not met(bad, "111M data-mode MFU")
    assert met(good, "111M pipelined: overhead") and not met(bad, "111M pipelined: overhead")
    assert met(good, "111M: tokens/s") is True
    # issue 11 holds every CPU row to 0.75..1.33: the pipelined row's 0.67 misses there, not in issue 6's band
    assert met(good, "111M pipelined: predicted/measured in [0.75, 1.33] on cpu") is False
    assert met(good, "111M pipelined: predicted/measured in [0.65, 1.5]") is True
    assert met(good, "111M generation") is False
    # issue 29: the batch-1 decode step against the CPU roofline, for small and 111M (small not run here: n/a)
    assert met(good, "111M batch-1 decode >= 70%") is True
    assert met(evaluate_targets(result(1.0, 0.6, 1.5, roofline=0.6)), "111M batch-1 decode >= 70%") is False
    assert met(good, "small batch-1 decode >= 70%") is None
    assert met(good, "GPU") is None


def test_decode_roofline_is_the_best_read_and_the_copy_only_without_one():
    """A decode step only reads, so its roofline is the best read rate measured (on a 2-core VM the copy counted 50-55
    GB/s of read + write traffic while no read-only kernel passed 32); the copy ceiling stands in only where the
    ceilings have no read figure, and each row still gets its fraction of the copy ceiling."""
    from benchmarks.generation import apply_roofline, memory_bandwidth

    assert memory_bandwidth({"copy_bytes_per_s": 50.0, "read_bytes_per_s": 29.0}) == 29.0
    assert memory_bandwidth({"copy_bytes_per_s": 50.0, "read_bytes_per_s": 29.0}, [31.0, 30.0]) == 31.0
    assert memory_bandwidth({"copy_bytes_per_s": 50.0, "read_bytes_per_s": None}) == 50.0
    assert memory_bandwidth({"copy_bytes_per_s": 50.0}, [20.0]) == 20.0
    rows = [{"batch": 2, "bytes_per_token": 10.0, "step_s": 1.0}, {"batch": 1, "bytes_per_token": 5.0, "step_s": 0.0}]
    apply_roofline(rows, 40.0, copy_bandwidth=50.0)
    assert rows[0]["roofline_step_s"] == 0.5 and rows[0]["roofline_fraction"] == 0.5
    assert rows[0]["copy_roofline_fraction"] == pytest.approx(0.4) and rows[0]["bandwidth_bytes_per_s"] == 40.0
    assert rows[1]["roofline_fraction"] is None and "copy_roofline_fraction" not in rows[1]


def test_settle_ceilings_takes_the_mean_of_the_two_readings():
    from benchmarks.suite import settle_ceilings

    start = {"matmul_flops": {"float32": 10.0, "bfloat16": 5.0}, "copy_bytes_per_s": 4.0, "shared_by_devices": 2,
             "method": "m", "host_link_bytes_per_s": {"host_to_device": 2.0, "device_to_host": 3.0},
             "host_adamw_params_per_s": 7.0, "all_reduce_link_bytes_per_s": 1.0, "dispatch_s": 2e-5}
    end = {"matmul_flops": {"float32": 8.0, "bfloat16": 6.0}, "copy_bytes_per_s": 3.0,
           "host_link_bytes_per_s": {"host_to_device": 2.5, "device_to_host": 1.0}, "host_adamw_params_per_s": 6.0,
           "all_reduce_link_bytes_per_s": 1.5, "dispatch_s": 1e-5}
    got = settle_ceilings(start, end)
    approx = pytest.approx
    assert got["matmul_flops"] == approx({"float32": 80 ** 0.5, "bfloat16": 30 ** 0.5})  # geometric means
    assert got["copy_bytes_per_s"] == approx(12 ** 0.5)
    assert got["host_link_bytes_per_s"] == approx({"host_to_device": 5 ** 0.5, "device_to_host": 3 ** 0.5})
    assert (got["host_adamw_params_per_s"], got["all_reduce_link_bytes_per_s"], got["dispatch_s"]) == approx(
        (42 ** 0.5, 1.5 ** 0.5, 2e-10 ** 0.5))
    assert got["per_device"]["host_link_bytes_per_s"]["host_to_device"] == approx(5 ** 0.5 / 2)
    assert got["per_device"]["matmul_flops"]["bfloat16"] == approx(30 ** 0.5 / 2)
    assert got["readings"]["after_training"]["matmul_flops"]["float32"] == 8.0
    # probes between the rows' timed steps scale every figure to the load the rows ran under
    scaled = settle_ceilings(start, end, probes=[4.0, 80 ** 0.5 / 2, 9.0], dtype="float32")
    assert scaled["rows_load"]["factor"] == approx(0.5)
    assert scaled["matmul_flops"] == approx({"float32": 80 ** 0.5 / 2, "bfloat16": 30 ** 0.5 / 2})
    assert scaled["copy_bytes_per_s"] == approx(12 ** 0.5 / 2) and scaled["dispatch_s"] == approx(2 * 2e-10 ** 0.5)
    assert scaled["per_device"]["matmul_flops"]["float32"] == approx(80 ** 0.5 / 4)


@pytest.mark.slow
def test_torch_baseline_in_a_child_process():
    """The GPU baseline's child-process path, run on CPU: tiny, float32, eager, 1 warm-up + 1 timed step."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from benchmarks.baseline_torch import run_in_subprocess

    row = run_in_subprocess("tiny", batch_size=2, seq_len=16, steps=1, warmup=1, dtype="float32", variant="eager",
                            device="cpu", timeout_s=120)
    assert "error" not in row, row.get("error")
    assert row["model"] == "tiny" and row["variant"] == "eager" and row["device"] == "cpu" and row["subprocess"]
    assert (row["batch_size"], row["seq_len"], row["dtype"], row["autocast"]) == (2, 16, "float32", None)
    assert _finite_positive(row["tokens_per_s"]) and _finite_positive(row["step_time_s"])
    assert len(row["losses"]) == 2 and all(math.isfinite(x) for x in row["losses"])
    assert row["torch"] and row["transformers"] and "peak_memory_bytes" in row and row["compile_s"] is None
    assert row["jax_imported"] is False  # the child must leave the device to PyTorch


def test_torch_baseline_child_failure_is_a_row():
    from benchmarks.baseline_torch import run_in_subprocess

    row = run_in_subprocess("112M", batch_size=1, seq_len=8, steps=1, variant="compile", device="cpu", timeout_s=60)
    assert row["variant"] == "compile" and "112M" in row["error"]


def _gpu_result(compile_tps, ours_bytes, mfu_flops, device="NVIDIA H200"):
    data = {"model": "1.3B", "mode": "data", "step_time_s": 1.0, "tokens_per_s": 60000.0, "mfu": 0.5,
            "model_flops_6n": mfu_flops, "batch_size": 8, "seq_len": 2048, "memory": {"peak_estimate": ours_bytes}}
    eager = {"model": "1.3B", "variant": "eager", "tokens_per_s": 44300.0, "peak_memory_bytes": 60.8e9,
             "batch_size": 8, "seq_len": 2048}
    compiled = dict(eager, variant="compile", tokens_per_s=compile_tps, peak_memory_bytes=59.4e9)
    return {"runs": [data], "platform": "gpu", "device": device, "devices": 1, "peak_matmul_flops": 7.9e14,
            "baseline": {"available": True, "subprocess": True, "rows": [eager, compiled]}, "generation": {}}


def test_gpu_targets_of_issue_10():
    from benchmarks.report import baseline_table
    from benchmarks.targets import evaluate_targets

    def met(targets, part):
        return next(t["met"] for t in targets if part in t["target"])

    good = evaluate_targets(_gpu_result(compile_tps=50000.0, ours_bytes=40e9, mfu_flops=0.6 * 989e12))
    bad = evaluate_targets(_gpu_result(compile_tps=55000.0, ours_bytes=70e9, mfu_flops=0.4 * 989e12))
    for part in ("x torch.compile", "memory <= torch eager", "of nominal bf16 peak"):
        assert met(good, part) is True and met(bad, part) is False, part
    unknown = evaluate_targets(_gpu_result(50000.0, 40e9, 6e14, device="Some GPU"))
    assert met(unknown, "of nominal bf16 peak") is None
    # no compile row (its child failed): not measured, never met
    failed = _gpu_result(50000.0, 40e9, 6e14)
    failed["baseline"]["rows"][1] = {"model": "1.3B", "variant": "compile", "error": "OutOfMemoryError: CUDA"}
    t = next(t for t in evaluate_targets(failed) if "x torch.compile" in t["target"])
    assert t["met"] is None and "OutOfMemoryError" in t["note"]
    # issue 29: 1.3B batch-1 decode against the bandwidth roofline
    assert met(good, "1.3B batch-1 decode") is None  # not decoded in this result
    decoded = _gpu_result(50000.0, 40e9, 6e14)
    decoded["generation"] = {"models": ["1.3B"], "dtype": "bfloat16",
                             "rows": [{"model": "1.3B", "batch": 1, "step_s": 1e-3, "roofline_step_s": 0.7e-3,
                                       "roofline_fraction": 0.7, "bandwidth_bytes_per_s": 4.3e12}]}
    assert met(evaluate_targets(decoded), "1.3B batch-1 decode") is True
    lines = "\n".join(baseline_table(_gpu_result(50000.0, 40e9, 6e14)))
    assert "| 1.3B | eager |" in lines and "| 1.3B | compile |" in lines and "57,983" in lines  # 60.8e9 B in MiB


def test_decode_profile_split_reads_gpu_kernels_inside_the_decode_span():
    """benchmarks/decode_profile.split on a synthetic trace shaped like a GPU one: kernels on a stream inside the
    decode annotation are busy time, the gaps overhead; the step marker (the longest kernel that runs once a step)
    gives the fastest step; kernels outside the span (the prefill) do not count."""
    from types import SimpleNamespace as NS

    from benchmarks.decode_profile import split, union_length

    def ev(name, start, dur):
        return NS(name=name, start_ns=start, duration_ns=dur)

    kernels = [ev("prefill_fusion", 0, 50)]
    for step, start in enumerate((100, 220, 330)):  # steps of 120, 110 and (to the span's end) 100 ns
        kernels += [ev("head_gemv", start, 40), ev("layer_fusion", start + 50, 30), ev("argmax", start + 85, 5)]
    host = NS(name="/host:CPU", lines=[NS(name="python", events=[ev("wse.generate.decode", 100, 330)])])
    gpu = NS(name="/device:GPU:0", lines=[NS(name="Stream #7(compute)", events=kernels),
                                         NS(name="XLA Ops", events=[ev("whole step", 100, 330)])])
    out = split(NS(planes=[host, gpu]), "wse.generate.decode", 3)
    assert out["busy_s"] == pytest.approx(3 * 75 / 3 / 1e9) and out["step_s"] == pytest.approx(330 / 3 / 1e9)
    assert out["overhead_s"] == pytest.approx((330 - 225) / 3 / 1e9) and "GPU" in out["source"]
    assert out["fastest_step_s"] == pytest.approx(110 / 1e9)
    assert "error" in split(NS(planes=[gpu]), "wse.generate.decode", 3)  # no span on the host
    assert union_length([(0, 10), (5, 20), (30, 40)]) == 30
