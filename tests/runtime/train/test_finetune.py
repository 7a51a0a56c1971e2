"""Fine-tuning: the completion-only mask, deterministic packing, the resumable loader, `wse finetune` end to end on a
micro model (a new run dir, never its source), and bad JSONL refused with one line and exit 2."""

import hashlib
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from model.config import get_config
from model.tokenizer import get_tokenizer
from runtime.cli import main
from runtime.errors import UserError
from runtime.data import Loader, holdout, pack, read_examples, tokenize

jax.devices()  # start the backend with conftest's 8 devices before any mesh could ask for fewer

TOK = get_tokenizer()
EOT = TOK.eot_id
MICRO = dict(n_layers=2, d_model=32, n_heads=2, d_head=16, d_ffn=64, max_seq_len=64, batch_size=8, learning_rate=3e-3)


def _write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


RECORDS = [{"prompt": f"Question {i}:", "completion": f" the answer is {i * 7} and nothing else."} for i in range(12)]
RECORDS += [{"text": f"A plain document number {i} about Python's for loop."} for i in range(4)]


# ----------------------------------------------------------------------------------------------- mask and packing

def test_mask_covers_exactly_the_completion_and_eot():
    rec = {"prompt": "The assert statement", "completion": "\nAssert statements insert checks."}
    (ids, trained), = tokenize([rec], TOK)
    p, c = TOK.encode(rec["prompt"]), TOK.encode(rec["completion"])
    assert ids.tolist() == p + c + [EOT]
    assert trained.tolist() == [False] * len(p) + [True] * (len(c) + 1)

    packed = pack([(ids, trained)], seq_len=32, pad_id=EOT)
    tokens, mask = packed.tokens[0], packed.mask[0]
    targets = tokens[1:]
    n = len(ids)
    # Target j is token j + 1: trained exactly for the completion's tokens and the closing <|endoftext|>.
    assert mask.tolist() == [j + 1 >= len(p) and j + 1 < n for j in range(32)]
    assert targets[mask].tolist() == c + [EOT]
    assert (tokens[n:] == EOT).all() and not mask[n - 1:].any()  # padding never trained
    assert packed.trained_tokens == len(c) + 1


def test_text_records_are_trained_everywhere_and_long_ones_split():
    text = " ".join(f"word{i}" for i in range(60))
    (ids, trained), = tokenize([{"text": text}], TOK)
    assert trained.all() and ids[-1] == EOT
    packed = pack([(ids, trained)], seq_len=16, pad_id=EOT)
    # Consecutive windows overlapping by one token: every token after the first is a target exactly once.
    got = np.concatenate([packed.tokens[r, 1:][packed.mask[r]] for r in range(packed.rows)])
    assert sorted(got.tolist()) == sorted(ids[1:].tolist()) and packed.trained_tokens == len(ids) - 1


def test_long_prompt_completion_is_truncated_or_dropped():
    long_prompt = {"prompt": "x " * 40, "completion": " y"}
    long_completion = {"prompt": "Q", "completion": " z" * 40}
    packed = pack(tokenize([long_prompt, long_completion], TOK), seq_len=16, pad_id=EOT)
    assert (packed.truncated, packed.dropped, packed.rows) == (1, 1, 1)


def test_packing_is_deterministic_for_a_seed():
    examples = tokenize(RECORDS, TOK)
    a, b = pack(examples, 24, seed=3, pad_id=EOT), pack(examples, 24, seed=3, pad_id=EOT)
    c = pack(examples, 24, seed=4, pad_id=EOT)
    assert a.fingerprint == b.fingerprint and a.fingerprint != c.fingerprint
    pairs = tokenize(RECORDS[:12], TOK)  # prompt/completion only: the trained tokens do not depend on the order
    assert pack(pairs, 24, seed=3, pad_id=EOT).trained_tokens == pack(pairs, 24, seed=4, pad_id=EOT).trained_tokens


