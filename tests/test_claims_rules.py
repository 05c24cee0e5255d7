"""Every registered claim's rule flips on synthetic data on both sides of its boundary, and an interval that
straddles the boundary gives "inconclusive", never "reproduced". The synthetic tables set each metric's value
by construction (e.g. CE = 3 + v per seed), so the expected side is known without running the metric's code."""
import math

import numpy as np
import pandas as pd
import pytest

from interp.report.claims import CLAIMS, INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, evaluate_claim

SEEDS = ("", ".seed1", ".seed2")


def zoo_cards(*groups):
    return pd.DataFrame([{"model": g + s, "family": "zoo", "strategy": g, "placement": "pre", "objective": "causal_lm",
                              "n_layers": 12, "d_model": 64} for g in groups for s in SEEDS])


def real_cards(name="real-lm", placement="pre"):
    return pd.DataFrame([{"model": name, "family": "llama", "strategy": name, "placement": placement, "objective": "causal_lm"}])


def stream_rows(model, var, ang=None, top1=None, median=None, seqs=4, jitter=0.0, rng=None):
    """seq_stream rows whose pooled variance at depth j is var[j] (mean 0), angular distance ang[j]."""
    rows, D = [], len(var)
    rng = rng or np.random.default_rng(0)
    for s in range(seqs):
        for j in range(D):
            n = 1000.0
            v = var[j] * (1 + jitter * rng.standard_normal())
            rows.append({"model": model, "seq": s, "depth": j, "n": n, "s1": 0.0, "s2": v * n, "sabs": math.sqrt(v) * n,
                             "top1": (top1[s][j] if top1 is not None else 1.0),
                             "median": (median[s][j] if median is not None else 0.5),
                             "ang": (ang[j] if ang is not None and j < D - 1 else (0.3 if j < D - 1 else np.nan))})
    return rows


# ---- one synthetic-table maker per metric: (claim, per-seed values of the subject's metric [− reference's]) ----

def _val_loss(c, vals):
    rows = []
    for s, v in zip(SEEDS, vals):
        for q in range(4):
            rows.append({"model": c.zoo[0] + s, "seq": q, "loss_sum": (3.0 + v) * 100, "n_pred": 100.0})
            rows.append({"model": c.reference + s, "seq": q, "loss_sum": 3.0 * 100, "n_pred": 100.0})
    return {"cards": zoo_cards(c.zoo[0], c.reference), "seq_loss": pd.DataFrame(rows)}


def _growth_rate(c, vals):
    rows = []
    for s, v in zip(SEEDS, vals):
        rows += stream_rows(c.zoo[0] + s, [1.0] + [math.exp(v * j) for j in range(1, 13)])
        rows += stream_rows(c.reference + s, [1.0] * 13)
    return {"cards": zoo_cards(c.zoo[0], c.reference), "seq_stream": pd.DataFrame(rows)}


def _angular(c, vals):
    rows = []
    groups = [c.zoo[0]] + ([c.reference] if c.reference else [])
    for s, v in zip(SEEDS, vals):
        rows += stream_rows(c.zoo[0] + s, [1.0] * 13, ang=[0.2] * 6 + [0.2 * math.exp(v)] * 6 + [np.nan])
        if c.reference:
            rows += stream_rows(c.reference + s, [1.0] * 13, ang=[0.2] * 13)
    return {"cards": zoo_cards(*groups), "seq_stream": pd.DataFrame(rows)}


def _skip(c, vals):  # deep − shallow skip loss: subject v per seed, reference (if any) 0
    rows = [{"model": c.zoo[0] + s, "layer": l, "loss_delta": 1.0 + (v if l >= 6 else 0.0)}
            for s, v in zip(SEEDS, vals) for l in range(12)]
    if c.reference:
        rows += [{"model": c.reference + s, "layer": l, "loss_delta": 1.0} for s in SEEDS for l in range(12)]
    return {"cards": zoo_cards(c.zoo[0], *([c.reference] if c.reference else [])), "skip": pd.DataFrame(rows)}


