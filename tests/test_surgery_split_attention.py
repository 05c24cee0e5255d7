"""split_ln1 (LN removal's ln1_qk stage) must not change the function: ln_qk and ln_v are copies of ln1, and the
split attention keeps what the zoo attention does between its projections and attend (QK-norm, RoPE, causal or
bidirectional). Reference: the unsplit model's own logits, float64."""
import copy

import pytest
import torch

import interp
from interp.surgery.remove_ln import split_ln1
from interp.surgery.split_attention import SplitInputAttention

SMALL = dict(n_layers=2, d_model=16, n_heads=2, d_mlp=32, n_ctx=12, d_vocab=40)
CASES = {"learned": ("pre-ln", {}), "qk_norm": ("pre-ln", {"qk_norm": True}),
         "rotary": ("pre-ln", {"positions": "rotary", "attn_local_init": 1.0}),
         "rotary+qk_norm": ("pre-ln", {"positions": "rotary", "qk_norm": True}),
         "mdlm-ln": ("mdlm-ln", {})}


def sharpen(m):
    """Trained-looking weights: large q/k so attention is far from uniform, QK-norm gains far from 1."""
    with torch.no_grad():
        for b in m.blocks:
            b.attn.qkv.weight.mul_(20)
            if b.attn.qk_norm:
                b.attn.q_norm.w.copy_(3 + torch.randn_like(b.attn.q_norm.w))
                b.attn.k_norm.w.copy_(3 + torch.randn_like(b.attn.k_norm.w))
    return m


@pytest.mark.parametrize("case", list(CASES))
def test_split_ln1_keeps_the_logits(case):
    name, extra = CASES[case]
    m = sharpen(interp.zoo.build(name, **SMALL, **extra).double().eval())
    tok = torch.randint(0, 40, (3, 12), generator=torch.Generator().manual_seed(1))
    kw = {}
    if m.cfg.objective == "mdlm":
        tok[:, 1::3] = m.cfg.mask_id
        kw["cond"] = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    pad = torch.ones_like(tok, dtype=torch.bool)
    pad[0, -3:] = False  # a padded row: positions and mask come from attention_mask
    s = copy.deepcopy(m)
    split_ln1(s)
    assert all(isinstance(b.attn, SplitInputAttention) for b in s.blocks)
    with torch.no_grad():
        for am in (None, pad):
            want = m(tok, attention_mask=am, **kw)
            got = s(tok, attention_mask=am, **kw)
            assert torch.allclose(got, want, rtol=1e-12, atol=1e-12), (got - want).abs().max()
        # the same scores through the hooked (non-SDPA) path, and the hook names unchanged
        _, c0 = m.run_with_cache(tok, **kw)
        _, c1 = s.run_with_cache(tok, **kw)
    for k in ("blocks.1.attn.hook_q", "blocks.1.attn.hook_k", "blocks.1.attn.hook_pattern"):
        assert torch.allclose(c1[k], c0[k], rtol=1e-12, atol=1e-12), k


def test_a_split_model_keeps_precision_emulation_and_int8_inputs():
    """The split attention applied qkv's weight rows directly, so the int8 input quantization (a pre-hook on qkv)
    and the fp16 twin's fp32-accumulate GEMM skipped the attention's projections of a model mid-LN-removal.
    Reference: the same wrapping of the unsplit model, whose function the split keeps."""
    from interp.precision.int8 import int8_linear_inputs
    from interp.precision.lowp import low_precision
    m = sharpen(interp.zoo.build("pre-ln", **SMALL).eval())
    s = copy.deepcopy(m)
    split_ln1(s)
    tok = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        with int8_linear_inputs(m, per="token"):
            want = m(tok)
        with int8_linear_inputs(s, per="token"):
            got = s(tok)
        assert not torch.allclose(want, m(tok), rtol=1e-4, atol=1e-4)  # the quantization shows in the logits
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        want16, got16 = low_precision(m, "fp16")[0](tok), low_precision(s, "fp16")[0](tok)
        torch.testing.assert_close(got16.float(), want16.float(), rtol=0, atol=0)
