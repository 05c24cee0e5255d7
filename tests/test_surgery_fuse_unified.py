"""fuse_unified: the norm-free model computes the eval-mode Unified Norm model's logits (float64 forward of the
original is the reference), also for a model built without biases."""
import pytest
import torch

from interp import zoo
from interp.surgery.fuse_unified import fuse_unified

TINY = dict(n_layers=2, d_model=16, n_heads=2, d_mlp=32, n_ctx=12, d_vocab=40)


def trained_looking(m, g: torch.Generator):
    """`m` in float64 eval mode with every Unified Norm's statistics and gains far from (1, 1, 0), so the folded
    biases W·b are non-zero."""
    with torch.no_grad():
        for mod in m.modules():
            if hasattr(mod, "running_var"):
                mod.running_var.copy_(torch.rand(mod.d, generator=g) * 3 + 0.1)
                mod.w.copy_(torch.randn(mod.d, generator=g))
                mod.b.copy_(torch.randn(mod.d, generator=g))
    return m.double().eval()


def test_fused_unified_norm_equals_the_eval_model():
    g = torch.Generator().manual_seed(0)
    m = trained_looking(zoo.build("unified-norm", seed=1, **{**TINY, "n_layers": 3, "d_vocab": 128}), g)
    toks = torch.randint(0, 128, (3, 12), generator=g)
    fused = fuse_unified(m)
    assert fused.cfg.placement == "none" and not any(hasattr(x, "running_var") for x in fused.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused(toks), m(toks), rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="Unified Norm"):
        fuse_unified(zoo.build("pre-ln", **TINY))


def test_fuse_a_bias_free_model():
    g = torch.Generator().manual_seed(0)
    m = trained_looking(zoo.build("unified-norm", bias=False, **TINY), g)
    toks = torch.randint(0, 40, (3, 12), generator=g)
    fused = fuse_unified(m)
    with torch.no_grad():
        torch.testing.assert_close(fused(toks), m(toks), rtol=1e-10, atol=1e-10)


def test_fuse_keeps_an_existing_unembedding_bias():
    m = zoo.build("unified-norm", unembed_bias=True, **TINY).double().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        m.unembed.bias.copy_(torch.randn(40, generator=g))
        toks = torch.randint(0, 40, (3, 12), generator=g)
        torch.testing.assert_close(fuse_unified(m)(toks), m(toks), rtol=1e-10, atol=1e-10)
