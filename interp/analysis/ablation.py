"""The massive-activation ablation with per-sequence losses (for the bootstrap of `ablation_delta`).

Same intervention as `MassiveActivations.ablation` (Sun et al. §3: at the depth where the massive activations
appear, set them to zero or to each dim's mean massive value, re-detected on the held text), run once per mode;
each sequence's mean next-token CE is kept, and the pooled table the report shows is derived from the same runs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from interp.collect.massive import MassiveActivations, _AblationRun


class _PerSequence(_AblationRun):
    """One ablation pass that also keeps (Σ CE, tokens) per sequence."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.per_seq: list[tuple[float, int]] = []

    def end_batch(self, model, batch, output):
        super().end_batch(model, batch, output)
        pair = batch.attention_mask[:, :-1] & batch.attention_mask[:, 1:]
        for r in range(len(output)):
            ce = F.cross_entropy(output[r, :-1].float(), batch.tokens[r, 1:], reduction="none").double()
            p = pair[r]
            self.per_seq.append((float((ce * p).sum()), int(p.sum())))


def ablation_per_sequence(massive: MassiveActivations, model, data, batch_size: int = 8) -> dict[str, pd.DataFrame]:
    """{"ablation": pooled loss per mode (the report's table), "seq_ablation": per-sequence mean CE per mode}."""
    from interp.collect.driver import run_batches
    from interp.collect.objective import is_causal
    if not is_causal(model):
        raise ValueError(f"massive-activation ablation compares LM losses; {model.card.name} is an encoder")
    depth = massive.appearance_depth()
    dims = massive.state["dim_count"][depth].nonzero()[:, 0]
    if len(dims) == 0:
        raise ValueError(f"no massive activations at depth {depth}; nothing to ablate there")
    mean = (massive.state["dim_value_sum"][depth, dims] / massive.state["dim_count"][depth, dims]).float()
    pooled, per = [], []
    for mode in ("none", "zero", "mean"):
        probe = _PerSequence(massive, massive.hooks_[depth], dims, mean, mode)
        with torch.no_grad():
            run_batches(model, data, [probe], batch_size, None, progress=False)
        pooled.append({"model": model.card.name, "ablation": mode, "depth": depth,
                           "dims": " ".join(map(str, dims.tolist())), "loss": probe.loss_sum / probe.n})
        per += [{"model": model.card.name, "seq": i, "ablation": mode, "loss": s / n if n else np.nan, "n_pred": n}
                for i, (s, n) in enumerate(probe.per_seq)]
    return {"ablation": pd.DataFrame(pooled), "seq_ablation": pd.DataFrame(per)}
