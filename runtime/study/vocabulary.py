"""The tokens a study trains on: the data (the built-in corpus, text files, or a `wse data` directory), by default
re-tokenised with a small byte-level BPE trained on its own training documents.

Why a small vocabulary: at the widths two CPU cores can train, GPT-2's 50257-token embedding is most of every model
(width 64: 3.2M embedding parameters against 0.1M in two blocks) and its logit matmul most of every step (6 x 50257
x 64 FLOPs a token against 6 x 0.1M), so a study on it would measure the output layer, and slowly. A 512-token BPE of
the same text keeps the blocks the bulk of the compute, makes the built-in corpus 1.13M training tokens (655K with
GPT-2's), and leaves the losses comparable within a study, which is all a study compares (never with the paper's
Pile losses). ``vocab=data`` keeps the data's own tokens (GPT-2's for text).

The tokenizer is trained on the training split's documents only (the same split `wse data` makes: runtime.data
``val_documents``), so the validation loss is measured on text the tokenizer never saw. HF ``tokenizers`` training
is deterministic, so a resumed study rebuilds the same tokenizer and reuses its dataset (same fingerprint).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.errors import UserError

TOKENIZER_FILE = "tokenizer.json"
DATA_DIR = "data"
BUILTIN = "python-docs"


@dataclass(frozen=True)
class StudyData:
    """A token dataset (a `wse data` directory) the study's points train on, and what it holds; ``tokens`` says in
    words what a token is (e.g. "a 512-token BPE trained on it")."""

    directory: Path
    source: str
    tokenizer: str
    vocab_size: int
    train_tokens: int
    val_tokens: int
    tokens: str = ""

    def describe(self) -> dict:
        return {"directory": str(self.directory), "source": self.source, "tokenizer": self.tokenizer,
                "tokens": self.tokens, "vocab_size": self.vocab_size, "train_tokens": self.train_tokens,
                "val_tokens": self.val_tokens}

    def line(self) -> str:
        """``python-docs in a 512-token BPE trained on it: 1,125,657 training, 37,564 validation tokens``."""
        return f"{self.source} in {self.tokens}: {self.train_tokens:,} training, {self.val_tokens:,} validation tokens"


def is_dataset(path: str) -> bool:
    """Whether ``path`` is a `wse data` directory (already tokenised)."""
    return (Path(path).expanduser() / "meta.json").is_file()


def inputs_of(data: str) -> list[str]:
    """The paths ``data`` names ([] for ``builtin``)."""
    return [] if data == "builtin" else [p.strip() for p in data.split(",") if p.strip()]


def check(data: str, vocab: int | str) -> None:
    """Refuse, before anything is written or started, data that does not exist or a BPE size asked of data that is
    already tokenised (UserError, one line)."""
    inputs = inputs_of(data)
    if data != "builtin" and not inputs:
        raise UserError("data= is empty; give builtin, text files or directories, or a `wse data` directory")
    for path in inputs:
        if not Path(path).expanduser().exists():
            raise UserError(f"data: {path} does not exist; give builtin, text files or directories, or a `wse data` "
                            "directory")
    if len(inputs) == 1 and is_dataset(inputs[0]) and vocab != "data":
        from runtime.data import TokenDataset

        ds = TokenDataset(inputs[0], "train")
        raise UserError(f"data={inputs[0]} is already tokenised ({ds.tokenizer}, {ds.vocab_size} tokens); set "
                        f"vocab=data to study its tokens, or give the text files to train a vocab={vocab} BPE on")


def prepare(data: str, vocab: int | str, out: Path, *, progress: bool = False) -> StudyData:
    """The study's tokens: ``data`` (``builtin``, comma-separated text files/directories, or a `wse data` directory)
    with ``vocab`` (a BPE size trained here into ``out/tokenizer.json``, the dataset in ``out/data``; or ``"data"``,
    the data's own tokens). UserError for missing inputs, or a BPE size asked of an already tokenised dataset."""
    from runtime.data import TokenDataset, build_dataset, prepare_builtin

    check(data, vocab)
    inputs, builtin = inputs_of(data), BUILTIN if data == "builtin" else None
    if len(inputs) == 1 and is_dataset(inputs[0]):
        directory, source = Path(inputs[0]).expanduser(), inputs[0]
    elif vocab == "data":
        if builtin:
            directory = prepare_builtin(progress=progress)
        else:
            directory = out / DATA_DIR
            build_dataset(inputs, directory, overwrite=True, progress=progress)
        source = data
    else:
        tokenizer = train_tokenizer(inputs, builtin, int(vocab), out / TOKENIZER_FILE)
        directory = out / DATA_DIR
        build_dataset(inputs, directory, builtin=builtin, tokenizer=str(tokenizer), overwrite=True, progress=progress)
        source = data
    train, val = TokenDataset(directory, "train"), TokenDataset(directory, "val")
    tokens = (f"a {train.vocab_size}-token BPE trained on it" if vocab != "data" else
              f"its own tokens ({train.tokenizer}, {train.vocab_size})")
    source = BUILTIN if builtin else source
    return StudyData(directory, source, train.tokenizer, train.vocab_size, len(train), len(val), tokens)


def train_tokenizer(inputs: list[str], builtin: str | None, vocab: int, path: Path) -> Path:
    """A byte-level BPE of ``vocab`` tokens (256 bytes, ``<|endoftext|>``, merges) trained on the training documents
    of the inputs, written to ``path`` (only when it changed). Returns ``path``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from model.tokenizer import EOT_TEXT

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[EOT_TEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_documents(inputs, builtin), trainer)
    text = tok.to_str()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path


def training_documents(inputs: list[str], builtin: str | None) -> list[str]:
    """The documents `wse data` puts in the training split of these inputs (its default split)."""
    from runtime.data import DEFAULT_VAL_FRACTION
    from runtime.data.inputs import Inputs
    from runtime.data.tokenise import val_documents

    docs = [doc for _, source_docs in Inputs(inputs, builtin).read() for doc in source_docs]
    held = val_documents(len(docs), DEFAULT_VAL_FRACTION, 0)
    return [doc for i, doc in enumerate(docs) if i not in held]
