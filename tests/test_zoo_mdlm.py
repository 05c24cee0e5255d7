"""The masked-diffusion presets (mdlm-tdln, mdlm-adaln, mdlm-ln) against a plain-torch forward written here from
MDLM's, DiT's, DiMR's and RoFormer's equations: bidirectional attention, [MASK] = d_vocab, rotary positions, and the
three ways t enters."""
import math

import pytest
import torch

from interp.zoo import STRATEGIES, build
from interp.zoo.conditioning import conditioning_parameters

SMALL = {"n_layers": 3, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_ctx": 12, "d_vocab": 53}
MDLM = ["mdlm-tdln", "mdlm-adaln", "mdlm-ln", "mdlm-uncond"]


def _randomize(model, seed=0):
    """Non-trivial values for every parameter that starts at a constant (norm gains, gates, adaLN-Zero's maps)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("ln", "ada_gate", "mask_embed")):
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _ln(x, eps=1e-5):
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps)


def ref_forward(model, tokens, t):
    c, sd = model.cfg, dict(model.state_dict())
    b, n = tokens.shape
    d, V = c.d_model, c.d_vocab
    is_mask = (tokens == V)[..., None]
    x = torch.where(is_mask, sd["mask_embed"], sd["embed.weight"][tokens.clamp(max=V - 1)])
    assert c.positions == "rotary" and "pos_embed.weight" not in sd  # positions enter only through q·k
    silu = lambda a: a * torch.sigmoid(a)
    lin = lambda h, p: h @ sd[p + ".weight"].T + sd[p + ".bias"]
    emb = None
    if c.t_embed != "none":  # DiT TimestepEmbedder on 1000·t: [cos, sin] of 128 frequencies 10⁴^(−k/128), unit norm
        freqs = torch.tensor([10000.0 ** (-k / 128) for k in range(128)], dtype=x.dtype)
        args = 1000 * t[:, None] * freqs
        feats = torch.cat([args.cos(), args.sin()], -1)
        feats = feats / feats.norm(dim=-1, keepdim=True)  # cos² + sin² = 1 per frequency: norm √128 before
        emb = lin(silu(lin(feats, "t_embed.mlp.0")), "t_embed.mlp.2")
        if c.t_embed == "add":
            x = x + emb[:, None]

    def N(p, h):
        if c.norm == "layernorm":
            return _ln(h) * sd[p + "w"] + sd[p + "b"]
        if c.norm == "tdln":  # DiMR: p(t) = s p0 + (1 − s) p1, s = σ((1 + w) t + b) per channel
            s = torch.sigmoid((1 + sd[p + "gate_w"]) * t[:, None, None] + sd[p + "gate_b"])  # [b, 2, d]
            gamma = s[:, 0] * sd[p + "w0"] + (1 - s[:, 0]) * sd[p + "w1"]
            beta = s[:, 1] * sd[p + "b0"] + (1 - s[:, 1]) * sd[p + "b1"]
            return _ln(h) * gamma[:, None] + beta[:, None]
        shift, scale = (silu(emb) @ sd[p + "mod_w"].T + sd[p + "mod_b"]).split(d, -1)  # adaLN: modulate(x̂)
        return _ln(h) * (1 + scale[:, None]) + shift[:, None]

    def rope(y):  # RoFormer as a complex product: channel pair (j, j + dh/2) is one number times e^{i·pos·θ_j}
        half = y.shape[-1] // 2
        theta = torch.tensor([10000.0 ** (-j / half) for j in range(half)], dtype=torch.float64)
        z = torch.complex(y[..., :half], y[..., half:]) * torch.polar(torch.ones(n, half, dtype=torch.float64),
                                                                      torch.arange(n)[:, None] * theta)
        return torch.cat([z.real, z.imag], -1)

    def attn(p, h):  # bidirectional: no mask at all
        q, k, v = lin(h, p + ".qkv").split(d, -1)
        q, k, v = (y.view(b, n, c.n_heads, -1).transpose(1, 2) for y in (q, k, v))
        q, k = rope(q), rope(k)
        z = ((q @ k.transpose(-1, -2) / math.sqrt(c.d_head)).softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
        return lin(z, p + ".out")

    def mlp(p, h):
        a = lin(h, p + ".up")
        return lin(0.5 * a * (1 + torch.erf(a / math.sqrt(2))), p + ".down")

    for l in range(c.n_layers):
        p = f"blocks.{l}."
        ga = gm = 1.0
        if c.t_embed == "adaln":  # adaLN-Zero gates
            ga, gm = (silu(emb) @ sd[p + "ada_gate_w"].T + sd[p + "ada_gate_b"])[:, None].split(d, -1)
        x = x + ga * attn(p + "attn", N(p + "ln1.", x))
        x = x + gm * mlp(p + "mlp", N(p + "ln2.", x))
    return N("ln_final.", x) @ sd["embed.weight"].T


@pytest.mark.parametrize("name", MDLM)
def test_mdlm_logits_match_brute_force(name):
    model = _randomize(build(name, **SMALL).double().eval())
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, SMALL["d_vocab"], (3, 10), generator=g)
    tokens[torch.rand(3, 10, generator=g) < 0.4] = model.cfg.mask_id  # [MASK] = d_vocab
    t = torch.tensor([0.0, 0.37, 1.0], dtype=torch.float64)
    got = model(tokens, cond=t)
    assert got.shape == (3, 10, SMALL["d_vocab"])  # [MASK] is not an output
    torch.testing.assert_close(got, ref_forward(model, tokens, t), atol=1e-9, rtol=1e-9)
    # hooking the pattern (the explicit-score path) computes the same bidirectional attention
    _, cache = model.run_with_cache(tokens, cond=t, names_filter=lambda h: h.endswith("hook_pattern"))
    torch.testing.assert_close(model.run_with_hooks(tokens, cond=t, fwd_hooks=[
        ("blocks.0.attn.hook_pattern", lambda a, hook: a)]), got)
    assert cache["blocks.0.attn.hook_pattern"][0, 0, 0, -1] > 0  # the first query sees the last key


@pytest.mark.parametrize("name", MDLM)
def test_mdlm_attention_is_bidirectional_and_respects_padding(name):
    model = _randomize(build(name, **SMALL)).eval()
    a = torch.randint(0, 53, (1, 8), generator=torch.Generator().manual_seed(2))
    b = a.clone()
    b[0, -1] = (a[0, -1] + 1) % 53
    t = torch.tensor([0.5])
    assert not torch.allclose(model(a, cond=t)[0, 0], model(b, cond=t)[0, 0])  # the last token reaches the first
    padded = torch.cat([a, torch.zeros(1, 3, dtype=torch.long)], 1)
    mask = torch.tensor([[True] * 8 + [False] * 3])
    torch.testing.assert_close(model(padded, attention_mask=mask, cond=t)[:, :8], model(a, cond=t),
                               atol=1e-5, rtol=1e-5)


def test_adaln_zero_starts_with_inert_blocks_and_an_unmodulated_final_norm():
    """DiT's adaLN-Zero: gates and modulation are zero at init, so the logits are LN(embedding) · Eᵀ for every t."""
    model = build("mdlm-adaln", **SMALL).double().eval()
    tokens = torch.randint(0, 53, (2, 7))
    x = model.embed.weight[tokens]  # rotary positions: no position embedding
    want = _ln(x) @ model.embed.weight.T
    for t in (0.0, 0.9):
        torch.testing.assert_close(model(tokens, cond=torch.tensor([t, t])), want)


def test_conditioning_parameter_counts_follow_the_architectures():
    d, L = 64, 12
    size = {"n_layers": L, "d_model": d, "n_heads": 4, "d_mlp": 256, "n_ctx": 128, "d_vocab": 4096}
    n_norms = 2 * L + 1
    counts = {n: conditioning_parameters(build(n, **size)) for n in MDLM + ["pre-ln"]}
    assert counts["mdlm-tdln"]["total"] == n_norms * 6 * d            # p1 (γ, β) + per-channel gates (slope, offset)
    t_embed = 256 * d + d + d * d + d                                  # DiT's embedder MLP
    assert counts["mdlm-ln"]["total"] == t_embed
    assert counts["mdlm-adaln"]["total"] == t_embed + n_norms * (2 * d * d + 2 * d) + L * (2 * d * d + 2 * d)
    assert counts["pre-ln"]["total"] == counts["mdlm-uncond"]["total"] == 0
    assert counts["mdlm-tdln"]["total"] <= 0.10 * counts["mdlm-adaln"]["total"]  # the claim's budget holds by design


def test_mdlm_card_and_mask_id():
    m = build("mdlm-ln", **SMALL)
    assert m.card.objective == "mdlm" and m.mask_id == SMALL["d_vocab"] == m.cfg.mask_id
    assert build("pre-ln", **SMALL).mask_id is None
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 53\]"):
        m(torch.tensor([[54]]))