def test_loader_resumes_exactly_and_validation_covers_every_window_once():
    packed = pack(tokenize(RECORDS, TOK), 48, seed=0, pad_id=EOT)
    assert 2 < packed.rows < 8 and packed.rows % 3  # smaller than a batch: the stream still serves full batches
    run = Loader(packed, 8, seed=1, process_index=0, process_count=1)
    first = [next(run) for _ in range(5)]
    again = Loader(packed, 8, seed=1, process_index=0, process_count=1)
    for _ in range(2):
        next(again)
    resumed = Loader(packed, 8, seed=1, process_index=0, process_count=1)
    resumed.restore(json.loads(json.dumps(again.state())))
    for want in first[2:]:
        assert all(np.array_equal(x, y) for x, y in zip(want, next(resumed)))
    other = pack(tokenize(RECORDS[:-1], TOK), 48, seed=0, pad_id=EOT)
    with pytest.raises(UserError, match="dataset"):
        Loader(other, 8, seed=1).restore(again.state())

    val = Loader(packed, 3, shuffle=False, split="val", process_index=0, process_count=1)
    seen = [val.batch(0, i) for i in range(val.steps_per_epoch)]
    assert sum(int(m.sum()) for _, _, m in seen) == packed.trained_tokens
    inputs = np.concatenate([x for x, _, m in seen])[: packed.rows]
    assert np.array_equal(inputs, packed.tokens[:, :-1])


def test_holdout_is_stable_and_skips_small_sets():
    many = [{"text": f"doc {i}"} for i in range(100)]
    train, val = holdout(many)
    assert 0 < len(val) < 30 and len(train) + len(val) == 100 and holdout(many) == (train, val)
    assert holdout(many[:5]) == (many[:5], [])


