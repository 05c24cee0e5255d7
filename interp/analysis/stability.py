"""Training stability from the LR sweep, and the attention-logit scale QK-norm bounds.

  stable_lr_steps  the largest learning rate of the sweep's ladder below which no run of the strategy diverged
                   (every rung up to it stable), as a ladder index; with a reference, subject − reference in
                   ladder steps (one step = ×√10 in the default ladder), paired by sweep seed; median over seeds with an
                   order-statistic interval (none below 6 seeds).
                   A strategy that never diverges is censored at the top rung: when both sides are, the
                   comparison is not testable.
  lr_sensitivity   Wortsman et al. 2023 ("Small-scale proxies for large-scale Transformer training
                   instabilities", their LR-sensitivity measure): E_lr[min(ℓ(lr), ℓ0) − min_lr ℓ(lr)] over the ladder, ℓ the final training
                   loss, ℓ0 the loss at initialization (a diverged run counts as ℓ0); subject − reference,
                   Welch over seeds.
  max_attn_logit   log10 of the largest |q·k|/√d_head over layers and heads of a trained model on held-out text
                   (interp.collectors.attn_logits), mean over seeds; subject − reference, Welch over seeds.
                   The table is the report's main pass, which runs every zoo model on clean text without cond: a
                   causal model as it is used, but an MDLM model at t = 0 with nothing masked, a state its loss
                   never sees; so its claims compare causal models only (QK-norm). The LR sweep's own column
                   measures MDLM presets on the masked input of their loss (interp.train.sweep.loss_input).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from interp.analysis.intervals import Estimate, NotTestable, diff_over_seeds, median_over_seeds, over_seeds
from interp.analysis.registry import metric
from interp.analysis.subjects import Subject, need


def _sweep(t, label: str) -> pd.DataFrame:
    """The sweep rows of strategy `label` (all seeds); NotTestable when absent."""
    df = t.get("sweep")
    if df is None or df.empty:
        raise NotTestable("no LR sweep in this run (interp sweep writes data/sweep)")
    rows = df[df["model"] == label]
    if rows.empty:
        raise NotTestable(f"the LR sweep has no {label} runs")
    return rows.assign(seed=rows["seed"] if "seed" in rows else 0)


def stable_rung(runs: pd.DataFrame, ladder: list[float]) -> tuple[int, bool]:
    """(index of the largest rung with every rung up to it stable, −1 if the first diverged; censored: none
    diverged). `runs`: one seed's rows (lr, diverged)."""
    div = dict(zip(runs["lr"].astype(float), runs["diverged"].astype(bool)))
    missing = [lr for lr in ladder if lr not in div]
    if missing:
        raise NotTestable(f"the sweep lacks lr {missing[0]:g} for some seed: the ladder must be complete")
    k = -1
    for i, lr in enumerate(ladder):
        if div[lr]:
            break
        k = i
    return k, k == len(ladder) - 1


def _ladder(*frames: pd.DataFrame) -> list[float]:
    return sorted(set().union(*(set(f["lr"].astype(float)) for f in frames)))


@metric("stable_lr_steps", "largest stable rung of the LR ladder (every lower rung stable); subject − reference "
        "in ladder steps, paired by sweep seed; median over seeds, order-statistic interval (needs ≥ 6 seeds)",
        "the largest learning rate that trains without divergence (DeepNet, Wang et al. 2022; Wortsman et al. 2023)",
        "ladder steps")
