"""LN removal (Heimersheim 2024; Baroni et al. 2025): the LN-free model against the vanilla fine-tune control.

Checkpoints (data/zoo, seed k ≥ 1 with the suffix `.seed<k>`): `pre-ln[.seedK]` the original, `pre-ln-lnfree[.seedK]`
LN removed and fine-tuned, `pre-ln-vanilla[.seedK]` the same fine-tuning budget with LN kept. All three are
evaluated in the report run on the same held-out tokens.
  ln_removal_cost  CE(LN-free) − CE(vanilla) in nats/token, paired by seed (t over the per-seed differences;
                   one seed: paired bootstrap over held-out sequences). control_gap: |CE(vanilla) −
                   CE(vanilla-single)|, mean over the seeds that have both: two controls of the same length
                   (`pre-ln-vanilla-single[.seedK]`, one warm-up + cosine run) that should agree; when the
                   interval widened by the gap reaches the claim's boundary, the controls cannot decide.
"""
from __future__ import annotations

import numpy as np

from interp.analysis.intervals import Estimate, bootstrap_interval, over_seeds
from interp.analysis.loss import pooled_ce
from interp.analysis.registry import metric
from interp.analysis.sequence_tables import loss_arrays, n_shared
from interp.analysis.subjects import Subject, seed_of

SINGLE = "pre-ln-vanilla-single"


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
    controls = [pooled_ce(t, b[k]) for k in seeds]  # the paired controls: another seed's may be unmeasured
    have = set(t["seq_loss"]["model"]) if t.get("seq_loss") is not None else set()
    pairs = [(b[k], SINGLE + b[k][len(ref.label):]) for k in seeds]
    pairs = [(v, w) for v, w in pairs if w in have]
    gap = float(np.mean([abs(pooled_ce(t, v) - pooled_ce(t, w)) for v, w in pairs])) if pairs else None
    if len(seeds) >= 2:
        est = over_seeds([pooled_ce(t, a[k]) - pooled_ce(t, b[k]) for k in seeds])
        if est.has_interval:
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
    measured = [m for m in orig if m in have]
    if measured:
        detail += f", original CE {np.mean([pooled_ce(t, m) for m in measured]):.4f}"
    est.detail = detail + (f", |vanilla − vanilla-single| {gap:.3g}" if gap is not None else
                           ", no second control (pre-ln-vanilla-single) measured")
    unpaired = sorted((set(a) | set(b)) - set(seeds))
    if unpaired:
        est.detail += f"; left out, LN-free or vanilla model missing: seed {', '.join(map(str, unpaired))}"
    return est
