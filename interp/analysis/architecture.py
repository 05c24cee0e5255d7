"""Claims about what a model computes or costs by construction, measured exactly on the models themselves.

  equivalence_error  max over the Pre-RMSNorm and Pre-CRMSNorm conversions (and over seeds) of
                     max |Δlogit| / max |logit| against the Pre-LN original, in float64 (table equivalence)
  cond_params        ln(conditioning parameters of the subject / those of the reference), where a strategy's
                     conditioning parameters are its parameter count minus that of `base` (the same model with
                     a plain LayerNorm), all built at the trained models' size with `interp.zoo.build`
"""
from __future__ import annotations

import math

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
    rel = (e["max_abs_diff"] / e["max_abs_logit"].abs().clip(lower=1e-300)).max()
    return exact(float(rel), f"{len(e)} conversions of {e['model'].nunique()} model(s)")


def _n_params(strategy: str, size: dict) -> int:
    import interp.zoo
    if strategy not in interp.zoo.STRATEGIES:
        raise NotTestable(f"strategy {strategy!r} is not defined in this zoo")
    return sum(p.numel() for p in interp.zoo.build(strategy, seed=0, **size).parameters())


@metric("cond_params", "ln(parameters the conditioning adds to the subject / those it adds to the reference), "
        "each counted against the same model with a plain LayerNorm", "DiMR §3 (TD-LN against adaLN)")
def cond_params(t, subject: Subject, ref: Subject | None = None, base: str = ""):
    """Conditioning parameter count of subject vs reference (exact counts)."""
    if ref is None:
        raise NotTestable("cond_params needs a reference strategy")
    cards = t.get("cards")
    row = cards[cards["model"] == subject.models[0]].iloc[0] if cards is not None else None
    size = {k: int(row[k]) for k in ("n_layers", "d_model") if row is not None and k in row and row[k] == row[k]}
    nb = _n_params(base, size)
    a, b = _n_params(subject.label, size) - nb, _n_params(ref.label, size) - nb
    if a <= 0 or b <= 0:
        raise NotTestable(f"conditioning adds {a} (subject) and {b} (reference) parameters over {base}")
    return exact(math.log(a / b), f"{subject.label} adds {a:,} parameters, {ref.label} adds {b:,} (over {base})")
