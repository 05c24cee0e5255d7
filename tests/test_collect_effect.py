"""LayerEffect (angular distance, skip-one-block loss) against brute force from run_with_cache / run_with_hooks."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import interp.zoo as zoo
from interp.collectors import LayerEffect, collect

PLACEMENTS = ["pre-ln", "post-ln", "peri-ln", "mix-ln", "lns", "no-norm"]
LENGTHS = (8, 4, 6)


def data(vocab=512):
    g = torch.Generator().manual_seed(1)
    toks = torch.randint(0, vocab, (len(LENGTHS), max(LENGTHS)), generator=g)
    mask = torch.zeros_like(toks, dtype=torch.bool)
    for i, n in enumerate(LENGTHS):
        mask[i, :n] = True
    return toks, mask


def ang(a, b):
    a, b = a.double(), b.double()
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return torch.arccos(cos.clamp(-1, 1)) / np.pi


@pytest.mark.parametrize("strategy", PLACEMENTS)
def test_layer_effect_matches_brute_force(strategy):
    model = zoo.build(strategy, n_layers=4, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512)
    toks, mask = data()
    res = collect(model, (toks, mask), [LayerEffect(ns=(1, 2), skip=True)], batch_size=2, progress=False)
    _, cache = model.run_with_cache(toks, attention_mask=mask)
    stream = [cache[h] for h in model.sites.stream()]
    df = res["layer_effect"].set_index(["n", "depth"])
    for n in (1, 2):
        for l in range(len(stream) - n):
            a = ang(stream[l], stream[l + n])
            assert df.loc[(n, l), "angular_all"] == pytest.approx(a[mask].mean().item(), rel=1e-5)
            last = torch.tensor(LENGTHS) - 1
            assert df.loc[(n, l), "angular_last"] == pytest.approx(a[torch.arange(3), last].mean().item(), rel=1e-5)
    pair = mask[:, :-1] & mask[:, 1:]
    ce = lambda logits: F.cross_entropy(logits[:, :-1][pair].double(), toks[:, 1:][pair]).item()
    base = ce(model(toks, attention_mask=mask))
    skip = res["layer_skip"]
    assert skip.base.iloc[0] == pytest.approx(base, rel=1e-6)
    for l in range(4):
        logits = model.run_with_hooks(toks, attention_mask=mask, fwd_hooks=[
            (f"blocks.{l}.hook_resid_post", lambda x, hook, l=l: cache[f"blocks.{l}.hook_resid_pre"])])
        assert skip.skipped.iloc[l] == pytest.approx(ce(logits), rel=1e-6), (strategy, l)
        assert skip.increase.iloc[l] == pytest.approx(ce(logits) - base, abs=1e-6)


def test_bad_offsets():
    with pytest.raises(ValueError, match="positive"):
        LayerEffect(ns=(0,))
