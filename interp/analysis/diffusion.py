"""Claims about time conditioning in the masked-diffusion zoo (mdlm-tdln, mdlm-adaln, mdlm-ln), measured in the
report run on held-out tokens (tables of `interp.report.mdlm`):

  mdlm_nelbo        held-out MDLM bound (nats/token; `interp.train.mdlm`: midpoint rule over 10 t, two mask draws
                    per t and sequence, as interp.report.mdlm runs it), mean over sequences; with a reference,
                    subject − reference. Intervals: Welch over seeds (≥ 2 per side), else a paired bootstrap over
                    the shared held-out sequences.
  cond_param_ratio  ln(conditioning parameters of the subject / of the reference), counted by
                    `interp.zoo.conditioning.conditioning_parameters` (exact)
"""
from __future__ import annotations

import math

import numpy as np

from interp.analysis.intervals import NotTestable, exact
from interp.analysis.registry import metric
from interp.analysis.subjects import Subject, need
from interp.analysis.units import estimate


def _seq_nelbo(t, model: str) -> np.ndarray:
    rows = need(t, "mdlm_seq", [model], "held-out MDLM bound")
    return rows.sort_values("seq")["nelbo"].to_numpy(dtype=float)


def _unigram_xent() -> float | None:
    """Held-out cross-entropy of the zoo's training unigram (data/zoo/manifest.json), the MDLM bound of a model that
    ignores the context: with the linear schedule E_t[(1/t)·E|masked|·H]/L = H. None when no manifest is shipped."""
    import json

    from interp.data import DATA_DIR
    p = DATA_DIR / "zoo" / "manifest.json"
    try:
        return float(json.loads(p.read_text())["baselines_nats_per_token"]["unigram_xent_val"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


@metric("mdlm_nelbo", "held-out MDLM bound E_t[(1/t)·Σ_masked CE]/L on the validation books (midpoint rule over "
        "10 values of t); with a reference, the difference", "MDLM (Sahoo et al. 2024) eq. 10, linear schedule",
        "nats/token")
def mdlm_nelbo(t, subject: Subject, ref: Subject | None = None):
    """Held-out NELBO of subject (minus reference)."""
    models = subject.models + (ref.models if ref else ())
    arrays = {m: _seq_nelbo(t, m) for m in models}
    base = _unigram_xent()
    stuck = [m for m, a in arrays.items() if base is not None and not a.mean() < base]
    if ref is not None and stuck:  # equal losses of models that learned nothing say nothing about conditioning
        raise NotTestable(f"{', '.join(stuck)} did not learn: held-out bound not below the unigram cross-entropy "
                          f"{base:.3f} nats/token (a context-free predictor's bound)")
    n = {len(a) for a in arrays.values()}
    n_seqs = n.pop() if len(n) == 1 else 0

    def stat(m: str, idx: np.ndarray | None) -> float:
        a = arrays[m]
        return float(a.mean() if idx is None else a[idx].mean())
    return estimate(stat, subject, ref, n_seqs)


@metric("cond_param_ratio", "ln(parameters that exist only to take t in: subject / reference) — TD-LN's p1 and "
        "gates, adaLN-Zero's modulation maps and gates, the timestep embedder", "DiMR §3 (TD-LN against adaLN)")
def cond_param_ratio(t, subject: Subject, ref: Subject | None = None):
    """ln of the ratio of conditioning parameter counts (exact)."""
    if ref is None:
        raise NotTestable("cond_param_ratio needs a reference strategy")
    a = int(need(t, "mdlm_cond_params", subject.models[:1], "conditioning parameter count")["cond_params"].iloc[0])
    b = int(need(t, "mdlm_cond_params", ref.models[:1], "conditioning parameter count")["cond_params"].iloc[0])
    if a <= 0 or b <= 0:
        raise NotTestable(f"{subject.label} has {a} and {ref.label} {b} conditioning parameters")
    return exact(math.log(a / b), f"{subject.label}: {a:,} conditioning parameters, {ref.label}: {b:,} "
                                  f"({a / b:.1%})")
