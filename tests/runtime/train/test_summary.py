"""What a run says before its first step (model, parameters, data, tokens, steps, epochs, mesh, mode, what it writes
where) and each setting's value beside its source at the end."""

from types import SimpleNamespace

from runtime.config import load_config
from runtime.config.recipes import resolve
from runtime.platform import build_mesh
from runtime.train.summary import epochs, settings_line, start_lines


def test_a_run_says_what_it_is_about_to_do(tmp_path):
    run, _ = resolve(load_config(None, ["model=tiny", "train.steps=30", "train.batch_size=4", "train.seq_len=64",
                                        "mesh.devices=1", "train.checkpoint_every=10", "observe.tensorboard=false"]))
    executor = SimpleNamespace(mesh=build_mesh("cpu", 1, {"data": 1, "stage": 1, "model": 1}), mode="data",
                               plan={"remat": "none", "layer_loop": "unroll", "layer_loop_reason": "asked for"})
    ctx = SimpleNamespace(run_config=run, gpt=run.gpt_config(), executor=executor, start=0, run_dir=tmp_path / "r",
                          data={"source": "data/mine", "kind": "token-windows", "windows": 120, "tokens": 7_681,
                                "val_windows": 3}, from_weights=False)
    lines = start_lines(ctx)
    assert lines[0] == f"training tiny (8,052,096 parameters): 30 steps from scratch, run dir {tmp_path / 'r'}"
    assert lines[1] == ("  data: data/mine: 7,681 training tokens in 120 training windows of 64 + 1 tokens; "
                        "3 validation windows")
    assert lines[2] == ("  30 steps x 4 sequences x 64 tokens = 7,680 tokens: 1.00 epochs (passes over the "
                        "training windows)")
    assert lines[3] == ("  mesh data 1 x stage 1 x model 1 on 1 CPU device, data mode, remat none, float32, layers "
                        "unrolled (asked for)")
    assert lines[4].startswith(f"  writes {tmp_path / 'r'}: checkpoints/ every 10 steps") and "tensorboard" not in lines[4]
    ctx.from_weights = True  # fine-tuning: a fresh run from given weights
    assert "30 steps from the given weights, run dir" in start_lines(ctx)[0]
    ctx.start = 12
    assert "resuming at step 12 of 30" in start_lines(ctx)[0]


def test_each_setting_s_value_beside_its_source():
    run, sources = resolve(load_config(None, ["model=tiny", "train.steps=50", "train.batch_size=8"]))
    line = settings_line(run.flat(), sources)
    assert line == ("settings: batch_size 8 (given), seq_len 256 (preset tiny), lr 0.001 (preset tiny), warmup_steps 5 "
                    "(derived), decay_steps 50 (derived), steps 50 (given)")


def test_epochs_are_passes_over_the_windows():
    assert epochs(2, 8, 5) == 3.2 and epochs(30, 4, 120) == 1.0
