"""The run config: YAML + key=value overrides, every key checked, recipe defaults, cross-field rules (no JAX)."""

import pytest

from runtime.config import load_config, parse_overrides, resume_changes, resume_conflicts
from runtime.config.recipes import RECIPE_WARMUP_TOKENS
from runtime.errors import UserError


def test_overrides_parse_types_and_nest():
    tree = parse_overrides(["mesh.devices=8", "mesh.axes.stage=4", "train.lr=1e-3", "execution.remat=false",
                            "model=tiny", "data=builtin", "train.run_dir=runs/x", "execution.microbatches=null"])
    assert tree == {"mesh": {"devices": 8, "axes": {"stage": 4}}, "train": {"lr": 1e-3, "run_dir": "runs/x"},
                    "execution": {"remat": False, "microbatches": None}, "model": "tiny", "data": "builtin"}


def test_remat_unset_or_auto_leaves_it_to_the_plan():
    assert load_config(None, []).execution.remat == "auto"
    assert load_config(None, ["execution.remat=auto"]).execution.remat == "auto"
    assert load_config(None, ["execution.remat=dots"]).execution.remat == "dots"
    # the old boolean spellings stay valid
    assert load_config(None, ["execution.remat=true"]).execution.remat == "full"
    assert load_config(None, ["execution.remat=false"]).execution.remat == "none"
    with pytest.raises(UserError, match="execution.remat"):
        load_config(None, ["execution.remat=sometimes"])
    assert load_config(None, []).execution.attention == "auto"
    with pytest.raises(UserError, match="execution.attention"):
        load_config(None, ["execution.attention=flash"])


def test_yaml_file_then_overrides_win(tmp_path):
    (tmp_path / "m.yaml").write_text("n_layers: 2\nd_model: 32\nn_heads: 2\nd_head: 16\nd_ffn: 64\nmax_seq_len: 64\n")
    (tmp_path / "run.yaml").write_text("model: m.yaml\nmesh:\n  devices: 4\n  axes: {stage: 2}\ntrain:\n  steps: 7\n  lr: 0.01\n")
    cfg = load_config(tmp_path / "run.yaml", ["train.steps=9"]).resolve()
    assert cfg.train.steps == 9 and cfg.train.lr == 0.01 and cfg.mesh.devices == 4 and cfg.mesh.axes.stage == 2
    assert cfg.gpt_config().n_layers == 2  # the model file is found relative to the run file
    assert cfg.train.seq_len == 64  # defaults to the model's context


def test_recipe_defaults_from_the_preset():
    cfg = load_config(None, ["model=1.3B", "train.steps=1000"]).resolve()
    t = cfg.train
    assert (t.batch_size, t.seq_len, t.lr, t.decay) == (528, 2048, 2e-4, "cosine")
    # 375M warmup tokens are 347 steps of 528 x 2048, capped at 10% of a 1000-step run
    assert t.warmup_steps == min(round(RECIPE_WARMUP_TOKENS / (528 * 2048) + 0.5), 100) == 100
    assert t.run_dir == "runs/1.3B" and t.min_lr_ratio == 0.1 and t.weight_decay == 0.1 and t.grad_clip == 1.0
    assert load_config(None, ["model=tiny"]).resolve().devices() == 8  # emulated CPU devices by default


@pytest.mark.parametrize("items, fragment", [
    (["trian.steps=3"], "did you mean 'train.steps'"),
    (["train.setps=3"], "did you mean 'train.steps'"),
    (["mesh.axes.stag=2"], "did you mean 'mesh.axes.stage'"),
    (["mesh.device=2"], "did you mean 'mesh.devices'"),
    (["execution.mode=pipe"], "execution.mode"),
    (["train.steps=abc"], "train.steps"),
    (["train.steps"], "KEY=VALUE"),
    (["mesh.axes={stage: 2}"], "one by one"),
])
def test_bad_overrides_are_one_line_errors(items, fragment):
    with pytest.raises(UserError) as err:
        load_config(None, items)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_unknown_key_in_a_yaml_file(tmp_path):
    (tmp_path / "run.yaml").write_text("train:\n  stpes: 3\n")
    with pytest.raises(UserError, match="unknown config key 'train.stpes'; did you mean 'train.steps'"):
        load_config(tmp_path / "run.yaml")


