"""The seed papers' claims, each checked by a data-driven rule on the measured tables.

A verdict is never written by hand: each rule reads numbers from the canonical tables (see
`interp.report.tables`), compares them with the thresholds in `THRESHOLDS` (printed in the report), and
returns "reproduced", "not reproduced", or "not testable here" when the numbers it needs are absent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE = "reproduced", "not reproduced", "not testable here"

THRESHOLDS: dict[str, float] = {
    "growth_ratio_min": 4.0,        # Pre-LN variance last/first ≥ this counts as "grows with depth"
    "tame_factor": 0.5,             # LNS / Peri-LN ratio ≤ this × Pre-LN's counts as "tamed"
    "post_grad_late_early_min": 2.0,  # Post-LN: mean grad norm of the last third / first third ≥ this
    "deep_shallow_angle_max": 0.75,   # Pre-LN: mean angular distance deep half / shallow half ≤ this
    "massive_min_count": 1,           # a real LM with ≥ this many massive activations "has" them
    "mean_ablation_max_delta": 0.1,   # nats: mean-ablation may change the loss by at most this
    "zero_ablation_min_delta": 1.0,   # nats: zero-ablation must raise the loss by at least this
    "dla_exact_max": 1e-4,            # no-norm: max relative DLA error ≤ this counts as exact
    "dla_approx_min": 1e-3,           # with LN: the largest relative DLA error ≥ this counts as approximate
    "equiv_rel_max": 1e-9,            # max |Δlogit| / max |logit| in float64 for "equivalent"
    "ln_removal_max_delta": 0.15,     # nats: LN-free CE − vanilla fine-tune CE ≤ this counts as "small"
}


@dataclass
class Claim:
    """One seed claim: where it comes from, what it says, and the rule that judges it."""

    key: str
    source: str
    statement: str
    rule: str
    judge: Callable[[dict[str, pd.DataFrame]], tuple[str, str]]  # tables -> (verdict, evidence)


def _models_of(tables: dict[str, pd.DataFrame], strategy: str) -> list[str]:
    """Model names whose card strategy (or name) is `strategy`."""
    cards = tables.get("cards")
    names = []
    if cards is not None and "strategy" in cards:
        names = list(cards.loc[cards["strategy"] == strategy, "model"])
    return names or [strategy]


def _pick(tables: dict[str, pd.DataFrame], name: str, strategy: str) -> pd.DataFrame | None:
    """Rows of table `name` for the first model of `strategy`, or None."""
    df = tables.get(name)
    if df is None or df.empty:
        return None
    for m in _models_of(tables, strategy):
        rows = df[df["model"] == m]
        if not rows.empty:
            return rows
    return None


def _growth_ratio(tables: dict[str, pd.DataFrame], strategy: str) -> float | None:
    g = _pick(tables, "growth", strategy)
    return None if g is None else float(g["ratio_last_first"].iloc[0])


def _judge_growth(t: dict[str, pd.DataFrame]) -> tuple[str, str]:
    pre = _growth_ratio(t, "pre-ln")
    if pre is None:
        return NOT_TESTABLE, "no variance-growth data for a pre-ln model"
    ok = pre >= THRESHOLDS["growth_ratio_min"]
    return (REPRODUCED if ok else NOT_REPRODUCED), f"pre-ln variance last/first = {pre:.3g}"


def _judge_tame(t: dict[str, pd.DataFrame]) -> tuple[str, str]:
    pre = _growth_ratio(t, "pre-ln")
    others = {s: _growth_ratio(t, s) for s in ("lns", "peri-ln")}
    others = {s: r for s, r in others.items() if r is not None}
    if pre is None or not others:
        return NOT_TESTABLE, "needs variance growth of pre-ln and of lns or peri-ln"
    ok = all(r <= THRESHOLDS["tame_factor"] * pre for r in others.values())
    ev = f"last/first variance: pre-ln {pre:.3g}, " + ", ".join(f"{s} {r:.3g}" for s, r in others.items())
    return (REPRODUCED if ok else NOT_REPRODUCED), ev


def _late_early(g: pd.DataFrame) -> float:
    """Mean gradient norm of the last third of the layers / that of the first third (block parameters)."""
    if "target" in g and (g["target"] == "params").any():
        g = g[g["target"] == "params"]
    per = g.groupby("layer")["grad_norm"].mean().sort_index()
    k = max(1, len(per) // 3)
    return float(per.iloc[-k:].mean() / per.iloc[:k].mean())


def _judge_post_grads(t: dict[str, pd.DataFrame]) -> tuple[str, str]:
    post, pre = _pick(t, "gradients", "post-ln"), _pick(t, "gradients", "pre-ln")
    if post is None:
        return NOT_TESTABLE, "no gradient-norm data for a post-ln model"
    r = _late_early(post)
    ev = f"post-ln grad norm last/first third = {r:.3g}"
    if pre is not None:
        ev += f"; pre-ln = {_late_early(pre):.3g}"
    return (REPRODUCED if r >= THRESHOLDS["post_grad_late_early_min"] else NOT_REPRODUCED), ev


def _deep_shallow(a: pd.DataFrame) -> float:
    a = a[a["n"] == a["n"].min()] if "n" in a else a
    per = a.groupby("layer")["distance"].mean().sort_index()
    h = len(per) // 2
    return float(per.iloc[h:].mean() / per.iloc[:h].mean()) if h else float("nan")


def _judge_mixln(t: dict[str, pd.DataFrame]) -> tuple[str, str]:
    pre = _pick(t, "angular", "pre-ln")
    if pre is None:
        return NOT_TESTABLE, "no angular-distance data for a pre-ln model"
    r = _deep_shallow(pre)
    ev = f"pre-ln angular distance deep/shallow half = {r:.3g}"
    mix = _pick(t, "angular", "mix-ln")
    if mix is not None:
        ev += f"; mix-ln = {_deep_shallow(mix):.3g}"
    skip = _pick(t, "skip", "pre-ln")
    if skip is not None:
        per = skip.groupby("layer")["loss_delta"].mean().sort_index()
        h = len(per) // 2
        ev += f"; pre-ln skip loss deep/shallow half = {per.iloc[h:].mean():.3g}/{per.iloc[:h].mean():.3g} nats"
    ok = np.isfinite(r) and r <= THRESHOLDS["deep_shallow_angle_max"]
    return (REPRODUCED if ok else NOT_REPRODUCED), ev


def _real_lms(t: dict[str, pd.DataFrame]) -> list[str]:
    cards = t.get("cards")
    if cards is None or "family" not in cards:
        return []
    real = cards[(cards["family"] != "zoo")]
    if "objective" in real:
        real = real[real["objective"] != "encoder"]
    return list(real["model"])


def _judge_massive(t: dict[str, pd.DataFrame]) -> tuple[str, str]:
    m, real = t.get("massive"), _real_lms(t)
    if m is None or not real or m[m["model"].isin(real)].empty:
        return NOT_TESTABLE, "no massive-activation census of a real language model"
    counts = m[m["model"].isin(real)].groupby("model")["n_massive"].sum()
    tops = m[m["model"].isin(real)].groupby("model")["top1"].max()
    ok = (counts >= THRESHOLDS["massive_min_count"]).any()
    ev = "; ".join(f"{k}: {int(counts[k])} massive, max |x| = {tops[k]:.4g}" for k in counts.index)
    return (REPRODUCED if ok else NOT_REPRODUCED), ev


def _judge_ablation(t: dict[str, pd.DataFrame]) -> tuple[str, str]:
    a = t.get("ablation")
    if a is None or a.empty:
        return NOT_TESTABLE, "no ablation of massive activations"
    parts, oks = [], []
    for model, g in a.groupby("model", sort=False):
        loss = g.groupby("ablation")["loss"].mean()
        if not {"none", "mean", "zero"} <= set(loss.index):
            continue
        dm, dz = loss["mean"] - loss["none"], loss["zero"] - loss["none"]
        parts.append(f"{model}: Δ mean {dm:+.3g}, Δ zero {dz:+.3g} nats")
        oks.append(abs(dm) <= THRESHOLDS["mean_ablation_max_delta"] and dz >= THRESHOLDS["zero_ablation_min_delta"])
    if not oks:
        return NOT_TESTABLE, "ablation table lacks none/mean/zero rows"
    return (REPRODUCED if any(oks) else NOT_REPRODUCED), "; ".join(parts)


def _max_stable_lr(s: pd.DataFrame) -> float:
    ok = s[~s["diverged"].astype(bool)]
    return float(ok["lr"].max()) if not ok.empty else 0.0


def _judge_peri_stable(t: dict[str, pd.DataFrame]) -> tuple[str, str]:
    pre, peri = _pick(t, "sweep", "pre-ln"), _pick(t, "sweep", "peri-ln")
    if pre is None or peri is None:
        return NOT_TESTABLE, "needs an LR sweep of pre-ln and peri-ln"
    lp, lq = _max_stable_lr(pre), _max_stable_lr(peri)
    top = float(max(pre["lr"].max(), peri["lr"].max()))
    ev = (f"largest stable peak LR: pre-ln {lp:.3g} ({int(pre['diverged'].sum())} diverged), "
          f"peri-ln {lq:.3g} ({int(peri['diverged'].sum())} diverged)")
    if lp >= top and lq >= top:
        return NOT_TESTABLE, ev + f"; neither diverged up to {top:.3g}: the ladder did not reach instability"
    return (REPRODUCED if lq > lp else NOT_REPRODUCED), ev


def _norm_free(t: dict[str, pd.DataFrame]) -> list[str]:
    """Models with no norm at all: placement "none" on their card (zoo no-norm, LN-removed models)."""
    cards = t.get("cards")
    if cards is not None and "placement" in cards:
        return list(cards.loc[cards["placement"] == "none", "model"])
    return ["no-norm"]


def _judge_dla(t: dict[str, pd.DataFrame]) -> tuple[str, str]:
    d, ln = t.get("dla_error"), _pick(t, "dla_error", "pre-ln")
    free = None if d is None else d[d["model"].isin(_norm_free(t))]
    if free is None or free.empty or ln is None:
        return NOT_TESTABLE, "needs DLA error of a model without norms and of a pre-ln model"
    e0, e1 = float(free["max_rel_error"].max()), float(ln["max_rel_error"].max())
    ok = e0 <= THRESHOLDS["dla_exact_max"] and e1 >= THRESHOLDS["dla_approx_min"]
    names = ", ".join(free["model"])
    med = float(ln["median_rel_error"].median())
    return (REPRODUCED if ok else NOT_REPRODUCED), (f"no norm ({names}): max rel. error {e0:.2g}; pre-ln max "
                                                    f"{e1:.2g} (median over components {med:.2g})")


def _judge_equiv(t: dict[str, pd.DataFrame]) -> tuple[str, str]:
    e = t.get("equivalence")
    if e is None or e.empty:
        return NOT_TESTABLE, "no Pre-LN → RMSNorm / CRMSNorm conversion measured"
    scale = e["max_abs_logit"].abs().clip(lower=1e-300) if "max_abs_logit" in e else 1.0
    rel = e["max_abs_diff"] / scale
    ok = bool((rel <= THRESHOLDS["equiv_rel_max"]).all()) and {"pre-rmsnorm", "pre-crmsnorm"} <= set(e["form"])
    ev = "; ".join(f"{f}: max |Δlogit|/max |logit| = {r:.2g}" for f, r in zip(e["form"], rel))
    return (REPRODUCED if ok else NOT_REPRODUCED), ev


def _judge_ln_removal(t: dict[str, pd.DataFrame]) -> tuple[str, str]:
    r = t.get("ln_removal")
    if r is None or r.empty:
        return NOT_TESTABLE, "no LN removal measured"
    row = r.iloc[0]
    d = float(row["ce_lnfree"] - row["ce_vanilla"])
    ev = (f"{row['model']}: CE original {row['ce_original']:.4f}, vanilla fine-tune {row['ce_vanilla']:.4f}, "
          f"LN-free {row['ce_lnfree']:.4f} → {d:+.3f} nats (paper, GPT-2 small: +0.067)")
    return (REPRODUCED if d <= THRESHOLDS["ln_removal_max_delta"] else NOT_REPRODUCED), ev


CLAIMS: list[Claim] = [
    Claim("growth", "Curse of Depth / LayerNorm Scaling (Sun et al. 2025)",
          "In Pre-LN the residual stream's variance grows with depth.",
          "pre-ln variance last/first ≥ {growth_ratio_min}", _judge_growth),
    Claim("tame", "LayerNorm Scaling; Peri-LN (Kim et al. 2025)",
          "LayerNorm Scaling and Peri-LN tame that growth.",
          "lns and peri-ln last/first ratio ≤ {tame_factor} × pre-ln's", _judge_tame),
    Claim("post_grads", "Mix-LN (Li et al. 2024)",
          "Post-LN gives small gradients to early layers (they concentrate in later layers).",
          "post-ln mean block grad norm, last third / first third ≥ {post_grad_late_early_min}",
          _judge_post_grads),
    Claim("mixln", "Mix-LN; Curse of Depth",
          "Pre-LN's deep layers are less effective: smaller angular distance between consecutive layers "
          "(and a smaller loss when skipped) than its shallow layers.",
          "pre-ln mean angular distance (n=1), deep half / shallow half ≤ {deep_shallow_angle_max}", _judge_mixln),
    Claim("massive", "Massive Activations (Sun et al. 2024)",
          "Real LLMs have massive activations (|x| > 100 and ≥ 1000× the median).",
          "some real causal LM has ≥ {massive_min_count} massive activation(s)", _judge_massive),
    Claim("ablation", "Massive Activations (Sun et al. 2024)",
          "Setting massive activations to their mean keeps the loss; setting them to zero destroys it.",
          "|Δ mean| ≤ {mean_ablation_max_delta} nats and Δ zero ≥ {zero_ablation_min_delta} nats",
          _judge_ablation),
    Claim("peri_stable", "Peri-LN (Kim et al. 2025)",
          "Peri-LN is more stable across learning rates than Pre-LN.",
          "largest non-diverging peak LR of peri-ln > pre-ln's", _judge_peri_stable),
    Claim("dla", "LN-free GPT-2 (Heimersheim 2024; Baroni et al. 2025)",
          "Direct logit attribution is exact without LayerNorm and approximate with it.",
          "models without norms (card placement none): max relative error ≤ {dla_exact_max}; pre-ln max ≥ {dla_approx_min}", _judge_dla),
    Claim("equiv", "Pre-RMSNorm and Pre-CRMSNorm Transformers (Jiang et al. 2023)",
          "Pre-LN, Pre-RMSNorm and Pre-CRMSNorm compute the same function.",
          "max |Δlogit| / max |logit| ≤ {equiv_rel_max} for both forms (float64)", _judge_equiv),
    Claim("ln_removal", "LN-free GPT-2 (Baroni et al. 2025)",
          "LayerNorm can be removed at a small CE cost (+0.067 nats in GPT-2 small).",
          "LN-free CE − vanilla fine-tune CE ≤ {ln_removal_max_delta} nats", _judge_ln_removal),
]


def evaluate(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The claims table: one row per claim with source, statement, rule (thresholds filled in), evidence, verdict."""
    from interp.report.summary import complete
    tables, rows = complete(tables), []
    for c in CLAIMS:
        try:
            verdict, evidence = c.judge(tables)
        except (KeyError, ValueError, IndexError, ZeroDivisionError) as e:  # a malformed table: say so
            verdict, evidence = NOT_TESTABLE, f"could not evaluate: {type(e).__name__}: {e}"
        rows.append(dict(claim=c.key, source=c.source, statement=c.statement,
                         rule=c.rule.format(**THRESHOLDS), evidence=evidence, verdict=verdict))
    return pd.DataFrame(rows)
