"""Attribution patching (first-order estimates of stream edits) against independent references:
  - the directional derivative of the loss along the edit, by central finite differences of replaced forwards
    in float64 (what the estimate must equal: a wrong depth, sign, mask or scale fails it);
  - the exact skip-one-block loss, one replaced forward per block, on the shipped pre-ln and post-ln zoo models:
    the estimate's error there is stated and bounded;
  - the exact loss of a block whose write is scaled by ε: the error of the estimate falls as ε² (first order).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import interp
import interp.data
from interp import zoo
from interp.collectors import LayerEffect, MassiveActivations, collect
from interp.collectors.attribution_patching import (MassiveAttribution, SkipAttribution, agreement, beside_exact,
                                                    skip_first_order)
from interp.collectors.batches import model_context, to_sequences
from interp.collectors.massive_ablation import edit_massive

ZOO = Path(__file__).resolve().parents[1] / "data" / "zoo"
LENGTHS = (24, 17, 21)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def padded(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(0, vocab, (len(LENGTHS), max(LENGTHS)), generator=g)
    mask = torch.zeros_like(toks, dtype=torch.bool)
    for i, n in enumerate(LENGTHS):
        mask[i, :n] = True
    return toks, mask


def streams(model, toks, mask) -> list[torch.Tensor]:
    stream, cache = model.sites.stream(), {}
    with torch.no_grad(), model.hooks(fwd_hooks=[(h, lambda x, hook: cache.__setitem__(hook.name, x.clone()))
                                                 for h in stream]):
        model(toks, attention_mask=mask)
    return [cache[h] for h in stream]


def loss_with(model, toks, mask, depth: int, x: torch.Tensor) -> float:
    """Mean next-token CE over real pairs (float64) with the stream at `depth` replaced by x in a full forward."""
    with torch.no_grad(), model.hooks(fwd_hooks=[(model.sites.stream()[depth], lambda h, hook: x)]):
        out = model(toks, attention_mask=mask).double()
    pair = mask[:, :-1] & mask[:, 1:]
    return F.cross_entropy(out[:, :-1][pair], toks[:, 1:][pair]).item()


def directional(model, toks, mask, depth: int, x: torch.Tensor, delta: torch.Tensor, eta: float = 1e-4) -> float:
    """d/dη of the mean loss at the stream x + η·delta (depth `depth`), by central differences."""
    return (loss_with(model, toks, mask, depth, x + eta * delta)
            - loss_with(model, toks, mask, depth, x - eta * delta)) / (2 * eta)


@pytest.mark.parametrize("name", ["pre-ln", "post-ln"])
def test_skip_estimate_is_the_directional_derivative(name):
    model = interp.load_model(ZOO / name, dtype=torch.float64).eval()
    toks, mask = padded(model.cfg.d_vocab)
    est = collect(model, (toks, mask), [SkipAttribution()], batch_size=3, progress=False)["skip_attribution"]
    h = streams(model, toks, mask)
    ref = np.array([directional(model, toks, mask, l + 1, h[l + 1], h[l] - h[l + 1])
                    for l in range(model.sites.n_layers)])
    np.testing.assert_allclose(est["increase_first_order"].to_numpy(), ref, rtol=1e-5, atol=1e-7 * np.abs(ref).max())
    base = loss_with(model, toks, mask, 0, h[0])
    assert est["base"].iloc[0] == pytest.approx(base, rel=1e-6)  # the loss terms are float32 CE


def test_massive_estimate_is_the_directional_derivative():
    model = interp.load_model(ZOO / "pre-ln", dtype=torch.float64).eval()
    toks, mask = padded(model.cfg.d_vocab, seed=1)
    src = MassiveActivations(abs_threshold=1.0, ratio=5.0)  # low thresholds: the small zoo model has no 100s
    collect(model, (toks, mask), [src], batch_size=3, progress=False)
    est = collect(model, (toks, mask), [MassiveAttribution(src)], batch_size=3,
                  progress=False)["massive_attribution"].set_index("intervention")
    depth, dims, mean = src.ablation_target()
    x = streams(model, toks, mask)[depth]
    for mode in ("zero", "mean"):
        edited, n = edit_massive(src, x, mask, dims, mean, mode)
        assert n > 0 and est.loc[mode, "n_replaced"] == n
        ref = directional(model, toks, mask, depth, x, edited - x)
        assert est.loc[mode, "loss_delta_first_order"] == pytest.approx(ref, rel=1e-5, abs=1e-9), mode
    assert est["depth"].iloc[0] == depth


def test_skip_estimate_error_falls_as_eps_squared():
    """Block 1's write scaled by ε: the exact skip loss moves by O(ε), the estimate's error by O(ε²) (so halving ε
    quarters it); a wrong first-order coefficient would leave an O(ε) error that only halves."""
    errors = []
    for eps in (0.2, 0.1, 0.05):
        model = zoo.build("no-norm", n_layers=4, d_model=32, n_heads=4, d_mlp=64, n_ctx=32, d_vocab=256,
                          dtype=torch.float64).eval()
        with torch.no_grad():
            for lin in (model.blocks[1].attn.out, model.blocks[1].mlp.down):
                lin.weight.mul_(eps)
                if lin.bias is not None:
                    lin.bias.mul_(eps)
        toks, mask = padded(256, seed=2)
        est = collect(model, (toks, mask), [SkipAttribution()], batch_size=3, progress=False)["skip_attribution"]
        h = streams(model, toks, mask)
        exact = loss_with(model, toks, mask, 2, h[1]) - loss_with(model, toks, mask, 0, h[0])
        errors.append(abs(est["increase_first_order"].iloc[1] - exact))
        assert abs(exact) > 10 * errors[-1]  # the first-order term carries the change at small ε
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert all(3.0 < r < 5.0 for r in ratios), ratios


@pytest.mark.parametrize("name,min_rho", [("pre-ln", 0.6), ("post-ln", 0.4)])
def test_skip_estimate_against_exact_skip_losses(name, min_rho):
    """On trained models the estimate ranks blocks roughly right and finds the most harmful one, but it is far
    smaller than the exact increase: training leaves the loss nearly stationary along each block's own write,
    so the curvature the linearization drops carries most of the effect. Measured on 4 held-out passages
    (12 blocks): pre-ln ρ = 0.80, mean |error| 0.21 nats; post-ln ρ = 0.55, mean |error| 0.16 nats; the exact
    increase exceeds the estimate for every block of both."""
    model = interp.load_model(ZOO / name).eval()
    seqs = to_sequences(model, interp.data.heldout_texts(4, 400), model_context(model))  # what collect reads
    res = collect(model, seqs, [SkipAttribution()], batch_size=4, progress=False)
    exact = []
    with torch.no_grad():  # brute force: one forward per sequence and block, the stream replaced by a hook
        base = [loss_with(model, torch.tensor([s]), torch.ones(1, len(s), dtype=torch.bool), 0,
                          streams(model, torch.tensor([s]), torch.ones(1, len(s), dtype=torch.bool))[0])
                for s in seqs]
        n_pred = np.array([len(s) - 1 for s in seqs])
        for l in range(model.sites.n_layers):
            losses = []
            for s in seqs:
                t, m = torch.tensor([s]), torch.ones(1, len(s), dtype=torch.bool)
                losses.append(loss_with(model, t, m, l + 1, streams(model, t, m)[l]))
            exact.append(float(np.dot(losses, n_pred) - np.dot(base, n_pred)) / n_pred.sum())
    exact_tab = res["skip_attribution"][["layer"]].assign(increase=exact)
    table = beside_exact(res["skip_attribution"], exact_tab)
    a = agreement(table)
    assert a["spearman"] >= min_rho, a
    assert table["increase_first_order"].idxmax() == table["increase"].idxmax()  # the most harmful block
    assert (table["error"] < 0).all(), table  # an underestimate everywhere
    assert a["mean_abs_error"] < 0.3, a


@pytest.mark.parametrize("strategy", ["pre-ln", "post-ln", "peri-ln"])
def test_skip_first_order_equals_the_collector_and_restores_the_weights(strategy):
    """The stream-only backward (weights frozen) gives the collector's numbers, and leaves requires_grad as it was."""
    model = zoo.build(strategy, n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=32, d_vocab=256,
                      dtype=torch.float64).eval()
    model.blocks[1].mlp.up.weight.requires_grad_(False)  # a frozen weight stays frozen, the others trainable
    toks, mask = padded(256)
    fast = skip_first_order(model, (toks, mask), batch_size=2)
    ref = collect(model, (toks, mask), [SkipAttribution()], batch_size=2, progress=False)["skip_attribution"]
    np.testing.assert_allclose(fast["increase_first_order"], ref["increase_first_order"], rtol=1e-9, atol=1e-12)
    assert fast["base"].iloc[0] == ref["base"].iloc[0]
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["blocks.1.mlp.up.weight"]
    assert all(p.grad is None for p in model.parameters())


