"""Skip-one-block loss per held-out sequence (Mix-LN §3, Curse of Depth §2: removing a deep block costs little),
so that a single seed gets a bootstrap interval over sequences like every other claim.

Skipping block ℓ = its output replaced by its input (the stream at depth ℓ + 1 := the stream at depth ℓ), the
same intervention as `interp.collectors.LayerEffect(skip=True)`; the later blocks run on the edited stream.
  seq_skip  model, seq, layer, loss_delta, base: mean next-token CE of sequence `seq` with block `layer` skipped −
            the intact mean CE of that sequence (nats/token); base is that intact mean CE
"""
from __future__ import annotations

import pandas as pd
import torch

from interp.collectors.objective import token_ce


def _seq_ce(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean next-token CE per sequence [b] (float64): each token's CE from the float32 logits in float32, as
    `LayerEffect`'s skip losses (`objective.loss_terms`) take it, averaged in float64. A float64 log-softmax over
    the vocabulary costs ~5x as much on CPU; float32 moves a sequence's mean by at most ~1e-6 nats."""
    ce = token_ce(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    return ce.double().view(len(tokens), -1).mean(1)


@torch.no_grad()
def skip_per_sequence(model, tokens: torch.Tensor, batch_size: int = 8) -> pd.DataFrame:
    """seq_skip rows of a causal LM on `tokens` [n, t] (every position real): per batch, one intact forward keeps
    the stream at every depth, and the skipped variants run from depth ℓ + 1 on only, stacked along the batch
    (`interp.collectors.variants.run_variants`, as `LayerEffect(skip=True)` does)."""
    from interp.collectors.tail_loss import variant_ce
    from interp.collectors.variants import chunks, run_variants
    stream = model.sites.stream()
    L, rows = len(stream) - 1, []
    for start in range(0, len(tokens), batch_size):
        x = tokens[start:start + batch_size]
        am = torch.ones_like(x, dtype=torch.bool)
        kept: dict[str, torch.Tensor] = {}

        def keep(act, hook):
            kept[hook.name] = act.detach()

        logits = model.run_with_hooks(x, attention_mask=am, fwd_hooks=[(name, keep) for name in stream])
        base = _seq_ce(logits, x)
        base_l = base.tolist()
        per = logits[0].numel() * logits.element_size() * len(x)  # bytes of one variant's output
        for group in chunks(L, per):  # skipping block l: the stream at depth l + 1 is the stream at depth l
            vs = [(layer + 1, kept[stream[layer]]) for layer in group]
            ces = variant_ce(model, x, am, vs)  # without the logits when it can (tail_loss)
            seq = ([c.double().view(len(x), -1).mean(1) for c in ces] if ces is not None else
                   [_seq_ce(out, x) for out in run_variants(model, x, am, vs)])
            for layer, ce in zip(group, seq):
                delta = (ce - base).tolist()
                rows += [(start + i, layer, d, b) for i, (d, b) in enumerate(zip(delta, base_l))]
    df = pd.DataFrame(rows, columns=["seq", "layer", "loss_delta", "base"])
    df.insert(0, "model", model.card.name)  # card once: it counts the parameters
    return df


def pooled_skip_table(seq_skip: pd.DataFrame, items: int) -> pd.DataFrame:
    """`LayerEffect(skip=True)`'s layer_skip table (model, layer, metric, base, skipped, increase) of one model,
    pooled from its seq_skip rows of sequences 0 .. items-1. Every sequence predicts as many tokens (skip_per_sequence
    takes unpadded tokens), so the mean over sequences of per-sequence mean CE is the mean over tokens."""
    sub = seq_skip[seq_skip["seq"] < items]
    if sub.empty or sub["model"].nunique() != 1:
        raise ValueError(f"pooled_skip_table needs the seq_skip rows of one model with sequences below {items}")
    g = sub.groupby("layer")
    base = sub.drop_duplicates("seq")["base"].mean()
    inc = g["loss_delta"].mean()
    return pd.DataFrame({"model": sub["model"].iloc[0], "layer": inc.index.to_numpy(), "metric": "next_token_ce",
                         "base": base, "skipped": base + inc.to_numpy(), "increase": inc.to_numpy()})