def _grads(c, vals, metric):
    table = "grads_init" if c.params.get("when") == "init" else "gradients"
    z = np.array([-1.0, 1.0] * 6)  # mean 0, population std 1: CV of 1 + a·z is a
    rows = []
    for s, v in zip(SEEDS, vals):
        if metric == "grad_cv":
            subj, ref = 1 + (0.5 + v) * z, 1 + 0.5 * z
        else:
            subj = np.array([1.0] * 4 + [1.0] * 4 + [math.exp(v)] * 4)
            ref = np.ones(12)
        rows += [{"model": c.zoo[0] + s, "layer": l, "target": "params", "grad_norm": g} for l, g in enumerate(subj)]
        if c.reference:
            rows += [{"model": c.reference + s, "layer": l, "target": "params", "grad_norm": g} for l, g in enumerate(ref)]
    groups = [c.zoo[0]] + ([c.reference] if c.reference else [])
    return {"cards": zoo_cards(*groups), table: pd.DataFrame(rows)}


def _spikes(c, vals):
    rows = [{"model": c.zoo[0] + s, "steps": 1000, "spikes": 10 + v} for s, v in zip(SEEDS, vals)]
    rows += [{"model": c.reference + s, "steps": 1000, "spikes": 10} for s in SEEDS]
    return {"cards": zoo_cards(c.zoo[0], c.reference), "log_spikes": pd.DataFrame(rows)}


def _bstat(c, vals):
    rows = [{"model": g + s, "site": "blocks.0.ln1", "fluctuation": v} for g in c.zoo for s, v in zip(SEEDS, vals)]
    return {"cards": zoo_cards(*c.zoo), "log_bstat": pd.DataFrame(rows)}


def _steadiness(c, vals, column):   # per seed: the smoothed statistic moves v times as much as the batch's
    rows = [{"model": c.zoo[0] + s, "site": f"blocks.{k}.ln1", "steps": 1800, "batch": b, "running": math.nan,
             "divisor": math.nan, column: b * v} for s, v in zip(SEEDS, vals) for k, b in enumerate((0.05, 0.1, 0.2))]
    return {"cards": zoo_cards(c.zoo[0]), "log_steadiness": pd.DataFrame(rows)}


def _growth_shape(c, vals):
    rows = []
    for s, v in zip(SEEDS, vals):  # v > 0: an exponential profile, v < 0: a linear one
        prof = [math.exp(0.4 * j) for j in range(13)] if v > 0 else [1.0 + 3.0 * j for j in range(13)]
        rows += stream_rows(c.zoo[0] + s, prof, jitter=0.01, rng=np.random.default_rng(abs(hash(s)) % 1000))
    return {"cards": zoo_cards(c.zoo[0]), "seq_stream": pd.DataFrame(rows)}


def _speedup(c, vals):
    rng, rows = np.random.default_rng(0), []
    for r in range(30):
        base = 0.01 * (1 + 0.01 * rng.standard_normal())
        v = vals[r % len(vals)]
        rows.append({"model": c.zoo[0], "variant": c.params["reference"], "round": r, "seconds": base * (1 + v)})
        rows.append({"model": c.zoo[0], "variant": c.params["variant"], "round": r, "seconds": base})
    return {"cards": zoo_cards(c.zoo[0]), "timing": pd.DataFrame(rows)}


def _equivalence(c, vals):
    rows = [{"model": c.zoo[0], "form": f, "max_abs_diff": vals[0] * 10.0, "max_abs_logit": 10.0}
            for f in ("pre-rmsnorm", "pre-crmsnorm")]
    return {"cards": zoo_cards(c.zoo[0]), "equivalence": pd.DataFrame(rows)}


