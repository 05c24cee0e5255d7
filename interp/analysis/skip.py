"""Skip-one-block loss per held-out sequence (Mix-LN §3, Curse of Depth §2: removing a deep block costs little),
so that a single seed gets a bootstrap interval over sequences like every other claim.

Skipping block ℓ = its output replaced by its input (the stream at depth ℓ + 1 := the stream at depth ℓ), the
same intervention as `interp.collectors.LayerEffect(skip=True)`; the later blocks run on the edited stream.
  seq_skip  model, seq, layer, loss_delta: mean next-token CE of sequence `seq` with block `layer` skipped −
            the intact mean CE of that sequence (nats/token)
"""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F


def _seq_ce(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean next-token CE per sequence [b] (float64)."""
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).double(), tokens[:, 1:].flatten(), reduction="none")
    return ce.view(len(tokens), -1).mean(1)


@torch.no_grad()
def skip_per_sequence(model, tokens: torch.Tensor, batch_size: int = 8) -> pd.DataFrame:
    """seq_skip rows of a causal LM on `tokens` [n, t] (every position real): one forward per block and batch."""
    stream = model.sites.stream()
    L, rows = len(stream) - 1, []
    for start in range(0, len(tokens), batch_size):
        x = tokens[start:start + batch_size]
        base = _seq_ce(model(x), x)
        for layer in range(L):
            kept: dict[str, torch.Tensor] = {}

            def keep(act, hook):
                kept["x"] = act
                return act

            def replace(act, hook):
                return kept["x"]

            out = model.run_with_hooks(x, fwd_hooks=[(stream[layer], keep), (stream[layer + 1], replace)])
            delta = (_seq_ce(out, x) - base).tolist()
            rows += [{"model": model.card.name, "seq": start + i, "layer": layer, "loss_delta": d}
                     for i, d in enumerate(delta)]
    return pd.DataFrame(rows, columns=["model", "seq", "layer", "loss_delta"])
