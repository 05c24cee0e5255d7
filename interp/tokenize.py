"""Text → token batches, the way each model was trained (BOS, padding side), with a mask for real tokens.

Every model the suite analyses carries `model.tokenizer`, an object satisfying `TextTokenizer`. Batches are
built by `batch_encode`, which returns `tokens [batch, pos]` (long) and `mask [batch, pos]` (bool, True on
real tokens, False on padding). Collectors use the mask so padding never changes a statistic.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch


@runtime_checkable
class TextTokenizer(Protocol):
    """The minimal tokenizer interface: ids in, ids out, plus how the model expects BOS and padding."""

    bos_id: int | None      # id prepended when `add_bos` is True (None: the model has no BOS)
    pad_id: int             # id used for padding (never attended to, always masked out)
    add_bos: bool           # whether sequences start with BOS the way the model was trained
    padding_side: str       # "right" or "left"

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, *without* BOS (batch_encode adds it when `add_bos`)."""

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the token ids."""


def batch_encode(tok: TextTokenizer, texts: Sequence[str], max_len: int | None = None,
                 overflow: str = "error") -> tuple[torch.Tensor, torch.Tensor]:
    """Encode `texts` into a padded batch `(tokens [b, t], mask [b, t])`.

    `overflow` says what happens to a text longer than `max_len` (BOS included): "error" raises, "truncate"
    keeps the first `max_len` tokens.
    """
    if isinstance(texts, str):
        texts = [texts]
    if len(texts) == 0:
        raise ValueError("no texts to encode: pass at least one non-empty string")
    rows: list[list[int]] = []
    for i, text in enumerate(texts):
        ids = list(tok.encode(text))
        if tok.add_bos and tok.bos_id is not None:
            ids = [tok.bos_id] + ids
        if not ids:
            raise ValueError(f"text {i} encodes to no tokens; drop empty texts before encoding")
        if max_len is not None and len(ids) > max_len:
            if overflow == "truncate":
                ids = ids[:max_len]
            elif overflow == "error":
                raise ValueError(f"text {i} has {len(ids)} tokens, more than the context of {max_len}; "
                                 "pass overflow='truncate' or split the text")
            else:
                raise ValueError(f"unknown overflow {overflow!r}; choose 'error' or 'truncate'")
        rows.append(ids)
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        if tok.padding_side == "left":
            tokens[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = True
        else:
            tokens[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = True
    return tokens, mask


class HFTokenizer:
    """A `tokenizers.Tokenizer` (e.g. the zoo's byte-level BPE) as a `TextTokenizer`.

    Special tokens are looked up by name: `<|bos|>` / `<|endoftext|>` for BOS and `<|pad|>` for padding.
    """

    def __init__(self, tk, add_bos: bool = True, padding_side: str = "right"):
        self.tk, self.add_bos, self.padding_side = tk, add_bos, padding_side
        vocab = tk.get_vocab()
        self.bos_id = next((vocab[s] for s in ("<|bos|>", "<|endoftext|>") if s in vocab), None)
        self.pad_id = vocab.get("<|pad|>", self.bos_id if self.bos_id is not None else 0)
        self.vocab_size = tk.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tk.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self.tk.decode(list(ids), skip_special_tokens=False)

    def to_json(self) -> str:
        return self.tk.to_str()


def load_tokenizer(path) -> HFTokenizer:
    """Load a `tokenizers` JSON file as a `TextTokenizer`; a bad file raises one clear error."""
    from tokenizers import Tokenizer
    try:
        return HFTokenizer(Tokenizer.from_file(str(path)))
    except Exception as e:  # tokenizers raises bare Exceptions on malformed JSON
        raise ValueError(f"{path} is not a valid tokenizer file ({e}); re-save the checkpoint") from None