@pytest.mark.parametrize("items, fragment", [
    (["model=tiny", "train.seq_len=4096"], "beyond model 'tiny' context of 256"),
    (["train.batch_size=6", "train.accum_steps=4"], "not divisible"),
    (["mesh.axes.data=-1", "mesh.axes.stage=-1"], "at most one axis"),
    (["train.steps=0"], "train.steps must be positive"),
])
def test_cross_field_rules(items, fragment):
    with pytest.raises(UserError, match=fragment):
        load_config(None, items).resolve()


@pytest.mark.parametrize("item, line", [
    ("train.batch_size=0", "train.batch_size must be positive, got 0"),
    ("train.seq_len=0", "train.seq_len must be positive, got 0"),
    ("train.accum_steps=0", "train.accum_steps must be positive, got 0"),
    ("train.lr=nan", "train.lr must be positive, got nan"),
    ("train.grad_clip=-1", "train.grad_clip must not be negative, got -1.0"),
    ("mesh.devices=0", "mesh.devices must be positive, got 0"),
])
def test_a_value_out_of_range_is_one_line_as_soon_as_it_is_parsed(item, line):
    """Refused when parsed, before any default is derived from it (train.batch_size=0 was a ZeroDivisionError in the
    warmup's derivation)."""
    with pytest.raises(UserError) as err:
        load_config(None, ["model=tiny", item])
    assert str(err.value) == line


def test_resume_conflicts_name_the_changed_setting():
    saved = load_config(None, ["model=tiny", "train.lr=1e-3"]).resolve()
    longer = load_config(None, ["model=tiny", "train.lr=1e-3", "mesh.devices=2", "execution.mode=streaming",
                                "train.steps=500"])
    # the derived warmup (10% of train.steps) continues as saved instead of moving with the longer run
    assert resume_conflicts(saved.model_dump(), longer.resolve(saved=saved.model_dump())) == []
    assert longer.resolve(saved=saved.model_dump()).train.warmup_steps == saved.train.warmup_steps == 10
    # resolved without the checkpoint, both the derived warmup and the decay horizon would move with the longer run:
    # the optimisation may change on resume, and the run names each change
    assert resume_conflicts(saved.model_dump(), longer.resolve()) == []
    assert resume_changes(saved.model_dump(), longer.resolve()) == {"train.warmup_steps": [10, 50],
                                                                     "train.decay_steps": [100, 500]}
    other_lr = load_config(None, ["model=tiny", "train.lr=2e-3"]).resolve()
    assert resume_changes(saved.model_dump(), other_lr) == {"train.lr": [1e-3, 2e-3]}
    # the data settings decide which batches the run sees: changing them is a conflict
    other_window = load_config(None, ["model=tiny", "train.lr=1e-3", "train.seq_len=64"]).resolve()
    assert resume_conflicts(saved.model_dump(), other_window) == ["train.seq_len"]


def test_batch_against_the_mesh_is_checked_when_resolved():
    """Every step's rows must split over the replicas; a pipeline's microbatches must divide a replica's share."""
    def resolve(*items):
        return load_config(None, ["model=tiny", *items]).resolve()

    with pytest.raises(UserError, match=r"train.batch_size=6 .*6 sequences per step.* 4 data-parallel replicas "
                                        r"\(mesh data=4\); .*multiple of 4, e.g. 4 or 8"):
        resolve("mesh.devices=4", "execution.mode=data", "train.batch_size=6")
    with pytest.raises(UserError, match=r"accum_steps=2: 4 sequences per step.*multiple of 16"):
        resolve("mesh.devices=8", "train.batch_size=8", "train.accum_steps=2")
    # outside the pipeline the stage axis is more replicas; inside it only data splits the batch
    with pytest.raises(UserError, match=r"8 data-parallel replicas \(mesh data=2 x stage=4\)"):
        resolve("mesh.devices=8", "mesh.axes.stage=4", "execution.mode=streaming", "train.batch_size=4")
    assert resolve("mesh.devices=8", "mesh.axes.stage=4", "train.batch_size=4").train.batch_size == 4
    with pytest.raises(UserError, match=r"execution.microbatches=3 does not divide the 4 sequences .* 1, 2, 4"):
        resolve("mesh.devices=8", "mesh.axes.stage=4", "train.batch_size=8", "execution.microbatches=3")
    with pytest.raises(UserError, match="applies to the pipelined mode only"):
        resolve("mesh.devices=2", "execution.mode=data", "train.batch_size=8", "execution.microbatches=2")


