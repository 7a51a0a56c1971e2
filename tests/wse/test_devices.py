"""Device meshes in the simulator: descriptions (built in and YAML, refused with one line), the device cost model on
hand-computed toy cases, and `wse plan --system <device>` in data and streaming mode."""

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from model.config import get_config
from runtime.cli import main
from wse.devices.cost_model import DeviceModel, ring_all_reduce_s
from wse.devices.files import find_device
from wse.devices.hostlink import streaming_link_bytes
from wse.devices.specs import H100, H200, device_assumptions
from wse.errors import PlanError

TOY = SimpleNamespace(name="toy", n_layers=2, d_model=32, n_heads=2, d_head=16, d_ffn=128, vocab_size=256,
                      max_seq_len=64)


def write(tmp_path, text: str, name: str = "dev.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_built_in_gpus_carry_their_published_figures_and_sources():
    assert (H100.matmul_flops_bfloat16, H100.memory_bytes, H100.memory_bytes_per_s) == (989.4e12, 80e9, 3.35e12)
    assert (H200.matmul_flops_bfloat16, H200.memory_bytes, H200.memory_bytes_per_s) == (989.4e12, 141e9, 4.8e12)
    assert H100.host_to_device_bytes_per_s == H200.device_to_host_bytes_per_s == 64e9
    for device in (H100, H200):
        for name in ("matmul_flops_bfloat16", "memory_bytes", "memory_bytes_per_s", "host_to_device_bytes_per_s",
                     "host_update_params_per_s", "step_overhead_s", "copy_engines"):
            assert device.sources[name][0] in "VUD" and ": " in device.sources[name], name
    # the unpublished figures are the ones a plan lists, with their reasons
    assert set(device_assumptions(H100)) == {"device.host_update_params_per_s", "device.step_overhead_s"}


def test_device_file_loads_and_tags_what_it_gives(tmp_path):
    path = write(tmp_path, "kind: device\nbase: h100\ndevices: 4\nhost_to_device_bytes_per_s: 52e9\n")
    device, planner = find_device(path)
    assert device.devices == 4 and device.host_to_device_bytes_per_s == 52e9 and planner == {}
    assert device.memory_bytes == H100.memory_bytes and device.sources["memory_bytes"] == H100.sources["memory_bytes"]
    assert device.sources["host_to_device_bytes_per_s"] == "F: dev.yaml"
    assert device_assumptions(device)["device.devices"]["value"] == 4
    assert find_device("h200")[0] is H200
    cs = write(tmp_path, "kind: system\nbase: cs2\n", "cs.yaml")
    assert find_device(cs) is None and find_device("cs2") is None


@pytest.mark.parametrize("text, fragment", [
    ("kind: device\nbase: h100\nhbm_bytes: 1\n", "unknown key 'hbm_bytes'"),
    ("kind: device\nbase: h100\nmemory_byte: 1\n", "(did you mean 'memory_bytes'?)"),
    ("kind: device\nname: x\ndevices: 2\n", "missing figure 'matmul_flops_bfloat16'"),
    ("kind: device\nbase: h100\nmemory_bytes: lots\n", "'memory_bytes' must be a number >= 0, got 'lots'"),
    ("kind: device\nbase: h100\ncopy_engines: 1\n", "'copy_engines' must be true or false"),
    ("kind: device\nbase: h100\ndevices: 2.5\n", "'devices' must be a whole number"),
    ("kind: device\nbase: h100\nmemory_fraction: 2\n", "memory_fraction must be at most 1"),
    ("kind: device\nbase: a100\n", "base 'a100' is not one of h100, h200"),
    ("kind: gpu\nbase: h100\n", "kind must be one of device, system"),
    ("base: h100\nmemory_bytes: 1e9\n", "add 'kind: device'"),
])
def test_bad_device_files_are_one_line_exit_2(tmp_path, capsys, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(PlanError, match="device file|system file"):
        find_device(path)
    assert main(["plan", "--model", "111M", "--system", path, "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err


def toy_device(**changes):
    """Round figures; transfers and compute replaced per test where a hand-computed timeline needs them."""
    return replace(H100, devices=2, memory_bytes=1e12, memory_fraction=1.0, step_overhead_s=0.25,
                   host_update_params_per_s=1e6, **changes)


def test_layer_time_is_flops_at_the_efficiency_plus_traffic_at_the_bandwidth():
    fast_memory = DeviceModel(TOY, toy_device(memory_bytes_per_s=1e30), 64, "float32")
    fwd, bwd = fast_memory.layer_seconds(128, "none")
    flops = [layer.flops_per_token * 128 / (494.7e12 * 0.5) for layer in fast_memory.layers]
    assert list(fwd) == pytest.approx(flops)
    attention = [layer.attention_flops_per_token * 128 / (494.7e12 * 0.5) / 2 for layer in fast_memory.layers]
    assert list(bwd) == pytest.approx([2 * f + a for f, a in zip(flops, attention)])
    # remat full runs each block's forward again in its backward; the embedding and head are never recomputed
    _, bwd_full = fast_memory.layer_seconds(128, "full")
    assert list(bwd_full - bwd) == pytest.approx([0.0, flops[1], flops[2], 0.0])
    # traffic: a block's kept values written and read forward (2 accesses) at 4 bytes each
    slow = DeviceModel(TOY, toy_device(memory_bytes_per_s=1e9, fused_attention=True), 64, "float32")
    fwd_slow, _ = slow.layer_seconds(128, "none")
    kept = slow.layers[1].stash_values_per_token * 128 * 4
    assert fwd_slow[1] == pytest.approx(flops[1] + 2 * kept / 1e9)


def hand_model(monkeypatch, **device):
    """The toy with per-layer times and transfers fixed by hand: blocks 2 s forward and 4 s backward, embedding
    0 + 0, head 1 + 2; a layer's fetch 3 s, the rest's 1 s, a layer's gradient out 1 s, the rest's 0.5 s."""
    import numpy as np

    model = DeviceModel(TOY, toy_device(**device), 64, "bfloat16")
    monkeypatch.setattr(model, "layer_seconds", lambda tokens, remat: (np.array([0.0, 2, 2, 1]),
                                                                        np.array([0.0, 4, 4, 2])))
    monkeypatch.setattr(model, "transfer_seconds", lambda split: {
        "fetch": 3.0, "rest_in": 1.0, "out": 1.0, "rest_out": 0.5, "reduce": 0.0, "rest_reduce": 0.0,
        "update_in": 0.0, "update_out": 0.0})
    return model


def test_streaming_step_is_max_of_overlapped_parts_and_sum_of_the_rest(monkeypatch):
    model = hand_model(monkeypatch, copy_engines=True, link_full_duplex=True)
    parts = model.streaming_step(128, accum=2, host_update=True)
    # first fetch 1 + 3; forward max(2, 3) twice; head and embedding 3; backward max(4, max(3, 0)) then
    # max(4, max(3, 1)); the last gradients leave: 1 + 0.5
    slice_s = (1 + 3) + (3 + 3) + 3 + (4 + 4) + 1.5
    host = 2 * model.parameters / 1e6  # both devices' copies, at the host's rate, after the backward
    assert parts["step_time_s"] == pytest.approx(2 * slice_s + host + 0.25)
    assert parts["host_update_s"] == pytest.approx(host) and parts["fixed_s"] == 0.25
    assert parts["compute_s"] == pytest.approx(2 * (4 + 8 + 3))
    assert parts["first_fetch_s"] == pytest.approx(2 * 4)
    total = parts["compute_s"] + parts["exposed_link_s"] + parts["host_update_s"] + parts["fixed_s"]
    assert parts["step_time_s"] == pytest.approx(total)
    assert parts["link_bytes"] == {k: v for k, v in streaming_link_bytes(TOY, compute_bytes=2, accum=2).items()
                                   if k in ("to_device", "to_host")}


def test_streaming_without_copy_engines_or_duplex_adds_what_it_cannot_overlap(monkeypatch):
    model = hand_model(monkeypatch, copy_engines=False, link_full_duplex=False)
    parts = model.streaming_step(128, accum=1, host_update=True)
    # forward (2 + 3) twice; backward 4 + (3 + 0), then 4 + (3 + 1)
    slice_s = (1 + 3) + (5 + 5) + 3 + (7 + 8) + 1.5
    assert parts["step_time_s"] == pytest.approx(slice_s + 2 * model.parameters / 1e6 + 0.25)


def test_link_split_keeps_hostlinks_bytes():
    model = DeviceModel(TOY, toy_device(), 64, "bfloat16")
    for host_update in (True, False):
        split = model.link_split(3, host_update)
        total = streaming_link_bytes(TOY, compute_bytes=2, accum=3, host_update=host_update)
        assert split["rest"] + 5 * split["layer"] == total["per_slice_weights"]
        assert 3 * total["per_slice_weights"] + split["update_in"] == total["to_device"]
        assert split["update_in"] == 0 if host_update else split["update_in"] > 0


def test_data_step_adds_all_reduce_update_and_fixed_cost():
    model = DeviceModel(TOY, toy_device(device_link_bytes_per_s=1e9, memory_bytes_per_s=1e12), 64, "bfloat16")
    fwd, bwd = model.layer_seconds(64, "none")
    parts = model.data_step(64, 3, "none")
    all_reduce = 2 * (2 - 1) / 2 * 4 * model.parameters / 1e9
    assert parts["all_reduce_s"] == pytest.approx(all_reduce) == ring_all_reduce_s(4 * model.parameters, 2, 1e9)
    assert parts["device_update_s"] == pytest.approx(32 * model.parameters / 1e12)
    assert parts["step_time_s"] == pytest.approx(3 * (fwd.sum() + bwd.sum()) + all_reduce
                                                 + parts["device_update_s"] + 0.25)
    assert ring_all_reduce_s(1e9, 1, 1.0) == 0.0


def plan_json(capsys, *args):
    assert main(["plan", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_plan_on_eight_h100s_with_weights_in_host_memory(tmp_path, capsys):
    path = write(tmp_path, "kind: device\nbase: h100\ndevices: 8\n", "h100x8.yaml")
    out = plan_json(capsys, "--model", "1.3B", "--system", path, "--mode", "streaming")
    assert out["kind"] == "devices" and out["mode"] == "streaming" and out["systems"] == 8
    assert out["batch_size"] == 528 and out["seq_len"] == 2048 and out["dtype"] == "bfloat16"
    expected = streaming_link_bytes(get_config("1.3B"), compute_bytes=2, accum=out["details"]["accum"])
    assert out["link_bytes"] == {"to_device": expected["to_device"], "to_host": expected["to_host"]}
    parts = out["parts"]
    assert out["step_time_s"] == pytest.approx(parts["compute_s"] + parts["exposed_link_s"] + parts["host_update_s"]
                                               + parts["device_update_s"] + parts["fixed_s"])
    assert 0 < out["memory"]["device_bytes"] <= out["memory"]["capacity_bytes"] == 0.75 * 80e9
    assert out["memory"]["host_bytes"] > 0 and out["tokens_per_s"] > 0 and 0 < out["utilization"] < 1
    assert out["assumptions"]["device.devices"]["reason"] == "h100x8.yaml"
    data = plan_json(capsys, "--model", "1.3B", "--system", path, "--mode", "data")
    assert data["mode"] == "data" and data["link_bytes"] == {"to_device": 0, "to_host": 0}
    assert data["parts"]["all_reduce_s"] > 0 and data["step_time_s"] < out["step_time_s"]
    assert plan_json(capsys, "--model", "1.3B", "--system", path)["mode"] == "data"  # auto: data when it fits
    assert main(["plan", "--model", "1.3B", "--system", "h200", "--systems", "1", "--batch-size", "8"]) == 0
    text = capsys.readouterr().out
    assert "host update" in text and "tokens/s" in text and "assumptions" in text


def test_device_plan_refusals_and_choices(capsys):
    assert plan_json(capsys, "--model", "6.7B", "--system", "h100", "--batch-size", "8")["mode"] == "streaming"
    for args, fragment in ((["--model", "6.7B", "--system", "h100", "--mode", "data"], "use --mode streaming"),
                           (["--model", "1.3B", "--system", "h100", "--mode", "pipelined"], "unknown mode"),
                           (["--model", "1.3B", "--system", "h100", "--batch-size", "4"], "--batch-size 8"),
                           (["--model", "1.3B", "--system", "h100", "--memoryx", "12TB"], "--memoryx"),
                           (["--model", "1.3B", "--system", "cs2", "--mode", "data"], "device mesh"),
                           (["--model", "1.3B", "--system", "cs2", "--dtype", "float32"], "--dtype")):
        assert main(["plan", *args, "--json"]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
