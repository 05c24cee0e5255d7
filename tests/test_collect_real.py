"""The collectors on real models (MiniLM: Post-LN encoder; SmolLM2: Pre-RMSNorm LM), against brute force
from run_with_cache / run_with_hooks, and padding invariance on real tokenizers."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import interp
from interp.collectors import GradNorms, LayerEffect, MassiveActivations, NormScales, ResidualStats, collect
from interp.collectors.objective import probe
from interp.collectors.scales import scale_sites
from interp.tokenize import batch_encode
from test_collect_residual import brute as residual_brute

pytestmark = pytest.mark.slow
TEXTS = ["The cat sat on the mat.", "In the beginning God created the heaven and the earth, and it was good."]


@pytest.fixture(scope="module", params=["minilm-l6", "smollm2-135m"])
def loaded(request):
    model = interp.load_model(request.param)
    tokens, mask = batch_encode(model.tokenizer, TEXTS)
    cols = [ResidualStats(), MassiveActivations(top_k=5), LayerEffect(ns=(1,), skip=True), NormScales(),
            GradNorms()]
    res = collect(model, TEXTS, cols, batch_size=2, progress=False)
    with torch.no_grad():
        out, cache = model.run_with_cache(tokens, attention_mask=mask)
    return model, tokens, mask, out, cache, res


def test_residual(loaded):
    model, tokens, mask, _, _, res = loaded
    ref = residual_brute(model, tokens, mask)
    df = res["residual"].set_index(["layer", "site"])
    for key, r in ref.items():
        for col in ("n_tokens", "var", "rms", "token_norm_max", "abs_max", "kurtosis"):
            assert df.loc[key, col] == pytest.approx(r[col], rel=1e-4), (key, col)


def test_massive(loaded):
    model, _, mask, _, cache, res = loaded
    df = res["massive"]
    for j, h in enumerate(model.sites.stream()):
        n, top1 = 0, []
        for s in range(len(mask)):
            a = cache[h][s][mask[s]].abs()
            med = a.flatten().median()
            n += int(((a > 100) & (a >= 1000 * med)).sum())
            top1.append(a.max().item())
        assert df.n_massive.iloc[j] == n and df.top1_mean.iloc[j] == pytest.approx(np.mean(top1), rel=1e-5)


def test_layer_effect(loaded):
    model, tokens, mask, out, cache, res = loaded
    stream = [cache[h].double() for h in model.sites.stream()]
    le = res["layer_effect"]
    for l in range(len(stream) - 1):
        a, b = stream[l], stream[l + 1]
        ang = torch.arccos(F.cosine_similarity(a, b, dim=-1).clamp(-1, 1)) / np.pi
        assert le.angular_all.iloc[l] == pytest.approx(ang[mask].mean().item(), rel=1e-4)
    skip = res["layer_skip"]
    causal = model.card.objective != "encoder"
    for l in (0, model.card.n_layers - 1):
        with torch.no_grad():
            o = model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=[
                (f"blocks.{l}.hook_resid_post", lambda x, hook, l=l: cache[f"blocks.{l}.hook_resid_pre"])])
        if causal:
            pair = mask[:, :-1] & mask[:, 1:]
            ref = F.cross_entropy(o[:, :-1][pair], tokens[:, 1:][pair]).item()
        else:
            m = mask[..., None].double()
            pool = lambda h: (h.double() * m).sum(1) / m.sum(1)
            ref = (1 - F.cosine_similarity(pool(out), pool(o), dim=-1)).mean().item()
        assert skip.skipped.iloc[l] == pytest.approx(ref, rel=1e-4, abs=1e-7), l


def test_norm_scales(loaded):
    model, _, mask, _, cache, res = loaded
    df = res["norm_scales"]
    sites = scale_sites(model.sites)
    assert len(df) == len(sites) > 0
    for i, (_, _, hook) in enumerate(sites):
        v = cache[hook][mask].double()
        assert df["mean"].iloc[i] == pytest.approx(v.mean().item(), rel=1e-5)
        assert df["max"].iloc[i] == pytest.approx(v.max().item(), rel=1e-5)


def test_grad_norms_stream(loaded):
    model, tokens, mask, _, _, res = loaded
    kept = {}

    def keep(x, hook):
        x.retain_grad()
        kept[hook.name] = x

    stream = model.sites.stream()
    out = model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=[(h, keep) for h in stream])
    if model.card.objective == "encoder":
        m = mask[..., None].float()
        loss = (((out * m).sum(1) / m.sum(1)) @ probe(out.shape[-1]).float()).sum()
    else:
        pair = mask[:, :-1] & mask[:, 1:]
        loss = F.cross_entropy(out[:, :-1][pair], tokens[:, 1:][pair], reduction="sum")
    loss.backward()
    model.zero_grad(set_to_none=True)
    g = res["grad_norms"]
    g = g[g.kind == "stream"].reset_index(drop=True)
    for j in (0, len(stream) // 2, len(stream) - 1):
        ref = kept[stream[j]].grad[mask].double().norm(dim=-1).mean().item()
        assert g["mean"][j] == pytest.approx(ref, rel=1e-3), stream[j]
    p = res["grad_norms"].query("kind == 'param'")
    assert len(p) == model.card.n_layers and (p["mean"] > 0).all()


def test_padding_invariance(loaded):
    model, *_ = loaded
    cols = lambda: [ResidualStats(), LayerEffect(skip=False)]
    a = collect(model, TEXTS, cols(), batch_size=2, progress=False)
    b = collect(model, TEXTS, cols(), batch_size=1, progress=False)
    for name in ("residual", "layer_effect"):
        for c in a[name].columns:
            if a[name][c].dtype.kind == "f":
                np.testing.assert_allclose(a[name][c], b[name][c], rtol=1e-4, atol=1e-6, err_msg=f"{name}.{c}")
