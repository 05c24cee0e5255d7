"""Training dynamics (interp.analysis.dynamics): every number against a brute-force computation from run_with_cache
and a hand-written backward on tiny zoo models trained here for 10 steps through the zoo recipe (snapshots shipped
at 10 % and 30 %), step 0 against interp.zoo.build, the claim's metric and the report section."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import interp
from interp.analysis.dynamics import kept_steps, measure_step, model_dynamics, training_dynamics, variance_rise
from interp.train.zoo import state_sha256

TINY = dict(n_layers=3, d_model=16, n_heads=2, d_mlp=32)
SIZE = dict(TINY, n_ctx=128, d_vocab=4096)
STEPS = 10


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """pre-ln and peri-ln, seed 0, 10 updates of the zoo recipe, snapshots shipped; 4 held-out sequences of 24."""
    from interp.train import zoo_runner
    from interp.train.zoo import train_one, zoo_train_config
    torch.set_num_threads(1)
    out, runs = tmp_path_factory.mktemp("zoo"), tmp_path_factory.mktemp("runs")
    data = zoo_runner._prepared()
    for s in ("pre-ln", "peri-ln"):
        rec = train_one(s, data, zoo_train_config(STEPS, seed=0), out / s, runs / s, size=TINY, seed=0,
                        progress=False, ship_snapshots=True)
        assert rec["status"] == "done"
    tokens = interp.data.heldout_tokens(4, 24)
    dyn = training_dynamics([out / "pre-ln", out / "peri-ln"], tokens, batch_size=2, log=lambda _: None)
    return out, tokens, dyn


def brute_force(model, tokens: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(variance per depth pooled over everything, per-sequence max |x| / lower median |x| per depth [S, D] twice,
    per-block gradient norm of the batch-mean CE averaged over batches), from run_with_cache and autograd."""
    L = model.cfg.n_layers
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(L)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    h = [cache[n].double() for n in names]                                          # D × [S, T, d]
    var = np.array([x.var(unbiased=False).item() for x in h])
    a = [x.abs().reshape(len(tokens), -1).numpy() for x in h]
    top1 = np.stack([x.max(1) for x in a], 1)
    median = np.stack([np.sort(x, 1)[:, (x.shape[1] - 1) // 2] for x in a], 1)     # the lower median
    norms = []
    for b in range(0, len(tokens), batch_size):
        x = tokens[b:b + batch_size]
        model.zero_grad(set_to_none=True)
        logits = model(x)
        F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)).backward()
        norms.append([math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in blk.parameters() if p.grad is not None))
                      for blk in model.blocks])
    model.zero_grad(set_to_none=True)
    return var, top1, median, np.mean(norms, 0)


def test_kept_steps_are_init_snapshots_and_final(tiny_runs):
    out = tiny_runs[0]
    assert kept_steps(out / "pre-ln") == [0, 1, 3, STEPS]  # 10 % and 30 % of 10 updates, 0 rebuilt, 10 the model
    d = tiny_runs[2]["dynamics"]
    assert sorted(d["step"].unique()) == [0, 1, 3, STEPS]
    assert set(d["model"]) == {"pre-ln", "peri-ln"} and (d["n_sequences"] == 4).all()
    rec = d[(d["model"] == "pre-ln") & (d["step"] == 3)]["tokens"].unique()
    assert rec.tolist() == [3 * 8 * 128]  # the recipe's batch of 8 × 128 tokens per step


def test_every_step_matches_brute_force(tiny_runs):
    out, tokens, dyn = tiny_runs
    d, g = dyn["dynamics"], dyn["dynamics_grads"]
    for name in ("pre-ln", "peri-ln"):
        for step in kept_steps(out / name):
            var, top1, median, gnorm = brute_force(interp.zoo.load(out / name, step=step), tokens, 2)
            rows = d[(d["model"] == name) & (d["step"] == step)].sort_values("depth")
            assert rows["depth"].tolist() == list(range(TINY["n_layers"] + 1))
            np.testing.assert_allclose(rows["variance"], var, rtol=1e-6)  # float32 forwards, other batch shapes
            np.testing.assert_allclose(rows["top1"], top1.mean(0), rtol=1e-6)
            np.testing.assert_allclose(rows["median"], median.mean(0), rtol=1e-6)
            np.testing.assert_allclose(rows["top1_median"], (top1 / median).mean(0), rtol=1e-6)
            gr = g[(g["model"] == name) & (g["step"] == step)].sort_values("layer")
            np.testing.assert_allclose(gr["grad_norm"], gnorm, rtol=1e-4)


def test_training_changed_the_weights_between_kept_steps(tiny_runs):
    """The steps are different weights (a loader that returned the final model at every step would pass the
    brute-force test too, since both sides would load the same thing)."""
    out = tiny_runs[0]
    shas = {s: state_sha256(interp.zoo.load(out / "pre-ln", step=s)) for s in kept_steps(out / "pre-ln")}
    assert len(set(shas.values())) == len(shas)
    assert shas[STEPS] == state_sha256(interp.zoo.load(out / "pre-ln"))


