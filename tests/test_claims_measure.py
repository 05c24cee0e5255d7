"""The measurements the claims add to the report run (the fused Unified Norm's test is in
test_surgery_fuse_unified.py): the per-sequence ablation pools to MassiveActivations.ablation's losses; the
step-0 gradients are those of interp.zoo.build(strategy, seed=k); the pipeline yields one row per subject."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from interp import zoo
from interp.analysis.ablation import ablation_per_sequence
from interp.collectors import MassiveActivations, collect
from interp.collectors.grads import GradNorms

TINY = {"n_layers": 3, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_ctx": 16, "d_vocab": 128}


def test_per_sequence_ablation_pools_to_the_collectors_ablation():
    m = zoo.build("pre-ln", seed=0, **TINY).eval()
    toks = torch.randint(0, 128, (6, 12), generator=torch.Generator().manual_seed(1))
    ma = MassiveActivations(abs_threshold=0.05, ratio=3.0)   # low thresholds: a tiny random model has "massive" ones
    collect(m, toks, [ma], batch_size=3, progress=False)
    ref = ma.ablation(m, toks, batch_size=3).set_index("intervention")["loss"]
    out = ablation_per_sequence(ma, m, toks, batch_size=3)
    pooled = out["ablation"].set_index("ablation")["loss"]
    per = out["seq_ablation"]
    for mode in ("none", "zero", "mean"):
        assert pooled[mode] == pytest.approx(ref[mode], rel=1e-6)
        p = per[per.ablation == mode]
        assert (p["loss"] * p["n_pred"]).sum() / p["n_pred"].sum() == pytest.approx(ref[mode], rel=1e-6)
    assert per["seq"].nunique() == 6


def test_ablation_reusing_the_collectors_losses_matches_and_stops_the_intact_forward_at_the_depth():
    """With the SequenceStats losses of the main pass as the "none" arm, the intact forward runs only up to the
    ablation depth: the last block sees the two edited variants of each batch and never the intact batch alone."""
    from interp.analysis.sequences import SequenceStats
    m = zoo.build("pre-ln", seed=0, **TINY).eval()
    toks = torch.randint(0, 128, (6, 12), generator=torch.Generator().manual_seed(1))
    ma = MassiveActivations(abs_threshold=0.05, ratio=3.0)
    res = collect(m, toks, [ma, SequenceStats()], batch_size=3, progress=False)
    ref = ma.ablation(m, toks, batch_size=3).set_index("intervention")["loss"]   # the collector's own runs
    rows = []
    h = m.blocks[-1].register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[0]))
    try:
        out = ablation_per_sequence(ma, m, toks, batch_size=3, seq_loss=res.tables["seq_loss"])
    finally:
        h.remove()
    assert rows == [6, 6]   # two batches of 3 sequences, each run as 2 edited variants only
    pooled = out["ablation"].set_index("ablation")["loss"]
    for mode in ("none", "zero", "mean"):
        assert pooled[mode] == pytest.approx(ref[mode], rel=1e-6)
    full = ablation_per_sequence(ma, m, toks, batch_size=3)["seq_ablation"]
    np.testing.assert_allclose(out["seq_ablation"]["loss"], full["loss"], rtol=1e-9)
    assert out["seq_ablation"][["seq", "ablation", "n_pred"]].equals(full[["seq", "ablation", "n_pred"]])


def test_grads_at_init_rebuild_the_seeded_model(tmp_path):
    from interp.report.claims.measure import grads_at_init
    for name, seed in (("pre-ln", 0), ("pre-ln.seed2", 2)):
        m = zoo.build("pre-ln", seed=seed, **TINY)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.1)           # "trained": the weights on disk are not the step-0 ones
        m.save(tmp_path / name)
    toks = torch.randint(0, 128, (4, 12), generator=torch.Generator().manual_seed(2))
    g = grads_at_init(sorted(tmp_path.iterdir()), toks, batch_size=4)
    for name, seed in (("pre-ln", 0), ("pre-ln.seed2", 2)):
        ref = collect(zoo.build("pre-ln", seed=seed, **TINY), toks, [GradNorms()], batch_size=4, progress=False)
        r = ref["grad_norms"]
        r = r[r["kind"] == "param"].sort_values("layer")["mean"].to_numpy()
        got = g[(g.model == name) & (g.target == "params")].sort_values("layer")["grad_norm"].to_numpy()
        np.testing.assert_allclose(got, r, rtol=1e-6)


def test_tiny_zoo_end_to_end_one_row_per_subject(tmp_path):
    """Three seeds of pre-ln and lns, saved as zoo dirs: the claims see seeds, intervals over seeds."""
    from interp.analysis.sequences import SequenceStats
    from interp.report.claims import CLAIMS, evaluate_claim
    from interp.report.claims.measure import claim_tables
    from interp.report.inputs import merge_tables, tables_from_results
    toks = torch.randint(0, 128, (6, 12), generator=torch.Generator().manual_seed(3))
    results, dirs = [], []
    for strategy in ("pre-ln", "lns"):
        for k in range(3):
            name = strategy + (f".seed{k}" if k else "")
            zoo.build(strategy, seed=k, **TINY).save(tmp_path / name)
            cfg = json.loads((tmp_path / name / "config.json").read_text())
            cfg["training"] = {"seed": k}      # what the zoo training records: the card is named after the seed
            (tmp_path / name / "config.json").write_text(json.dumps(cfg))
            m = zoo.load(tmp_path / name)
            results.append(collect(m, toks, [SequenceStats()], batch_size=3, progress=False))
            dirs.append(tmp_path / name)
    extra = claim_tables(tmp_path, dirs, toks, 4, log=lambda s: None)
    t = merge_tables(tables_from_results(results), extra)
    assert set(t["cards"]["model"]) == {d.name for d in dirs}
    rows = evaluate_claim(CLAIMS["lns_loss"], t)
    assert len(rows) == 1 and rows[0]["interval"] == "Welch t, 3 vs 3 seeds" and rows[0]["n"] == 6
    rows = evaluate_claim(CLAIMS["pre_deep_grads_init"], t)
    assert rows[0]["interval"] == "t over 3 seeds"


def test_entropy_neuron_effects_match_the_attribution_module():
    from interp.analysis.entropy_neurons import candidates, neuron_effects
    from interp.attribution.confidence import confidence_neurons
    m = zoo.build("pre-ln", seed=3, **TINY).double().eval()
    toks = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(4))
    ref = confidence_neurons(m, toks).set_index("neuron")
    picks = candidates(m)
    assert len(set(picks)) == 5
    got = neuron_effects(m, toks, picks).set_index("neuron")
    for n in picks:
        assert got.loc[n, "dH"] == pytest.approx(ref.loc[n, "dH_total"], rel=1e-9)
        assert got.loc[n, "via_scale"] == pytest.approx(ref.loc[n, "via_scale"], rel=1e-9, abs=1e-15)
    # the weight-only selection: write norm × null-space share, as the attribution module reports them
    score = (ref["write_norm"] * ref["null_fraction"]).sort_values(ascending=False)
    assert set(picks) == set(score.index[:5])


def test_entropy_neuron_candidates_are_chosen_against_the_unembedding_as_the_norm_reads_it():
    """The stream reaches W_U through the final norm's gain w. Two planted writes of equal norm: a = the direction
    the gain-folded unembedding reads least (the entropy-neuron signature: its frozen-scale effect on the logits
    is the smallest any write of that norm can have), b = the raw W_U's least-read direction, which the model
    does read once the gain applies. Candidates were chosen against the raw W_U, so b was picked."""
    from interp.analysis.entropy_neurons import candidates
    m = zoo.build("pre-rmsnorm", n_layers=2, d_model=16, n_heads=2, d_mlp=8, d_vocab=40, n_ctx=8).double().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        m.ln_final.w.copy_(0.2 + 3 * torch.rand(16, generator=g, dtype=torch.float64))
        W_U, w = m.W_U.double(), m.ln_final.w.double()
        u_fold = torch.linalg.svd(W_U * w[:, None])[0][:, -1]  # least read after the gain
        u_raw = torch.linalg.svd(W_U)[0][:, -1]
        down = m.blocks[1].mlp.down.weight
        down.mul_(0.01)
        down[:, 2], down[:, 5] = 5 * u_fold, 5 * u_raw
    # the reference, from the definition: how much of the logits each write moves with the norm's scale frozen
    read = lambda v: ((v * w) @ W_U).norm()
    assert read(5 * u_fold) < 0.5 * read(5 * u_raw)
    assert candidates(m, k=1) == [2]


def test_a_seed_without_entropy_neurons_is_named_not_silently_dropped():
    from interp.report.claims import CLAIMS, evaluate_claim as ev
    rows = []
    for k in range(3):
        suf = "" if k == 0 else f".seed{k}"
        # seed 0's candidates act mostly outside the final norm (via_scale 10 % of dH): nothing to lose there
        o, lf = ((0.2, 0.02), 0.2) if k == 0 else ((0.2, 0.18), 0.02)
        for n in range(5):
            rows += [dict(model="pre-ln" + suf, role="original", neuron=n, dH=o[0], via_scale=o[1]),
                     dict(model="pre-ln-lnfree" + suf, role="lnfree", neuron=n, dH=lf + 0.001 * k * n, via_scale=0),
                     dict(model="pre-ln-vanilla" + suf, role="vanilla", neuron=n, dH=0.2, via_scale=0.1)]
    names = [p + ("" if k == 0 else f".seed{k}") for p in ("pre-ln", "pre-ln-lnfree", "pre-ln-vanilla")
             for k in range(3)]
    t = {"cards": pd.DataFrame({"model": names, "family": "zoo"}), "entropy_neurons": pd.DataFrame(rows)}
    (r,) = ev(CLAIMS["ln_free_entropy_neurons"], t)
    assert r["n"] == 2 and "left out, no entropy neurons to lose: seed 0" in r["reason"]


def test_claims_json_round_trip_and_cli(tmp_path, capsys):
    from interp.report.claims.__main__ import main
    from interp.report.claims.measure import write_claims
    cards = pd.DataFrame([{"model": "pre-ln", "family": "zoo", "strategy": "pre-ln"}])
    eq = pd.DataFrame([{"model": "pre-ln", "form": f, "max_abs_diff": 1.5e-14, "max_abs_logit": 10.0}
                       for f in ("pre-rmsnorm", "pre-crmsnorm")])
    claims = write_claims({"cards": cards, "equivalence": eq}, tmp_path / "claims.json")
    back = json.loads((tmp_path / "claims.json").read_text())
    row = next(r for r in back if r["claim"] == "rms_equivalent")
    assert row["value"] == pytest.approx(1.5e-15) and row["verdict"] == "reproduced" and len(back) == len(claims)
    assert main([str(tmp_path / "claims.json")]) == 0
    assert "| pre-ln | 1.50e-15 [1.50e-15, 1.50e-15] |" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.json")]) == 2
    (tmp_path / "bad.json").write_text("{not json")
    assert main([str(tmp_path / "bad.json")]) == 2
    assert "not a claims file" in capsys.readouterr().err


def test_a_nan_entropy_effect_is_not_averaged_away():
    """pandas' mean skipped a neuron whose dH was NaN, so the seed's ratio came from the other four (with an
    interval over seeds); the seed's value is now NaN and there is no interval."""
    from interp.analysis.entropy_neurons import entropy_neuron_effect
    from interp.analysis.subjects import Subject
    for role, where in (("lnfree", "pre-ln-lnfree.seed1"), ("original", "pre-ln.seed1")):
        rows = []
        for k in range(3):
            suf = "" if k == 0 else f".seed{k}"
            for n in range(5):
                rows += [dict(model="pre-ln" + suf, role="original", neuron=n, dH=0.2, via_scale=0.18),
                         dict(model="pre-ln-lnfree" + suf, role="lnfree", neuron=n, dH=0.02 * (k + 1), via_scale=0),
                         dict(model="pre-ln-vanilla" + suf, role="vanilla", neuron=n, dH=0.2, via_scale=0.1)]
        df = pd.DataFrame(rows)
        df.loc[(df.model == where) & (df.neuron == 0), "dH"] = math.nan
        est = entropy_neuron_effect({"entropy_neurons": df},
                                    Subject("pre-ln-lnfree", tuple(f"pre-ln-lnfree{s}" for s in ("", ".seed1", ".seed2"))))
        assert not est.has_interval and math.isnan(est.units[1]), role
        assert est.units[0] == pytest.approx(math.log(0.02 / 0.2)) and est.units[2] == pytest.approx(math.log(0.06 / 0.2))


