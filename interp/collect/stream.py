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

from interp.collect.batches import fit_context, to_sequences

BIN_DTYPES = {"uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64}


class TokenFile:
    """A flat 1-D token file read lazily: `.npy` (its own dtype) or raw `.bin` (dtype given, default uint16).
    Cut into consecutive windows of `seq_len` tokens (default: the model's context); the last may be shorter."""

    def __init__(self, path: str | Path, dtype: str = "uint16", seq_len: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"token file {self.path} does not exist")
        if self.path.suffix == ".npy":
            self.tokens = np.load(self.path, mmap_mode="r")
        else:
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
    tok = getattr(model, "tokenizer", None)
    bos = tok.bos_id if tok is not None and tok.add_bos else None
    left = max_tokens
    for i, item in enumerate(data):
        if isinstance(item, str):
            if tok is None:
                raise ValueError("this model has no tokenizer (model.tokenizer is None); stream token-id lists")
            s, b = ([bos] if bos is not None else []) + list(tok.encode(item)), bos
        elif isinstance(item, (list, tuple, np.ndarray, torch.Tensor)):
            s, b = [int(x) for x in item], None
        else:
            raise ValueError(f"stream item {i} is a {type(item).__name__}; stream texts or token-id lists")
        for p in fit_context(s, i, max_len, overflow, b):
            if left is not None:
                if left <= 0:
                    return
                p = p[:left]
                left -= len(p)
            yield p


def shard_batches(model, data, batch_size: int, max_len: int | None, overflow: str = "split",
                  max_tokens: int | None = None, rank: int = 0, world: int = 1,
                  start: int = 0, tap=None) -> Iterator[tuple[int, list[list[int]]]]:
    """(global batch index, sequences) for this rank's batches (index % world == rank) from index `start` on.
    Other ranks' batches are skipped without being padded or run (a TokenFile does not even read them).
    tap(batch index, sequence) sees every sequence of a non-TokenFile source in order, skipped ones included
    (how a resumed run checks that it re-reads the same data: interp.fingerprint.StreamDigest)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
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
