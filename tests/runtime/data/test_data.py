"""Data pipeline: built-in corpus and tasks, token shards and meta.json, refusal of bad input without losing data,
and the loader (determinism, exact resume, process slicing)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.tokenizer import get_tokenizer
from runtime.data import corpus
from runtime.data import (Loader, TokenDataset, build_dataset, prepare_builtin, split_for_tokenization,
                          unigram_entropy_nats)
from runtime.errors import UserError

DOCS = {
    "a.txt": "The first document.\nIt has two lines.\n",
    "notes/b.md": "# Heading\n\nSome *markdown* text with ünïcode — and digits 12345.\n",
    "notes/deeper/c.txt": "Third document, deeper in the tree.",
    "records.jsonl": json.dumps({"text": "jsonl record one"}) + "\n\n" + json.dumps({"text": "record two 🤖", "id": 2}) + "\n",
}


def write_tree(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return root


def all_documents(directory: Path) -> list[str]:
    """Decode both splits and cut them at <|endoftext|>: the documents the dataset holds."""
    tok = get_tokenizer()
    docs = []
    for split in ("train", "val"):
        meta = json.loads((directory / "meta.json").read_text())
        if meta["splits"][split]["tokens"] == 0:
            continue
        ds = TokenDataset(directory, split)
        stream = ds.window(0, len(ds))
        assert stream[-1] == tok.eot_id
        cuts = np.flatnonzero(stream == tok.eot_id)
        docs += [tok.decode(part) for part in np.split(stream, cuts + 1)[:-1]]
        docs = [d.removesuffix("<|endoftext|>") for d in docs]
    return docs


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def builtin_dir(tmp_path_factory):
    return prepare_builtin(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def small_input(tmp_path):
    return write_tree(tmp_path / "in", DOCS)


# ------------------------------------------------------------------------------------------------ corpus and tasks

@pytest.mark.slow
def test_builtin_corpus_is_real_prose(builtin_dir):
    docs = corpus.documents()
    assert len(docs) > 300 and sum(map(len, docs)) > 1_000_000
    assert docs == corpus.documents()  # fixed order
    assert any(d.startswith('The "assert" statement') for d in docs)
    assert any(d.startswith("Module json\n") for d in docs)
    assert len(set(docs)) == len(docs)
    meta = json.loads((builtin_dir / "meta.json").read_text())
    assert meta["splits"]["train"]["tokens"] + meta["splits"]["val"]["tokens"] > 400_000
    assert meta["sources"][0]["name"] == "builtin:python-docs" and meta["sources"][0]["documents"] == len(docs)
    assert sorted(all_documents(builtin_dir)) == sorted(docs)


def test_builtin_tasks():
    tasks = corpus.builtin_tasks()
    train, val = corpus.builtin_tasks("train"), corpus.builtin_tasks("val")
    assert len(train) + len(val) == len(tasks) > 200 and 0.05 < len(val) / len(tasks) < 0.2
    assert not {t["prompt"] for t in train} & {t["prompt"] for t in val}
    assert all(set(t) == {"prompt", "completion"} and t["completion"].startswith("\n") and len(t["completion"]) > 10 for t in tasks)
    assert any(t["prompt"] == "The assert statement" and "assert" in t["completion"].lower() for t in tasks)
    assert any(t["prompt"] == "The json module" for t in tasks)
    assert tasks == corpus.builtin_tasks()
    with pytest.raises(UserError):
        corpus.builtin_tasks("test")


def test_split_for_tokenization_keeps_ids():
    tok = get_tokenizer()
    text = "\n\n".join(corpus.documents()[:40]) + "\nend\n  x\n\ny"
    whole = tok.encode(text)
    for max_chars in (300, 5000):
        pieces = split_for_tokenization(text, max_chars)
        assert len(pieces) > 3 and "".join(pieces) == text
        assert [i for ids in tok.encode_batch(pieces) for i in ids] == whole


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["\n", "\n\n", " ", "\t", "a", "Zq", "7", ".", "'s", " x", "é", "—", "\u3000", "\r\n", "ab\ncd"]), max_size=60),
       st.integers(2, 12))
def test_property_cuts_never_change_ids(parts, max_chars):
    tok = get_tokenizer()
    text = "".join(parts)
    pieces = split_for_tokenization(text, max_chars)
    assert "".join(pieces) == text
    assert [i for ids in tok.encode_batch(pieces, num_threads=1) for i in ids] == tok.encode(text)


# ------------------------------------------------------------------------------------------------- shards and meta

def test_shards_and_meta(small_input, tmp_path):
    (small_input / ".hidden.txt").write_text("hidden files are skipped")
    (small_input / "image.png").write_bytes(b"\x89PNG\x00")
    out = tmp_path / "ds"
    res = build_dataset([str(small_input)], out, val_fraction=0.2, shard_tokens=8)
    meta = json.loads((out / "meta.json").read_text())
    expected_docs = [DOCS["a.txt"], DOCS["notes/b.md"], DOCS["notes/deeper/c.txt"], "jsonl record one", "record two 🤖"]
    assert sorted(all_documents(out)) == sorted(expected_docs)
    assert res["train_documents"] == 4 and res["val_documents"] == 1 and not res["reused"]
    assert res["skipped_files"] == [str(small_input / "image.png")]
    assert meta["dtype"] == "uint16" and meta["tokenizer"]["name"] == "gpt2" and meta["tokenizer"]["eot_id"] == 50256
    assert [s["kind"] for s in meta["sources"]] == ["txt", "jsonl", "md", "txt"]  # os.walk order, sorted
    assert meta["sources"][1]["documents"] == 2
    for source in meta["sources"]:
        assert source["sha256"] == hashlib.sha256(Path(source["name"]).read_bytes()).hexdigest()
    total = 0
    for split in ("train", "val"):
        shards = meta["splits"][split]["shards"]
        assert meta["splits"][split]["tokens"] == sum(s["tokens"] for s in shards)
        for s in shards:
            raw = (out / s["file"]).read_bytes()
            assert len(raw) == 2 * s["tokens"] <= 16 and hashlib.sha256(raw).hexdigest() == s["sha256"]
            assert len(np.memmap(out / s["file"], dtype=np.uint16, mode="r")) == s["tokens"]
        total += meta["splits"][split]["tokens"]
    assert len(meta["splits"]["train"]["shards"]) > 2  # 8-token shards force several
    assert total == sum(len(get_tokenizer().encode(d)) + 1 for d in expected_docs)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dir left behind


def test_deterministic_and_reused(small_input, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build_dataset([str(small_input)], a, val_fraction=0.4, seed=3)
    build_dataset([str(small_input)], b, val_fraction=0.4, seed=3, num_threads=1)
    assert snapshot(a) == snapshot(b)
    c = tmp_path / "c"
    build_dataset([str(small_input)], c, val_fraction=0.4, seed=4)
    assert snapshot(a) != snapshot(c)
    before = {p: p.stat().st_mtime_ns for p in a.iterdir()}
    assert build_dataset([str(small_input)], a, val_fraction=0.4, seed=3)["reused"]
    assert before == {p: p.stat().st_mtime_ns for p in a.iterdir()}


def test_overwrite_policy(small_input, tmp_path):
    out = tmp_path / "ds"
    build_dataset([str(small_input / "a.txt")], out, val_fraction=0)
    kept = snapshot(out)
    with pytest.raises(UserError, match="different dataset.*--overwrite"):
        build_dataset([str(small_input)], out)
    assert snapshot(out) == kept
    res = build_dataset([str(small_input)], out, overwrite=True)
    assert res["train_documents"] + res["val_documents"] == 5 and snapshot(out) != kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "in"]
    other = write_tree(tmp_path / "other", {"keep.txt": "not a dataset"})
    with pytest.raises(UserError, match="not a token dataset"):
        build_dataset([str(small_input)], other, overwrite=True)
    assert snapshot(other) == {"keep.txt": b"not a dataset"}


BAD_INPUTS = [
    ({"e.txt": ""}, "e.txt", "is empty"),
    ({"w.md": " \n\t\n"}, "w.md", "is empty"),
    ({"bin.txt": b"abc\x00\x01def"}, "bin.txt", "binary file"),
    ({"u.txt": b"good start \xc3\x28 bad"}, "u.txt", "not valid UTF-8 at byte offset 11"),
    ({"r.jsonl": '{"text": "ok"}\n{"title": "no text"}\n'}, "r.jsonl", r"r\.jsonl:2 has no \"text\" field"),
    ({"j.jsonl": '{"text": "ok"}\n\n{broken\n'}, "j.jsonl", r"j\.jsonl:3 is not valid JSON"),
    ({"n.jsonl": '{"text": 5}\n'}, "n.jsonl", r"n\.jsonl:1 has an empty or non-string"),
    ({"arr.jsonl": '[1, 2]\n'}, "arr.jsonl", r"arr\.jsonl:1 is not a JSON object"),
    ({"t.csv": "a,b\n"}, "t.csv", r"is not a text \(.txt, .md, .rst, source code"),
    ({"x.txt": "fine"}, "missing.txt", "does not exist"),
    ({"sub/x.bin": "no text files"}, "sub", r"holds no text \(.txt"),
    ({"sub/e.txt": "", "sub/b.md": b"\x00\x01"}, "sub", r"no readable text \(skipped 2 files.*1 binary, 1 empty"),
]


@pytest.mark.parametrize("files,given,message", BAD_INPUTS, ids=[b[2][:20] for b in BAD_INPUTS])
def test_bad_input_is_refused_and_nothing_is_touched(tmp_path, files, given, message):
    inp = write_tree(tmp_path / "in", files)
    out = tmp_path / "ds"
    write_tree(tmp_path, {"good.txt": "an existing dataset"})
    build_dataset([str(tmp_path / "good.txt")], out, val_fraction=0)
    kept = snapshot(out)
    for overwrite in (False, True):
        with pytest.raises(UserError, match=message) as err:
            build_dataset([str(inp / given)], out, overwrite=overwrite)
        assert "\n" not in str(err.value)
        assert snapshot(out) == kept
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_one_file_is_split_by_size_so_a_validation_split_exists(tmp_path):
    """One text file is one document: its last 5% (by characters, cut at a paragraph break) is the validation split,
    and the two parts are the whole text."""
    text = "\n\n".join(f"Paragraph {i}. " + "A sentence of the story. " * 8 for i in range(60))
    write_tree(tmp_path, {"story.txt": text})
    res = build_dataset([str(tmp_path / "story.txt")], tmp_path / "ds")
    assert (res["train_documents"], res["val_documents"]) == (1, 1) and "validation split" in res["notes"][0]
    tok = get_tokenizer()
    head, tail = (tok.decode(TokenDataset(tmp_path / "ds", split).window(0, n)[:-1])
                  for split, n in (("train", res["train_tokens"]), ("val", res["val_tokens"])))
    assert head + tail == text and tail.startswith("Paragraph ") and head.endswith("\n\n")
    assert 0.025 < len(tail) / len(text) < 0.075
    assert build_dataset([str(tmp_path / "story.txt")], tmp_path / "all", val_fraction=0)["val_documents"] == 0


@pytest.mark.parametrize("text, fraction", [("x", 0.5), ("ab", 0.05), ("no breaks at all here", 0.3),
                                            ("line one\nline two\n", 0.5), ("a" * 1000 + "\n" + "b" * 10, 0.05)])
def test_split_tail_keeps_every_character_and_both_parts(text, fraction):
    from runtime.data.inputs import split_tail

    if len(text) < 2:
        return
    head, tail = split_tail(text, fraction)
    assert head + tail == text and head and tail


def test_source_files_are_text_and_a_directory_skips_what_it_cannot_read(tmp_path):
    """.py/.c/.js ... files are documents like .txt; inside a directory, empty, binary, mis-encoded and unreadable
    files and files of other kinds are skipped and counted in one note (named on the command line they are refused)."""
    write_tree(tmp_path / "src", {"a.py": "def f():\n    return 1\n", "b.c": "int main(void) { return 0; }\n",
                                  "web/c.js": "export const x = 1;\n", "README.rst": "Title\n=====\n",
                                  "empty.py": "", "blob.txt": b"\x00\x01\x02", "latin.md": b"caf\xe9",
                                  "logo.png": b"\x89PNG"})
    (tmp_path / "src" / "gone.txt").symlink_to(tmp_path / "nowhere.txt")  # listed, cannot be read
    res = build_dataset([str(tmp_path / "src")], tmp_path / "ds", val_fraction=0.25)
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert sorted(s["kind"] for s in meta["sources"]) == ["c", "js", "py", "rst"]
    assert res["train_documents"] + res["val_documents"] == 4 and len(res["skipped_files"]) == 5
    assert res["notes"] == [f"skipped 5 files in the input directories: 1 binary, 1 empty, 1 not UTF-8, 1 unreadable, "
                            f"1 of other kinds (.png) (e.g. {tmp_path / 'src' / 'logo.png'})"]


def test_bad_options(small_input, tmp_path):
    with pytest.raises(UserError, match="val-fraction"):
        build_dataset([str(small_input)], tmp_path / "ds", val_fraction=1.0)
    with pytest.raises(UserError, match="--threads"):
        build_dataset([str(small_input)], tmp_path / "ds", num_threads=0)
    with pytest.raises(UserError, match="no input"):
        build_dataset([], tmp_path / "ds")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        build_dataset([str(small_input)], tmp_path / "file")
    with pytest.raises(UserError, match="unknown built-in corpus"):
        build_dataset([], tmp_path / "ds", builtin="wikipedia")
    assert not (tmp_path / "ds").exists()


def test_reading_bad_datasets(small_input, tmp_path):
    with pytest.raises(UserError, match="not a token dataset"):
        TokenDataset(tmp_path)
    out = tmp_path / "ds"
    build_dataset([str(small_input)], out, val_fraction=0)
    with pytest.raises(UserError, match="no val tokens.*--val-fraction"):
        TokenDataset(out, "val")
    shard = out / "train_00000.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(UserError, match="expected"):
        TokenDataset(out, "train")


def test_prepare_builtin_caches_and_repairs(builtin_dir):
    before = {p: p.stat().st_mtime_ns for p in builtin_dir.iterdir()}
    assert prepare_builtin(builtin_dir.parent) == builtin_dir
    assert before == {p: p.stat().st_mtime_ns for p in builtin_dir.iterdir()}
    val = builtin_dir / "val_00000.bin"
    good = val.read_bytes()
    val.write_bytes(good[: len(good) // 2])  # a damaged cache is rebuilt, not trusted
    assert prepare_builtin(builtin_dir.parent) == builtin_dir
    assert val.read_bytes() == good


def test_unigram_entropy(builtin_dir):
    ds = TokenDataset(builtin_dir, "val")
    _, counts = np.unique(ds.window(0, len(ds)), return_counts=True)
    p = counts / counts.sum()
    h = unigram_entropy_nats(ds)
    assert h == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-9)
    assert 4.0 < h < np.log(50257)
    assert unigram_entropy_nats(builtin_dir, "train") != h


# ---------------------------------------------------------------------------------------------------------- loader

def test_loader_windows(builtin_dir):
    ds = TokenDataset(builtin_dir, "train")
    loader = Loader(ds, batch_size=4, seq_len=32, seed=0)
    x, y = next(loader)
    assert x.shape == y.shape == (4, 32) and x.dtype == np.int32
    assert (x[:, 1:] == y[:, :-1]).all()
    starts = loader.window_order(0)[:4] * 32
    assert all((ds.window(int(s), 33)[:-1] == row).all() for s, row in zip(starts, x))


def test_loader_epoch_covers_each_window_once(small_input, tmp_path):
    build_dataset([str(small_input)], tmp_path / "ds", val_fraction=0, shard_tokens=7)  # windows cross shards
    ds = TokenDataset(tmp_path / "ds")
    loader = Loader(ds, batch_size=2, seq_len=4, seed=1)
    rows = [tuple(r) for _ in range(loader.steps_per_epoch) for r in next(loader)[0]]
    grid = {tuple(ds.window(w * 4, 4)) for w in range(loader.n_windows)}
    assert len(set(rows)) == len(rows) == loader.steps_per_epoch * 2 and set(rows) <= grid
    assert loader.state()["epoch"] == 1 and loader.state()["step"] == 0
    unshuffled = Loader(ds, batch_size=2, seq_len=4, shuffle=False)
    assert (next(unshuffled)[0][0] == ds.window(0, 4)).all()


def test_loader_deterministic_for_a_seed(builtin_dir):
    ds = TokenDataset(builtin_dir, "train")

    def first_batches(seed):
        loader = Loader(ds, batch_size=8, seq_len=64, seed=seed)
        return np.stack([np.stack(next(loader)) for _ in range(4)])

    assert (first_batches(5) == first_batches(5)).all()
    assert not (first_batches(5) == first_batches(6)).all()


def test_resume_sees_the_same_batches(builtin_dir):
    ds = TokenDataset(builtin_dir, "train")
    uninterrupted = Loader(ds, batch_size=512, seq_len=128, seed=2)  # ~9 steps per epoch: resume crosses epochs
    assert uninterrupted.steps_per_epoch < 12
    first = Loader(ds, batch_size=512, seq_len=128, seed=2)
    for _ in range(7):
        next(uninterrupted), next(first)
    saved = json.loads(json.dumps(first.state()))
    resumed = Loader(ds, batch_size=512, seq_len=128, seed=2, process_index=1, process_count=2)
    resumed_all = Loader(ds, batch_size=512, seq_len=128, seed=2)
    resumed.restore(saved)
    resumed_all.restore(saved)
    for _ in range(6):
        want, got, got_half = next(uninterrupted), next(resumed_all), next(resumed)
        assert (want[0] == got[0]).all() and (want[1] == got[1]).all()
        assert (want[0][256:] == got_half[0]).all()
    assert resumed_all.state()["epoch"] == 1
    # the position is the step: seeking there is resuming, and a position saved before it was derived from the step
    # (epoch and step only) reads as the same batch
    seeked = Loader(ds, batch_size=512, seq_len=128, seed=2)
    seeked.seek(13)
    assert all((a == b).all() for a, b in zip(next(seeked), uninterrupted.batch_at(13)))
    old_format = {k: v for k, v in saved.items() if k != "batches"}
    assert Loader(ds, batch_size=512, seq_len=128, seed=2).saved_position(old_format) == 7
    with pytest.raises(UserError, match="seq_len"):
        Loader(ds, batch_size=512, seq_len=64, seed=2).restore(saved)


@pytest.mark.parametrize("count", [2, 4])
def test_process_slices_concatenate_to_the_global_batch(builtin_dir, count):
    ds = TokenDataset(builtin_dir, "train")
    whole = Loader(ds, batch_size=8, seq_len=16, seed=9).batch(3, 5)
    parts = [Loader(ds, batch_size=8, seq_len=16, seed=9, process_index=i, process_count=count).batch(3, 5) for i in range(count)]
    assert all(p[0].shape == (8 // count, 16) for p in parts)
    assert (np.concatenate([p[0] for p in parts]) == whole[0]).all()
    assert (np.concatenate([p[1] for p in parts]) == whole[1]).all()


def test_loader_refuses_bad_shapes(builtin_dir):
    ds = TokenDataset(builtin_dir, "val")
    with pytest.raises(UserError, match="one batch of"):
        Loader(ds, batch_size=1, seq_len=len(ds))
    with pytest.raises(UserError, match="does not split evenly"):
        Loader(ds, batch_size=6, seq_len=8, process_count=4)


# ---------------------------------------------------------------------------------------------- command line (e2e)

def wse(*args, cwd):
    env = dict(os.environ, WSE_CACHE_DIR=str(cwd / "cache"))
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_cli_builtin_end_to_end(tmp_path, builtin_dir):
    proc = wse("data", "--builtin", "python-docs", "--out", str(tmp_path / "d"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["reused"] is False and result["tokens_per_s"] > 0
    # Same corpus, same split, same tokenizer: byte-identical to the cached dataset the library built.
    assert snapshot(tmp_path / "d") == snapshot(builtin_dir)
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert result["train_tokens"] == meta["splits"]["train"]["tokens"] and result["val_documents"] == meta["splits"]["val"]["documents"]


def test_cli_user_error(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe")
    proc = wse("data", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "d"), "--json", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "byte offset 0" in proc.stderr
    assert not (tmp_path / "d").exists()


def test_a_tiny_validation_split_is_warned_about_on_stderr(tmp_path, capsys):
    from runtime.cli import main

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"d{i}.txt").write_text(f"Some words in document {i}. " * 20, encoding="utf-8")
    rc = main(["data", str(src), "--out", str(tmp_path / "ds"), "--val-fraction", "0.3", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0 and err.startswith("warning: the validation split holds only ") and "--val-fraction" in err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["warnings"] and result["val_tokens"] < 1000
