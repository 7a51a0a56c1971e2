"""`wse convert --to-hf` writes what transformers users expect: AutoTokenizer gives GPT-2's ids, AutoModelForCausalLM
the same logits, weights above the size limit are sharded with an index, and `--from-hf` reads the shards back."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model import gpt, hf, hf_files
from model.config import get_config
from model.generate import architecture
from runtime.checkpoint import load_model, save_model
from runtime.cli import main

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# GPT-2's full vocabulary (so the exported tokenizer applies) on a very small body: 1.7M parameters, 6.6 MB.
CFG = get_config("tiny").replace(name="export", n_layers=2, d_model=32, n_heads=2, d_head=16, d_ffn=64, max_seq_len=64)
TOL = 1e-4


def _params(cfg, seed=0):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (0.1 * rng.standard_normal(s)).astype(np.float32), gpt.param_shapes(cfg),
                        is_leaf=lambda x: isinstance(x, tuple))


def _cli(capsys, *argv):
    rc = main([*argv, "--json"])
    out, err = capsys.readouterr()
    return rc, (json.loads(out.strip().splitlines()[-1]) if rc == 0 else None), err


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    params = _params(CFG)
    save_model(root / "ckpt", CFG, params)
    return root, params


def _same_logits(directory, params):
    model = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    tokens = np.random.default_rng(1).integers(0, CFG.vocab_size, (2, CFG.max_seq_len))
    with torch.no_grad():
        theirs = model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    ours = np.asarray(jax.jit(gpt.forward, static_argnums=0)(architecture(CFG), params, jnp.asarray(tokens)))
    return float(np.abs(theirs - ours).max())


def test_export_loads_with_auto_classes(ckpt, capsys):
    root, params = ckpt
    rc, res, _ = _cli(capsys, "convert", "--to-hf", str(root / "ckpt"), "--out", str(root / "hf"))
    assert rc == 0 and res["shards"] == 1 and res["tokenizer"] == "gpt2"
    for name in ("config.json", "model.safetensors", "generation_config.json", *hf_files.TOKENIZER_FILES):
        assert (root / "hf" / name).is_file() and name in res["files"]
    tok = transformers.AutoTokenizer.from_pretrained(root / "hf")
    assert tok("Hello world")["input_ids"] == [15496, 995]
    assert tok.eos_token_id == 50256 and tok.decode([15496, 995, 50256]) == "Hello world<|endoftext|>"
    assert tok.model_max_length == CFG.max_seq_len
    diff = _same_logits(root / "hf", params)
    print(f"AutoModelForCausalLM export: max |logit diff| = {diff:.2e}")
    assert diff <= TOL
    gen = transformers.GenerationConfig.from_pretrained(root / "hf")
    assert gen.eos_token_id == 50256 and gen.bos_token_id == 50256
    # every file as readable as the process's other new files (safetensors alone wrote its file 0600)
    expected = 0o666 & ~hf_files.umask()
    assert {name: (root / "hf" / name).stat().st_mode & 0o777 for name in res["files"]} == {n: expected for n in res["files"]}


def test_sharded_export_loads_and_converts_back(ckpt, capsys, tmp_path):
    root, params = ckpt
    out = tmp_path / "sharded"
    rc, res, _ = _cli(capsys, "convert", "--to-hf", str(root / "ckpt"), "--out", str(out), "--max-shard-size", "20KB")
    assert rc == 0 and res["shards"] > 2
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert shards == [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    assert not (out / "model.safetensors").exists()
    assert {(out / f).stat().st_mode & 0o777 for f in shards} == {0o666 & ~hf_files.umask()}
    sizes = {f: (out / f).stat().st_size for f in shards}
    assert index["metadata"]["total_size"] == sum(4 * np.prod(s) for s in jax.tree.leaves(
        gpt.param_shapes(CFG), is_leaf=lambda x: isinstance(x, tuple)))
    # every shard holds at most 20 kB of tensors unless it is one tensor bigger than that (the embeddings)
    per_shard = {f: [n for n, s in index["weight_map"].items() if s == f] for f in shards}
    assert all(sizes[f] <= 20_000 + 2_000 or len(per_shard[f]) == 1 for f in shards)
    assert _same_logits(out, params) <= TOL
    rc, res, _ = _cli(capsys, "convert", "--from-hf", str(out), "--out", str(tmp_path / "back"))
    assert rc == 0
    cfg, back = load_model(tmp_path / "back")
    assert (cfg.n_layers, cfg.d_model, cfg.vocab_size) == (CFG.n_layers, CFG.d_model, CFG.vocab_size)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_plan_shards_follows_transformers_rule():
    t = {name: np.zeros(n, np.float32) for name, n in
         [("transformer.ln_f.weight", 10), ("transformer.h.1.a", 30), ("transformer.h.0.a", 30),
          ("transformer.wte.weight", 100), ("transformer.h.0.b", 20)]}
    # model order; a new shard when the next tensor would overflow 200 bytes; an oversized tensor alone
    assert hf_files.plan_shards(t, 200) == [["transformer.wte.weight"], ["transformer.h.0.a", "transformer.h.0.b"],
                                            ["transformer.h.1.a", "transformer.ln_f.weight"]]
    assert hf_files.parse_size("5GB") == 5 * 10**9 and hf_files.parse_size("2GiB") == 2 * 2**30
    assert hf_files.parse_size("100kb") == 100_000 and hf_files.parse_size(123) == 123


def test_bad_shard_size_and_small_vocab(ckpt, capsys, tmp_path):
    root, _ = ckpt
    rc, _, err = _cli(capsys, "convert", "--to-hf", str(root / "ckpt"), "--out", str(tmp_path / "x"),
                      "--max-shard-size", "lots")
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "--max-shard-size" in err
    assert not (tmp_path / "x").exists()
    small = CFG.replace(vocab_size=128)
    res = hf.save_hf(tmp_path / "small", small, _params(small))
    assert res["tokenizer"] is None and not (tmp_path / "small" / "tokenizer.json").exists()
    assert (tmp_path / "small" / "generation_config.json").is_file()


def test_custom_tokenizer_is_exported(tmp_path):
    """A model trained with its own tokenizer.json ships that one (AutoTokenizer loads it as a fast tokenizer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<|endoftext|>": 0, "hello": 1, "world": 2, "[UNK]": 3}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.save(str(tmp_path / "tokenizer.json"))
    small = CFG.replace(vocab_size=8)
    res = hf.save_hf(tmp_path / "out", small, _params(small), tokenizer=tmp_path)
    assert res["tokenizer"] == str(tmp_path) and "vocab.json" not in res["files"]
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tok("hello world")["input_ids"] == [1, 2] and tok.eos_token_id == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["eos_token_id"] == 0
