"""Corpus, tokenizer and batches for training and evaluating the zoo.

    c = interp.data.load_corpus("kjv")             # or "austen", a path, "hf:NAME"
    train, val = interp.data.split_by_book(c)      # deterministic, by whole books
    d = interp.data.prepare("kjv")                 # tokenizer (data/tokenizer.json) + token streams + hashes
    tokens = interp.data.heldout_tokens(8, 128)    # the fixed held-out evaluation sample used by the report
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from interp.data.batches import Batch, TokenBatches, encode_corpus
from interp.data.corpus import Book, Corpus, load_corpus, split_by_book
from interp.tokenize import ByteTokenizer, load_tokenizer, save_tokenizer, tokenizer_hash, train_bpe

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
TOKENIZER_PATH = DATA_DIR / "tokenizer.json"


@dataclass
class Prepared:
    """A corpus split, tokenized: what a training run needs, plus the hashes it records."""

    corpus: Corpus
    train: Corpus
    val: Corpus
    tokenizer: object
    train_tokens: torch.Tensor
    val_tokens: torch.Tensor
    tokenizer_sha256: str

    def describe(self) -> dict:
        return {"corpus": self.corpus.describe(), "train": self.train.describe(), "val": self.val.describe(),
                "train_tokens": len(self.train_tokens), "val_tokens": len(self.val_tokens),
                "tokenizer_sha256": self.tokenizer_sha256,
                "tokenizer_vocab": getattr(self.tokenizer, "vocab_size", None)}


def get_tokenizer(train: Corpus | None = None, path: str | Path = TOKENIZER_PATH, vocab_size: int | None = None):
    """Load the BPE at `path`; if it is missing, train it on `train` (the KJV training split by default) with
    `vocab_size` tokens (4096 when None) and save. An existing file of another size than a given `vocab_size` is
    an error, not a silent substitute."""
    path = Path(path)
    if path.is_file():
        tok = load_tokenizer(path)
        if vocab_size is not None and tok.vocab_size != vocab_size:
            raise ValueError(f"{path} has {tok.vocab_size} tokens, not the {vocab_size} asked for; pass "
                             "tokenizer_path= a new file to train one of that size, or leave vocab_size unset")
        return tok
    if train is None:
        train = split_by_book(load_corpus("kjv"))[0]
    tok = train_bpe([b.text for b in train.books], vocab_size or 4096)
    save_tokenizer(tok, path)
    return tok


def prepare(corpus: str | Corpus = "kjv", tokenizer_path: str | Path | None = TOKENIZER_PATH,
            vocab_size: int | None = None, val_fraction: float = 0.1) -> Prepared:
    """Load, split by book and tokenize a corpus; `tokenizer_path=None` uses the byte-level fallback, and
    `vocab_size` applies when the tokenizer file is missing and trained here (see `get_tokenizer`)."""
    c = load_corpus(corpus) if isinstance(corpus, str) else corpus
    train, val = split_by_book(c, val_fraction)
    if tokenizer_path is None:
        tok, sha = ByteTokenizer(), "bytes"
    else:
        tok = get_tokenizer(train, tokenizer_path, vocab_size)
        sha = tokenizer_hash(tokenizer_path)
    return Prepared(c, train, val, tok, encode_corpus(train, tok), encode_corpus(val, tok), sha)


def heldout_texts(n: int = 8, chars: int = 400, corpus: str = "kjv") -> list[str]:
    """`n` fixed passages of about `chars` characters from the validation books (whole words, no BOS)."""
    _, val = split_by_book(load_corpus(corpus))
    text = "\n\n".join(b.text for b in val.books)
    if len(text) < n * chars:  # else the last passages would come back short or empty
        raise ValueError(f"the validation books of corpus {corpus!r} hold {len(text)} characters, fewer than "
                         f"{n} passages × {chars} characters; ask for fewer or shorter passages")
    step = max(chars, len(text) // n)
    out = []
    for i in range(n):
        s = text[i * step:i * step + chars]
        s = s[s.find(" ") + 1:] if i else s          # start and end on word boundaries
        out.append(s[:s.rfind(" ")] if " " in s else s)
    return out


def heldout_tokens(n_seqs: int = 8, seq_len: int = 128, corpus: str = "kjv",
                   tokenizer_path: str | Path = TOKENIZER_PATH) -> torch.Tensor:
    """The fixed evaluation sample: the first `n_seqs` windows of the validation stream, BOS first: [n, seq_len]."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2 (BOS and one token), got {seq_len}")
    tok = load_tokenizer(tokenizer_path)
    val = encode_corpus(split_by_book(load_corpus(corpus))[1], tok)
    if len(val) // (seq_len - 1) < n_seqs:  # else fewer rows would come back than asked for
        raise ValueError(f"the validation stream of corpus {corpus!r} has {len(val)} tokens, "
                         f"{len(val) // (seq_len - 1)} windows of {seq_len - 1}: fewer than the {n_seqs} sequences "
                         "asked for; ask for fewer or shorter sequences")
    b = TokenBatches(val, seq_len - 1, n_seqs, tok.bos_id, shuffle=False).first(1)[0]
    return torch.cat([b.x, b.y[:, -1:]], 1)


def unigram_entropy(train_tokens: torch.Tensor, val_tokens: torch.Tensor, vocab_size: int) -> dict[str, float]:
    """Unigram baselines in nats/token: entropy of the training distribution, and the validation cross-entropy
    under it (add-one smoothed) — the loss of a model that ignores context, to compare validation losses with."""
    counts = torch.bincount(train_tokens, minlength=vocab_size).double()
    p = counts / counts.sum()
    h = -(p[p > 0] * p[p > 0].log()).sum().item()
    q = (counts + 1) / (counts.sum() + vocab_size)
    xent = -q.log()[val_tokens].mean().item()
    return {"unigram_entropy_train": h, "unigram_xent_val": xent}


__all__ = ["Book", "Corpus", "load_corpus", "split_by_book", "train_bpe", "load_tokenizer", "save_tokenizer",
           "tokenizer_hash", "ByteTokenizer", "TokenBatches", "Batch", "encode_corpus", "Prepared", "prepare",
           "get_tokenizer", "heldout_texts", "heldout_tokens", "unigram_entropy", "DATA_DIR", "TOKENIZER_PATH"]
