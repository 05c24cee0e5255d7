"""interp.models.norm_hooks: the scale and the rebuilt output keep a float64 model's precision (float32 otherwise)."""
from __future__ import annotations

import pytest
import torch

from interp.models.families import wrap

V = 64


def tiny(model_type: str, dtype: torch.dtype):
    """A tiny random transformers causal LM of the family, in `dtype`, wrapped; norm gains and biases randomized."""
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = AutoConfig.for_model(model_type, vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                               num_key_value_heads=2, intermediate_size=64, max_position_embeddings=32, n_embd=32,
                               n_layer=1, n_head=4, n_positions=32)
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").to(dtype).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name.lower() or ".ln" in name:
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    return wrap(hf, name=f"tiny-{model_type}")


def brute(x: torch.Tensor, kind: str, eps: float, w: torch.Tensor | None, b: torch.Tensor | None):
    """The norm's scale and output, in float64, written out from its definition."""
    x = x.double()
    c = x - x.mean(-1, keepdim=True) if kind == "layernorm" else x
    s = (c.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    g = None if w is None else (1.0 + w.double() if kind == "rmsnorm1p" else w.double())
    y = c / s * (1 if g is None else g) + (0 if b is None else b.double())
    return s, y


@pytest.mark.parametrize("model_type", ["llama", "gemma", "gpt2"])
def test_float64_scale_and_output_match_brute_force(model_type):
    """A float64 model: hook_scale, normalize and from_scale agree with the float64 formula to ~1e-13 (computing
    in float32 left ~1e-7), and a scale edit written back keeps float64 precision."""
    m = tiny(model_type, torch.float64)
    tokens = torch.randint(3, V, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, cache = m.run_with_cache(tokens)
    hin = m.sites.layers[0].norm_inputs["ln1"]
    path = hin.rsplit(".", 1)[0]
    h = m.get_submodule(path)
    x = cache[hin]
    s_ref, y_ref = brute(x, h.kind, h.eps, h.weight, h.bias)
    s = cache[f"{path}.hook_scale"]
    assert s.dtype == torch.float64
    assert torch.allclose(s, s_ref, rtol=1e-13, atol=0), (s - s_ref).abs().max()
    assert torch.allclose(h.normalize(x), y_ref, rtol=0, atol=1e-12)
    assert torch.allclose(h.from_scale(x, 2 * s_ref), brute(x, h.kind, h.eps, h.weight, None)[1] / 2
                          + (0 if h.bias is None else h.bias), rtol=0, atol=1e-12)
    with torch.no_grad():  # a hook that returns a new scale: the module's output is rebuilt from it, in float64
        seen = {}
        m.run_with_hooks(tokens, fwd_hooks=[(f"{path}.hook_scale", lambda t, hook: t * 2),
                                            (f"{path}.hook_normalized", lambda t, hook: seen.setdefault("y", t))])
    y_half = (y_ref - (0 if h.bias is None else h.bias)) / 2 + (0 if h.bias is None else h.bias)
    assert torch.allclose(seen["y"], y_half, rtol=0, atol=1e-12)


def test_float32_scale_stays_float32():
    """A float32 (or half) input: the statistic is computed in float32, as before."""
    m = tiny("llama", torch.float32)
    h = m.get_submodule(m.sites.layers[0].norm_inputs["ln1"].rsplit(".", 1)[0])
    x = torch.randn(2, 3, 32)
    assert h.scale(x).dtype == torch.float32 and h.scale(x.half()).dtype == torch.float32
    assert h.from_scale(x, h.scale(x)).dtype == torch.float32
    s_ref, _ = brute(x, h.kind, h.eps, None, None)
    assert torch.allclose(h.scale(x).double(), s_ref, rtol=1e-6)
