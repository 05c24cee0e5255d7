"""The massive-activation ablation with per-sequence losses (for the bootstrap of `ablation_delta`).

Same intervention as `MassiveActivations.ablation` (Sun et al. §3: at the depth where the massive activations
appear, set them to zero or to each dim's mean massive value, re-detected on the held text), run in one batched
pass (`MassiveActivations.ablation_runs`); each sequence's mean next-token CE is kept, and the pooled table the
report shows is derived from the same runs.

When the intact model's per-sequence losses on the same data are already measured (the `seq_loss` table of the
`SequenceStats` collector, which rides the main forward pass), they are the "none" arm: the intact forward then
stops at the ablation depth (it only supplies the stream the two edits start from) instead of running the whole
model and its unembedding a second time.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from interp.collectors.massive import MassiveActivations
from interp.collectors.massive_ablation import MODES


class _Stop(Exception):
    """Raised by the hook at the ablation depth: nothing after it is needed from the intact forward."""


def _none_from(seq_loss: pd.DataFrame | None, n_seqs: int) -> list[tuple[float, int]] | None:
    """The "none" arm [(Σ CE, predicted tokens)] per sequence from a seq_loss table covering sequences 0..n-1."""
    if seq_loss is None or len(seq_loss) != n_seqs or not (seq_loss["seq"].to_numpy() == np.arange(n_seqs)).all():
        return None
    return [(float(s), int(n)) for s, n in zip(seq_loss["loss_sum"], seq_loss["n_pred"])]


def _runs_from_depth(massive: MassiveActivations, model, seqs: list, none: list[tuple[float, int]],
                     batch_size: int) -> dict:
    """`massive.ablation_runs` with the "none" arm given: per batch, the intact forward up to the depth only, then
    the zero and mean edits from the depth on (`run_edits`, as `_AblationBatched` runs them)."""
    from interp.collectors.base import Batch
    from interp.collectors.batches import batches
    from interp.collectors.driver import attached
    from interp.collectors.massive_ablation import run_edits
    depth, dims, mean = massive.ablation_target(None)
    hook = massive.hooks_[depth]
    tok = getattr(model, "tokenizer", None)
    pad_id, side = (tok.pad_id, tok.padding_side) if tok is not None else (0, "right")
    device = next(iter(model.parameters())).device
    kept: dict[str, torch.Tensor] = {}

    def keep(x, hook):
        kept["x"] = x.detach()
        raise _Stop

    per_seq: dict[str, list[tuple[float, int]]] = {"none": list(none), "zero": [], "mean": []}
    replaced = {m: 0 for m in MODES}
    n_tok = 0
    with torch.no_grad():
        for i, (tokens, am) in enumerate(batches(seqs, batch_size, pad_id, side)):
            tokens, am = tokens.to(device), am.to(device)
            batch = Batch(tokens, am, am, i)
            try:
                with attached(model, [(hook, keep)], []):
                    model(tokens, attention_mask=am)
            except _Stop:
                pass
            run_edits(massive, model, kept.pop("x"), batch, depth, dims, mean, per_seq, replaced)
            n_tok += int(am.sum())
    return {"depth": depth, "dims": dims, "n_tokens": n_tok, "per_seq": per_seq, "replaced": replaced}


def ablation_per_sequence(massive: MassiveActivations, model, data, batch_size: int = 8,
                          seq_loss: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """{"ablation": pooled loss per mode (the report's table), "seq_ablation": per-sequence mean CE per mode}.
    One intact forward per batch plus the two edited variants from the depth on (`ablation_runs`); with
    `seq_loss` (the SequenceStats table of the same model on the same `data`), the intact forward stops at the
    depth and "none" is read from it."""
    from interp.collectors.batches import model_context, to_sequences
    from interp.collectors.objective import is_causal
    r = None
    if seq_loss is not None and is_causal(model):
        seqs = to_sequences(model, data, model_context(model), "split", None)
        none = _none_from(seq_loss, len(seqs))
        if none is not None:
            r = _runs_from_depth(massive, model, seqs, none, batch_size)
    if r is None:
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
