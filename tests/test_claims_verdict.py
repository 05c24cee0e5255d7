"""The shared verdict: four outcomes decided by the 95 % interval against the rule's boundary, never by the
point value alone; t quantiles against published table values."""
import math

import numpy as np
import pytest

from interp.analysis.intervals import (Estimate, bootstrap_interval, diff_over_seeds, over_seeds, t_interval,
                                      welch_interval)
from interp.analysis.stats import t_quantile
from interp.report.claims.rules import INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, Rule, verdict


@pytest.mark.parametrize("df, q", [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042), (1000, 1.962)])
def test_t_quantile_matches_tables(df, q):
    assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-3)


def test_t_interval_brute_force():
    v = [1.0, 2.0, 4.0]
    m, lo, hi = t_interval(v)
    se = np.std(v, ddof=1) / math.sqrt(3)
    assert m == pytest.approx(7 / 3) and hi - m == pytest.approx(4.3027 * se, rel=1e-4) and m - lo == pytest.approx(hi - m)


def test_welch_interval_brute_force():
    a, b = [1.0, 2.0, 3.0], [0.0, 0.5, 0.7, 0.2]
    d, _lo, hi = welch_interval(a, b)
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    assert d == pytest.approx(np.mean(a) - np.mean(b))
    assert hi - d == pytest.approx(t_quantile(0.975, df) * math.sqrt(va + vb))


def test_bootstrap_covers_the_mean_of_a_normal_sample():
    x = np.random.default_rng(1).normal(5.0, 1.0, 400)
    lo, hi = bootstrap_interval(lambda i: float(x[i].mean()), len(x))
    assert lo < 5.0 < hi and hi - lo == pytest.approx(2 * 1.96 / 20, rel=0.25)


@pytest.mark.parametrize("op, thr, lo, hi, expected", [
    (">", 0.0, 0.1, 0.5, REPRODUCED), (">", 0.0, -0.5, -0.1, NOT_REPRODUCED), (">", 0.0, -0.1, 0.5, INCONCLUSIVE),
    ("<", 0.0, -0.5, -0.1, REPRODUCED), ("<", 0.0, 0.1, 0.5, NOT_REPRODUCED), ("<", 0.0, -0.1, 0.1, INCONCLUSIVE),
    ("within", 0.1, -0.05, 0.05, REPRODUCED), ("within", 0.1, 0.2, 0.3, NOT_REPRODUCED),
    ("within", 0.1, 0.05, 0.2, INCONCLUSIVE), (">", 0.0, 0.0, 0.3, INCONCLUSIVE),
    # strict rules: an interval that reaches the boundary only from the other side holds no value satisfying them
    (">", 0.0, 0.0, 0.0, NOT_REPRODUCED), (">", 0.0, -0.3, 0.0, NOT_REPRODUCED), ("<", 0.0, 0.0, 0.2, NOT_REPRODUCED),
    ("<", 0.0, -0.2, 0.0, INCONCLUSIVE), ("within", 0.1, 0.1, 0.2, NOT_REPRODUCED), ("within", 0.1, -0.3, -0.1, NOT_REPRODUCED)])
def test_rule_sides(op, thr, lo, hi, expected):
    est = Estimate((lo + hi) / 2, lo, hi, "test")
    assert verdict(est, Rule(op, thr, "r"))[0] == expected


def test_straddling_interval_is_never_reproduced_even_when_the_value_passes():
    est = Estimate(0.9, -0.2, 2.0, "t over 3 seeds")   # the point value is far on the claim's side
    assert verdict(est, Rule(">", 0.0, "r"))[0] == INCONCLUSIVE


def test_no_interval_is_inconclusive_and_absent_is_not_testable():
    assert verdict(Estimate(5.0), Rule(">", 0.0, "r"))[0] == INCONCLUSIVE
    v, why = verdict(None, Rule(">", 0.0, "r"), "no pre-ln model")
    assert v == NOT_TESTABLE and "pre-ln" in why


def test_controls_decide_only_when_their_gap_cannot_move_the_interval_across_the_boundary():
    small = Rule("<", 0.15, "r")
    # 0.12 [0.10, 0.14]: against a control 0.08 away the cost could reach 0.22, above 0.15
    assert verdict(Estimate(0.12, 0.10, 0.14, "t", control_gap=0.08), small)[0] == INCONCLUSIVE
    assert verdict(Estimate(0.12, 0.10, 0.14, "t", control_gap=0.005), small)[0] == REPRODUCED
    # 0.30 [0.25, 0.35]: a 0.20 gap could bring it to 0.05, below 0.15; a 0.05 gap could not
    assert verdict(Estimate(0.30, 0.25, 0.35, "t", control_gap=0.20), small)[0] == INCONCLUSIVE
    assert verdict(Estimate(0.30, 0.25, 0.35, "t", control_gap=0.05), small)[0] == NOT_REPRODUCED
    # the gap exactly reaching the boundary (0.14 + 0.01 = 0.15) leaves it touched: inconclusive
    v, why = verdict(Estimate(0.12, 0.10, 0.14, "t", control_gap=0.01), small)
    assert v == INCONCLUSIVE and "controls differ by 0.01" in why
    # a gap larger than the effect decides nothing by itself: -0.072 [-0.08, -0.06] ± 0.083 stays below 0.15
    assert verdict(Estimate(-0.072, -0.08, -0.06, "t", control_gap=0.083), small)[0] == REPRODUCED
    assert verdict(Estimate(-0.072, -0.08, -0.06, "t", control_gap=0.083), Rule(">", 0.0, "r"))[0] == INCONCLUSIVE
    # a straddling interval stays inconclusive for its own reason
    v, why = verdict(Estimate(0.15, 0.1, 0.2, "t", control_gap=0.5), small)
    assert v == INCONCLUSIVE and "straddles the boundary 0.15 ([0.1" in why


def test_a_seed_that_is_not_finite_gives_the_same_outcome_wherever_it_falls():
    rule = Rule("<", 0.0, "r")
    outcomes = set()
    for k in range(3):
        v = [-0.5, -0.49, -0.48]
        v[k] = math.nan
        est = over_seeds(v)
        finite = [x for x in v if math.isfinite(x)]
        assert est.value == pytest.approx(np.mean(finite)) and not est.has_interval
        assert "1 of 3 seeds not finite" in est.method
        outcomes.add(verdict(est, rule)[0])
    assert outcomes == {INCONCLUSIVE}
    assert verdict(over_seeds([math.nan, math.nan]), rule)[0] == NOT_TESTABLE
    d = diff_over_seeds([1.0, math.nan, 3.0], [0.5, 0.7])
    assert d.value == pytest.approx(2.0 - 0.6) and not d.has_interval and "1 of 5 seeds not finite" in d.method
    d = diff_over_seeds([math.nan, 1.0, 3.0], [0.5, 0.7])
    assert d.value == pytest.approx(2.0 - 0.6)


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match="unknown rule op"):
        Rule(">=", 0.0, "r")
    with pytest.raises(ValueError, match="positive half-width"):
        Rule("within", 0.0, "r")