def test_bad_conditioning_configs_raise_one_clear_error():
    from interp.zoo import ZooConfig
    with pytest.raises(ValueError, match="unknown objective 'mlm'"):
        ZooConfig(objective="mlm")
    with pytest.raises(ValueError, match="set conditioned=True"):
        ZooConfig(t_embed="add")
    with pytest.raises(ValueError, match="adaLN-Zero needs norm='adaln'"):
        ZooConfig(norm="adaln", conditioned=True)
    assert all(STRATEGIES[n]["objective"] == "mdlm" for n in MDLM)


@pytest.mark.parametrize("name", ["mdlm-tdln", "mdlm-adaln", "mdlm-ln", "td-ln"])
def test_cond_as_a_number_is_shared_by_the_batch_and_a_wrong_shape_is_refused(name):
    """`cond` may be a plain number (one t for every sequence): the brute-force logits of that t for each row; a
    cond with another number of values than sequences raises one line naming the shapes."""
    model = _randomize(build(name, **SMALL).double().eval())
    tokens = torch.randint(0, SMALL["d_vocab"] + 1, (2, 7), generator=torch.Generator().manual_seed(2))
    if name == "td-ln":
        tokens = tokens.clamp(max=SMALL["d_vocab"] - 1)
        expect = model(tokens, cond=torch.tensor([0.3, 0.3], dtype=torch.float64))
    else:
        expect = ref_forward(model, tokens, torch.tensor([0.3, 0.3], dtype=torch.float64))
    torch.testing.assert_close(model(tokens, cond=0.3), expect)
    for bad in (torch.tensor([0.1, 0.2, 0.3]), torch.zeros(2, 2)):
        with pytest.raises(ValueError, match=r"cond must hold one value per sequence.*2 sequences"):
            model(tokens, cond=bad)


