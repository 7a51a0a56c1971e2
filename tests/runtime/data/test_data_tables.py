"""`wse data` on HF-ecosystem inputs: Parquet, Arrow (IPC file and stream), `datasets`' save_to_disk directories
(Dataset and DatasetDict, laid out as datasets 5.x writes them), the text column option, and one-line refusals."""

import json
import sys

import numpy as np
import pytest

from model.tokenizer import get_tokenizer
from runtime.cli import main
from runtime.data import TokenDataset, build_dataset
from runtime.errors import UserError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

DOCS = ["The first document.\nTwo lines.", "Second one, with ünïcode — and 🤖.", "A third, short.", "Fourth text."]


def save_to_disk(directory, texts, shards=1, column="text"):
    """What ``datasets.Dataset.save_to_disk`` writes: Arrow IPC streams, state.json listing them, dataset_info.json."""
    directory.mkdir(parents=True)
    parts = np.array_split(np.arange(len(texts)), shards)
    names = [f"data-{i:05d}-of-{shards:05d}.arrow" for i in range(shards)]
    for name, rows in zip(names, parts):
        table = pa.table({column: [texts[i] for i in rows], "id": [int(i) for i in rows]})
        with pa.OSFile(str(directory / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    (directory / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names],
                                                      "_fingerprint": "0", "_split": None}))
    (directory / "dataset_info.json").write_text(json.dumps({"features": {column: {"dtype": "string"}}}))
    return directory


def documents(directory):
    """The documents a token dataset holds, both splits, cut at <|endoftext|>."""
    tok, docs = get_tokenizer(), []
    for split in ("train", "val"):
        if json.loads((directory / "meta.json").read_text())["splits"][split]["tokens"]:
            stream = TokenDataset(directory, split).window(0, len(TokenDataset(directory, split)))
            docs += [tok.decode(p) for p in np.split(stream, np.flatnonzero(stream == tok.eot_id) + 1)[:-1]]
    return sorted(d.removesuffix("<|endoftext|>") for d in docs)


def test_every_table_layout_gives_the_jsonl_shards(tmp_path):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS), encoding="utf-8")
    table = pa.table({"text": DOCS, "n": list(range(len(DOCS)))})
    pq.write_table(table, tmp_path / "docs.parquet")
    with pa.OSFile(str(tmp_path / "file.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    inputs = {"parquet": tmp_path / "docs.parquet", "arrow-file": tmp_path / "file.arrow",
              "save_to_disk": save_to_disk(tmp_path / "saved", DOCS, shards=3)}
    build_dataset([str(jsonl)], tmp_path / "ref", val_fraction=0.25)
    ref = {p.name: p.read_bytes() for p in (tmp_path / "ref").glob("*.bin")}
    for kind, path in inputs.items():
        build_dataset([str(path)], tmp_path / kind, val_fraction=0.25)
        assert {p.name: p.read_bytes() for p in (tmp_path / kind).glob("*.bin")} == ref, kind
        meta = json.loads((tmp_path / kind / "meta.json").read_text())
        assert meta["sources"][0]["documents"] == 4 and meta["text_column"] == "text"
    assert documents(tmp_path / "save_to_disk") == sorted(DOCS)
    assert json.loads((tmp_path / "save_to_disk" / "meta.json").read_text())["sources"][0]["kind"] == "hf-dataset"


def test_dataset_dict_reads_every_split_and_blank_rows_are_skipped(tmp_path, capsys):
    root = tmp_path / "dd"
    save_to_disk(root / "train", DOCS[:3] + ["", "  \n"])
    save_to_disk(root / "test", DOCS[3:])
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    assert main(["data", str(root), "--out", str(tmp_path / "out"), "--val-fraction", "0", "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["train_documents"] == 4 and "skipped 2 empty rows" in err
    assert documents(tmp_path / "out") == sorted(DOCS)
    assert main(["data", str(root / "test"), "--out", str(tmp_path / "one"), "--val-fraction", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["train_documents"] == 1


def test_text_column_option(tmp_path, capsys):
    pq.write_table(pa.table({"body": DOCS}), tmp_path / "b.parquet")
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"body": d}) + "\n" for d in DOCS), encoding="utf-8")
    a = build_dataset([str(tmp_path / "b.parquet")], tmp_path / "a", text_column="body", val_fraction=0)
    b = build_dataset([str(tmp_path / "b.jsonl")], tmp_path / "b", text_column="body", val_fraction=0)
    assert a["train_documents"] == b["train_documents"] == 4
    assert (tmp_path / "a" / "train_00000.bin").read_bytes() == (tmp_path / "b" / "train_00000.bin").read_bytes()
    rc = main(["data", str(tmp_path / "b.parquet"), "--out", str(tmp_path / "c"), "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "has no column 'text' (its columns: body); pass --text-column" in err


@pytest.mark.parametrize("table, message", [
    ({"text": [1, 2]}, r"column 'text' holds int64, not strings; pass --text-column"),
    ({"text": ["ok", None, "fine"]}, r"column 'text' is null at row 1"),
    ({"title": ["x"]}, r"has no column 'text' \(its columns: title\)"),
    ({"text": ["", " "]}, r"holds no non-empty 'text' rows"),
], ids=["ints", "null", "missing", "blank"])
def test_bad_tables_are_one_line_naming_the_file(tmp_path, table, message):
    pq.write_table(pa.table(table), tmp_path / "t.parquet")
    with pytest.raises(UserError, match=message) as err:
        build_dataset([str(tmp_path / "t.parquet")], tmp_path / "out")
    assert str(err.value).startswith(str(tmp_path / "t.parquet")) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_broken_files_and_layouts(tmp_path, monkeypatch):
    (tmp_path / "bad.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(UserError, match=r"bad\.arrow is not a readable Arrow IPC file"):
        build_dataset([str(tmp_path / "bad.arrow")], tmp_path / "out")
    saved = save_to_disk(tmp_path / "saved", DOCS)
    (saved / "data-00000-of-00001.arrow").unlink()
    with pytest.raises(UserError, match=r"data-00000-of-00001\.arrow is missing \(listed in .*state\.json\)"):
        build_dataset([str(saved)], tmp_path / "out")
    pq.write_table(pa.table({"text": DOCS}), tmp_path / "ok.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if the optional dependency were not installed
    with pytest.raises(UserError, match=r'needs pyarrow; install it with pip install "wse-sim\[arrow\]"'):
        build_dataset([str(tmp_path / "ok.parquet")], tmp_path / "out")


def test_tutorial_pretrain_data_takes_a_saved_dataset(tmp_path, monkeypatch):
    from runtime import load_pretrain_data

    monkeypatch.setenv("WSE_CACHE_DIR", str(tmp_path / "cache"))
    data = load_pretrain_data(save_to_disk(tmp_path / "saved", DOCS * 3), val_fraction=0.25)
    assert TokenDataset(data.directory, "train").tokenizer == "gpt2"
    assert json.loads((data.directory / "meta.json").read_text())["sources"][0]["documents"] == 12
