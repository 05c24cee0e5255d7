"""Claims verdicts are computed from numbers: each rule flips when the synthetic evidence crosses its threshold,
and says "not testable here" when the numbers it needs are absent."""
import numpy as np
import pandas as pd
import pytest

from interp.report.claims import NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, THRESHOLDS, evaluate


def verdict(tables, key):
    v = evaluate(tables).set_index("claim")
    return v.loc[key, "verdict"]


def cards(*names, family="zoo"):
    return pd.DataFrame([dict(model=n, family=family, strategy=n) for n in names])


def stream(model, ratio, depths=6):
    # variance at depth 1 = 1, at the last depth = ratio (geometric in between); depth 0 = embeddings
    v = [0.01] + list(np.geomspace(1.0, ratio, depths - 1))
    return pd.DataFrame(dict(model=model, depth=range(depths), variance=v))


def test_every_claim_not_testable_without_data():
    out = evaluate({})
    assert set(out["verdict"]) == {NOT_TESTABLE}
    assert len(out) >= 10


@pytest.mark.parametrize("ratio, expected", [(100.0, REPRODUCED), (1.5, NOT_REPRODUCED)])
def test_growth(ratio, expected):
    t = dict(cards=cards("pre-ln"), stream=stream("pre-ln", ratio))
    assert verdict(t, "growth") == expected


@pytest.mark.parametrize("lns_ratio, expected", [(2.0, REPRODUCED), (80.0, NOT_REPRODUCED)])
def test_tame(lns_ratio, expected):
    t = dict(cards=cards("pre-ln", "lns"), stream=pd.concat([stream("pre-ln", 100.0), stream("lns", lns_ratio)]))
    assert verdict(t, "tame") == expected


@pytest.mark.parametrize("late, expected", [(10.0, REPRODUCED), (0.5, NOT_REPRODUCED)])
def test_post_grads(late, expected):
    g = pd.DataFrame(dict(model="post-ln", layer=range(6), target="params", grad_norm=[1, 1, 1, 1, late, late]))
    assert verdict(dict(cards=cards("post-ln"), gradients=g), "post_grads") == expected


@pytest.mark.parametrize("deep, expected", [(0.05, REPRODUCED), (0.3, NOT_REPRODUCED)])
def test_mixln_angular(deep, expected):
    a = pd.DataFrame(dict(model="pre-ln", layer=range(4), n=1, distance=[0.3, 0.3, deep, deep]))
    assert verdict(dict(cards=cards("pre-ln"), angular=a), "mixln") == expected


@pytest.mark.parametrize("count, expected", [(3, REPRODUCED), (0, NOT_REPRODUCED)])
def test_massive_needs_real_model(count, expected):
    m = pd.DataFrame(dict(model="smollm2-135m", depth=[0, 1], top1=[5.0, 900.0], median=0.3, n_massive=[0, count]))
    t = dict(cards=cards("smollm2-135m", family="llama"), massive=m)
    assert verdict(t, "massive") == expected
    # the same numbers from a zoo model do not speak for real LLMs
    assert verdict(dict(cards=cards("smollm2-135m"), massive=m), "massive") == NOT_TESTABLE


@pytest.mark.parametrize("mean, zero, expected", [(3.01, 9.0, REPRODUCED), (3.5, 9.0, NOT_REPRODUCED),
                                                  (3.0, 3.2, NOT_REPRODUCED)])
def test_ablation(mean, zero, expected):
    a = pd.DataFrame(dict(model="m", ablation=["none", "mean", "zero"], loss=[3.0, mean, zero]))
    assert verdict(dict(ablation=a), "ablation") == expected


def sweep(model, diverged_from):
    lrs = [1e-3, 3e-3, 1e-2, 3e-2]
    return pd.DataFrame(dict(model=model, lr=lrs, diverged=[lr >= diverged_from for lr in lrs]))


@pytest.mark.parametrize("pre_from, peri_from, expected", [(1e-2, 3e-2, REPRODUCED), (3e-2, 1e-2, NOT_REPRODUCED),
                                                           (1.0, 1.0, NOT_TESTABLE)])
def test_peri_stable(pre_from, peri_from, expected):
    t = dict(cards=cards("pre-ln", "peri-ln"), sweep=pd.concat([sweep("pre-ln", pre_from), sweep("peri-ln", peri_from)]))
    assert verdict(t, "peri_stable") == expected


@pytest.mark.parametrize("free_err, ln_err, expected", [(1e-9, 0.2, REPRODUCED), (0.05, 0.2, NOT_REPRODUCED),
                                                       (1e-9, 1e-6, NOT_REPRODUCED)])
def test_dla(free_err, ln_err, expected):
    d = pd.DataFrame(dict(model=["no-norm", "pre-ln"], median_rel_error=[free_err, ln_err / 10],
                          max_rel_error=[free_err, ln_err]))
    assert verdict(dict(cards=cards("no-norm", "pre-ln"), dla_error=d), "dla") == expected
    # a model without norms is recognised by its card's placement, whatever its name
    c = pd.DataFrame(dict(model=["lnfree", "pre-ln"], family="zoo", strategy=["x", "pre-ln"], placement=["none", "pre"]))
    assert verdict(dict(cards=c, dla_error=d.assign(model=["lnfree", "pre-ln"])), "dla") == expected


@pytest.mark.parametrize("diff, expected", [(1e-13, REPRODUCED), (1e-3, NOT_REPRODUCED)])
def test_equiv(diff, expected):
    e = pd.DataFrame(dict(model="pre-ln", form=["pre-rmsnorm", "pre-crmsnorm"], max_abs_diff=[1e-14, diff],
                          max_abs_logit=10.0))
    assert verdict(dict(equivalence=e), "equiv") == expected


@pytest.mark.parametrize("lnfree, expected", [(3.0797, REPRODUCED), (3.5, NOT_REPRODUCED)])
def test_ln_removal(lnfree, expected):
    r = pd.DataFrame([dict(model="gpt2", ce_original=3.1006, ce_vanilla=3.0126, ce_lnfree=lnfree)])
    assert verdict(dict(ln_removal=r), "ln_removal") == expected


def test_rules_state_their_thresholds():
    out = evaluate({})
    assert f"{THRESHOLDS['growth_ratio_min']:g}" in out.set_index("claim").loc["growth", "rule"]
