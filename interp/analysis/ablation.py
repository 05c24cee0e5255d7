"""The massive-activation ablation with per-sequence losses (for the bootstrap of `ablation_delta`).

Same intervention as `MassiveActivations.ablation` (Sun et al. §3: at the depth where the massive activations
appear, set them to zero or to each dim's mean massive value, re-detected on the held text), run in one batched
pass (`MassiveActivations.ablation_runs`); each sequence's mean next-token CE is kept, and the pooled table the
report shows is derived from the same runs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from interp.collectors.massive import MODES, MassiveActivations


def ablation_per_sequence(massive: MassiveActivations, model, data, batch_size: int = 8) -> dict[str, pd.DataFrame]:
    """{"ablation": pooled loss per mode (the report's table), "seq_ablation": per-sequence mean CE per mode}.
    One intact forward per batch plus the two edited variants from the depth on (`ablation_runs`)."""
    r = massive.ablation_runs(model, data, batch_size=batch_size)
    dims = " ".join(map(str, r["dims"].tolist()))
    pooled, per = [], []
    for mode in MODES:
        ps = r["per_seq"][mode]
        pooled.append({"model": model.card.name, "ablation": mode, "depth": r["depth"], "dims": dims,
                       "loss": sum(s for s, _ in ps) / sum(n for _, n in ps)})
        per += [{"model": model.card.name, "seq": i, "ablation": mode, "loss": s / n if n else np.nan, "n_pred": n}
                for i, (s, n) in enumerate(ps)]
    return {"ablation": pd.DataFrame(pooled), "seq_ablation": pd.DataFrame(per)}