def test_bf16_rotary_tables_are_the_true_cos_sin_rounded_once():
    """A bf16 model took the RoPE angles pos·θ_k in bf16 before cos / sin (off by up to 0.125 rad at position 127);
    the tables are now the float64 values rounded once to bf16, as MDLM's rotary code computes them in float32."""
    from interp.zoo.model import rope_tables
    half, pos = 8, torch.arange(128)
    ang = pos[:, None].double() * torch.tensor([10000.0 ** (-k / half) for k in range(half)], dtype=torch.float64)
    c, s = rope_tables(pos, 2 * half, torch.bfloat16)
    assert c.dtype == torch.bfloat16
    ulp = 2.0 ** -8  # bf16 spacing just below 1: one rounding is within half of it (one ulp allowed)
    torch.testing.assert_close(c[:, 0].double(), torch.cat([ang.cos(), ang.cos()], -1), atol=ulp, rtol=0)
    torch.testing.assert_close(s[:, 0].double(), torch.cat([-ang.sin(), ang.sin()], -1), atol=ulp, rtol=0)


def test_bf16_t_embedding_features_are_the_true_values_rounded_once():
    """A bf16 model took DiT's arguments 1000·t·f_k in bf16 before cos / sin (off by up to 2 rad near t = 1); the
    features are now the float64 values rounded once to bf16, as DiT's timestep_embedding computes them in float32."""
    from interp.zoo.conditioning import TimeEmbedding
    emb = TimeEmbedding(16).to(torch.bfloat16)
    t = torch.linspace(0, 1, 11)
    freqs = torch.tensor([10000.0 ** (-k / 128) for k in range(128)], dtype=torch.float64)
    args = 1000 * t.double()[:, None] * freqs
    ref = torch.cat([args.cos(), args.sin()], -1) / math.sqrt(128)
    got = emb.features(t)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.double(), ref, atol=2.0 ** -11, rtol=0)  # one ulp at |f| ≤ 1/√128 < 1/8
