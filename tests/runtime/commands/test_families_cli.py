"""The families from the command line: `wse convert --from-hf/--to-hf`, and `--hf` / `--checkpoint` on `wse generate`,
`wse eval` and `wse finetune`, for small random Llama, Mistral, Qwen2, Qwen3 and GPT-J models built with transformers
around a tokenizer of their own (nothing downloaded); `wse data --tokenizer DIR` with a model's tokenizer, uint32
shards for a vocabulary above 65,535; bad input as one `error:` line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.cli import main

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

T = 64
TEXT = ("def add(a, b):\n    return a + b\n\nclass Point:\n    x = 0\n    y = 0\n\n"
        "for i in range(10):\n    print(i, add(i, i))\n") * 4
# (config class, fields, the class `wse convert --to-hf --architecture` names)
FAMILIES = {
    "llama": ("LlamaConfig", dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                                  rope_theta=500000.0), "llama"),
    "mistral": ("MistralConfig", dict(hidden_size=32, intermediate_size=48, num_attention_heads=4,
                                      num_key_value_heads=1, sliding_window=None), "mistral"),
    "qwen2": ("Qwen2Config", dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                                  tie_word_embeddings=True), "qwen2"),
    "qwen3": ("Qwen3Config", dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                                  head_dim=12), "qwen3"),
    "gptj": ("GPTJConfig", dict(n_embd=32, n_head=4, rotary_dim=4, n_inner=None), "gptj"),
}


def wse(capsys, *argv):
    """Run the CLI in-process: (exit code, the JSON result or None, stderr)."""
    rc = main([*argv, "--json"] if "--json" not in argv else list(argv))
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return rc, (json.loads(lines[-1]) if rc == 0 and lines else None), err


def one_error_line(rc, err, fragment):
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment in err, err


def make_tokenizer(directory, vocab_size: int = 300):
    """A byte-level BPE trained on a little Python, with Llama's special tokens: <s> begins a sequence (its
    post-processor puts it first, as Llama's tokenizer.json does), </s> ends one (named in tokenizer_config.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([TEXT] * 20, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    return tok


def hf_model(family: str, directory):
    """A random transformers model of the family (2 layers, width 32) saved with its tokenizer."""
    tok = make_tokenizer(directory)
    config_class, fields, _ = FAMILIES[family]
    common = dict(vocab_size=tok.get_vocab_size(), bos_token_id=0, eos_token_id=1, pad_token_id=1)
    if config_class == "GPTJConfig":
        common.update(n_layer=2, n_positions=T, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    else:
        common.update(num_hidden_layers=2, max_position_embeddings=T)
    model = transformers.AutoModelForCausalLM.from_config(getattr(transformers, config_class)(**common, **fields)).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # norms near 1, everything else small and random, so that every tensor's mapping shows
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if "norm" in name or "ln_" in name else 0.2 * noise)
    model.save_pretrained(directory)
    return model, tok


def logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids], dtype=torch.long)).logits.float().numpy()[0]


def greedy(model, ids, n, eos: int = 1):
    """transformers' greedy tokens after ``ids``: at most ``n``, up to (not including) the end-of-sequence id, as
    `wse generate` reports them."""
    seq = list(ids)
    for _ in range(n):
        seq.append(int(logits(model, seq)[-1].argmax()))
        if seq[-1] == eos:
            return seq[len(ids):-1]
    return seq[len(ids):]


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    model, tok = hf_model(request.param, root / "hf")
    (root / "text.txt").write_text(TEXT)
    return request.param, root, model, tok


