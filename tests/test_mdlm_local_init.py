"""attn_local_init: MDLM models built with it start with local attention (ZooConfig docstring says why).

The MDLM presets set c = 1.0. Reference: the content-independent logit that q = k = c·1 gives under RoPE, computed here from RoPE's definition
(pair k of a head rotated by δ·base^(−k/half)): (c²/√d_head)·Σ_k 2·cos(δ·θ_k). Its softmax over the keys predicts
how much of a query's attention falls within two positions of it; the model at init (content terms from
N(0, 0.02²) weights are small) must match that prediction, and without the init attention is uniform."""
import math

import pytest
import torch

from interp.zoo import build
from interp.zoo.config import ZooConfig

T, SIZE = 128, dict(n_layers=2, d_model=64, n_heads=4, d_mlp=128, n_ctx=128, d_vocab=256)


def near_mass(pattern: torch.Tensor, radius: int = 2) -> float:
    """Mean over queries 16..T−17 (away from the edges) of the attention within |δ| ≤ radius. pattern [.., T, T]."""
    i = torch.arange(T)
    near = (i[:, None] - i[None]).abs() <= radius
    mass = (pattern * near).sum(-1)          # [..., T]
    return float(mass[..., 16:T - 16].mean())


def reference_mass(c: float, d_head: int, radius: int = 2, base: float = 10_000.0) -> float:
    half = d_head // 2
    theta = [base ** (-k / half) for k in range(half)]
    q = T // 2
    logits = torch.tensor([(c * c / math.sqrt(d_head)) * sum(2 * math.cos((j - q) * th) for th in theta)
                           for j in range(T)], dtype=torch.float64)
    p = logits.softmax(0)
    return float(sum(p[j] for j in range(T) if abs(j - q) <= radius))


def first_layer_pattern(model) -> torch.Tensor:
    got = []
    model.blocks[0].attn.hook_pattern.add_hook(lambda p, hook: got.append(p.detach()) or p)
    tokens = torch.randint(0, SIZE["d_vocab"], (4, T), generator=torch.Generator().manual_seed(0))
    tokens[:, 1::3] = model.cfg.mask_id  # a third of the positions masked
    with torch.no_grad():
        model(tokens, cond=torch.full((4,), 0.3)) if model.cfg.conditioned else model(tokens)
    model.reset_hooks()
    return got[0]


@pytest.mark.parametrize("strategy", ["mdlm-ln", "mdlm-tdln", "mdlm-adaln", "mdlm-uncond"])
def test_mdlm_presets_start_with_local_attention(strategy):
    torch.manual_seed(0)
    model = build(strategy, seed=0, **SIZE).eval()
    c = model.cfg.attn_local_init
    assert c > 0, f"{strategy}: the preset sets no local-attention init"
    ref = reference_mass(c, model.cfg.d_head)
    assert ref > 3 * 5 / T, "the reference itself: far more mass within two positions than uniform attention"
    got = near_mass(first_layer_pattern(model))
    assert abs(got - ref) < 0.1, f"{strategy}: attention within |δ| ≤ 2 is {got:.3f}; RoPE reference {ref:.3f}"


def test_without_the_init_attention_starts_uniform():
    model = build("mdlm-ln", seed=0, **SIZE, attn_local_init=0.0).eval()
    got = near_mass(first_layer_pattern(model))
    assert abs(got - 5 / T) < 0.02, f"attention within |δ| ≤ 2 is {got:.3f}; uniform is {5 / T:.3f}"


@pytest.mark.parametrize("bad", [dict(attn_local_init=-1.0, positions="rotary"),
                                 dict(attn_local_init=1.0, positions="learned"),
                                 dict(attn_local_init=1.0, positions="rotary", bias=False)])
def test_attn_local_init_needs_rotary_positions_and_biases(bad):
    with pytest.raises(ValueError, match="attn_local_init"):
        ZooConfig(**bad)
