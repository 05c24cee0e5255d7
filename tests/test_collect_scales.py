"""NormScales against the hook_scale values in run_with_cache (token-wise and batch-statistic norms)."""
import numpy as np
import pytest
import torch

import interp.zoo as zoo
from interp.collectors import NormScales, ResidualStats, collect
from interp.collectors.scales import QUANTILES, scale_sites

STRATEGIES = ["pre-ln", "post-ln", "peri-ln", "mix-ln", "lns", "no-norm", "pre-rmsnorm", "powernorm"]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("with_residual,padded", [(False, True), (True, True), (True, False)])
def test_norm_scales_match_cache(strategy, with_residual, padded):
    """with_residual: the scales come from ResidualStats' per-token sums of the same tensor."""
    model = zoo.build(strategy, n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=24, d_vocab=512).eval()
    g = torch.Generator().manual_seed(2)
    toks = torch.randint(0, 512, (4, 20), generator=g)
    mask = torch.ones_like(toks, dtype=torch.bool)
    if padded:
        mask[1, 12:] = False
        mask[3, 5:] = False
    res = collect(model, (toks, mask), [ResidualStats(), NormScales()] if with_residual else [NormScales()],
                  batch_size=4, progress=False)
    df = res["norm_scales"]
    sites = scale_sites(model.sites)
    assert len(df) == len(sites)
    if strategy == "no-norm":
        return
    _, cache = model.run_with_cache(toks, attention_mask=mask)
    for i, (_layer, _norm, hook) in enumerate(sites):
        x = cache[hook]
        v = (x[mask] if x.shape[:2] == mask.shape else x).reshape(-1).double().numpy()
        row = df.iloc[i]
        assert row.n == len(v)
        assert row["mean"] == pytest.approx(v.mean(), rel=1e-6)
        assert row["min"] == pytest.approx(v.min(), rel=1e-6) and row["max"] == pytest.approx(v.max(), rel=1e-6)
        for q in QUANTILES:  # in the log bin of the inverse-CDF quantile (a factor 10^0.01)
            got, ref = row[f"q{round(q * 100):02d}"], np.quantile(v, q, method="inverted_cdf")
            assert abs(np.log10(got) - np.log10(ref)) <= 0.01 + 1e-9, (hook, q, got, ref)
    h = res["norm_scales_hist"]
    assert h.groupby(["layer", "norm"])["count"].sum().sum() == df.n.sum()


@pytest.mark.parametrize("with_residual", [False, True])
def test_norm_scales_over_batches_of_different_sizes(with_residual):
    """Batches of 3, 3 and 1 sequences with different padding (the CPU kernels' per-batch scale buffer is reused
    and outgrown): the same values as hook_scale in run_with_cache."""
    model = zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=24, d_vocab=512).eval()
    g = torch.Generator().manual_seed(3)
    toks = torch.randint(0, 512, (7, 20), generator=g)
    mask = torch.ones_like(toks, dtype=torch.bool)
    mask[0, 4:], mask[1, 9:], mask[5, 15:] = False, False, False  # batch 1 holds fewer real tokens than batch 2
    res = collect(model, (toks, mask), [ResidualStats(), NormScales()] if with_residual else [NormScales()],
                  batch_size=3, progress=False)
    df = res["norm_scales"]
    _, cache = model.run_with_cache(toks, attention_mask=mask)
    for i, (_layer, _norm, hook) in enumerate(scale_sites(model.sites)):
        v = cache[hook][mask].reshape(-1).double().numpy()
        row = df.iloc[i]
        assert row.n == len(v)
        assert row["mean"] == pytest.approx(v.mean(), rel=1e-6)
        assert row["min"] == pytest.approx(v.min(), rel=1e-6) and row["max"] == pytest.approx(v.max(), rel=1e-6)


def test_norm_scales_when_the_mean_dwarfs_the_spread():
    """A LayerNorm input whose mean is ~1e4 times its spread: the collector refuses the one-pass variance from
    ResidualStats' per-token sums (mean² > 2¹⁶ · variance, where it could lose float32 digits) and takes the
    two-pass kernel. Reference: the scale computed in float64 from the cached norm input (two passes), as
    LayerNorm defines it."""
    model = zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=24, d_vocab=512).eval()
    with torch.no_grad():
        model.embed.weight.add_(300.0)  # every token's embedding shifted by one large constant
    g = torch.Generator().manual_seed(4)
    toks = torch.randint(0, 512, (3, 16), generator=g)
    mask = torch.ones_like(toks, dtype=torch.bool)
    res = collect(model, (toks, mask), [ResidualStats(), NormScales()], batch_size=3, progress=False)
    df = res["norm_scales"].set_index(["layer", "norm"])
    _, cache = model.run_with_cache(toks, attention_mask=mask)
    x = cache["blocks.0.ln1.hook_in"].double()
    mu = x.mean(-1, keepdim=True)
    assert float((mu ** 2 / ((x - mu) ** 2).mean(-1, keepdim=True)).min()) > 2.0 ** 16  # the case under test
    ref = (((x - mu) ** 2).mean(-1) + model.blocks[0].ln1.eps).sqrt().reshape(-1).numpy()
    row = df.loc[(0, "ln1")]
    assert row.n == len(ref)
    assert row["mean"] == pytest.approx(ref.mean(), rel=1e-6)
    assert row["min"] == pytest.approx(ref.min(), rel=1e-6) and row["max"] == pytest.approx(ref.max(), rel=1e-6)


@pytest.mark.parametrize("strategy", ["pre-ln", "pre-rmsnorm"])
def test_norm_scales_of_a_bf16_model_are_computed_as_its_hooked_norm_computes_them(strategy):
    """A bf16 zoo norm computes its statistics in float32 (as the fused kernel does, hooked or not: e639118), but
    NormScales recomputed the scale from hook_in in bf16 ops, off by up to a bf16 ulp (~0.4 %). Reference: the
    norm's formula in float64 on the bf16 hook_in values of the same forward."""
    model = zoo.build(strategy, n_layers=2, d_model=64, n_heads=4, d_mlp=128, n_ctx=24, d_vocab=512).eval()
    model = model.to(torch.bfloat16)
    g = torch.Generator().manual_seed(4)
    toks = torch.randint(0, 512, (3, 20), generator=g)
    df = collect(model, toks, [NormScales()], batch_size=3, progress=False)["norm_scales"]
    ins = [h.replace("hook_scale", "hook_in") for _, _, h in scale_sites(model.sites)]
    _, cache = model.run_with_cache(toks, names_filter=ins)  # the scales unobserved: the forward NormScales saw
    for i, (_layer, _norm, hook) in enumerate(scale_sites(model.sites)):
        x = cache[ins[i]].double()
        if strategy == "pre-ln":
            x = x - x.mean(-1, keepdim=True)
        eps = model.get_submodule(hook.rpartition(".")[0]).eps
        v = (x.pow(2).mean(-1) + eps).sqrt().reshape(-1).numpy()
        row = df.iloc[i]
        assert row["mean"] == pytest.approx(v.mean(), rel=1e-5), hook
        assert row["min"] == pytest.approx(v.min(), rel=1e-6) and row["max"] == pytest.approx(v.max(), rel=1e-6)
