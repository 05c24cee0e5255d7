"""Skip-one-block loss per sequence: it pools to the LayerEffect collector's skip table, a hand-written skip
forward (the model's own blocks in a loop, one left out: the independent reference) gives the same per-sequence
value for every block, and a single seed gets a bootstrap interval over sequences in the skip claim."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from interp import zoo
from interp.analysis.skip import skip_per_sequence
from interp.collectors import LayerEffect, collect
from interp.report.claims import CLAIMS, INCONCLUSIVE, REPRODUCED, evaluate_claim

TINY = {"n_layers": 4, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_ctx": 16, "d_vocab": 128}


def test_per_sequence_skip_pools_to_the_collectors_skip_table():
    torch.set_num_threads(1)
    m = zoo.build("pre-ln", seed=3, **TINY).eval()
    toks = torch.randint(0, 128, (6, 12), generator=torch.Generator().manual_seed(0))
    le = LayerEffect(ns=(1,), skip=True)
    res = collect(m, toks, [le], batch_size=3, progress=False)
    ref = res.tables["layer_skip"].set_index("layer")["increase"]
    per = skip_per_sequence(m, toks, batch_size=4)
    assert len(per) == 6 * 4 and per["seq"].nunique() == 6
    pooled = per.groupby("layer")["loss_delta"].mean()   # every sequence predicts 11 tokens: equal weights
    for layer in range(4):
        assert pooled[layer] == pytest.approx(ref[layer], rel=1e-5, abs=1e-7)


def test_pooled_skip_table_equals_the_collectors_on_the_first_items():
    torch.set_num_threads(1)
    from interp.analysis.skip import pooled_skip_table
    m = zoo.build("post-ln", seed=2, **TINY).eval()
    toks = torch.randint(0, 128, (6, 12), generator=torch.Generator().manual_seed(4))
    ref = collect(m, toks[:4], [LayerEffect(ns=(1,), skip=True)], batch_size=2,
                  progress=False).tables["layer_skip"].set_index("layer")
    got = pooled_skip_table(skip_per_sequence(m, toks, batch_size=4), items=4).set_index("layer")
    assert list(got.columns) == list(ref.columns) and list(got.index) == list(ref.index)
    assert (got["metric"] == ref["metric"]).all() and (got["model"] == ref["model"]).all()
    for col in ("base", "skipped", "increase"):
        np.testing.assert_allclose(got[col].to_numpy(), ref[col].to_numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="one model"):
        pooled_skip_table(skip_per_sequence(m, toks, batch_size=4), items=0)


def test_per_sequence_skip_equals_a_hand_written_skip():
    m = zoo.build("pre-ln", seed=1, **TINY).eval()
    toks = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(1))
    per = skip_per_sequence(m, toks)
    ce = lambda lg: F.cross_entropy(lg[:, :-1].flatten(0, 1).double(), toks[:, 1:].flatten(),
                                    reduction="none").view(2, -1).mean(1)
    for skipped in range(4):
        with torch.no_grad():   # the model's own pieces, one block left out of the loop
            h = m.embed(toks) + m.pos_embed(torch.arange(10))
            for i, b in enumerate(m.blocks):
                if i != skipped:
                    h = b(h, None)
            logits, full = m.unembed(m.ln_final(h)), m(toks)
        want = (ce(logits) - ce(full)).numpy()
        got = per[per.layer == skipped].sort_values("seq")
        # each token's CE is taken in float32 (as LayerEffect takes it): a sequence's mean is good to ~1e-6 nats
        np.testing.assert_allclose(got["loss_delta"].to_numpy(), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["base"].to_numpy(), ce(full).numpy(), rtol=1e-5, atol=1e-6)


def _cards(*groups, seeds=("",)):
    return pd.DataFrame([{"model": g + s, "family": "zoo", "strategy": g, "placement": "pre",
                          "objective": "causal_lm"} for g in groups for s in seeds])


def _seq_skip(model, deep, rng, n=30, noise=0.05):
    return [{"model": model, "seq": q, "layer": l, "loss_delta": 1.0 + (deep if l >= 6 else 0.0)
             + noise * rng.standard_normal()} for q in range(n) for l in range(12)]


def test_one_seed_gets_a_bootstrap_interval_over_sequences():
    c = CLAIMS["pre_deep_skip"]            # rule: deep − shallow < 0
    rng = np.random.default_rng(0)
    t = {"cards": _cards("pre-ln"), "seq_skip": pd.DataFrame(_seq_skip("pre-ln", -0.5, rng))}
    (row,) = evaluate_claim(c, t)
    assert row["verdict"] == REPRODUCED and "bootstrap over 30 held-out sequences" in row["interval"]
    assert row["lo"] < -0.5 < row["hi"] or row["value"] == pytest.approx(-0.5, abs=0.05)
    t = {"cards": _cards("pre-ln"), "seq_skip": pd.DataFrame(_seq_skip("pre-ln", 0.0, rng, noise=0.5))}
    (row,) = evaluate_claim(c, t)   # no effect, noisy sequences: the interval straddles 0
    assert row["verdict"] == INCONCLUSIVE and row["lo"] < 0 < row["hi"]


def test_paired_against_a_reference_with_one_seed_each():
    c = CLAIMS["lns_deep_skip"]            # rule: lns's deep − shallow minus pre-ln's > 0
    rng = np.random.default_rng(1)
    rows = _seq_skip("lns", 0.3, rng) + _seq_skip("pre-ln", -0.3, rng)
    (row,) = evaluate_claim(c, {"cards": _cards("lns", "pre-ln"), "seq_skip": pd.DataFrame(rows)})
    assert row["verdict"] == REPRODUCED and "(paired)" in row["interval"]
    assert row["value"] == pytest.approx(0.6, abs=0.05)


def test_first_seeds_keeps_names_without_a_seed_suffix():
    from interp.analysis.subjects import first_seeds
    names = ["pre-ln", "pre-ln.seed1", "pre-ln.seed12", "smollm2-135m", "mdlm-tdln.seed2", "a.seedling", "post-ln"]
    df = pd.DataFrame({"model": names, "v": range(len(names))})
    want = [m for m in names if not (".seed" in m and m.rsplit(".seed", 1)[1].isdigit())]  # hand-written rule
    assert first_seeds(df)["model"].tolist() == want == ["pre-ln", "smollm2-135m", "a.seedling", "post-ln"]


def test_a_block_whose_skip_loss_is_nan_is_not_left_out():
    """Skipping block 11 gives a NaN loss on every sequence: the per-sequence table's pivot dropped that column, so
    the halves became blocks 0–4 / 5–10 and the claim read 'reproduced'; a NaN block makes the value NaN."""
    from interp.report.claims import NOT_TESTABLE
    df = pd.DataFrame(_seq_skip("pre-ln", -0.5, np.random.default_rng(0)))
    df.loc[df.layer == 11, "loss_delta"] = np.nan
    (row,) = evaluate_claim(CLAIMS["pre_deep_skip"], {"cards": _cards("pre-ln"), "seq_skip": df})
    assert row["verdict"] == NOT_TESTABLE, row


def test_models_measured_on_different_sequences_are_not_paired():
    """lns on sequences 0–29, pre-ln on 30–59 (same count): the bootstrap paired row i of each, different texts,
    and called it '(paired)'; without shared sequences there is no per-sequence pairing (no pooled table: not
    testable)."""
    from interp.report.claims import NOT_TESTABLE
    rng = np.random.default_rng(1)
    a, b = pd.DataFrame(_seq_skip("lns", 0.3, rng)), pd.DataFrame(_seq_skip("pre-ln", -0.3, rng))
    b["seq"] += 30
    (row,) = evaluate_claim(CLAIMS["lns_deep_skip"], {"cards": _cards("lns", "pre-ln"), "seq_skip": pd.concat([a, b])})
    assert row["verdict"] == NOT_TESTABLE and "paired" not in row["interval"], row