def test_a_refused_layout_writes_nothing(tmp_path):
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "runtime.cli", "train", "model=tiny", "mesh.devices=4",
                          "execution.mode=data", "train.batch_size=6", "train.steps=2", f"train.run_dir={run_dir}"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: train.batch_size=6") and res.stderr.count("\n") == 1
    assert not run_dir.exists()


def test_extending_a_run_keeps_its_saved_schedule():
    first = load_config(None, ["model=tiny", "train.steps=40"]).resolve()
    ext = load_config(None, ["model=tiny", "train.steps=70"]).resolve(saved=first.model_dump())
    assert ext.train.steps == 70 and ext.train.decay_steps == 40 and ext.train.warmup_steps == first.train.warmup_steps
    assert resume_conflicts(first.model_dump(), ext) == []
    # checkpoints written before decay_steps existed decayed over their train.steps
    old = first.model_dump()
    del old["train"]["decay_steps"]
    assert load_config(None, ["model=tiny", "train.steps=70"]).resolve(saved=old).train.decay_steps == 40
    # a new decay horizon on resume moves the rate mid-run: allowed when given, and named as a change
    moved = load_config(None, ["model=tiny", "train.steps=70", "train.decay_steps=70"]).resolve(saved=first.model_dump())
    assert resume_conflicts(first.model_dump(), moved) == []
    assert resume_changes(first.model_dump(), moved) == {"train.decay_steps": [40, 70]}


def test_one_merge_of_defaults_in_the_documented_order():
    """field default < preset recipe < job recipe < saved checkpoint < given, and each value says which it is."""
    from runtime.config.recipes import Recipe, resolve

    job = Recipe.train("job", lr=1e-4, batch_size=4, eval_every=7, seq_len=64, checkpoint_every=9)
    saved, _ = resolve(load_config(None, ["model=tiny", "mesh.devices=1", "train.batch_size=2", "train.eval_every=3"]), job)
    run = load_config(None, ["model=tiny", "mesh.devices=1", "train.steps=50", "train.lr=5e-3"])
    cfg, sources = resolve(run, job, saved.model_dump())
    t = cfg.train
    assert (t.lr, sources["train.lr"]) == (5e-3, "given")
    assert (t.batch_size, sources["train.batch_size"]) == (2, "checkpoint")  # the saved run's, over the job's
    assert (t.eval_every, sources["train.eval_every"]) == (3, "checkpoint")
    assert (t.seq_len, sources["train.seq_len"]) == (64, "checkpoint")  # saved from the job recipe: kept on resume
    assert (t.checkpoint_every, sources["train.checkpoint_every"]) == (9, "checkpoint")
    assert (t.decay, sources["train.decay"]) == ("linear", "checkpoint")  # the optimisation a resume must keep
    assert (t.min_lr_ratio, sources["train.min_lr_ratio"]) == (0.1, "checkpoint")
    assert (t.keep, sources["train.keep"]) == (3, "default")
    fresh, fresh_sources = resolve(run, job)
    assert (fresh.train.batch_size, fresh_sources["train.batch_size"]) == (4, "job recipe")
    assert (fresh.train.warmup_steps, fresh_sources["train.warmup_steps"]) == (5, "derived")  # 10% of 50 steps
    assert fresh_sources["train.run_dir"] == "derived" and fresh.train.run_dir == "runs/tiny"
    assert (fresh.train.decay, fresh_sources["train.decay"]) == ("linear", "preset tiny")


def test_fine_tuning_steps_come_from_the_data_when_not_given():
    """The tutorial's fine_tune and `wse finetune` without steps: FINETUNE_EPOCHS passes over the packed windows
    (issue 27: the tutorial once chose 2 steps whatever its data); a given length wins."""
    from runtime.config.recipes import FINETUNE_EPOCHS, finetune_recipe

    common = dict(source_lr=1e-3, seq_len=128, val_windows=50, saved_steps=None)
    for windows, batch in ((1000, 8), (37, 4), (1, 16)):
        values = finetune_recipe(batch_size=batch, windows=windows, steps=None, **common).values
        assert values["train.steps"] == max(1, -(-FINETUNE_EPOCHS * windows // batch))
        assert values["train.steps"] * batch >= FINETUNE_EPOCHS * windows  # every window seen that many times
    assert finetune_recipe(batch_size=8, windows=1000, steps=7, **common).values["train.steps"] == 7
