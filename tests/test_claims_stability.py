"""Stability metrics (largest stable LR rung, LR sensitivity, attention-logit scale) against hand computations,
and the DeepNorm / QK-norm claims judged on hand-made tables with a known answer."""
import math

import numpy as np
import pandas as pd
import pytest

from interp.analysis.intervals import NotTestable, t_interval, welch_interval
from interp.analysis.stability import lr_sensitivity, lr_sensitivity_of, max_attn_logit, stable_lr_steps, stable_rung
from interp.analysis.subjects import Subject

LADDER = [1e-3, 1e-2, 1e-1, 1.0]


def sweep(first_div: dict[str, list[int | None]], loss=None) -> pd.DataFrame:
    """Rows per strategy × seed × lr; first_div[s][k]: index of the first diverged rung of seed k (None: none)."""
    rows = []
    for s, per_seed in first_div.items():
        for k, fd in enumerate(per_seed):
            for i, lr in enumerate(LADDER):
                div = fd is not None and i >= fd
                rows.append(dict(model=s, seed=k, lr=lr, diverged=div, first_loss=8.0,
                                 final_loss=math.nan if div else (loss or {}).get((s, k, i), 6.0)))
    return pd.DataFrame(rows)


def subj(name, n=3):
    return Subject(name, tuple([name] + [f"{name}.seed{k}" for k in range(1, n)]))


def test_stable_rung_is_the_last_rung_of_the_stable_prefix():
    df = sweep({"a": [2]})
    assert stable_rung(df, LADDER) == (1, False)
    assert stable_rung(sweep({"a": [None]}), LADDER) == (3, True)
    assert stable_rung(sweep({"a": [0]}), LADDER) == (-1, False)
    odd = df.copy()
    odd.loc[odd.lr == 1e-3, "diverged"] = True  # a diverged low rung ends the prefix even if higher ones train
    assert stable_rung(odd, LADDER)[0] == -1
    with pytest.raises(NotTestable, match="ladder must be complete"):
        stable_rung(df[df.lr != 1e-2], LADDER)


def test_stable_lr_steps_differences_per_seed_median_without_interval_below_six_seeds():
    t = {"sweep": sweep({"deepnorm": [3, None, 2], "post-ln": [1, 2, 1]})}
    est = stable_lr_steps(t, subj("deepnorm"), subj("post-ln"))
    # rung indices: first diverged − 1; diffs +2, +2, +1: median 2, and three seeds cannot give a 95 % interval
    assert est.value == 2 and not est.has_interval and "needs ≥ 6 seeds" in est.method
    assert "per seed +2, +2, +1" in est.detail
    # three seeds that agree (+1 each) would be a t interval [1, 1]: no interval instead
    agree = {"sweep": sweep({"deepnorm": [2, 2, 2], "post-ln": [1, 1, 1]})}
    assert not stable_lr_steps(agree, subj("deepnorm"), subj("post-ln")).has_interval


def test_stable_lr_steps_interval_from_order_statistics_with_six_seeds():
    t = {"sweep": sweep({"deepnorm": [3, None, 2, 3, 3, None], "post-ln": [1, 2, 1, 2, 1, 2]})}
    est = stable_lr_steps(t, subj("deepnorm", 6), subj("post-ln", 6))
    diffs = sorted([2 - 0, 3 - 1, 1 - 0, 2 - 1, 2 - 0, 3 - 1])
    assert (est.value, est.lo, est.hi) == (float(np.median(diffs)), diffs[0], diffs[-1])  # 6 seeds: (min, max)


def _coverage(n: int, k: int) -> float:
    """P(x_(k) ≤ median ≤ x_(n+1-k)) for a continuous distribution, by enumerating which of the n draws fall
    below the median (each pattern has probability 2^-n): covered when at least k and at most n − k do."""
    import itertools
    hits = sum(k <= sum(p) <= n - k for p in itertools.product((0, 1), repeat=n))
    return hits / 2 ** n


