"""A model's own tokenizer: a model directory with tokenizer.json tokenises through the `tokenizers` library with the
special tokens its tokenizer_config.json / config.json declare, as transformers' AutoTokenizer does."""

import json

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from model.tokenizer import TokenizerError, get_tokenizer

TEXT = ["the quick brown fox jumps over the lazy dog", "a model tokenises with its own vocabulary",
        "special tokens like </s> inside text stay text"] * 20


def _bpe_dir(tmp_path, specials, config=None, extra_files=None, name="tok"):
    """A small byte-level BPE tokenizer trained on TEXT with ``specials`` as added tokens, saved in a directory."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    d = tmp_path / name
    d.mkdir()
    tok.save(str(d / "tokenizer.json"))
    if config is not None:
        (d / "tokenizer_config.json").write_text(json.dumps(config))
    for file, content in (extra_files or {}).items():
        (d / file).write_text(json.dumps(content))
    return d


def test_llama_style_directory_uses_its_declared_eos_and_bos(tmp_path):
    d = _bpe_dir(tmp_path, ["<unk>", "<s>", "</s>"], {"bos_token": "<s>", "eos_token": {"__type": "AddedToken", "content": "</s>"},
                                                     "tokenizer_class": "PreTrainedTokenizerFast"})
    tok = get_tokenizer(d)
    assert (tok.eot_id, tok.eot_text, tok.bos_id, tok.bos_text) == (2, "</s>", 1, "<s>")
    assert tok.name.endswith("+eos=</s>") and tok.token_dtype == "uint16" and tok.vocab_size <= 300
    for text in TEXT[:3]:
        ids = tok.encode(text)
        assert tok.decode(ids) == text and tok.eot_id not in ids  # "</s>" in a document is text, not the separator
    transformers = pytest.importorskip("transformers")
    ref = transformers.AutoTokenizer.from_pretrained(d)
    assert ref.eos_token_id == tok.eot_id and ref.bos_token_id == tok.bos_id
    for text in TEXT[:2]:
        assert tok.encode(text) == ref(text, add_special_tokens=False)["input_ids"]


def test_config_json_ids_when_no_tokenizer_config(tmp_path):
    d = _bpe_dir(tmp_path, ["<pad>", "<bos>", "<eos>"], extra_files={"config.json": {"eos_token_id": [2, 0],
                                                                                      "bos_token_id": 1}})
    tok = get_tokenizer(d)
    assert (tok.eot_text, tok.eot_id, tok.bos_text) == ("<eos>", 2, "<bos>")


def test_endoftext_is_the_separator_when_nothing_is_declared(tmp_path):
    tok = get_tokenizer(_bpe_dir(tmp_path, ["<|endoftext|>"]) / "tokenizer.json")
    assert tok.eot_text == "<|endoftext|>" and tok.eot_id == 0 and tok.bos_id is None
    assert "+eos" not in tok.name  # the name of a plain tokenizer.json is unchanged by this feature


def test_wide_vocabulary_needs_uint32(tmp_path):
    vocab = {f"w{i}": i for i in range(70_000)} | {"<|end_of_text|>": 70_000, "[UNK]": 70_001}
    wl = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    wl.pre_tokenizer = pre_tokenizers.Whitespace()
    d = tmp_path / "wide"
    d.mkdir()
    wl.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|end_of_text|>"}))
    tok = get_tokenizer(d)
    assert tok.vocab_size == 70_002 and tok.token_dtype == "uint32" and tok.encode("w69999 w3") == [69_999, 3]
    assert get_tokenizer().token_dtype == "uint16"


def test_declared_eos_missing_from_vocabulary_is_refused(tmp_path):
    d = _bpe_dir(tmp_path, ["<s>"], {"eos_token": "</s>"})
    with pytest.raises(TokenizerError, match="'</s>'"):
        get_tokenizer(d)


def test_export_ships_the_models_own_tokenizer_files(tmp_path):
    """save_hf with a model directory's tokenizer copies its tokenizer_config.json; config.json and
    generation_config.json carry its eos and bos ids."""
    import numpy as np

    from model import hf
    from model.config import get_config
    from model.params import param_shapes

    transformers = pytest.importorskip("transformers")
    d = _bpe_dir(tmp_path, ["<unk>", "<s>", "</s>"], {"bos_token": "<s>", "eos_token": "</s>",
                                                     "tokenizer_class": "PreTrainedTokenizerFast"})
    cfg = get_config("llama-tiny", n_layers=1, vocab_size=300, max_seq_len=32)
    rng = np.random.default_rng(0)
    params = _random_params(param_shapes(cfg), rng)
    res = hf.save_hf(tmp_path / "out", cfg, params, tokenizer=d)
    assert "tokenizer_config.json" in res["files"] and res["architecture"] == "LlamaForCausalLM"
    conf = json.loads((tmp_path / "out" / "config.json").read_text())
    gen = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    assert (conf["eos_token_id"], conf["bos_token_id"], gen["eos_token_id"], gen["bos_token_id"]) == (2, 1, 2, 1)
    ref = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    assert ref.eos_token == "</s>" and ref(TEXT[0], add_special_tokens=False)["input_ids"] == get_tokenizer(d).encode(TEXT[0])


def _random_params(shapes, rng):
    if isinstance(shapes, dict):
        return {k: _random_params(v, rng) for k, v in shapes.items()}
    import numpy as np

    return (0.1 * rng.standard_normal(shapes)).astype(np.float32)