def _ln_removal(c, vals):
    rows = []
    for s, v in zip(SEEDS, vals):
        for q in range(4):
            rows.append({"model": c.zoo[0] + s, "seq": q, "loss_sum": (4.0 + v) * 100, "n_pred": 100.0})
            rows.append({"model": c.reference + s, "seq": q, "loss_sum": 4.0 * 100 + q * 1e-3, "n_pred": 100.0})
    return {"cards": zoo_cards(c.zoo[0], c.reference), "seq_loss": pd.DataFrame(rows)}


def _massive(c, vals):  # vals: per-sequence indicator pattern via its mean; real model, bootstrap over sequences
    f = float(np.mean(vals))
    S = 40
    hit = np.arange(S) < round(f * S)
    top1 = [[500.0 if (h and j == 3) else 5.0 for j in range(6)] for h in hit]
    median = [[0.1] * 6 for _ in hit]
    rows = stream_rows("real-lm", [1.0] * 6, top1=top1, median=median, seqs=S)
    return {"cards": real_cards(), "seq_stream": pd.DataFrame(rows)}


def _ablation(c, vals):
    rng, rows = np.random.default_rng(0), []
    for q in range(40):
        d = vals[q % len(vals)] + 0.002 * rng.standard_normal()
        for mode, loss in (("none", 3.0), (c.params["mode"], 3.0 + d)):
            rows.append({"model": "real-lm", "seq": q, "ablation": mode, "loss": loss, "n_pred": 50})
    return {"cards": real_cards(), "seq_ablation": pd.DataFrame(rows)}


def _entropy(c, vals):
    rows = []
    for s, v in zip(SEEDS, vals):
        for role, name, dH in (("original", "pre-ln" + s, 0.2), ("vanilla", c.reference + s, 0.2),
                               ("lnfree", c.zoo[0] + s, 0.2 * math.exp(v))):
            rows += [{"model": name, "role": role, "neuron": n, "dH": dH, "via_scale": 0.9 * dH} for n in range(5)]
    return {"cards": zoo_cards(c.zoo[0], c.reference), "entropy_neurons": pd.DataFrame(rows)}


def _fp16_headroom(c, vals):  # per seed: log10 headroom of the subject − the reference's (reference max |x| 100)
    rows = [{"model": c.zoo[0] + s, "abs_max": 100.0 / 10 ** v} for s, v in zip(SEEDS, vals)]
    rows += [{"model": c.reference + s, "abs_max": 100.0} for s in SEEDS]
    return {"cards": zoo_cards(c.zoo[0], c.reference), "precision": pd.DataFrame(rows)}


def _variance_rise(c, vals):  # per seed: the subject's variance rises by e^v at every depth, the reference's not
    rows = []
    for s, v in zip(SEEDS, vals):
        for model, rise in ((c.zoo[0] + s, v), (c.reference + s, 0.0)):
            for step, var in ((0, 1e-3), (200, 1.0), (2000, math.exp(rise))):   # the rise counts from step 200
                rows += [{"step": step, **{k: r[k] for k in ("model", "seq", "depth", "n", "s1", "s2", "top1", "median")}}
                         for r in stream_rows(model, [var] * 13)]
    return {"cards": zoo_cards(c.zoo[0], c.reference), "dynamics_seq": pd.DataFrame(rows)}


def _cond_param_ratio(c, vals):  # exact: the subject has e^v times the reference's 1000 conditioning parameters
    rows = [{"model": c.zoo[0] + s, "cond_params": round(1000 * math.exp(vals[0]))} for s in SEEDS]
    rows += [{"model": c.reference + s, "cond_params": 1000} for s in SEEDS]
    return {"cards": zoo_cards(c.zoo[0], c.reference), "mdlm_cond_params": pd.DataFrame(rows)}


