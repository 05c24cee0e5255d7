"""Input data → padded batches `(tokens [b, t], attention_mask [b, t])`, the way the model was trained.

`data` may be texts (encoded with `model.tokenizer`: BOS and padding side as the model expects), a list of
token-id lists, a `[n, t]` long tensor (every position real) or a `(tokens, mask)` pair.
A sequence longer than the model's context is **split** by default into consecutive windows of the context
length (each window starts with BOS when the tokenizer adds one, so every token is seen once);
`overflow="truncate"` keeps only the first window, `"error"` refuses.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

TEXT_CHUNK = 1 << 16  # characters encoded at a time in a long text (bounded memory; stops at max_tokens);
# a longer run without a space is encoded whole (see split_text)


def model_context(model) -> int | None:
    """The model's context length (None when it declares none)."""
    for obj in (model, getattr(model, "cfg", None)):
        n = getattr(obj, "n_ctx", None)
        if isinstance(n, int):
            return n
    return getattr(model, "card", None) and model.card.extra.get("n_ctx")


def model_vocab(model) -> int | None:
    """The number of token ids the model's embedding accepts (None when it has none to read)."""
    for emb in (getattr(model, "embed", None), _call(getattr(model, "embed_module", None))):
        if isinstance(emb, torch.nn.Embedding):
            return emb.num_embeddings
    v = getattr(getattr(model, "cfg", None), "d_vocab", None)
    return v if isinstance(v, int) else None


def _call(f):
    try:
        return f() if callable(f) else None
    except Exception:  # noqa: BLE001 — a wrapper without an embedding lookup
        return None


def token_ids(x, where: str) -> list[int]:
    """A 1-D sequence of integer token ids as a list; floats (even 3.0), bools, nested lists are refused."""
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    if a.size == 0:
        return []
    if a.ndim != 1 or a.dtype.kind not in "iu":
        what = f"{a.ndim}-D" if a.ndim != 1 else a.dtype.name
        raise ValueError(f"{where} holds {what} token ids (e.g. {a.flat[0].item()!r}); token ids must be a flat list of "
                         "integers")
    return a.tolist()


def check_ids(seqs: Sequence[Sequence[int]], vocab: int | None, where: str = "the data", first: int = 0) -> None:
    """Refuse token ids outside [0, vocab) with one line naming the first bad id and its sequence (numbered from
    `first`: the place of seqs[0] in the data)."""
    if vocab is None:
        return
    for i, s in enumerate(seqs, first):
        if s and (min(s) < 0 or max(s) >= vocab):
            bad = next(v for v in s if v < 0 or v >= vocab)
            raise ValueError(f"token id {bad} in sequence {i} of {where} is outside the model's vocabulary "
                             f"[0, {vocab}); use token ids from this model's tokenizer")


def split_text(text: str, size: int = TEXT_CHUNK) -> Iterator[str]:
    """`text` in pieces cut just before a space that follows a non-space (where byte-level BPE pre-tokenizers
    split anyway, so the pieces encode as the whole does): at most `size` characters, except where a run of
    more than `size` characters holds no such space (a long URL, CJK text, a base64 blob), which stays in one
    piece up to the next such space: a cut inside it would change its token ids."""
    i = 0
    while i < len(text):
        j = min(i + size, len(text))
        if j < len(text):
            k = text.rfind(" ", i + 1, j)
            while k > i and text[k - 1].isspace():
                k = text.rfind(" ", i + 1, k)
            if k <= i:  # no cut point in the window: the first one after it, else the end of the text
                k = text.find(" ", j)
                while k != -1 and text[k - 1].isspace():
                    k = text.find(" ", k + 1)
            j = k if k > i else len(text)
        yield text[i:j]
        i = j


def encode_bounded(tok, text: str, limit: int | None = None) -> list[int]:
    """`tok.encode(text)`, but a long text is encoded piece by piece (split_text) and stops once `limit`
    tokens are there; a text of at most TEXT_CHUNK characters is encoded in one call, as before."""
    if len(text) <= TEXT_CHUNK:
        return list(tok.encode(text))
    suffix = list(getattr(tok, "suffix", None) or [])  # e.g. BERT's [SEP]: once, at the very end
    out: list[int] = []
    for piece in split_text(text):
        ids = list(tok.encode(piece))
        out += ids[:len(ids) - len(suffix)] if suffix and ids[len(ids) - len(suffix):] == suffix else ids
        if limit is not None and len(out) >= limit:
            return out
    return out + suffix