# ------------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("content, fragment", [
    (b"", "is empty"),
    (b'{"prompt": "a", "completion": "b"}\n\xff\xfe{"text": 1}\n', "not valid UTF-8"),
    (b'{"prompt": "a"}\n', ':1 has "prompt" but no "completion"'),
    (b'{"text": "ok"}\n{"title": "x"}\n', ':2 has neither'),
    (b'{"prompt": "a", "completion": "  "}\n', 'empty "completion"'),
    (b'[1, 2]\n', "not a JSON object"),
    (b'{"text": "ok"\n', "not valid JSON"),
])
def test_bad_jsonl_is_refused_in_one_line(tmp_path, capsys, source, content, fragment):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    before = _tree_hash(source)
    assert main(["finetune", "--from", str(source), "--data", str(bad), f"train.run_dir={tmp_path / 'ft'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and fragment in err
    assert not (tmp_path / "ft").exists() and _tree_hash(source) == before
    with pytest.raises(UserError):
        read_examples(bad)


# ------------------------------------------------------------------------------------------------ end to end

def _tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A model-only checkpoint of a micro model (freshly initialised: fine-tuning mechanics need no pre-training)."""
    from model.gpt import initial_params
    from runtime.checkpoint import save_model

    cfg = get_config("tiny", **MICRO, name="micro")
    root = tmp_path_factory.mktemp("ft") / "micro"
    save_model(root, cfg, jax.device_get(initial_params(cfg, 0)))
    return root


@pytest.fixture(scope="module")
def tuned(source, tmp_path_factory):
    """`wse finetune --json` on a small prompt/completion + text file, default run dir and defaults, 3 steps."""
    import contextlib
    import io

    data = _write_jsonl(tmp_path_factory.mktemp("ftdata") / "tasks.jsonl", RECORDS)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["finetune", "--json", "--from", str(source), "--data", str(data), "train.steps=3",
                     "execution.mode=data", "mesh.devices=1", "train.seq_len=32"])
    assert code == 0
    return json.loads(out.getvalue().strip().splitlines()[-1]), data


@pytest.mark.slow
def test_finetune_writes_a_new_run_dir_with_fine_tuning_defaults(source, tuned):
    from runtime.checkpoint import load_model
    from runtime.config.recipes import FINETUNE_LR_FRACTION

    result, data = tuned
    run_dir = Path(result["run_dir"])
    assert run_dir == source.absolute().with_name("micro-ft")  # <source>-ft
    assert result["defaults_applied"]["lr"] == pytest.approx(MICRO["learning_rate"] * FINETUNE_LR_FRACTION)
    assert result["train_examples"]["examples"] == len(RECORDS) and result["val_examples"] is None  # < 20: no holdout
    assert len(result["losses"]) == 3 and all(np.isfinite(result["losses"]))
    assert result["checkpoint_step"] == 3 and (run_dir / "loss.png").is_file()
    # it says how many passes over its example windows its steps make
    assert result["train_data"]["windows"] == result["train_examples"]["windows"]
    assert result["epochs"] == pytest.approx(3 * result["batch_size"] / result["train_examples"]["windows"])
    cfg, _ = load_model(run_dir)
    assert cfg.n_layers == MICRO["n_layers"]
    saved = (run_dir / "config.yaml").read_text()
    assert str(data) in saved and "seq_len: 32" in saved


@pytest.mark.slow
def test_finetune_resumes_in_its_run_dir(source, tuned, capsys):
    result, data = tuned
    assert main(["finetune", "--json", "--from", str(source), "--data", str(data), "train.steps=5",
                 "execution.mode=data", "mesh.devices=1", "train.seq_len=32"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["start_step"] == 3 and len(again["losses"]) == 2 and again["run_dir"] == result["run_dir"]
    # Defaults continue as saved (a longer run keeps its warmup, LR, cadence) rather than being recomputed for 5 steps.
    assert result["defaults_applied"]["checkpoint_every"] == 2  # ceil(3 / 2); a fresh 5-step run would take 3
    for key in ("checkpoint_every", "warmup_steps", "lr", "batch_size"):
        assert again["defaults_applied"][key] == result["defaults_applied"][key]


@pytest.mark.slow
@pytest.mark.parametrize("change, fragment", [("train.seed=9", "was trained with train.seed=0"),
                                               ("train.seq_len=16", "was trained with train.seq_len=32")])
def test_finetune_into_its_run_dir_with_other_settings_is_refused(source, tuned, capsys, change, fragment):
    """wse train's rule: an existing fine-tune dir resumes only when compatible; else one line, nothing changed."""
    result, data = tuned
    before = _tree_hash(Path(result["run_dir"]))
    assert main(["finetune", "--from", str(source), "--data", str(data), "train.steps=6", "execution.mode=data",
                 "mesh.devices=1", "train.seq_len=32", change]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and err.count("\n") == 1
    assert _tree_hash(Path(result["run_dir"])) == before


@pytest.mark.slow
@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_never_writes_its_source(source, tuned, tmp_path, capsys, where):
    _, data = tuned
    run_dir = {"same": source, "inside": source / "ft", "around": source.parent}[where]
    before = _tree_hash(source)
    assert main(["finetune", "--from", str(source), "--data", str(data), "train.steps=1",
                 f"train.run_dir={run_dir}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "source" in err and err.count("\n") == 1
    assert _tree_hash(source) == before


@pytest.mark.slow
def test_hf_source_is_read_and_never_written(source, tuned, tmp_path, capsys):
    """--hf: the model comes from a HuggingFace directory, with the same refusal to write into it."""
    from model.hf import save_hf
    from runtime.checkpoint import load_model

    _, data = tuned
    hf = tmp_path / "hf"
    save_hf(hf, *load_model(source))
    before = _tree_hash(hf)
    assert main(["finetune", "--hf", str(hf), "--data", str(data), f"train.run_dir={hf / 'ft'}"]) == 2
    err = capsys.readouterr().err
    assert "inside the source" in err and _tree_hash(hf) == before
    assert main(["finetune", "--hf", str(hf), "--data", str(data), "model=tiny"]) == 2
    assert "drop the model= override" in capsys.readouterr().err


@pytest.mark.slow
def test_loss_ignores_prompt_and_padding_targets(source):
    """Through the training executor's loss: changing the targets where the mask is off (prompt tokens, padding)
    leaves the loss unchanged; changing one completion target changes it."""
    import jax.numpy as jnp

    from runtime.checkpoint import load_model
    from runtime.execution import build_executor
    from runtime.platform import make_mesh

    cfg, params = load_model(source)
    packed = pack(tokenize(RECORDS[:3], TOK), 32, pad_id=EOT)
    inputs, targets, mask = packed.tokens[:, :-1], packed.tokens[:, 1:].copy(), packed.mask
    ex = build_executor("data", cfg, make_mesh({"data": 1}, jax.devices()[:1]))
    placed = ex.place(params)

    def loss(t):
        return float(ex.loss_and_grads(placed, *(ex.put_batch(jnp.asarray(a)) for a in (inputs, t, mask)))[0])

    base = loss(targets)
    scrambled = np.where(mask, targets, (targets + 123) % cfg.vocab_size)
    assert (scrambled != targets).any() and loss(scrambled) == pytest.approx(base, rel=1e-6)
    r, j = map(int, np.argwhere(mask)[0])
    changed = targets.copy()
    changed[r, j] = (changed[r, j] + 1) % cfg.vocab_size
    assert abs(loss(changed) - base) > 1e-4