def test_step_zero_is_the_seeds_build(tiny_runs):
    out, tokens, dyn = tiny_runs
    built = interp.zoo.build("peri-ln", seed=0, **SIZE)
    assert state_sha256(interp.zoo.load(out / "peri-ln", step=0)) == state_sha256(built)
    seq, grads = measure_step(built.eval(), tokens, 2)
    mine = dyn["dynamics_seq"]
    mine = mine[(mine["model"] == "peri-ln") & (mine["step"] == 0)].drop(columns=["model", "step"])
    pd.testing.assert_frame_equal(mine.reset_index(drop=True), seq.reset_index(drop=True))
    g = dyn["dynamics_grads"]
    np.testing.assert_array_equal(g[(g["model"] == "peri-ln") & (g["step"] == 0)]["grad_norm"], grads["grad_norm"])


def test_variance_rise_and_its_claim(tiny_runs):
    """The metric equals mean over depths 1..L of ln(var final / var at the start step) from the caches; the claim
    counts from the first kept step after the LR warm-up (step 1 of 10 here) and gets a paired bootstrap over the
    4 sequences (one seed), said so."""
    from interp.analysis.dynamics import _arrays, warmup_step
    from interp.report.claims import CLAIMS, evaluate_claim
    out, tokens, dyn = tiny_runs
    want = {}
    for name in ("pre-ln", "peri-ln"):
        a = _arrays(dyn, name)
        first = warmup_step(a)
        assert first == 1   # kept steps 0, 1, 3, 10: 10 % of the run is step 1
        v = {s: brute_force(interp.zoo.load(out / name, step=s), tokens, 2)[0][1:] for s in (0, first, STEPS)}
        assert variance_rise(a) == pytest.approx(float(np.mean(np.log(v[STEPS] / v[0]))), rel=1e-5)
        want[name] = float(np.mean(np.log(v[STEPS] / v[first])))
        assert variance_rise(a, start=first) == pytest.approx(want[name], rel=1e-5)
    cards = pd.DataFrame([{"model": m, "family": "zoo", "strategy": m, "objective": "causal_lm"}
                          for m in ("pre-ln", "peri-ln", "peri-ln.seed1")])  # seed 1 keeps no weights along training
    (row,) = evaluate_claim(CLAIMS["peri_variance_rise"], {**dyn, "cards": cards})
    assert row["value"] == pytest.approx(want["peri-ln"] - want["pre-ln"], rel=1e-5)
    assert row["lo"] <= row["value"] <= row["hi"]
    assert row["interval"].startswith("bootstrap over 4 held-out sequences (paired)") and "one seed" in row["interval"]
    assert "left out, no weights along training measured: peri-ln.seed1" in row["reason"]  # named, not silent


def test_models_without_kept_steps_are_skipped(tiny_runs, tmp_path):
    import shutil
    src = tiny_runs[0] / "pre-ln"
    bare = tmp_path / "bare"
    shutil.copytree(src, bare, ignore=shutil.ignore_patterns("checkpoints"))
    assert kept_steps(bare) == [] and training_dynamics([bare], tiny_runs[1], log=lambda _: None) == {}
    assert model_dynamics(bare, tiny_runs[1])[0].empty


def test_a_model_whose_init_no_longer_rebuilds_is_left_out_with_a_line(tiny_runs, tmp_path):
    import json
    import shutil
    broken = tmp_path / "pre-ln"
    shutil.copytree(tiny_runs[0] / "pre-ln", broken)
    meta = json.loads((broken / "config.json").read_text())
    meta["training"]["init_sha256"] = "0" * 64
    (broken / "config.json").write_text(json.dumps(meta))
    lines = []
    out = training_dynamics([broken, tiny_runs[0] / "peri-ln"], tiny_runs[1][:2], batch_size=2, log=lines.append)
    assert set(out["dynamics"]["model"]) == {"peri-ln"}
    assert any("pre-ln left out" in x and "init_sha256" in x for x in lines)


def test_report_section_shows_three_figures_and_the_numbers(tiny_runs):
    import importlib

    from interp.report.dynamics import section, step_table
    R = importlib.import_module("interp.report.render")  # the module (interp.report.render is also a function)
    dyn = tiny_runs[2]
    s = section(dyn, {}, R._section, R._table)
    assert len(s["figures"]) == 3 and not s["missing"]
    tab = step_table(dyn)
    d = dyn["dynamics"]
    first = d[(d["model"] == "pre-ln") & (d["step"] == 0) & (d["depth"] == 1)]["variance"].item()
    assert tab[(tab["model"] == "pre-ln") & (tab["step"] == 0)]["var_first"].item() == first
    assert any("pre-ln" in n and "peri-ln" in n for n in s["notes"])
    empty = section({}, {}, R._section, R._table)
    assert empty["missing"] and not empty["figures"]
