"""Token streams and batches: a corpus becomes one token stream (books separated by BOS), cut into windows.

`TokenBatches.batch(i)` is a pure function of (seed, i): resuming at step i needs nothing but i. Each row is
[BOS] + a window of `seq_len` tokens, so inputs are `seq_len` long and start with BOS the way the model is
later used. `cond` is the window's relative position in the stream, start / len(stream) ∈ [0, 1): the
conditioning scalar of TD-LN (it tells the model where in the corpus — e.g. Genesis or Revelation — it is).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from interp.data.corpus import Corpus


def encode_corpus(corpus: Corpus, tok) -> torch.Tensor:
    """All books as one 1-D long tensor, books separated by the BOS / end-of-text token."""
    texts = [b.text for b in corpus.books]
    if hasattr(tok, "tk"):  # a `tokenizers` tokenizer: encode in one batch call
        ids = [e.ids for e in tok.tk.encode_batch(texts, add_special_tokens=False)]
    else:
        ids = [tok.encode(t) for t in texts]
    out: list[int] = []
    for row in ids:
        out += ([tok.bos_id] if out else []) + row
    return torch.tensor(out, dtype=torch.long)


def _integer(dtype) -> bool:
    """Whether a torch or numpy dtype holds integers."""
    if isinstance(dtype, torch.dtype):
        return not (dtype.is_floating_point or dtype.is_complex)
    return bool(np.issubdtype(dtype, np.integer))


@dataclass
class Batch:
    x: torch.Tensor      # [b, t] inputs (BOS first)
    y: torch.Tensor      # [b, t] next-token targets
    cond: torch.Tensor   # [b] relative position of the window in the stream (TD-LN conditioning)


class TokenBatches:
    """Non-overlapping windows of a token stream, reshuffled every epoch by a seeded generator."""

    def __init__(self, tokens: torch.Tensor, seq_len: int, batch_size: int, bos_id: int, seed: int = 0,
                 shuffle: bool = True):
        dtype = getattr(tokens, "dtype", None)
        if dtype is not None and not _integer(dtype):  # else 3.7 would silently become token 3
            raise ValueError(f"token ids must be integers, got a {dtype} array; pass the token ids, not "
                             "embeddings or probabilities")
        if isinstance(tokens, np.ndarray):  # any integer dtype and byte order (e.g. a big-endian '>u2' .npy)
            tokens = np.asarray(tokens).astype(np.int64)
        tokens = torch.as_tensor(tokens, dtype=torch.long).flatten()
        self.tokens, self.seq_len, self.batch_size = tokens, seq_len, batch_size
        self.bos_id, self.seed, self.shuffle = bos_id, seed, shuffle
        self.n_windows = len(tokens) // seq_len
        if self.n_windows < 1:
            raise ValueError(f"token stream of {len(tokens)} tokens is shorter than one window of {seq_len}")
        self._perm: tuple[int, torch.Tensor] | None = None

    def _order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n_windows)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(self.n_windows, generator=g))
        return self._perm[1]

    def windows(self, idx: list[int]) -> Batch:
        starts = torch.tensor(idx) * self.seq_len
        rows = torch.stack([self.tokens[s:s + self.seq_len] for s in starts.tolist()])
        bos = torch.full((len(idx), 1), self.bos_id, dtype=torch.long)
        seq = torch.cat([bos, rows], 1)
        return Batch(seq[:, :-1], seq[:, 1:], starts.double().div(len(self.tokens)).float())

    def batch(self, i: int) -> Batch:
        """Batch number `i` (0-based); epochs follow one another."""
        idx = []
        for s in range(i * self.batch_size, (i + 1) * self.batch_size):
            idx.append(int(self._order(s // self.n_windows)[s % self.n_windows]))
        return self.windows(idx)

    def epoch_of(self, i: int) -> float:
        return i * self.batch_size / self.n_windows

    def first(self, n_batches: int) -> list[Batch]:
        """The first `n_batches` batches in stream order (no shuffle): a fixed evaluation set."""
        n = min(n_batches, math.ceil(self.n_windows / self.batch_size))
        return [self.windows(list(range(b * self.batch_size, min((b + 1) * self.batch_size, self.n_windows))))
                for b in range(n)]
