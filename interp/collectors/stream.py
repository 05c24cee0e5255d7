"""Long corpora without holding them: sequences are produced one at a time and grouped into numbered batches,
so memory does not grow with the corpus, and a shard (batches i with i % world == rank) or a resumed run
(batches from i = start) reads only what it needs.

Sources: anything `interp.collect` takes in memory (texts, token lists, a token tensor, (tokens, mask)),
an iterator / generator of texts (or token-id lists), or a `TokenFile` (a flat token file read through
numpy memmap, cut into windows of the model's context). Batch i holds the same sequences whatever the source
form and whatever the number of processes, which is what makes sharded and resumed results exact.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from interp.collectors.batches import (TEXT_CHUNK, check_batch_size, check_ids, check_max_tokens, encode_bounded,
                                    fit_context, model_vocab, split_text, to_sequences, token_ids)

BIN_DTYPES = {"uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64}


class TokenFile:
    """A flat 1-D token file read lazily: `.npy` (its own dtype) or raw `.bin` (no dtype inside it: `dtype` must be
    given, since uint16 and int32 readings of one file both look plausible). Cut into consecutive windows of
    `seq_len` tokens (default: the model's context); the last may be shorter."""

    def __init__(self, path: str | Path, dtype: str | None = None, seq_len: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"token file {self.path} does not exist")
        if self.path.suffix == ".npy":
            try:
                self.tokens = np.load(self.path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise ValueError(f"{self.path} is not a readable .npy token array ({str(e)[:120]}); save it with "
                                 "numpy.save") from None
        else:
            if dtype is None:
                raise ValueError(f"{self.path} is a raw token file without a dtype; say how it was written "
                                 f"(--token-dtype / dtype=: {', '.join(BIN_DTYPES)}) or save a .npy instead")
            if dtype not in BIN_DTYPES:
                raise ValueError(f"unknown token dtype {dtype!r} for {self.path}; choose one of {', '.join(BIN_DTYPES)}")
            size = self.path.stat().st_size
            if size % np.dtype(BIN_DTYPES[dtype]).itemsize:
                raise ValueError(f"{self.path} has {size} bytes, not a whole number of {dtype} tokens; "
                                 "pass the dtype it was written with")
            self.tokens = np.memmap(self.path, dtype=BIN_DTYPES[dtype], mode="r")
        if self.tokens.ndim != 1 or not np.issubdtype(self.tokens.dtype, np.integer):
            raise ValueError(f"{self.path} must hold a flat 1-D integer token array, got shape "
                             f"{self.tokens.shape} {self.tokens.dtype}")
        if seq_len is not None and seq_len < 1:
            raise ValueError(f"seq_len must be at least 1, got {seq_len}")
        self.seq_len = seq_len

    def __len__(self) -> int:
        return len(self.tokens)

    def check_ids(self, vocab: int | None, max_tokens: int | None = None) -> None:
        """Refuse ids outside [0, vocab) among the tokens a run would read (scanned in chunks, before any work)."""
        if vocab is None:
            return
        n = len(self) if max_tokens is None else min(len(self), max_tokens)
        step = 1 << 24
        for lo in range(0, n, step):
            part = np.asarray(self.tokens[lo:min(lo + step, n)])
            bad = np.flatnonzero((part < 0) | (part >= vocab))
            if bad.size:
                raise ValueError(f"token id {int(part[bad[0]])} at position {lo + int(bad[0])} of {self.path} is "
                                 f"outside the model's vocabulary [0, {vocab}); use token ids from this model's "
                                 f"tokenizer (dtype read: {self.tokens.dtype})")

    def describe(self) -> dict:
        return {"token_file": str(self.path), "n_tokens": len(self), "dtype": str(self.tokens.dtype)}

    def window(self, max_len: int | None, max_tokens: int | None) -> tuple[int, int]:
        """(window length, tokens used) for a model context `max_len`."""
        L = min(self.seq_len or max_len or len(self), max_len or len(self))
        n = len(self) if max_tokens is None else min(len(self), max_tokens)
        return L, n

    def batch(self, index: int, batch_size: int, L: int, n: int) -> list[list[int]]:
        """The sequences of batch `index`, read straight from the file."""
        lo, hi = index * batch_size * L, min((index + 1) * batch_size * L, n)
        return [self.tokens[s:min(s + L, hi)].astype(np.int64).tolist() for s in range(lo, hi, L)]


def is_stream(data) -> bool:
    """True for sources read lazily: a TokenFile or a one-pass iterator / iterable that is not a Sequence."""
    if isinstance(data, TokenFile):
        return True
    return isinstance(data, Iterable) and not isinstance(data, (Sequence, torch.Tensor, str, bytes, tuple, dict))


def iter_sequences(model, data, max_len: int | None, overflow: str = "split",
                   max_tokens: int | None = None) -> Iterator[list[int]]:
    """Token-id sequences (each at most `max_len` long, at most `max_tokens` in all), one at a time."""
    if not is_stream(data):
        yield from to_sequences(model, data, max_len, overflow, max_tokens)
        return
    if overflow not in ("split", "truncate", "error"):
        raise ValueError(f"unknown overflow {overflow!r}; choose 'split', 'truncate' or 'error'")
    check_max_tokens(max_tokens)
    tok = getattr(model, "tokenizer", None)
    bos = tok.bos_id if tok is not None and tok.add_bos else None
    left, vocab = max_tokens, model_vocab(model)
    for i, item in enumerate(data):
        if isinstance(item, str):
            if tok is None:
                raise ValueError("this model has no tokenizer (model.tokenizer is None); stream token-id lists")
            if len(item) > TEXT_CHUNK and max_len is not None and overflow == "split":
                pieces = text_windows(tok, item, bos, max_len, left)  # long text: bounded memory
            else:
                s = ([bos] if bos is not None else []) + encode_bounded(tok, item, left)
                pieces = fit_context(s, i, max_len, overflow, bos)
        elif isinstance(item, (list, tuple, np.ndarray, torch.Tensor)):
            ids = token_ids(item, f"stream item {i}")
            check_ids([ids], vocab, first=i)  # named by its place in the stream, not its row in a batch
            pieces = fit_context(ids, i, max_len, overflow, None)
        else:
            raise ValueError(f"stream item {i} is a {type(item).__name__}; stream texts or token-id lists")
        for p in pieces:
            if left is not None:
                if left <= 0:
                    return
                p = p[:left]
                left -= len(p)
            yield p


def text_windows(tok, text: str, bos: int | None, n: int, limit: int | None = None) -> Iterator[list[int]]:
    """The windows `fit_context` gives for a long text (overflow="split"), tokenized piece by piece: memory holds
    one piece and one window, and tokenizing stops once `limit` tokens have been produced."""
    suffix = list(getattr(tok, "suffix", None) or [])  # e.g. BERT's [SEP]: once, after the last piece
    step = n - 1 if bos is not None and n >= 2 else n
    buf: list[int] = []
    made = 0
    pieces = list(split_text(text)) if suffix else split_text(text)
    for k, piece in enumerate(pieces):
        ids = list(tok.encode(piece))
        if suffix and k < len(pieces) - 1 and ids[len(ids) - len(suffix):] == suffix:  # type: ignore[arg-type]
            ids = ids[:len(ids) - len(suffix)]
        buf += ids
        while len(buf) > step:
            w, buf = buf[:step], buf[step:]
            w = ([bos] + w) if step != n else w
            made += len(w)
            yield w
            if limit is not None and made >= limit:
                return
    if buf:
        yield ([bos] + buf) if step != n else buf


def shard_batches(model, data, batch_size: int, max_len: int | None, overflow: str = "split",
                  max_tokens: int | None = None, rank: int = 0, world: int = 1,
                  start: int = 0, tap=None) -> Iterator[tuple[int, list[list[int]]]]:
    """(global batch index, sequences) for this rank's batches (index % world == rank) from index `start` on.
    Other ranks' batches are skipped without being padded or run (a TokenFile does not even read them).
    tap(batch index, sequence) sees every sequence of a non-TokenFile source in order, skipped ones included
    (how a resumed run checks that it re-reads the same data: interp.fingerprint.StreamDigest)."""
    check_batch_size(batch_size)
    if isinstance(data, TokenFile):
        L, n = data.window(max_len, max_tokens)
        n_batches = -(-n // (batch_size * L))
        if n_batches == 0:
            raise ValueError(f"no tokens to collect on: {data.path} is empty")
        for i in range(start, n_batches):
            if i % world == rank:
                yield i, data.batch(i, batch_size, L, n)
        return
    rows: list[list[int]] = []
    i = 0
    any_tokens = False
    for s in iter_sequences(model, data, max_len, overflow, max_tokens):
        any_tokens = True
        if tap is not None:
            tap(i, s)
        if i < start or i % world != rank:  # not ours: only count the sequences
            rows.append(None)  # type: ignore[arg-type]
        else:
            rows.append(s)
        if len(rows) == batch_size:
            if rows[0] is not None:
                yield i, rows
            rows, i = [], i + 1
    if not any_tokens:
        raise ValueError("no tokens to collect on: the input is empty (or every text encodes to nothing)")
    if rows and rows[0] is not None:
        yield i, rows