def check_batch_size(batch_size) -> None:
    """Refuse a batch size that is not a whole number of at least 1 (2.5 or 8.0 from a config) in one line."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")


def check_max_tokens(max_tokens) -> None:
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a whole number of at least 1 (got {max_tokens!r}); leave it out to "
                         "use all the data")


def to_sequences(model, data, max_len: int | None, overflow: str = "split",
                 max_tokens: int | None = None) -> list[list[int]]:
    """Token-id lists, one per sequence, each at most `max_len` long; at most `max_tokens` tokens in all."""
    if overflow not in ("split", "truncate", "error"):
        raise ValueError(f"unknown overflow {overflow!r}; choose 'split', 'truncate' or 'error'")
    check_max_tokens(max_tokens)
    tok = getattr(model, "tokenizer", None)
    bos = tok.bos_id if tok is not None and tok.add_bos else None
    texts = False
    if isinstance(data, str):
        data = [data]
    if len(data) == 0:
        raise ValueError("no tokens to collect on: the input is empty; pass texts or token ids")
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        tokens, mask = data
        if tokens.is_floating_point() or tokens.dim() != 2 or mask.shape != tokens.shape:
            raise ValueError(f"(tokens, mask) must be two [n, t] tensors of integer ids and a mask, got "
                             f"{tuple(tokens.shape)} {tokens.dtype} and {tuple(mask.shape)}")
        seqs = [t[m.bool()].tolist() for t, m in zip(tokens, mask)]
        bos = None  # given tokens are used as they are
    elif isinstance(data, torch.Tensor):
        if data.dim() != 2 or data.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"token data must be a [n, t] integer tensor, got {tuple(data.shape)} {data.dtype}")
        seqs, bos = data.tolist(), None
    elif isinstance(data, Sequence) and all(isinstance(x, str) for x in data):
        if tok is None:
            raise ValueError("this model has no tokenizer (model.tokenizer is None); pass token ids instead of texts")
        seqs, texts = [([bos] if bos is not None else []) + encode_bounded(tok, x, max_tokens) for x in data], True
    elif isinstance(data, Sequence) and all(isinstance(x, (list, tuple, np.ndarray, torch.Tensor)) for x in data):
        seqs, bos = [token_ids(x, f"sequence {i}") for i, x in enumerate(data)], None
    else:
        raise ValueError("data must be texts, token-id lists, a [n, t] token tensor or a (tokens, mask) pair")
    if not texts:
        check_ids(seqs, model_vocab(model))
    out: list[list[int]] = []
    for i, s in enumerate(seqs):
        out += fit_context(s, i, max_len, overflow, bos)
    if max_tokens is not None:
        out = _budget(out, max_tokens)
    if not out or not any(out):
        raise ValueError("no tokens to collect on: the input is empty (or every text encodes to nothing)")
    return out


def fit_context(s: list[int], i: int, max_len: int | None, overflow: str, bos: int | None) -> list[list[int]]:
    """Sequence `i` as the windows that fit the context: itself, its first window, or all its windows."""
    if not s:
        return []
    if max_len is None or len(s) <= max_len:
        return [s]
    if overflow == "error":
        raise ValueError(f"sequence {i} has {len(s)} tokens, more than the context of {max_len}; "
                         "pass overflow='split' or 'truncate'")
    return [s[:max_len]] if overflow == "truncate" else _split(s, max_len, bos)


def _split(s: list[int], n: int, bos: int | None) -> list[list[int]]:
    """Consecutive windows of at most n tokens; with a BOS, every window starts with it."""
    if bos is None or n < 2:
        return [s[i:i + n] for i in range(0, len(s), n)]
    body = s[1:] if s[0] == bos else s
    return [[bos] + body[i:i + n - 1] for i in range(0, len(body), n - 1)]


def _budget(seqs: list[list[int]], max_tokens: int) -> list[list[int]]:
    out, left = [], max_tokens
    for s in seqs:
        if left <= 0:
            break
        out.append(s[:left])
        left -= len(out[-1])
    return out


def batches(seqs: list[list[int]], batch_size: int, pad_id: int = 0,
            padding_side: str = "right") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Pad consecutive groups of `batch_size` sequences to their longest; yields (tokens, attention_mask)."""
    check_batch_size(batch_size)
    for i in range(0, len(seqs), batch_size):
        rows = seqs[i:i + batch_size]
        width = max(len(r) for r in rows)
        tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for j, r in enumerate(rows):
            sl = slice(width - len(r), width) if padding_side == "left" else slice(0, len(r))
            tokens[j, sl], mask[j, sl] = torch.tensor(r, dtype=torch.long), True
        yield tokens, mask