def _mdlm_nelbo(c, vals):  # per seed: every held-out sequence's bound is 3 + v for the subject, 3 for the reference
    rows = []
    for s, v in zip(SEEDS, vals):
        rows += [{"model": c.zoo[0] + s, "seq": q, "nelbo": 3.0 + v} for q in range(4)]
        rows += [{"model": c.reference + s, "seq": q, "nelbo": 3.0 + 1e-3 * q} for q in range(4)]
    return {"cards": zoo_cards(c.zoo[0], c.reference), "mdlm_seq": pd.DataFrame(rows)}


LADDER = [10.0 ** (k / 2 - 3) for k in range(10)]  # ×√10 rungs


def _stable_lr(c, vals):  # per sweep seed: subject's largest stable rung − the reference's (reference: rung 4)
    rows = []
    for seed, v in enumerate(vals):
        for label, k in ((c.zoo[0], 4 + int(v)), (c.reference, 4)):
            rows += [{"model": label, "seed": seed, "lr": lr, "diverged": i > k} for i, lr in enumerate(LADDER)]
    return {"cards": zoo_cards(c.zoo[0], c.reference), "sweep": pd.DataFrame(rows)}


def _lr_sensitivity(c, vals):  # two rungs, initial loss 10: sensitivity = (loss at the 2nd rung − 1) / 2
    rows = []
    for seed, v in enumerate(vals):
        for label, sens in ((c.zoo[0], 1.0 + v), (c.reference, 1.0)):
            rows += [{"model": label, "seed": seed, "lr": lr, "diverged": False, "first_loss": 10.0,
                      "final_loss": loss} for lr, loss in ((1e-3, 1.0), (1e-2, 1.0 + 2 * sens))]
    return {"cards": zoo_cards(c.zoo[0], c.reference), "sweep": pd.DataFrame(rows)}


def _attn_logit(c, vals):  # log10 max |logit|: subject 1 + v, reference 1
    rows = [{"model": c.zoo[0] + s, "layer": 0, "max_abs_logit": 10.0 ** (1 + v)} for s, v in zip(SEEDS, vals)]
    rows += [{"model": c.reference + s, "layer": 0, "max_abs_logit": 10.0} for s in SEEDS]
    return {"cards": zoo_cards(c.zoo[0], c.reference), "attn_logits": pd.DataFrame(rows)}


MAKERS = {"stable_lr_steps": _stable_lr, "lr_sensitivity": _lr_sensitivity, "max_attn_logit": _attn_logit, "entropy_neuron_effect": _entropy, "val_loss": _val_loss, "growth_rate": _growth_rate, "angular_deep_shallow": _angular,
          "skip_deep_shallow": _skip, "grad_cv": lambda c, v: _grads(c, v, "grad_cv"),
          "grad_late_early": lambda c, v: _grads(c, v, "grad_late_early"), "grad_spike_rate": _spikes,
          "bstat_fluctuation": _bstat, "growth_shape": _growth_shape, "speedup": _speedup,
          "equivalence_error": _equivalence, "ln_removal_cost": _ln_removal, "massive_fraction": _massive,
          "ablation_delta": _ablation, "fp16_headroom": _fp16_headroom, "variance_rise": _variance_rise,
          "cond_param_ratio": _cond_param_ratio, "mdlm_nelbo": _mdlm_nelbo,
          "rstat_steadiness": lambda c, v: _steadiness(c, v, "running"),
          "dstat_steadiness": lambda c, v: _steadiness(c, v, "divisor")}