def test_beside_exact_matches_layer_effect_table():
    model = zoo.build("pre-ln", n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=32, d_vocab=256).eval()
    toks, mask = padded(256)
    res = collect(model, (toks, mask), [SkipAttribution(), LayerEffect(skip=True)], batch_size=3, progress=False)
    t = beside_exact(res["skip_attribution"], res["layer_skip"])
    assert list(t.columns) == ["layer", "increase_first_order", "increase", "error"]
    np.testing.assert_allclose(t["error"], t["increase_first_order"] - res["layer_skip"]["increase"])
    assert res["skip_attribution"]["base"].iloc[0] == pytest.approx(res["layer_skip"]["base"].iloc[0], rel=1e-6)


def test_refuses_non_causal_models_and_foreign_tables():
    mdlm = zoo.build("mdlm-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=64).eval()
    with pytest.raises(ValueError, match="not a causal LM"):
        SkipAttribution().bind(mdlm)
    est = SkipAttribution().bind(zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16,
                                           d_vocab=64)).result()
    with pytest.raises(ValueError, match="layer_skip"):
        beside_exact(est, est)


def test_no_next_token_pair_gives_nan_estimates():
    """Sequences of one token: no next-token pair, so the mean losses and estimates are 0/0: NaN, as the brute
    force (cross-entropy over the empty set of real pairs) gives; they were reported as 0.0."""
    model = zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512)
    with torch.no_grad():
        model.embed.weight[5, 3] = 3000.0
    src = MassiveActivations()
    collect(model, [[5, 7, 8], [5, 9]], [src], progress=False)
    toks, mask = torch.tensor([[5], [6]]), torch.ones(2, 1, dtype=torch.bool)
    pair = mask[:, :-1] & mask[:, 1:]
    assert np.isnan(F.cross_entropy(model(toks)[:, :-1][pair], toks[:, 1:][pair]).item())
    res = collect(model, (toks, mask), [SkipAttribution(), MassiveAttribution(src)], batch_size=2, progress=False)
    assert res["skip_attribution"][["base", "increase_first_order"]].isna().all().all()
    assert res["massive_attribution"][["base", "loss_delta_first_order"]].isna().all().all()
