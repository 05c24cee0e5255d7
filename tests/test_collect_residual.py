"""ResidualStats against a brute-force float64 computation from run_with_cache, for every placement."""
import numpy as np
import pytest
import torch

import interp.zoo as zoo
from interp.collectors import ResidualStats, collect
from interp.collectors.residual import residual_sites

PLACEMENTS = ["pre-ln", "post-ln", "peri-ln", "mix-ln", "lns", "no-norm"]


def padded_tokens(seed=0, lengths=(9, 5, 7, 3), vocab=4096):
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(0, vocab, (len(lengths), max(lengths)), generator=g)
    mask = torch.zeros_like(toks, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    return toks, mask


def brute(model, toks, mask, exclude_first=False):
    """Every statistic straight from the definitions, on cached activations, in float64."""
    _, cache = model.run_with_cache(toks, attention_mask=mask)
    m = mask.clone()
    if exclude_first:
        m[:, 0] = False
    rows = {}
    for layer, site, _kind, hook in residual_sites(model.sites):
        x = cache[hook][m].double().flatten(1).numpy()  # [n, d] (QK-norm inputs [n, h, d_head]: a row per token)
        c = x - x.mean()
        norms = np.linalg.norm(x, axis=1)
        rows[(layer, site)] = dict(n_tokens=len(x), mean=x.mean(), var=x.var(), rms=np.sqrt((x ** 2).mean()),
                                   token_norm_mean=norms.mean(), token_norm_max=norms.max(),
                                   abs_max=np.abs(x).max(), kurtosis=(c ** 4).mean() / x.var() ** 2,
                                   dim_ms=(x ** 2).mean(0))
    return rows


@pytest.mark.parametrize("strategy", PLACEMENTS)
@pytest.mark.parametrize("padded", [True, False])  # unpadded batches: the CPU kernel reads the tensor in place
def test_residual_matches_brute_force(strategy, padded):
    model = zoo.build(strategy, n_layers=4, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512)
    toks, mask = padded_tokens(vocab=512)
    if not padded:
        mask[:] = True
    res = collect(model, (toks, mask), [ResidualStats()], batch_size=3, progress=False)
    ref = brute(model, toks, mask)
    df = res["residual"].set_index(["layer", "site"])
    assert len(df) == len(ref)
    for key, r in ref.items():
        got = df.loc[key]
        for col in ("n_tokens", "mean", "var", "rms", "token_norm_mean", "token_norm_max", "abs_max", "kurtosis"):
            assert got[col] == pytest.approx(r[col], rel=1e-5, abs=1e-6 * r["rms"]), (strategy, key, col)
    dims = res["residual_dims"].set_index(["layer", "site", "dim"]).sort_index()["mean_square"]
    for key, r in ref.items():
        np.testing.assert_allclose(dims.loc[key].to_numpy(), r["dim_ms"], rtol=1e-5)
    # growth: least-squares slope of ln var over the stream at depths 1..L (the block outputs)
    stream = [ref[(l, "resid_post")]["var"] for l in range(4)]
    g = res["residual_growth"].set_index("series").loc["stream"]
    assert g.slope_log_var == pytest.approx(np.polyfit(np.arange(4), np.log(stream), 1)[0], rel=1e-5, abs=1e-6)
    assert g.ratio_last_first == pytest.approx(stream[-1] / stream[0], rel=1e-5)


def test_exclude_first_drops_position_zero():
    model = zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512)
    toks, mask = padded_tokens(vocab=512)
    res = collect(model, (toks, mask), [ResidualStats()], batch_size=4, exclude_first=True, progress=False)
    ref = brute(model, toks, mask, exclude_first=True)
    df = res["residual"].set_index(["layer", "site"])
    for key, r in ref.items():
        assert df.loc[key, "n_tokens"] == r["n_tokens"]
        assert df.loc[key, "var"] == pytest.approx(r["var"], rel=1e-5)


def test_qk_norm_batch_without_a_counted_token():
    """exclude_first on a QK-norm model (per-head norm inputs [b, t, h, d_head]) where a batch has no counted
    position: max_tokens=21 cuts the third 10-token sequence to one token, alone in the second batch. That batch
    adds nothing (it crashed reshaping [0, h, d_head] into [0, -1]); the tables are those of the first two
    sequences, against brute force, and the default collectors run through it too."""
    model = zoo.build("pre-rmsnorm-qk", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512)
    g = torch.Generator().manual_seed(2)
    seqs = torch.randint(1, 512, (3, 10), generator=g).tolist()
    kw = dict(batch_size=2, max_tokens=21, exclude_first=True, progress=False)
    res = collect(model, seqs, [ResidualStats()], **kw)
    toks = torch.tensor(seqs[:2])
    ref = brute(model, toks, torch.ones_like(toks, dtype=torch.bool), exclude_first=True)
    assert any(site.startswith("norm_in:q") for _, site in ref)  # the per-head sites are there
    df = res["residual"].set_index(["layer", "site"])
    for key, r in ref.items():
        assert df.loc[key, "n_tokens"] == r["n_tokens"] == 18
        for col in ("mean", "var", "abs_max", "token_norm_max"):
            assert df.loc[key, col] == pytest.approx(r[col], rel=1e-5, abs=1e-6 * r["rms"]), (key, col)
    assert (collect(model, seqs, **kw)["residual"]["n_tokens"] == 18).all()
