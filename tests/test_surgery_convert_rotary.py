"""Pre-LN -> Pre-RMSNorm / Pre-CRMSNorm on rotary and masked-diffusion (MDLM) zoo models: the same logits in float64
as the unconverted model's own forward ([MASK] inputs and the time t included), or one clear refusal."""
import pytest
import torch

import interp
from interp.data import DATA_DIR
from interp.surgery import to_crmsnorm, to_rmsnorm

SMALL = dict(n_layers=2, d_model=16, n_heads=2, d_mlp=32, n_ctx=12, d_vocab=40, init_std=0.3)
TOK = torch.randint(0, 40, (3, 12), generator=torch.Generator().manual_seed(0))
COND = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)


def build(name, **extra):
    m = interp.zoo.build(name, **SMALL, **extra).double().eval()
    with torch.no_grad():  # gains, biases, [MASK] and the t-embedder far from their init, with a mean to remove
        for n, p in m.named_parameters():
            p.add_((0.4 if n.endswith(".w") else 0.2) * torch.randn_like(p) + (0.3 if "embed" in n else 0))
    return m


def inputs(m):
    if m.cfg.objective != "mdlm":
        return TOK, {}
    tok = TOK.clone()
    tok[:, 1::3] = m.cfg.mask_id
    return tok, {"cond": COND} if m.cfg.conditioned else {}


def same(m, conv):
    tok, kw = inputs(m)
    with torch.no_grad():
        want = m(tok, **kw)
        new = conv(m)
        got = new(tok, **kw)
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-11), (got - want).abs().max()
    return new


@pytest.mark.parametrize("extra", [{"positions": "rotary", "attn_local_init": 1.0},
                                   {"positions": "rotary", "qk_norm": True}])
def test_rotary_pre_ln(extra):
    m = build("pre-ln", **extra)
    r, c = same(m, to_rmsnorm), same(m, to_crmsnorm)
    assert r.cfg.positions == c.cfg.positions == "rotary" and c.cfg.d_model == 15


def test_mdlm_with_t_embedder_to_rmsnorm_and_zero_mean_stream():
    m = build("mdlm-ln")
    r = same(m, to_rmsnorm)
    tok, kw = inputs(m)
    _, cache = r.run_with_cache(tok, **kw)  # every write into the stream is mean-free: the stream is too
    for k in ("hook_embed", "blocks.0.hook_resid_pre", "blocks.1.hook_resid_post"):
        assert cache[k].mean(-1).abs().max() < 1e-12, k
    with pytest.raises(ValueError, match="timestep embedder.*use to_rmsnorm"):
        to_crmsnorm(m)


def test_mdlm_without_t_embedder_both_ways():
    m = build("mdlm-uncond")
    same(m, to_rmsnorm)
    assert same(m, to_crmsnorm).mask_embed.shape == (15,)


def test_shipped_mdlm_ln():
    m = interp.zoo.load(DATA_DIR / "zoo" / "mdlm-ln", dtype=torch.float64).eval()
    tok = torch.randint(0, m.cfg.d_vocab, (2, 24), generator=torch.Generator().manual_seed(1))
    tok[:, 2::2] = m.cfg.mask_id
    with torch.no_grad():
        want = m(tok, cond=torch.tensor([0.3, 0.7], dtype=torch.float64))
        got = to_rmsnorm(m)(tok, cond=torch.tensor([0.3, 0.7], dtype=torch.float64))
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-10), (got - want).abs().max()
