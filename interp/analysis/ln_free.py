"""LN removal (Heimersheim 2024; Baroni et al. 2025): the LN-free model against the vanilla fine-tune control.

Checkpoints (data/zoo, seed k ≥ 1 with the suffix `.seed<k>`): `pre-ln[.seedK]` the original, `pre-ln-lnfree[.seedK]`
LN removed and fine-tuned, `pre-ln-vanilla[.seedK]` the same fine-tuning budget with LN kept. All three are
evaluated in the report run on the same held-out tokens.
  ln_removal_cost  CE(LN-free) − CE(vanilla) in nats/token, paired by seed (t over the per-seed differences;
                   one seed: paired bootstrap over held-out sequences). control_gap: the spread (max − min) of
                   the vanilla controls' CE; when it exceeds the effect the controls cannot decide.
"""
from __future__ import annotations

import numpy as np

from interp.analysis.intervals import Estimate, bootstrap_interval, over_seeds
from interp.analysis.loss import pooled_ce
from interp.analysis.registry import metric
from interp.analysis.sequence_tables import loss_arrays, n_shared
from interp.analysis.subjects import Subject, seed_of


def _by_seed(s: Subject) -> dict[int, str]:
    return {seed_of(m): m for m in s.models}


@metric("ln_removal_cost", "CE(LN-free) − CE(vanilla fine-tune with LN kept, same budget), held-out tokens, "
        "paired by seed", "LN-free GPT-2 (Baroni et al. 2025) §4, Table 1", "nats/token")
def ln_removal_cost(t, subject: Subject, ref: Subject | None = None):
    """Cost of removing LayerNorm against the vanilla control; the control spread is reported as control_gap."""
    from interp.analysis.intervals import NotTestable
    if ref is None:
        raise NotTestable("no vanilla fine-tune control (pre-ln-vanilla) measured in this run")
    a, b = _by_seed(subject), _by_seed(ref)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise NotTestable(f"no seed has both {subject.label} and {ref.label}")
    for m in [a[k] for k in seeds] + [b[k] for k in seeds]:
        loss_arrays(t, m)
    controls = [pooled_ce(t, m) for m in ref.models]
    gap = float(max(controls) - min(controls)) if len(controls) >= 2 else None
    if len(seeds) >= 2:
        est = over_seeds([pooled_ce(t, a[k]) - pooled_ce(t, b[k]) for k in seeds])
        est.method = f"t over {len(seeds)} paired seeds"
    else:
        la, lb = a[seeds[0]], b[seeds[0]]
        n = n_shared(t, [la, lb], "seq_loss")

        def f(idx: np.ndarray | None) -> float:
            return pooled_ce(t, la, idx) - pooled_ce(t, lb, idx)
        lo, hi = bootstrap_interval(f, n) if n >= 2 else (float("nan"), float("nan"))
        est = Estimate(f(None), lo, hi, f"paired bootstrap over {n} held-out sequences; one seed", n)
    est.control_gap = gap
    detail = f"vanilla CE {np.mean(controls):.4f}"
    orig = [m.replace("-lnfree", "") for m in subject.models]
    have = [m for m in orig if t.get("seq_loss") is not None and (t["seq_loss"]["model"] == m).any()]
    if have:
        detail += f", original CE {np.mean([pooled_ce(t, m) for m in have]):.4f}"
    est.detail = detail + (f", vanilla controls spread {gap:.3g}" if gap is not None else "")
    return est
