"""The claims' metric functions against brute-force computations from their definitions."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from interp import zoo
from interp.analysis.effectiveness import deep_shallow_log_ratio
from interp.analysis.gradients import cv, late_early
from interp.analysis.intervals import NotTestable
from interp.analysis.growth import fit_exponential, fit_linear, growth_figures, pooled_variance
from interp.analysis.ln_free import ln_removal_cost
from interp.analysis.massive import has_massive
from interp.analysis.sequences import SequenceStats
from interp.analysis.subjects import Subject
from interp.analysis.timing import speedup_from
from interp.analysis.training_logs import spike_count
from interp.collectors import LayerEffect, ResidualStats, collect

TINY = {"n_layers": 3, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_ctx": 16, "d_vocab": 128}


def padded(seed=0, lengths=(9, 5, 7, 3)):
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(0, 128, (len(lengths), max(lengths)), generator=g)
    mask = torch.zeros_like(toks, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    return toks, mask


# ---- growth laws -------------------------------------------------------------------------------------------

def brute_linear_rss(var):
    """Least squares of ln var ≈ k + ln|j − j0| over a very fine grid of roots (and the constant law)."""
    L, j, y = len(var), np.arange(1, len(var) + 1.0), np.log(var)
    u = 10.0 ** np.arange(-4, 5, 1e-4)
    best = ((y - y.mean()) ** 2).sum()
    for roots in (1 - u, L + u):
        r = y[None] - np.log(np.abs(j[None] - roots[:, None]))
        best = min(best, ((r - r.mean(1, keepdims=True)) ** 2).sum(1).min())
    return best


@pytest.mark.parametrize("var", [
    [1 + 3 * j for j in range(12)], [math.exp(0.3 * j) for j in range(12)], [5.0] * 8,
    [10 - 0.7 * j for j in range(12)], list(np.random.default_rng(0).uniform(0.5, 4, 10))])
def test_linear_and_exponential_fits_match_brute_force(var):
    var = np.array(var, dtype=float)
    _, b, rss_e = fit_exponential(var)
    j = np.arange(1, len(var) + 1.0)
    bb, cc = np.polyfit(j, np.log(var), 1)
    assert b == pytest.approx(bb) and rss_e == pytest.approx(((np.log(var) - cc - bb * j) ** 2).sum(), abs=1e-12)
    assert fit_linear(var)[2] == pytest.approx(brute_linear_rss(var), rel=1e-3, abs=1e-6)


def test_growth_figures_and_shape_sides():
    lin = np.array([1 + 3 * j for j in range(12)], float)
    exp = np.array([math.exp(0.3 * j) for j in range(12)])
    f = growth_figures(exp)
    assert f["ratio_last_first"] == pytest.approx(exp[-1] / exp[0])
    assert f["growth_factor"] == pytest.approx(math.exp(0.3)) and f["slope_log_var"] == pytest.approx(0.3)
    assert f["shape"] > 5 and growth_figures(lin)["shape"] < -5
    with pytest.raises(ValueError, match="positive"):
        growth_figures(np.array([1.0, 0.0, 2.0]))


# ---- the per-sequence collector ----------------------------------------------------------------------------

@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "torch"])
@pytest.mark.parametrize("strategy", ["pre-ln", "peri-ln", "post-ln"])
def test_sequence_stats_match_residual_stats_layer_effect_and_brute_force(strategy, compiled, monkeypatch):
    from interp.collectors import seq_kernels
    if compiled and not seq_kernels.kernels.ENABLED:
        pytest.skip("numba missing: no compiled pass")
    monkeypatch.setattr(seq_kernels, "usable", lambda x, real=seq_kernels.usable: compiled and real(x))
    model = zoo.build(strategy, **TINY).eval()
    toks, mask = padded()
    res = collect(model, (toks, mask), [SequenceStats(), ResidualStats(), LayerEffect(ns=(1,), skip=False)],
                  batch_size=3, progress=False)
    s = res["seq_stream"]
    D = len(model.sites.stream())
    _, cache = model.run_with_cache(toks, attention_mask=mask)
    hooks = model.sites.stream()
    res_var = res["residual"].set_index(["layer", "site"])["var"]
    for j in range(D):
        rows = s[s.depth == j].sort_values("seq")
        pooled = pooled_variance(rows["n"].to_numpy()[:, None], rows["s1"].to_numpy()[:, None],
                                 rows["s2"].to_numpy()[:, None])[0]
        ref = res_var[(0, "resid_pre")] if j == 0 else res_var[(j - 1, "resid_post")]
        assert pooled == pytest.approx(ref, rel=1e-6)
        for q in range(len(toks)):
            x = cache[hooks[j]][q][mask[q]].double().abs().reshape(-1)
            r = rows[rows.seq == q].iloc[0]
            assert r["top1"] == pytest.approx(float(x.max()))
            assert r["median"] == pytest.approx(float(torch.median(x)))    # torch's lower median
            assert r["sabs"] == pytest.approx(float(x.sum()))
    ang = s[s.depth < D - 1].groupby("depth")["ang"].mean()
    le = res["layer_effect"].set_index("depth")["angular_last"]
    np.testing.assert_allclose(ang.to_numpy(), le.loc[ang.index].to_numpy(), rtol=1e-9)
    # per-sequence CE against a direct computation
    with torch.no_grad():
        logits = model(toks, attention_mask=mask)
    loss = res["seq_loss"].set_index("seq")
    for q in range(len(toks)):
        n = int(mask[q].sum())
        ce = F.cross_entropy(logits[q, : n - 1].double(), toks[q, 1:n], reduction="sum")
        assert loss.loc[q, "loss_sum"] == pytest.approx(float(ce), rel=1e-5) and loss.loc[q, "n_pred"] == n - 1


def test_sequence_stats_keep_every_sequence_apart_in_a_sharded_or_resumed_collection(tmp_path):
    """collect_sharded runs each batch on its own (ranks, --state-dir resumes): sequence q must still be slot q,
    with its own counts, maxima and medians, as one collect pass gives them (here 5 sequences, batches of 2)."""
    from interp.collectors.sharded import collect_sharded
    model = zoo.build("pre-ln", **TINY).eval()
    lengths = (9, 5, 7, 3, 6)
    toks, mask = padded(lengths=lengths)
    data = [t[m].tolist() for t, m in zip(toks, mask)]
    one = collect(model, data, [SequenceStats()], batch_size=2, progress=False)
    sharded = collect_sharded(model, data, [SequenceStats()], batch_size=2, progress=False,
                              state_dir=tmp_path / "state", checkpoint_every=1)
    for name in ("seq_stream", "seq_loss"):
        a, b = one[name], sharded[name]
        assert sorted(b["seq"].unique()) == list(range(len(lengths)))
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), rtol=1e-12)
    s = sharded["seq_stream"]
    for q, n in enumerate(lengths):  # every element of sequence q counted once, in its own slot
        assert (s[s.seq == q]["n"] == n * TINY["d_model"]).all()


# ---- small metric helpers ----------------------------------------------------------------------------------

def test_spike_count_brute_force():
    g = np.random.default_rng(3).lognormal(0, 0.5, 400)
    g[[120, 250, 251, 390]] *= 20
    spikes = sum(g[i] > 3 * np.median(g[i - 50:i]) for i in range(50, len(g)))
    assert spike_count(g) == (spikes, 350)


def _stat_log(tmp, name, x2, running=None, divisor=None, norm="powernorm", warmup=20):
    """A zoo model directory whose training log holds the batch statistics x2 [T, d] of one norm and, when given,
    its running / divisor statistics, as relative step changes (the telemetry's definition, NaN at step 0)."""
    import json
    d = tmp / name
    d.mkdir()
    T = len(x2)
    pd.DataFrame({"step": np.arange(T), "grad_norm": np.ones(T)}).to_parquet(d / "steps.parquet")
    (d / "config.json").write_text(json.dumps({"config": {"norm": norm, "d_model": x2.shape[1],
                                                          "norm_kwargs": {"warmup_iters": warmup}}}))
    rows = []
    for metric, v in (("bstat", x2), ("rstat", running), ("dstat", divisor)):
        if v is not None:
            rel = np.r_[np.nan, np.linalg.norm(np.diff(v, axis=0), axis=1) / np.linalg.norm(v[:-1], axis=1)]
            rows += [{"step": t, "group": "0", "site": "blocks.0.ln1", "metric": f"{metric}_x2_rel_change",
                      "value": r} for t, r in enumerate(rel)]
    pd.DataFrame(rows).to_parquet(d / "layers.parquet")


def test_steadiness_of_an_ema_and_a_window_against_their_noise_and_drift_limits(tmp_path):
    """A batch statistic that is i.i.d. noise around a fixed value: PowerNorm's EMA (α = 0.9) moves (1−α)/√(1+α)
    as much per step and Unified's 4-step geometric mean 1/4 as much; a statistic that only drifts: both move as
    much as the batch statistic. Steps before the warm-up (20 + window + 1, and 10 % of the run) are not counted."""
    from interp.analysis.registry import METRICS
    from interp.analysis.training_logs import read_logs
    rng, T, a = np.random.default_rng(0), 1500, 0.9

    def ema(x):
        r, out = x[0].copy(), np.empty_like(x)
        for t in range(len(x)):
            r = a * r + (1 - a) * x[t]
            out[t] = r
        return out

    def window(x, m=4):
        return np.stack([np.exp(np.log(x[max(0, t - m + 1):t + 1]).mean(0)) for t in range(len(x))])

    noise = 1 + 0.05 * rng.standard_normal((T, 64))
    drift = (1 + 0.002 * np.arange(T))[:, None] * (1 + 1e-5 * rng.standard_normal((T, 64)))
    noise[:150] *= rng.lognormal(0, 3, (150, 1))   # wild early steps, all before the counted ones
    _stat_log(tmp_path, "powernorm", noise, running=ema(noise))
    _stat_log(tmp_path, "powernorm.seed1", drift, running=ema(drift))
    _stat_log(tmp_path, "powernorm.seed2", noise)                        # trained before rstat was logged
    _stat_log(tmp_path, "unified-norm", noise, running=ema(window(noise)), divisor=window(noise), norm="unified")
    logs = read_logs(tmp_path)
    st = logs["log_steadiness"].set_index("model")
    assert st.loc["powernorm", "steps"] == T - 150 and st.loc["unified-norm", "steps"] == T - 150
    assert "powernorm.seed2" not in st.index and math.isnan(st.loc["powernorm", "divisor"])
    rstat, dstat = METRICS["rstat_steadiness"].fn, METRICS["dstat_steadiness"].fn
    iid = rstat(logs, Subject("powernorm", ("powernorm",)))
    assert iid.value == pytest.approx((1 - a) / math.sqrt(1 + a), rel=0.05)
    assert rstat(logs, Subject("powernorm", ("powernorm.seed1",))).value == pytest.approx(1.0, rel=0.05)
    assert dstat(logs, Subject("unified-norm", ("unified-norm",))).value == pytest.approx(0.25, rel=0.05)
    both = rstat(logs, Subject("powernorm", ("powernorm", "powernorm.seed1", "powernorm.seed2")))
    assert both.n == 2 and "powernorm.seed2 left out" in both.detail and both.lo < both.value < both.hi
    with pytest.raises(NotTestable, match="running-statistic telemetry"):
        rstat(logs, Subject("powernorm", ("powernorm.seed2",)))
    with pytest.raises(NotTestable, match="divisor-statistic telemetry"):
        dstat(logs, Subject("powernorm", ("powernorm.seed2",)))


def test_gradient_and_depth_summaries_brute_force():
    g = np.array([4.0, 3, 2, 1, 1, 2])
    assert cv(g) == pytest.approx(np.std(g) / np.mean(g))
    assert late_early(g) == pytest.approx(math.log(1.5 / 3.5))
    assert deep_shallow_log_ratio(np.array([0.4, 0.2, 0.1, 0.1])) == pytest.approx(math.log(0.1 / 0.3))


def test_has_massive_uses_both_thresholds():
    top1 = np.array([[50.0, 150.0], [150.0, 150.0], [2000.0, 3.0]])
    med = np.array([[0.01, 1.0], [0.1, 0.2], [1.0, 1.0]])
    assert has_massive(top1, med).tolist() == [False, True, True]


def test_speedup_from_interleaved_rounds():
    t = pd.DataFrame([{"variant": v, "round": r, "seconds": s} for r in range(9)
                      for v, s in (("a", 1.0 + 0.01 * r), ("ref", 1.2 * (1.0 + 0.01 * r)))])
    e = speedup_from(t, "a", "ref")
    assert e.value == pytest.approx(0.2) and e.lo == pytest.approx(0.2) and e.hi == pytest.approx(0.2)


def test_ln_removal_cost_paired_by_seed_with_control_gap():
    rows = []
    for s, (lnfree, vanilla, single) in zip(("", ".seed1", ".seed2"),
                                            ((4.1, 4.0, 4.1), (4.3, 4.1, 4.0), (4.2, 4.15, 4.0))):
        rows += [{"model": "pre-ln-lnfree" + s, "seq": 0, "loss_sum": lnfree * 10, "n_pred": 10.0},
                 {"model": "pre-ln-vanilla" + s, "seq": 0, "loss_sum": vanilla * 10, "n_pred": 10.0},
                 {"model": "pre-ln-vanilla-single" + s, "seq": 0, "loss_sum": single * 10, "n_pred": 10.0}]
    t = {"seq_loss": pd.DataFrame(rows)}
    subj = Subject("pre-ln-lnfree", ("pre-ln-lnfree", "pre-ln-lnfree.seed1", "pre-ln-lnfree.seed2"))
    ref = Subject("pre-ln-vanilla", ("pre-ln-vanilla", "pre-ln-vanilla.seed1", "pre-ln-vanilla.seed2"))
    e = ln_removal_cost(t, subj, ref)
    d = np.array([0.1, 0.2, 0.05])
    assert e.value == pytest.approx(d.mean()) and e.units == pytest.approx(d.tolist())
    assert e.hi - e.value == pytest.approx(4.3027 * d.std(ddof=1) / math.sqrt(3), rel=1e-4)
    assert e.control_gap == pytest.approx(np.mean([0.1, 0.1, 0.15]))   # |vanilla − vanilla-single| per seed
    # seed 2's LN-free model and its vanilla control's losses are absent: the other two seeds decide, and seed 2 is
    # named (an unpaired control without losses made the whole claim 'not testable' before)
    t2 = {"seq_loss": t["seq_loss"][~t["seq_loss"]["model"].isin(["pre-ln-lnfree.seed2", "pre-ln-vanilla.seed2"])]}
    e = ln_removal_cost(t2, Subject(subj.label, subj.models[:2]), ref)
    assert e.value == pytest.approx(0.15) and e.units == pytest.approx([0.1, 0.2])
    assert "vanilla CE 4.0500" in e.detail and "left out, LN-free or vanilla model missing: seed 2" in e.detail