def _sides(c):
    """(values on the claim's side, values on the other side, values straddling the boundary) per seed."""
    r, t = c.rule, c.rule.threshold
    if c.metric == "equivalence_error":
        return [1e-12], [1e-3], None                     # exact: no interval can straddle
    if c.metric == "cond_param_ratio":                   # exact parameter counts: no interval can straddle
        return [math.log(0.01)], [0.0], None
    if c.metric == "growth_shape":
        yes, no = ([1, 1, 1], [-1, -1, -1]) if r.op == ">" else ([-1, -1, -1], [1, 1, 1])
        return yes, no, [1, -1, 1]
    if c.metric == "massive_fraction":
        return [0.9], [0.1], [0.5]
    if c.metric == "stable_lr_steps":   # whole ladder steps, 6 sweep seeds (an order-statistic interval needs them)
        return [2, 2, 3, 1, 2, 2], [-2, -2, -3, 0, -1, -2], [-3, 0, 3, -1, 1, 2]
    if c.metric == "lr_sensitivity":    # the difference cannot go below −1 (the reference's sensitivity)
        return [-0.5, -0.55, -0.45], [0.5, 0.55, 0.45], [-0.9, 0.0, 0.9]
    if c.metric == "speedup":
        return [0.3], [-0.3], [0.6, -0.6]
    if c.metric in ("rstat_steadiness", "dstat_steadiness"):   # a ratio of two movements: positive, ≈ 1 at most
        return [0.2, 0.25, 0.15], [0.95, 1.0, 0.9], [0.2, t, 1.2]
    step = max(abs(t), 0.5)
    if r.op == "within":
        return [0.0, 0.0, 0.0], [t + step] * 3, [t - t / 2, t + t / 2, t]
    sign = 1 if r.op == ">" else -1
    yes = [t + sign * step * f for f in (1.0, 1.1, 0.9)]
    no = [t - sign * step * f for f in (1.0, 1.1, 0.9)]
    return yes, no, [t - 5 * step, t, t + 5 * step]


@pytest.mark.parametrize("key", sorted(CLAIMS))
def test_rule_flips_and_straddle_is_inconclusive(key):
    c = CLAIMS[key]
    if c.metric not in MAKERS:
        pytest.fail(f"claim {key!r}: no synthetic-table maker for metric {c.metric!r}; add one to MAKERS here "
                    "(a function (claim, per-seed values) -> tables that give the metric those values)")
    make = MAKERS[c.metric]
    yes, no, straddle = _sides(c)
    rows = lambda vals: {r["model"]: r for r in evaluate_claim(c, make(c, vals))}
    subj = c.zoo[0] if c.zoo else "real-lm"
    assert rows(yes)[subj]["verdict"] == REPRODUCED, rows(yes)[subj]
    assert rows(no)[subj]["verdict"] == NOT_REPRODUCED, rows(no)[subj]
    if straddle is not None:
        r = rows(straddle)[subj]
        assert r["verdict"] == INCONCLUSIVE, r
        assert r["lo"] <= c.rule.threshold <= r["hi"] or c.rule.op == "within"


def test_models_that_learned_nothing_are_not_compared():
    """Two MDLMs whose bound sits at the unigram cross-entropy (a context-free predictor's bound, from the shipped
    manifest) would 'match' each other; the comparison is not testable and the reason names the stuck model."""
    from interp.analysis.diffusion import _unigram_xent
    base = _unigram_xent()
    if base is None:
        pytest.skip("no shipped zoo manifest")
    c = CLAIMS["tdln_matches_adaln"]
    tables = _mdlm_nelbo(c, [0.0] * len(SEEDS))
    tables["mdlm_seq"]["nelbo"] += base - 3.0  # both models at the unigram level
    r = {r["model"]: r for r in evaluate_claim(c, tables)}[c.zoo[0]]
    assert r["verdict"] == NOT_TESTABLE and "did not learn" in r["reason"], r


def test_every_claim_is_not_testable_without_numbers():
    cards = pd.concat([zoo_cards(g) for g in {g for c in CLAIMS.values() for g in c.zoo + ((c.reference,) if c.reference else ())}]
                      + [real_cards()])
    for c in CLAIMS.values():
        for r in evaluate_claim(c, {"cards": cards}):
            assert r["verdict"] == NOT_TESTABLE and r["reason"], (c.key, r)


