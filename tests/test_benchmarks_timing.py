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
from timing import goal_verdict, interleaved, median_ci  # noqa: E402


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
