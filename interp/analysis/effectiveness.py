"""Layer effectiveness, deep half against shallow half (Mix-LN §3, Curse of Depth §2; ShortGPT's measure).

  angular_deep_shallow  ln(mean angular distance of the deep half of consecutive-depth pairs / that of the
                        shallow half). Angular distance arccos(cos(h_ℓ, h_ℓ+1))/π on the last token of each
                        sequence (as the LayerNorm-Scaling code computes it), pairs ℓ = 0..L−1 (depth 0 is the
                        embedding), shallow = the first ⌊L/2⌋ pairs (for odd L the middle pair counts as deep).
                        < 0: deep blocks turn the stream less.
  skip_deep_shallow     mean CE increase (nats) when one block of the deep half is removed (its output replaced
                        by its input) − the same for the shallow half (the first ⌊L/2⌋ blocks, as above).
                        < 0: deep blocks matter less. Per held-out sequence from the seq_skip table
                        (`interp.analysis.skip`) when measured, so one seed gets a bootstrap interval; else from
                        the pooled skip table (no interval for one seed).
"""
from __future__ import annotations

import math

import numpy as np

from interp.analysis.intervals import NotTestable
from interp.analysis.registry import metric
from interp.analysis.sequence_tables import n_shared, stream_arrays
from interp.analysis.subjects import Subject, need
from interp.analysis.units import estimate


def deep_shallow_log_ratio(per_pair: np.ndarray) -> float:
    """ln(mean of the second half / mean of the first half) of a per-layer profile (NaN if not positive)."""
    h = len(per_pair) // 2
    lo, hi = float(np.mean(per_pair[:h])), float(np.mean(per_pair[h:]))
    return math.log(hi / lo) if lo > 0 and hi > 0 else math.nan


def _angular_profile(t, model: str, idx: np.ndarray | None) -> np.ndarray:
    a = stream_arrays(t, model)["ang"][:, :-1]  # pairs (ℓ, ℓ+1), ℓ = 0..L−1
    return (a if idx is None else a[idx]).mean(0)


@metric("angular_deep_shallow", "ln(mean angular distance arccos(cos(h_ℓ, h_ℓ+1))/π on the last token, deep half "
        "of the blocks / shallow half)", "Mix-LN §3, Curse of Depth §2 (ShortGPT angular distance)")
def angular_deep_shallow(t, subject: Subject, ref: Subject | None = None):
    """Deep-vs-shallow angular distance (log ratio); with a reference, the difference of log ratios."""
    models = subject.models + (ref.models if ref else ())
    for m in models:
        if stream_arrays(t, m)["ang"].shape[1] < 3:
            raise NotTestable(f"{m} has fewer than 2 blocks: no deep and shallow half")
    return estimate(lambda m, idx: deep_shallow_log_ratio(_angular_profile(t, m, idx)), subject, ref,
                    n_shared(t, models))


def _skip_per_seq(t, models: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """{model: [sequences, blocks] loss_delta} from the seq_skip table when every model has the same sequences."""
    df = t.get("seq_skip")
    if df is None or df.empty or not set(models) <= set(df["model"]):
        return None
    out, keys = {}, set()
    for m in models:
        # dropna=False: a block whose skip loss is NaN on every sequence stays a column (NaN), not left out, which
        # would shift the deep / shallow halves
        w = df[df["model"] == m].pivot_table(index="seq", columns="layer", values="loss_delta", aggfunc="first",
                                             dropna=False).sort_index().sort_index(axis=1)
        out[m] = w.to_numpy(dtype=float)
        keys.add((tuple(w.index), tuple(w.columns)))
    # the same sequences (and blocks) for every model, or a resample would pair different texts
    return out if len(keys) == 1 else None


def deep_minus_shallow(per_block: np.ndarray) -> float:
    """Mean of the second half of a per-block profile − mean of the first half (NaN with fewer than 2 blocks)."""
    if len(per_block) < 2:
        return math.nan
    h = len(per_block) // 2
    return float(per_block[h:].mean() - per_block[:h].mean())


@metric("skip_deep_shallow", "mean CE increase when one block is removed (output := input), deep half − shallow "
        "half of the blocks", "Mix-LN §3, Curse of Depth §2 (layer pruning)", "nats")
def skip_deep_shallow(t, subject: Subject, ref: Subject | None = None):
    """Deep-minus-shallow skip loss: per sequence from seq_skip (bootstrap for one seed), else the pooled table."""
    models = subject.models + (ref.models if ref else ())
    per_seq = _skip_per_seq(t, models)
    if per_seq is not None:
        n = len(next(iter(per_seq.values())))
        return estimate(lambda m, idx: deep_minus_shallow((per_seq[m] if idx is None else per_seq[m][idx]).mean(0)),
                        subject, ref, n)
    rows = need(t, "skip", models, "skip-one-block losses")

    def stat(m: str, idx) -> float:
        return deep_minus_shallow(rows[rows["model"] == m].groupby("layer")["loss_delta"].mean().sort_index()
                                  .to_numpy())
    return estimate(stat, subject, ref)