def test_each_model_gets_its_own_row_never_pooled():
    c = CLAIMS["cod_exponential"]
    cards = pd.concat([zoo_cards("pre-ln"), real_cards("lm-a"), real_cards("lm-b"), real_cards("enc", "post")])
    rows = evaluate_claim(c, {"cards": cards})
    assert [r["model"] for r in rows] == ["pre-ln", "lm-a", "lm-b"]
    assert {r["control"] for r in rows[1:]} == {"not controlled: different data and size"}


def test_the_seed_papers_each_have_a_claim():
    papers = " ".join(c.paper for c in CLAIMS.values())
    for p in ("Curse of Depth", "Peri-LN", "Mix-LN", "Massive Activations", "Pre-RMSNorm", "PowerNorm",
              "Unified Normalization", "DyT", "TD-LN", "LN-free"):
        assert p in papers, p
    for c in CLAIMS.values():
        assert c.rule.reason and c.section and c.statement


def test_a_malformed_table_gives_a_reason_not_a_crash():
    c = CLAIMS["lns_loss"]
    bad = pd.DataFrame([{"model": m, "seq": 0, "loss_sum": 1.0} for m in zoo_cards("lns", "pre-ln")["model"]])  # no n_pred
    (row,) = evaluate_claim(c, {"cards": zoo_cards("lns", "pre-ln"), "seq_loss": bad})
    assert row["verdict"] == NOT_TESTABLE and "could not evaluate" in row["reason"] and "n_pred" in row["reason"]


def test_the_section_counts_the_seeds_it_measured():
    from interp.report.claims.display import seeds_text
    cards = pd.concat([zoo_cards("pre-ln"), zoo_cards("lns").iloc[:1], real_cards()])
    assert seeds_text(cards) == "lns 1, pre-ln 3"
    assert seeds_text(real_cards()) == "no zoo models"


def test_a_verdict_waits_for_seeds_the_manifest_plans():
    c = CLAIMS["lns_loss"]
    rows = [{"model": m, "seq": q, "loss_sum": (3.0 + d + 0.01 * q * (m == "lns")) * 100, "n_pred": 100.0}
            for m, d in (("lns", -0.5), ("pre-ln", 0.0)) for q in range(8)]
    cards = zoo_cards("lns", "pre-ln").query("~model.str.contains('seed')")
    t = {"cards": cards, "seq_loss": pd.DataFrame(rows)}
    (row,) = evaluate_claim(c, t)   # no plan: the one-seed bootstrap decides
    assert row["verdict"] == REPRODUCED and "seed spread not included" in row["interval"]
    plan = pd.DataFrame([{"model": "lns", "seeds": 3}, {"model": "pre-ln", "seeds": 3}])
    (row,) = evaluate_claim(c, {**t, "seed_plan": plan})
    assert row["verdict"] == INCONCLUSIVE and "lns: 1 of 3 planned seeds measured" in row["reason"]
    assert row["value"] == pytest.approx(-0.465) and row["lo"] < row["hi"]   # the numbers are still shown
    (row,) = evaluate_claim(c, {**t, "seed_plan": plan.assign(seeds=1)})
    assert row["verdict"] == REPRODUCED


def test_a_conversion_with_non_finite_logits_is_never_equivalent():
    """One seed's Pre-CRMSNorm conversion gave NaN logits (max |Δlogit| NaN): pandas' max skipped it and the claim
    read 'reproduced' from the other conversions; the row is not testable and names the conversion."""
    c = CLAIMS["rms_equivalent"]
    for bad in (math.nan, math.inf):
        t = _equivalence(c, [1e-14])
        t["equivalence"] = pd.concat([t["equivalence"], pd.DataFrame(
            [{"model": c.zoo[0] + ".seed1", "form": "pre-crmsnorm", "max_abs_diff": bad, "max_abs_logit": 10.0}])])
        (row,) = evaluate_claim(c, t)
        assert row["verdict"] == NOT_TESTABLE and "pre-ln.seed1 → pre-crmsnorm" in row["reason"], row
