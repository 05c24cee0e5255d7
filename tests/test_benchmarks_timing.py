"""benchmarks/timing.py: the interval of a median timing ratio and the goal verdict judged on it.

The reference for the interval is the exact bootstrap distribution of a sample median: resampling n values with
replacement, median ≤ x(j) exactly when at least n // 2 + 1 draws are ≤ x(j), a Binomial(n, j / n) tail.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from timing import goal_verdict, interleaved, median_ci, median_ci_grouped, pooled  # noqa: E402


def exact_bootstrap_quantile(xs: list[float], q: float) -> float:
    """The smallest order statistic x(j) whose exact bootstrap CDF of the median reaches q."""
    s, n = sorted(xs), len(xs)
    for j in range(1, n + 1):
        p = j / n
        cdf = sum(math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(n // 2 + 1, n + 1))
        if cdf >= q:
            return s[j - 1]
    return s[-1]


@pytest.mark.parametrize("n", [7, 11])
def test_median_ci_is_the_exact_bootstrap_interval(n):
    # for n = 7 and 11 the exact CDF is far from 2.5 % / 97.5 % at every order statistic, so the Monte Carlo
    # percentiles (1000 resamples) land on the exact order statistics: x(2), x(6) for 7; x(3), x(9) for 11
    xs = list(np.random.default_rng(n).uniform(0.9, 1.4, n))
    lo, hi = median_ci(xs)
    assert lo == pytest.approx(exact_bootstrap_quantile(xs, 0.025), abs=1e-6)
    assert hi == pytest.approx(exact_bootstrap_quantile(xs, 0.975), abs=1e-6)
    s = sorted(xs)
    assert (lo, hi) == pytest.approx((s[1], s[5]) if n == 7 else (s[2], s[8]), abs=1e-6)


@pytest.mark.parametrize("n", [7, 11])
def test_grouped_interval_of_one_round_per_process_is_the_exact_bootstrap(n):
    # one round per process: resampling processes, then the one round each holds, is the one-level bootstrap of
    # the values, whose exact percentiles are the order statistics found above
    xs = list(np.random.default_rng(n).uniform(0.9, 1.4, n))
    lo, hi = median_ci_grouped([[x] for x in xs])
    assert lo == pytest.approx(exact_bootstrap_quantile(xs, 0.025), abs=1e-6)
    assert hi == pytest.approx(exact_bootstrap_quantile(xs, 0.975), abs=1e-6)


def test_grouped_interval_widens_when_processes_differ():
    # five processes whose rounds sit at 1.095 ... 1.115 with little spread inside each: the rounds alone give a
    # narrow interval that misses how far another process lands; resampling the processes covers the spread
    rng = np.random.default_rng(0)
    groups = [list(c + rng.normal(0, 0.001, 9)) for c in (1.095, 1.10, 1.105, 1.11, 1.115)]
    flat = [x for g in groups for x in g]
    lo1, hi1 = median_ci(flat)
    lo, hi = median_ci_grouped(groups)
    assert lo < lo1 and hi > hi1
    assert lo <= 1.10 and hi >= 1.11
    same = [list(1.105 + rng.normal(0, 0.001, 9)) for _ in range(5)]  # processes alike: about the one-level width
    lo2, hi2 = median_ci_grouped(same)
    assert hi2 - lo2 < 0.5 * (hi - lo)


def test_pooled_keeps_rounds_paired_and_reports_each_process():
    def run(plain, other):
        return {"repeats": len(plain), "baseline": "a", "wall_s": {"a": {"samples": plain}, "b": {"samples": other}},
                "cpu_s": {"a": {"samples": plain}, "b": {"samples": other}},
                "ratio_wall": {"b": {}}, "ratio_cpu": {"b": {}}}
    out = pooled([run([1.0, 2.0, 1.0], [1.1, 2.2, 1.1]), run([1.0, 1.0, 4.0], [1.2, 1.2, 4.8])])
    r = out["ratio_cpu"]["b"]
    assert out["repeats"] == 6 and out["processes"] == 2
    assert r["samples"] == pytest.approx([1.1] * 3 + [1.2] * 3)  # each round over its own baseline round
    assert r["per_process_median"] == pytest.approx([1.1, 1.2]) and r["median"] == pytest.approx(1.15)
    assert out["cpu_s"]["a"]["samples"] == [1.0, 2.0, 1.0, 1.0, 1.0, 4.0]


def test_median_ci_needs_two_rounds():
    assert all(math.isnan(v) for v in median_ci([1.05]))


@pytest.mark.parametrize("ci, verdict", [
    ([1.02, 1.09], "met"),
    ([1.02, 1.10], "met"),            # the goal is ≤ 1.10: an upper end on it still meets it
    ([1.101, 1.2], "not met"),
    ([1.05, 1.15], "inconclusive"),   # straddles the goal: the rounds cannot decide
    ([1.10, 1.15], "inconclusive"),
    ([math.nan, math.nan], "inconclusive"),
])
def test_goal_verdict_flips_on_both_sides_of_the_goal(ci, verdict):
    assert goal_verdict(ci, 1.10) == verdict


def test_interleaved_ratios_carry_their_interval():
    ticks = {"a": 0, "b": 0}

    def busy(k, n):
        def f():
            ticks[k] += sum(range(n))
        return f
    out = interleaved({"a": busy("a", 20000), "b": busy("b", 40000)}, repeats=6, baseline="a", warmup=0)
    r = out["ratio_cpu"]["b"]
    assert len(r["samples"]) == 6 and r["ci95"][0] <= r["median"] <= r["ci95"][1]
    assert "a" not in out["ratio_cpu"]


def test_cpu_probe_times_rounds_of_one_forward_and_restores_threads(monkeypatch):
    import torch

    import interp
    from timing import cpu_probe
    calls = []
    build = interp.zoo.build

    def counting_build(*a, **k):  # count the probe's forwards through the model it builds
        m = build(*a, **k)
        m.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape))
        return m
    monkeypatch.setattr(interp.zoo, "build", counting_build)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = cpu_probe(rounds=3)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert calls == [torch.Size([32, 128])] * 4  # one untimed round, then the three timed ones
    assert len(out["samples"]) == 3 and all(s > 0 for s in out["samples"])
    assert out["min"] <= out["median"] <= out["max"]