def stable_lr_steps(t, subject: Subject, ref: Subject | None = None) -> Estimate:
    """Largest stable rung (or its difference from the reference's): median over sweep seeds, order-statistic
    interval (a t interval over whole rungs is 0 wide when the seeds agree, and 3 agreeing seeds are a sign test's
    p = 1/8, not 95 %)."""
    a = _sweep(t, subject.label)
    b = _sweep(t, ref.label) if ref is not None else None
    ladder = _ladder(a, *([b] if b is not None else []))
    seeds = sorted(set(a.seed) & (set(b.seed) if b is not None else set(a.seed)))
    vals, both_top = [], 0
    for k in seeds:
        ka, ca = stable_rung(a[a.seed == k], ladder)
        if b is None:
            vals.append(float(ka))
            continue
        kb, cb = stable_rung(b[b.seed == k], ladder)
        if ca and cb:
            both_top += 1
            continue
        vals.append(float(ka - kb))
    if both_top:
        raise NotTestable(f"neither {subject.label} nor {ref.label} diverges anywhere on the ladder (up to lr "
                          f"{ladder[-1]:g}) for {both_top} of {len(seeds)} seeds: the ladder never reaches the "
                          "instability being compared")
    est = median_over_seeds(vals)  # whole rungs: identical seeds must not read as a zero-width interval
    est.detail = f"ladder {', '.join(f'{x:g}' for x in ladder)}; per seed {', '.join(f'{v:+g}' for v in vals)}"
    return est


def lr_sensitivity_of(runs: pd.DataFrame) -> float:
    """E_lr[min(ℓ(lr), ℓ0) − min_lr ℓ(lr)] of one seed's rows (final_loss, first_loss, diverged)."""
    l0 = float(runs["first_loss"].iloc[0])
    loss = runs["final_loss"].astype(float).where(~runs["diverged"].astype(bool) & np.isfinite(runs["final_loss"]),
                                                  l0).clip(upper=l0)
    return float((loss - loss.min()).mean())


@metric("lr_sensitivity", "E over the LR ladder of min(final loss, initial loss) − the best final loss; subject − "
        "reference, Welch over sweep seeds", "Wortsman et al. 2023 (LR sensitivity)", "nats")
def lr_sensitivity(t, subject: Subject, ref: Subject | None = None) -> Estimate:
    """LR sensitivity (or its difference from the reference's) over sweep seeds."""
    a = _sweep(t, subject.label)
    if "first_loss" not in a:
        raise NotTestable("the LR sweep table has no first_loss column (re-run interp sweep)")
    b = _sweep(t, ref.label) if ref is not None else None
    ladder = _ladder(a, *([b] if b is not None else []))

    def per(df: pd.DataFrame) -> list[float]:
        # an expectation over the ladder compares only over the same rungs: every seed must have them all
        for k in sorted(set(df.seed)):
            stable_rung(df[df.seed == k], ladder)
        return [lr_sensitivity_of(df[df.seed == k]) for k in sorted(set(df.seed))]
    if b is None:
        return over_seeds(per(a))
    return diff_over_seeds(per(a), per(b))


def _top_logit(t, models: tuple[str, ...]) -> tuple[list[float], list[str]]:
    """(log10 of each measured model's largest logit: NaN if a layer's is NaN, the models without rows)."""
    rows = need(t, "attn_logits", models, "attention-logit table (interp.collectors.attn_logits)")
    top = rows.groupby("model")["max_abs_logit"].agg(lambda s: s.max(skipna=False))  # a NaN layer is no maximum
    return ([math.log10(float(top[m])) if top[m] > 0 else math.nan for m in models if m in top.index],
            [m for m in models if m not in top.index])


@metric("max_attn_logit", "log10 of the largest |q·k|/√d_head over layers and heads on held-out text; subject − "
        "reference, Welch over seeds", "Dehghani et al. 2023 (ViT-22B, QK normalization); Wortsman et al. 2023 "
        "(attention logit growth)", "log10")
def max_attn_logit(t, subject: Subject, ref: Subject | None = None) -> Estimate:
    """log10 max attention logit (or its difference from the reference's), over seeds."""
    a, gone = _top_logit(t, subject.models)
    if ref is None:
        est = over_seeds(a)
    else:
        b, gone_ref = _top_logit(t, ref.models)
        est, gone = diff_over_seeds(a, b), gone + gone_ref
    if gone:
        est.detail = f"left out, no attention logits measured: {', '.join(gone)}"
    return est