@pytest.mark.slow
def test_convert_generate_and_eval_read_the_models_own_tokenizer(family, capsys):
    """--hf and the converted --checkpoint tokenise with the model's tokenizer.json (its <s> first), generate
    transformers' greedy tokens, score the same loss; --to-hf exports the family's class with the tokenizer, and
    AutoModelForCausalLM gives the original logits."""
    name, root, model, tok = family
    hf_dir, ckpt, export = root / "hf", root / "ckpt", root / "export"
    rc, conv, err = wse(capsys, "convert", "--from-hf", str(hf_dir), "--out", str(ckpt))
    assert rc == 0, err
    assert "tokenizer.json" in conv["tokenizer_files"] and (ckpt / "tokenizer.json").read_bytes() == \
        (hf_dir / "tokenizer.json").read_bytes()

    prompt = "def add(a, b):"
    ids = tok.encode(prompt).ids  # with <s> first, as the tokenizer's post-processor (and transformers) puts it
    assert ids[0] == 0 and 0 not in ids[1:]
    want = greedy(model, ids, 5)
    assert want, "the random model ends at once: nothing to compare"
    for source in (["--hf", str(hf_dir)], ["--checkpoint", str(ckpt)]):
        rc, out, err = wse(capsys, "generate", *source, "--prompt", prompt, "--max-new-tokens", "5", "--temperature", "0",
                           "--repetition-penalty", "1", "--min-new-tokens", "0")  # transformers' greedy decoding
        assert rc == 0, err  # the model's </s> ends generation, as transformers' eos_token_id does
        assert out["prompt_tokens"] == len(ids) and out["tokens"] == want, (source, out["tokens"], want)
    losses = []
    for source in (["--hf", str(hf_dir)], ["--checkpoint", str(ckpt)]):
        rc, out, err = wse(capsys, "eval", *source, "--text", str(root / "text.txt"), "--seq-len", "32")
        assert rc == 0, err
        losses.append(out["loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6) and np.isfinite(losses[0])

    arch = FAMILIES[name][2]
    rc, out, err = wse(capsys, "convert", "--to-hf", str(ckpt), "--out", str(export), "--architecture", arch)
    assert rc == 0, err
    exported = transformers.AutoModelForCausalLM.from_pretrained(export).eval()
    assert type(exported).__name__ == type(model).__name__ == out["architecture"]
    assert (export / "tokenizer.json").read_bytes() == (hf_dir / "tokenizer.json").read_bytes()
    probe = ids + want
    np.testing.assert_allclose(logits(exported, probe), logits(model, probe), rtol=0, atol=1e-4 * np.abs(
        logits(model, probe)).max())


@pytest.mark.slow
def test_finetune_a_llama_then_generate_and_eval_from_its_run(tmp_path, capsys):
    """`wse finetune --hf DIR` tokenises the examples with the model's tokenizer and keeps it in the run dir, so the
    fine-tuned model generates and evaluates from `--checkpoint RUN` with it; the loss falls."""
    _, tok = hf_model("llama", tmp_path / "hf")
    data = tmp_path / "tasks.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"def f{i}(a):", "completion": f"\n    return a + {i}\n"}) + "\n"
                            for i in range(24)))
    run = tmp_path / "run"
    rc, out, err = wse(capsys, "finetune", "--hf", str(tmp_path / "hf"), "--data", str(data), "train.steps=6",
                       "train.batch_size=4", "train.seq_len=32", "train.lr=3e-3", f"train.run_dir={run}",
                       "mesh.devices=1", "execution.mode=data")
    assert rc == 0, err
    assert out["final_loss"] < out["losses"][0] and (run / "tokenizer.json").is_file()
    rc, gen, err = wse(capsys, "generate", "--checkpoint", str(run), "--prompt", "def f3(a):", "--max-new-tokens", "4")
    assert rc == 0, err
    assert gen["prompt_tokens"] == len(tok.encode("def f3(a):").ids)  # the kept tokenizer, with its <s>
    (tmp_path / "text.txt").write_text(TEXT)
    rc, ev, err = wse(capsys, "eval", "--checkpoint", str(run), "--text", str(tmp_path / "text.txt"), "--seq-len", "32")
    assert rc == 0 and np.isfinite(ev["loss"]), err


