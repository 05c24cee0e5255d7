"""Keep a model's running state through an analysis forward: reading a model is not a training step."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def kept_state(model: torch.nn.Module) -> Iterator[None]:
    """Restore every buffer after the block when the model is in train mode (PowerNorm / Unified Norm move their
    running statistics and step counters on a train-mode forward); in eval mode nothing moves, nothing is copied."""
    state = [(b, b.clone()) for b in model.buffers()] if model.training else []
    try:
        yield
    finally:
        with torch.no_grad():
            for b, was in state:
                b.copy_(was)