@pytest.mark.parametrize("n", [2, 3, 5, 6, 8, 10, 17])
def test_median_interval_is_the_widest_order_pair_reaching_95_percent(n):
    from interp.analysis.intervals import median_interval
    v = list(np.random.default_rng(n).normal(size=n))
    ok = [k for k in range(1, n // 2 + 1) if _coverage(n, k) >= 0.95]
    m, lo, hi = median_interval(v)
    assert m == pytest.approx(float(np.median(v)))
    if not ok:  # n < 6: not even (min, max) covers 95 %
        assert math.isnan(lo) and math.isnan(hi)
    else:
        s = sorted(v)
        assert (lo, hi) == (s[max(ok) - 1], s[n - max(ok)])


def test_stable_lr_steps_not_testable_when_neither_side_diverges():
    t = {"sweep": sweep({"pre-rmsnorm-qk": [None, None], "pre-rmsnorm": [None, 3]})}
    with pytest.raises(NotTestable, match="neither .* diverges anywhere on the ladder"):
        stable_lr_steps(t, subj("pre-rmsnorm-qk", 2), subj("pre-rmsnorm", 2))
    with pytest.raises(NotTestable, match="no LR sweep"):
        stable_lr_steps({}, subj("a"), subj("b"))


def test_lr_sensitivity_caps_at_the_initial_loss_and_subtracts_the_best():
    loss = {("a", 0, 0): 7.0, ("a", 0, 1): 5.0, ("a", 0, 2): 9.5}  # 9.5 > ℓ0 = 8 is capped; rung 3 diverged → 8
    df = sweep({"a": [3]}, loss)
    assert lr_sensitivity_of(df) == pytest.approx(((7 - 5) + 0 + (8 - 5) + (8 - 5)) / 4)
    t = {"sweep": sweep({"a": [3, 3], "b": [None, None]}, {("a", 0, 1): 5.0, ("a", 1, 1): 5.5})}
    est = lr_sensitivity(t, subj("a", 2), subj("b", 2))
    a = [(1 + 0 + 1 + 3) / 4, (0.5 + 0 + 0.5 + 2.5) / 4]
    d, lo, hi = welch_interval(a, [0.0, 0.0])
    assert (est.value, est.lo, est.hi) == pytest.approx((d, lo, hi))


def test_lr_sensitivity_needs_the_same_complete_ladder_on_both_sides():
    # identical strategies; the reference lacks its top (diverged) rung for one seed, which would lower its
    # expectation over the ladder and make the subject look more sensitive
    df = sweep({"a": [3, 3], "b": [3, 3]})
    t = {"sweep": df[~((df.model == "b") & (df.seed == 1) & (df.lr == 1.0))]}
    with pytest.raises(NotTestable, match="ladder must be complete"):
        lr_sensitivity(t, subj("a", 2), subj("b", 2))
    with pytest.raises(NotTestable, match="ladder must be complete"):
        lr_sensitivity(t, subj("b", 2), subj("a", 2))
    assert lr_sensitivity({"sweep": df}, subj("a", 2), subj("b", 2)).value == pytest.approx(0.0)


def test_max_attn_logit_is_log10_of_the_top_over_layers_and_heads():
    rows = [dict(model=m, layer=l, head=h, max_abs_logit=v * (1 + l + h))
            for m, v in (("q", 1.0), ("q.seed1", 1.5), ("p", 10.0), ("p.seed1", 20.0)) for l in range(2) for h in range(2)]
    t = {"attn_logits": pd.DataFrame(rows)}
    est = max_attn_logit(t, Subject("q", ("q", "q.seed1")), Subject("p", ("p", "p.seed1")))
    d, lo, hi = welch_interval(np.log10([3.0, 4.5]), np.log10([30.0, 60.0]))
    assert (est.value, est.lo, est.hi) == pytest.approx((d, lo, hi))


def test_max_attn_logit_takes_no_maximum_past_a_nan_layer_and_names_a_missing_seed():
    """pandas' max skipped a NaN layer (a model whose logits overflowed read as its finite layers' top, with an
    interval), and a seed without rows was left out with no word."""
    rows = [dict(model=m, layer=l, head=0, max_abs_logit=v * (1 + l))
            for m, v in (("q", 1.0), ("q.seed1", 1.5), ("q.seed2", 2.0)) for l in range(2)]
    t = {"attn_logits": pd.DataFrame(rows)}
    t["attn_logits"].loc[5, "max_abs_logit"] = math.nan  # q.seed2, layer 1
    est = max_attn_logit(t, Subject("q", ("q", "q.seed1", "q.seed2")))
    assert not est.has_interval and est.units[2] != est.units[2]  # q.seed2's value is NaN, not log10(2)
    est = max_attn_logit(t, Subject("q", ("q", "q.seed1", "q.seed3")))
    m, lo, hi = t_interval(np.log10([2.0, 3.0]))
    assert (est.value, est.lo, est.hi) == pytest.approx((m, lo, hi))
    assert est.detail == "left out, no attention logits measured: q.seed3"


def test_claims_on_hand_made_tables():
    from interp.report.claims import evaluate
    names = {s: [s] + [f"{s}.seed{k}" for k in (1, 2)] for s in ("deepnorm", "post-ln", "pre-rmsnorm-qk",
                                                                  "reordered", "pre-rmsnorm")}
    cards = pd.DataFrame([dict(model=m, family="zoo", strategy=s) for s, ms in names.items() for m in ms])
    logits = pd.DataFrame([dict(model=m, layer=0, head=0, max_abs_logit=3.0 + k if "qk" in s or s == "reordered"
                                else 30.0 + k) for s, ms in names.items() for k, m in enumerate(ms)])
    t = {"cards": cards, "attn_logits": logits,
         "sweep": sweep({"deepnorm": [None] * 6, "post-ln": [2, 2, 3, 1, 2, 3], "pre-rmsnorm-qk": [None] * 3,
                         "reordered": [None] * 3, "pre-rmsnorm": [None] * 3})}
    c = evaluate(t).set_index(["claim", "model"])
    assert c.loc[("deepnorm_stable_lr", "deepnorm"), "verdict"] == "reproduced"  # 6 of 6 sweep seeds more stable
    three = dict(t, sweep=sweep({"deepnorm": [None] * 3, "post-ln": [2, 2, 3]}))
    assert evaluate(three).set_index(["claim", "model"]).loc[("deepnorm_stable_lr", "deepnorm"),
                                                             "verdict"] == "inconclusive"  # 3 seeds: no interval
    assert c.loc[("qk_logit_scale", "pre-rmsnorm-qk"), "verdict"] == "reproduced"
    assert c.loc[("qk_stable_lr", "reordered"), "verdict"] == "not testable here"
    assert "neither" in c.loc[("qk_stable_lr", "reordered"), "reason"]
    assert c.loc[("deepnorm_loss", "deepnorm"), "verdict"] == "not testable here"  # no held-out losses here


def test_report_section_renders_the_placement_table_and_figures():
    from interp.report.render import render
    from report_fixtures import tables
    t = tables()
    t["attn_logits"] = pd.DataFrame([dict(model=m, layer=l, head=h, max_abs_logit=1.0 + l, rms_logit=0.5)
                                     for m in ("pre-ln", "peri-ln") for l in range(4) for h in range(2)])
    t["sweep"] = t["sweep"].assign(seed=0, first_loss=8.0, max_attn_logit=2.0)
    t["equivalence"] = t["equivalence"].assign(max_abs_logit=10.0)
    html = render(t, sources=[])
    assert 'id="modern-norms"' in html and "OLMo-2" in html and "x = LN(α·x + F(x))" in html
    assert "Largest attention logit per layer" in html and "LR sweep: largest attention logit" in html


def test_attn_logits_flow_from_collect_to_the_report_table():
    import torch

    import interp.zoo as zoo
    from interp.collectors import collect
    from interp.collectors.attn_logits import for_model
    from interp.report.inputs import tables_from_results
    size = dict(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=97)
    toks = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(0))
    res = [collect(m, toks, for_model(m), batch_size=2, progress=False)
           for m in (zoo.build("pre-rmsnorm-qk", **size).eval(), zoo.build("pre-rmsnorm", **size).eval())]
    t = tables_from_results(res)
    assert set(t["attn_logits"].model) == {"pre-rmsnorm-qk", "pre-rmsnorm"} and len(t["attn_logits"]) == 16
    assert for_model(object()) == []