def test_claims_markdown_escapes_html(tmp_path, capsys):
    """The Markdown table escaped only '|' and newlines: a model named 'a<b>&c' reached the page as a <b> tag
    (Markdown passes raw HTML through), bolding the rest of the table."""
    from interp.report.claims.__main__ import main
    from interp.report.claims.measure import write_claims
    cards = pd.DataFrame([{"model": "pre-ln", "family": "zoo", "strategy": "pre-ln"}])
    eq = pd.DataFrame([{"model": "pre-ln", "form": f, "max_abs_diff": 1.5e-14, "max_abs_logit": 10.0}
                       for f in ("pre-rmsnorm", "pre-crmsnorm")])
    write_claims({"cards": cards, "equivalence": eq}, tmp_path / "claims.json")
    rows = json.loads((tmp_path / "claims.json").read_text())
    rows[0]["model"] = "a<b>&c"  # a model named so (real models are named by their users)
    (tmp_path / "claims.json").write_text(json.dumps(rows))
    assert main([str(tmp_path / "claims.json")]) == 0
    out = capsys.readouterr().out
    assert "| a&lt;b&gt;&amp;c |" in out and "<b>" not in out


def test_entropy_neuron_effects_keep_position_0_apart_under_a_frozen_divisor():
    """A FakeLN final norm (LN removal mid-way) whose position-0 divisor differs: dH equals the entropy change of
    the model itself with the neuron's mean-ablated write added at ln_final's input by hook."""
    from fakeln_fixtures import ablated_entropy_change, frozen_divisor_model
    from interp.analysis.entropy_neurons import neuron_effects
    m, tok = frozen_divisor_model()
    got = neuron_effects(m, tok, [2]).set_index("neuron")
    assert got.loc[2, "dH"] == pytest.approx(ablated_entropy_change(m, tok, 2), abs=1e-10)


