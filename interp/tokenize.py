"""Text → token batches, the way each model was trained (BOS, padding side), with a mask for real tokens.

Every model the suite analyses carries `model.tokenizer`, an object satisfying `TextTokenizer`. Batches are
built by `batch_encode`, which returns `tokens [batch, pos]` (long) and `mask [batch, pos]` (bool, True on
real tokens, False on padding). Collectors use the mask so padding never changes a statistic.

The implementations: `HFTokenizer` (a `tokenizers` JSON file: the zoo's byte-level BPE, trained by `train_bpe`),
`TransformersTokenizer` (a transformers tokenizer, configured per family by `load_transformers_tokenizer`) and
`ByteTokenizer` (UTF-8 bytes, the fallback).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
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


class TransformersTokenizer:
    """`encode` gives ids without BOS (plus `suffix`, e.g. BERT's [SEP]); `interp.tokenize.batch_encode` batches."""

    def __init__(self, tok, add_bos: bool, padding_side: str, bos_id: int | None = None,
                 pad_id: int | None = None, suffix: Sequence[int] = ()):
        self.tok, self.add_bos, self.padding_side, self.suffix = tok, add_bos, padding_side, list(suffix)
        self.bos_id = tok.bos_token_id if bos_id is None else bos_id
        if pad_id is None:
            pad_id = next(i for i in (tok.pad_token_id, tok.eos_token_id, self.bos_id, 0) if i is not None)
        self.pad_id = pad_id
        self.vocab_size = len(tok)

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"]) + self.suffix

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def __repr__(self) -> str:
        return (f"TransformersTokenizer({type(self.tok).__name__}, add_bos={self.add_bos}, bos_id={self.bos_id}, "
                f"pad_id={self.pad_id}, padding_side={self.padding_side!r})")


# families whose SentencePiece models (Llama-1/2, Mistral) were trained with the model's BOS first; their
# tokenizer_config.json says add_bos_token: true, and a lone tokenizer.model (no such file) gets the same
SENTENCEPIECE_BOS = ("llama", "mistral")


def require_sentencepiece(path) -> None:
    """Reading a lone SentencePiece tokenizer.model needs sentencepiece and protobuf: one line naming both if not."""
    try:
        import google.protobuf  # noqa: F401
        import sentencepiece  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{path} holds only a SentencePiece tokenizer.model, and reading it needs the sentencepiece "
                          f"and protobuf packages ({e.name or 'one'} is not importable): pip install sentencepiece "
                          "protobuf") from None


def sentencepiece_bos(model_file) -> int | None:
    """The BOS id a SentencePiece model file defines (None: it defines none, or it is not a SentencePiece model)."""
    import sentencepiece as spm
    try:
        i = spm.SentencePieceProcessor(model_file=str(model_file)).bos_id()
    except (RuntimeError, OSError):  # e.g. a tiktoken file under the same name
        return None
    return i if i >= 0 else None


def load_transformers_tokenizer(path, family: str, encoder: bool = False, **kw) -> TransformersTokenizer:
    """The tokenizer saved in directory `path`, configured for `family`: encoders [CLS] ... [SEP] (or <s> ... </s>);
    GPT-2 <|endoftext|> first (TransformerLens's convention); Gemma <bos> and left padding; a lone SentencePiece
    tokenizer.model of Llama or Mistral without tokenizer_config.json: its BOS first; any other (SmolLM2, Qwen: no
    BOS): BOS exactly when its tokenizer adds one itself, the tokenizer's padding side."""
    from transformers import AutoTokenizer

    from interp.models.locate import sentencepiece_only
    path = Path(path)
    spm_only = sentencepiece_only(path)
    if spm_only:
        require_sentencepiece(path)
    tok = AutoTokenizer.from_pretrained(str(path), **kw)
    if encoder:
        return TransformersTokenizer(tok, add_bos=True, padding_side="right", bos_id=tok.cls_token_id,
                                     pad_id=tok.pad_token_id, suffix=[tok.sep_token_id])
    if family.startswith("gemma"):
        return TransformersTokenizer(tok, add_bos=True, padding_side="left")
    if family == "gpt2":
        return TransformersTokenizer(tok, add_bos=True, padding_side="right", bos_id=tok.eos_token_id)
    side = tok.padding_side or "right"
    if spm_only and family in SENTENCEPIECE_BOS and not (path / "tokenizer_config.json").is_file():
        bos = sentencepiece_bos(path / "tokenizer.model")
        return TransformersTokenizer(tok, add_bos=bos is not None, padding_side=side, bos_id=bos)
    ids = tok("a", add_special_tokens=True)["input_ids"]
    adds_bos = tok.bos_token_id is not None and len(ids) > 0 and ids[0] == tok.bos_token_id
    return TransformersTokenizer(tok, add_bos=adds_bos, padding_side=side)


# --- the zoo's tokenizers: a byte-level BPE trained on the training split, and a byte fallback -------------
# Special tokens: `<|endoftext|>` (id 0) is BOS and separates books in the training stream; `<|pad|>` (id 1)
# pads. The BPE is saved as one JSON file; its hash is the SHA-256 of that file's bytes.

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
    from interp.outputs import atomic_write_bytes
    data = tok.to_json().encode()
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def tokenizer_hash(path: str | Path) -> str:
    """SHA-256 of a tokenizer file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class ByteTokenizer:
    """UTF-8 bytes as tokens (ids 0..255), plus BOS = 256 and pad = 257: the fallback, vocabulary 258."""

    vocab_size = 258
    bos_id, pad_id, add_bos, padding_side = 256, 257, True, "right"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


__all__ = ["TextTokenizer", "batch_encode", "HFTokenizer", "load_tokenizer", "TransformersTokenizer",
           "load_transformers_tokenizer", "ByteTokenizer", "SPECIALS", "train_bpe", "save_tokenizer", "tokenizer_hash"]