def test_bad_input_is_one_error_line(tmp_path, capsys):
    """An unknown --architecture, --architecture on an import, an export class that cannot hold the model, and a
    --tokenizer that is not the model's own: one `error:` line each, exit 2, nothing written."""
    hf_model("llama", tmp_path / "hf")
    assert wse(capsys, "convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "ckpt"))[0] == 0
    rc, _, err = wse(capsys, "convert", "--to-hf", str(tmp_path / "ckpt"), "--out", str(tmp_path / "x"),
                     "--architecture", "falcon")
    one_error_line(rc, err, "unknown --architecture 'falcon'; choose one of gpt2, gptj, llama, mistral")
    rc, _, err = wse(capsys, "convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "y"),
                     "--architecture", "llama")
    one_error_line(rc, err, "use it with --to-hf")
    rc, _, err = wse(capsys, "convert", "--to-hf", str(tmp_path / "ckpt"), "--out", str(tmp_path / "z"),
                     "--architecture", "gpt2")
    one_error_line(rc, err, "cannot be exported as GPT2LMHeadModel")
    assert not any((tmp_path / d).exists() for d in ("x", "y", "z"))
    other = tmp_path / "other"
    make_tokenizer(other, vocab_size=280)
    rc, _, err = wse(capsys, "generate", "--hf", str(tmp_path / "hf"), "--tokenizer", str(other), "--prompt", "x")
    one_error_line(rc, err, "came with its own tokenizer")
    rc, _, err = wse(capsys, "eval", "--checkpoint", str(tmp_path / "ckpt"), "--tokenizer", str(other), "--text",
                     str(tmp_path / "hf" / "tokenizer_config.json"))
    one_error_line(rc, err, "came with its own tokenizer")


@pytest.mark.slow
def test_wse_data_with_a_models_tokenizer_then_train(tmp_path, capsys):
    """`wse data --tokenizer DIR` writes each document as <s> ids </s> in uint16; a vocabulary above 65,535 ids
    gets uint32 shards that read back exactly; a model too narrow for the data's ids is refused before training."""
    from runtime.data import TokenDataset

    tok = make_tokenizer(tmp_path / "tok")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"{i}.txt").write_text(TEXT[i * 10:] + f"\n# document {i}\n")
    rc, out, err = wse(capsys, "data", str(docs), "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "ds"),
                       "--val-fraction", "0.2")
    assert rc == 0, err
    ds = TokenDataset(tmp_path / "ds")
    assert ds.dtype == np.uint16 and ds.meta["tokenizer"]["start_ids"] == [0]
    stream = ds.window(0, len(ds)).tolist()
    assert (stream.count(0), stream.count(1)) == (ds.meta["splits"]["train"]["documents"],) * 2
    texts = {p.read_text() for p in docs.iterdir()}
    while stream:  # every document: <s>, its ids under the model's tokenizer, </s>
        end = stream.index(1)
        assert stream[0] == 0 and tok.decode(stream[1:end]) in texts
        stream = stream[end + 1:]

    model = tmp_path / "llama.yaml"
    model.write_text(f"preset: llama-tiny\nn_layers: 2\nd_model: 32\nn_heads: 4\nn_kv_heads: 2\nd_head: 8\n"
                     f"d_ffn: 48\nmax_seq_len: 64\nvocab_size: {tok.get_vocab_size()}\n")
    common = [f"data={tmp_path / 'ds'}", "train.steps=2", "train.batch_size=2", "train.seq_len=16",
              "train.eval_batches=0", "mesh.devices=1", "execution.mode=data"]
    rc, out, err = wse(capsys, "train", f"model={model}", *common, f"train.run_dir={tmp_path / 'run'}")
    assert rc == 0 and len(out["losses"]) == 2, err
    narrow = tmp_path / "narrow.yaml"
    narrow.write_text(model.read_text().replace(f"vocab_size: {tok.get_vocab_size()}", "vocab_size: 200"))
    rc, _, err = wse(capsys, "train", f"model={narrow}", *common, f"train.run_dir={tmp_path / 'run2'}")
    one_error_line(rc, err, f"the data was tokenized into {tok.get_vocab_size()} ids but model 'narrow'")
    assert not (tmp_path / "run2").exists()

    wide = tmp_path / "wide"  # 70,000 ids: a word-level vocabulary with <s> and </s>
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<s>": 0, "</s>": 1, "[UNK]": 2, **{f"w{i}": i + 3 for i in range(69_997)}}
    big = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    big.pre_tokenizer = pre_tokenizers.Whitespace()
    wide.mkdir()
    big.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    big.save(str(wide / "tokenizer.json"))
    (wide / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    (docs / "big.txt").write_text("w5 w69996 w70000 w65535 w65536")
    rc, out, err = wse(capsys, "data", str(docs), "--tokenizer", str(wide), "--out", str(tmp_path / "wide-ds"),
                       "--val-fraction", "0")
    assert rc == 0, err
    wide_ds = TokenDataset(tmp_path / "wide-ds")
    assert wide_ds.dtype == np.uint32 and wide_ds.meta["dtype"] == "uint32"
    ids = wide_ds.window(0, len(wide_ds)).tolist()
    assert [0, 8, 69999, 2, 65538, 65539, 1] == ids[ids.index(8) - 1:ids.index(8) + 6]
    shard = tmp_path / "wide-ds" / wide_ds.meta["splits"]["train"]["shards"][0]["file"]
    assert shard.stat().st_size == 4 * len(wide_ds)