def test_claims_cli_refuses_other_json_lists_in_one_line(tmp_path, capsys):
    """A JSON list of other records (or an empty one) is not a claims table: one line and exit 2, not a traceback
    from the Markdown table (an AttributeError on the missing 'paper' column before)."""
    from interp.report.claims.__main__ import main
    for name, text, why in (("other.json", '[{"model": "a", "x": 1}]', "columns missing: paper"),
                            ("empty.json", "[]", "no rows")):
        (tmp_path / name).write_text(text)
        assert main([str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert "not a claims file" in err and why in err and len(err.strip().splitlines()) == 1


def test_a_seed_whose_models_were_not_measured_is_named_not_silently_dropped():
    """Seed 2's vanilla control has no entropy_neurons rows: the estimate rests on seeds 0 and 1 and its reason
    says seed 2 was left out and why (the reason read 't over 2 seeds' with no word of seed 2 before)."""
    from interp.report.claims import CLAIMS, evaluate_claim as ev
    rows = []
    for k, lf in enumerate((0.02, 0.03, 0.01)):
        suf = "" if k == 0 else f".seed{k}"
        for n in range(5):
            rows += [dict(model="pre-ln" + suf, role="original", neuron=n, dH=0.2, via_scale=0.18),
                     dict(model="pre-ln-lnfree" + suf, role="lnfree", neuron=n, dH=lf, via_scale=0)]
            if k < 2:
                rows.append(dict(model="pre-ln-vanilla" + suf, role="vanilla", neuron=n, dH=0.2, via_scale=0.1))
    names = [p + ("" if k == 0 else f".seed{k}") for p in ("pre-ln", "pre-ln-lnfree", "pre-ln-vanilla")
             for k in range(3)]
    t = {"cards": pd.DataFrame({"model": names, "family": "zoo"}), "entropy_neurons": pd.DataFrame(rows)}
    (r,) = ev(CLAIMS["ln_free_entropy_neurons"], t)
    assert r["n"] == 2 and r["value"] == pytest.approx(np.mean([math.log(0.1), math.log(0.15)]))
    assert "left out, not measured: seed 2 (no vanilla rows)" in r["reason"]
