"""Batched variants (skip-one-block, massive ablation) against the direct form: one full forward per variant,
the stream replaced by a hook inside it (the implementation the batched one replaces)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from interp import zoo
from interp.collectors import LayerEffect, MassiveActivations, collect
from interp.collectors.massive_ablation import _AblationRun
from interp.collectors.objective import is_causal, loss_terms
from interp.collectors.variants import run_variants

PLACEMENTS = ["pre-ln", "post-ln", "peri-ln", "mix-ln", "lns", "no-norm", "pre-rmsnorm", "powernorm",
              "td-ln", "mdlm-tdln", "mdlm-adaln", "mdlm-ln"]  # the last four keep per-forward conditioning state
LENGTHS = (9, 4, 7)


def padded(vocab: int, seed: int = 0, lo: int = 3):
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(lo, vocab, (len(LENGTHS), max(LENGTHS)), generator=g)
    mask = torch.zeros_like(toks, dtype=torch.bool)
    for i, n in enumerate(LENGTHS):
        mask[i, :n] = True
    return toks, mask


def replaced_forward(model, toks, mask, depth: int, x: torch.Tensor) -> torch.Tensor:
    """The model's output with the stream at `depth` (0 = input of block 0) replaced by x, in one full forward."""
    hook = model.sites.stream()[depth]
    with torch.no_grad(), model.hooks(fwd_hooks=[(hook, lambda h, hook: x)]):
        return model(toks, attention_mask=mask)


def skip_reference(model, toks, mask) -> np.ndarray:
    """Skip-one-block metric per block, one forward per block (the implementation before batching)."""
    with torch.no_grad():
        base = model(toks, attention_mask=mask)
        out = []
        for ls in model.sites.layers:
            saved = {}
            with model.hooks(fwd_hooks=[(ls.resid_pre, lambda x, hook: saved.__setitem__("x", x)),
                                        (ls.resid_post, lambda x, hook: saved["x"])]):
                o = model(toks, attention_mask=mask)
            if is_causal(model):
                out.append(loss_terms(model, o, toks, mask).double().mean().item())
            else:
                m = mask.double()[..., None]
                pool = lambda h: (h.double() * m).sum(1) / m.sum(1)
                out.append((1 - F.cosine_similarity(pool(base), pool(o), dim=-1)).mean().item())
    return np.array(out)


@pytest.mark.parametrize("strategy", PLACEMENTS)
def test_run_variants_equals_a_replaced_forward(strategy):
    model = zoo.build(strategy, n_layers=4, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=256).eval()
    toks, mask = padded(256)
    g = torch.Generator().manual_seed(3)
    variants = [(d, torch.randn(len(LENGTHS), max(LENGTHS), 32, generator=g)) for d in (3, 0, 4, 2, 2)]
    outs = run_variants(model, toks, mask, variants)
    for (d, x), out in zip(variants, outs):
        ref = replaced_forward(model, toks, mask, d, x)
        torch.testing.assert_close(out[mask], ref[mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strategy", PLACEMENTS)
def test_skip_losses_equal_one_forward_per_block_zoo(strategy):
    model = zoo.build(strategy, n_layers=4, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=256).eval()
    toks, mask = padded(256)
    res = collect(model, (toks, mask), [LayerEffect(skip=True)], batch_size=len(LENGTHS), progress=False)
    np.testing.assert_allclose(res["layer_skip"]["skipped"].to_numpy(), skip_reference(model, toks, mask), rtol=1e-5)


FAMILIES = ["llama", "qwen2", "qwen3", "gemma2", "gemma3_text", "olmo2", "gpt2", "gpt_neox", "phi", "bert", "mpnet"]


@pytest.mark.parametrize("family", FAMILIES)
def test_skip_losses_equal_one_forward_per_block_transformers(family):
    from test_models_families import V, build

    from interp.models.families import wrap
    hf, _ = build(family)
    model = wrap(hf, name=f"tiny-{family}").eval()
    toks, mask = padded(V)
    res = collect(model, (toks, mask), [LayerEffect(skip=True)], batch_size=len(LENGTHS), progress=False)
    np.testing.assert_allclose(res["layer_skip"]["skipped"].to_numpy(), skip_reference(model, toks, mask),
                               rtol=1e-5, atol=1e-7)


def test_run_variants_refuses_training_mode_and_bad_depths():
    model = zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=256)
    toks, mask = padded(256)
    x = torch.zeros(len(LENGTHS), max(LENGTHS), 32)
    with pytest.raises(ValueError, match="eval mode"):
        run_variants(model.train(), toks, mask, [(1, x)])
    with pytest.raises(ValueError, match="outside 0..2"):
        run_variants(model.eval(), toks, mask, [(3, x)])
    assert not any("forward" in m.__dict__ for m in model.modules())  # nothing left swapped


@pytest.mark.parametrize("fused", [True, False])  # the CE without logits (tail_loss) or from the logits
@pytest.mark.parametrize("strategy", ["pre-ln", "peri-ln"])
def test_batched_ablation_equals_one_forward_per_mode(strategy, fused, monkeypatch):
    import interp.collectors.tail_loss as TL
    from test_collect_massive import data, model_with_massive
    monkeypatch.setattr(TL, "FUSED", fused)
    model = model_with_massive(strategy).eval()
    toks, mask = data()
    col = MassiveActivations(abs_threshold=0.05, ratio=3.0)  # low thresholds: massive values at every depth
    collect(model, (toks, mask), [col], batch_size=3, progress=False)
    for depth in (0, 2, 3):  # the stream's first, middle and last depth
        ab = col.ablation(model, (toks, mask), depth=depth, batch_size=3).set_index("intervention")
        _, dims, mean = col.ablation_target(depth)
        for mode in ("none", "zero", "mean"):
            probe = _AblationRun(col, col.hooks_[depth], dims, mean, mode)
            from interp.collectors.driver import run_batches
            run_batches(model, (toks, mask), [probe], 3, progress=False)
            assert ab.loc[mode, "loss"] == pytest.approx(probe.loss_sum / probe.n, rel=1e-6), (depth, mode)
            assert ab.loc[mode, "n_replaced"] == probe.replaced
