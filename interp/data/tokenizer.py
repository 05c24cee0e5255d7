"""The zoo's tokenizers: a byte-level BPE trained with `tokenizers` on the training split, and a byte fallback.

Both satisfy `interp.tokenize.TextTokenizer`. Special tokens: `<|endoftext|>` (id 0) is BOS and separates
books in the training stream; `<|pad|>` (id 1) pads. The BPE is saved as one JSON file; its hash is the
SHA-256 of that file's bytes.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from interp.tokenize import HFTokenizer, load_tokenizer

SPECIALS = ["<|endoftext|>", "<|pad|>"]


def train_bpe(texts: Sequence[str], vocab_size: int = 4096) -> HFTokenizer:
    """Train a byte-level BPE (GPT-2 style pre-tokenization) on `texts`; deterministic for a given input."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    if vocab_size < 256 + len(SPECIALS):
        raise ValueError(f"vocab_size={vocab_size} is below the 256 bytes + {len(SPECIALS)} special tokens")
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(list(texts), trainer=trainer)
    return HFTokenizer(tk)


def save_tokenizer(tok: HFTokenizer, path: str | Path) -> str:
    """Write the tokenizer JSON atomically; return its SHA-256."""
    from interp.zoo.io import atomic_write_bytes
    data = tok.to_json().encode()
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def tokenizer_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class ByteTokenizer:
    """UTF-8 bytes as tokens (ids 0..255), plus BOS = 256 and pad = 257: the fallback, vocabulary 258."""

    vocab_size = 258
    bos_id, pad_id, add_bos, padding_side = 256, 257, True, "right"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


__all__ = ["SPECIALS", "train_bpe", "save_tokenizer", "tokenizer_hash", "ByteTokenizer", "HFTokenizer",
           "load_tokenizer"]
