"""Content fingerprints: what makes a resumed run (or a cached conversion) the same as the one it continues.

A model is fingerprinted by the SHA-256 of its weights (every parameter and buffer: name, dtype, shape, bytes),
a file by the SHA-256 of its bytes, and a stream of token sequences by a running SHA-256 of the sequences read
so far (`StreamDigest`): a one-pass stream cannot be read twice, so a resumed run re-reads it up to the saved
position and compares the digest of that prefix before it collects anything new.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

CHUNK = 1 << 22


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 4 MB chunks (memory stays flat)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def sha256_tensors(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over named tensors (sorted by name; dtype, shape and raw bytes each)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype!s}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def sha256_model(model: torch.nn.Module) -> str:
    """SHA-256 of a model's weights (parameters and persistent buffers)."""
    return sha256_tensors(dict(model.state_dict()))


class DataChanged(ValueError):
    """The data re-read on resume differs from the data the saved state was computed on."""


class StreamDigest:
    """Running SHA-256 of the token sequences of batches 0, 1, ... (fed in order through `__call__`).

    With `expected` set, the digest of batches < `check_at` is compared with it as soon as batch `check_at`
    begins (or the stream ends), and DataChanged is raised on a mismatch: before anything new is collected."""

    def __init__(self, check_at: int | None = None, expected: str | None = None, what: str = "the data"):
        self.h = hashlib.sha256()
        self.check_at, self.expected, self.what = check_at, expected, what
        self.checked = expected is None

    def __call__(self, batch_index: int, seq) -> None:
        if not self.checked and batch_index >= self.check_at:  # type: ignore[operator]
            self.verify()
        self.h.update(np.asarray(seq, dtype=np.int64).tobytes())
        self.h.update(b"|")

    def hexdigest(self) -> str:
        return self.h.copy().hexdigest()

    def verify(self) -> None:
        """Compare the digest so far with `expected` (once)."""
        self.checked = True
        if self.hexdigest() != self.expected:
            raise DataChanged(f"{self.what} differs from the data the saved state was collected on (its first "
                              f"{self.check_at} batches hash differently); use another state_dir or delete it to "
                              "start over")

    def finish(self) -> None:
        """End of stream: check now if the saved position was never reached."""
        if not self.checked:
            self.verify()
