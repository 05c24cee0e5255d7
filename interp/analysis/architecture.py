"""Claims about what a model computes by construction, measured exactly on the models themselves.

  equivalence_error  max over the Pre-RMSNorm and Pre-CRMSNorm conversions (and over seeds) of
                     max |Δlogit| / max |logit| against the Pre-LN original, in float64 (table equivalence)
"""
from __future__ import annotations

import numpy as np

from interp.analysis.intervals import NotTestable, exact
from interp.analysis.registry import metric
from interp.analysis.subjects import Subject, need


@metric("equivalence_error", "max |logit(converted) − logit(Pre-LN)| / max |logit(Pre-LN)| in float64, over the "
        "Pre-RMSNorm and Pre-CRMSNorm conversions", "Pre-RMSNorm and Pre-CRMSNorm Transformers §3 (equivalence)")
def equivalence_error(t, subject: Subject, ref: Subject | None = None):
    """Largest relative logit difference of the conversions (exact: a float64 computation, no sampling)."""
    e = need(t, "equivalence", subject.models, "Pre-LN → RMSNorm / CRMSNorm conversion")
    forms = set(e["form"])
    if not {"pre-rmsnorm", "pre-crmsnorm"} <= forms:
        raise NotTestable(f"only {sorted(forms)} measured; both conversions are needed")
    if "max_abs_logit" not in e:
        raise NotTestable("the equivalence table has no max |logit| to compare the difference with")
    rel = e["max_abs_diff"] / e["max_abs_logit"].abs().clip(lower=1e-300)
    bad = e[~np.isfinite(rel.to_numpy(dtype=float))]
    if len(bad):  # pandas' max would skip a NaN: a conversion with NaN logits would read as equal
        raise NotTestable("the logit difference is not finite for " + ", ".join(bad["model"] + " → " + bad["form"]) +
                          " (NaN or inf logits): equivalence cannot be judged")
    return exact(float(rel.max()), f"{len(e)} conversions of {e['model'].nunique()} model(s)")
