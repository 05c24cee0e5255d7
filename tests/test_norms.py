"""Norm modules against their papers' equations, written out here in plain torch."""
import math

import pytest
import torch

from interp.norms import NORMS, FakeLN, LayerNorm, PowerNorm, TDLayerNorm, UnifiedNorm, make_norm

EPS = 1e-5


def test_layernorm_matches_torch_and_exposes_tl_scale():
    ln = LayerNorm(10).double()
    with torch.no_grad():
        ln.w.uniform_(0.5, 2)
        ln.b.uniform_(-1, 1)
    x = torch.randn(3, 4, 10, dtype=torch.float64) * 5 + 2
    seen = {}
    ln.hook_scale.add_hook(lambda t, hook: seen.setdefault("scale", t))
    y = ln(x)
    torch.testing.assert_close(y, torch.nn.functional.layer_norm(x, (10,), ln.w, ln.b, EPS))
    torch.testing.assert_close(seen["scale"], (x.var(-1, unbiased=False, keepdim=True) + EPS).sqrt())


@pytest.mark.parametrize("groups", [1, 4])
def test_powernorm_group_scaling_follows_groupscaling1d(groups):
    """GroupScaling1D of the authors' MaskPowerNorm, written as in their code ([T, B, C] layout, repeat_interleave)."""
    T, B, C = 5, 3, 16
    x = torch.randn(T, B, C, dtype=torch.float64) * 3 + 1
    cg = C // groups
    moment2 = torch.repeat_interleave((x.reshape(T, B, groups, cg) ** 2).mean(3, keepdim=True), cg, -1).reshape(T, B, C)
    ref = x / torch.sqrt(moment2 + EPS)
    pn = PowerNorm(C, group_num=groups).double().eval()  # eval: divide by running ψ² = 1, w = 1, b = 0
    y = pn(x.transpose(0, 1)).transpose(0, 1)
    torch.testing.assert_close(y, ref / math.sqrt(1 + EPS), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="group_num"):
        PowerNorm(C, group_num=3)


def test_zoo_powernorm_uses_one_group_per_head():
    from interp.zoo import strategy_config
    assert strategy_config("powernorm", n_heads=4).norm_kwargs["group_num"] == 4
    assert strategy_config("powernorm", n_heads=2, norm_kwargs={"group_num": 1}).norm_kwargs["group_num"] == 1


def test_powernorm_approximate_backward_follows_maskpowernorm():
    """Gradient: g − (1 − α_bkw)·ema_gz·z over the batch scale; ema_gz accumulates mean(approx·z)."""
    torch.manual_seed(0)
    d, abkw = 6, 0.9
    pn = PowerNorm(d, warmup_iters=100, alpha_bkw=abkw, group_scaling=False).double()
    with torch.no_grad():
        pn.ema_gz.fill_(0.25)
    x = torch.randn(3, 5, d, dtype=torch.float64, requires_grad=True)
    g_out = torch.randn(3, 5, d, dtype=torch.float64)
    pn.train()
    pn(x).backward(g_out)
    x2 = x.detach().pow(2).mean((0, 1))
    z = x.detach() / (x2 + EPS).sqrt()
    g = g_out * pn.w.detach()
    approx = g - (1 - abkw) * 0.25 * z
    torch.testing.assert_close(x.grad, approx / (x2 + EPS).sqrt())
    torch.testing.assert_close(pn.ema_gz, 0.25 + (approx * z).mean((0, 1)))
    # the exact gradient differs (the approximation is real, not a relabelled autograd)
    xe = x.detach().clone().requires_grad_(True)
    ((xe / (xe.pow(2).mean((0, 1)) + EPS).sqrt()) * pn.w.detach()).backward(g_out)
    assert not torch.allclose(xe.grad, x.grad)


def test_powernorm_running_phi_is_cumulative_in_warmup_then_ema():
    d = 4
    pn = PowerNorm(d, warmup_iters=3, alpha_fwd=0.9, group_scaling=False).double().train()
    phi = torch.ones(d, dtype=torch.float64)
    xs = [torch.randn(2, 3, d, dtype=torch.float64) * (i + 1) for i in range(5)]
    for it, x in enumerate(xs, start=1):
        y = pn(x)
        x2 = x.pow(2).mean((0, 1))
        used = x2 if it <= 3 else phi.clone()  # batch ψ² during warm-up, then the running ψ²
        torch.testing.assert_close(y, x / (used + EPS).sqrt())
        if it < 3:
            phi = phi * (it - 1) / it + x2 / it
        phi = 0.9 * phi + 0.1 * x2
        torch.testing.assert_close(pn.running_phi, phi)


def test_unified_uses_geometric_mean_of_window_after_warmup():
    d, win = 3, 2
    un = UnifiedNorm(d, window=win, warmup_iters=3, momentum=0.9).double().train()
    hist = []
    for it in range(1, 7):
        x = torch.randn(2, 4, d, dtype=torch.float64) * it
        x2 = x.pow(2).mean((0, 1))
        hist.append(x2)
        y = un(x)
        if it <= win or it < 3:
            var = x2
        else:  # the buffer holds the last `win` statistics
            var = torch.exp(torch.log(torch.stack(hist[-win:])).mean(0))
        torch.testing.assert_close(y, x / (var + EPS).sqrt())


def test_fakeln_uses_frozen_scale_and_separate_position_zero():
    f = FakeLN(5, scale=2.0, scale_pos0=10.0).double()
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    xc = x - x.mean(-1, keepdim=True)
    y = f(x)
    torch.testing.assert_close(y[:, 1:], xc[:, 1:] / 2.0)
    torch.testing.assert_close(y[:, :1], xc[:, :1] / 10.0)
    assert not any(p.requires_grad and n.startswith("scale") for n, p in f.named_parameters())


def test_tdln_interpolates_parameters_with_per_channel_sigmoid_gates():
    """DiMR's TimeDependentParameter: p(t) = s·p0 + (1 − s)·p1, s = σ((1 + w)·t + b) for every channel."""
    n = TDLayerNorm(4).double()
    with torch.no_grad():
        n.w0.fill_(1.0), n.w1.fill_(3.0), n.b0.fill_(0.0), n.b1.fill_(1.0)
        n.gate_w.copy_(torch.tensor([[1.0, 1.0, 1.0, 0.0], [-2.0, -2.0, -2.0, -2.0]]))  # slopes 2, 2, 2, 1 and −1
        n.gate_b.copy_(torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]))
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    n.cond = torch.tensor([0.0, 1.0], dtype=torch.float64)
    normed = torch.nn.functional.layer_norm(x, (4,), eps=EPS)
    for i, t in enumerate([0.0, 1.0]):
        sig = lambda a: 1 / (1 + math.exp(-a))
        s_g = torch.tensor([sig(2 * t + 0.5)] * 3 + [sig(t + 0.5)], dtype=torch.float64)
        s_b = sig(-t)
        expect = normed[i] * (s_g * 1 + (1 - s_g) * 3) + (1 - s_b) * 1
        torch.testing.assert_close(n(x)[i], expect)


def test_make_norm_unknown_kind_names_choices():
    with pytest.raises(ValueError, match="choose one of: " + ", ".join(NORMS)):
        make_norm("groupnorm", 8)


@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_fused_path_matches_the_hooked_path_on_another_input_dtype(kind, dtype):
    """A float32 norm fed float64 (or bfloat16) gives the same output, dtype included, whether or not hook_scale is
    hooked; float64 input equals the float64 brute force of the paper's formula (it crashed unhooked)."""
    n = make_norm(kind, 8)
    with torch.no_grad():
        n.w.uniform_(0.5, 2)
        if kind == "layernorm":
            n.b.uniform_(-1, 1)
    x = (torch.randn(2, 3, 8, dtype=torch.float64) * 4 + 1).to(dtype)
    plain = n(x)
    n.hook_scale.add_hook(lambda t, hook: t)
    hooked = n(x)
    assert plain.dtype == hooked.dtype
    torch.testing.assert_close(plain, hooked)
    if dtype == torch.float64:
        w = n.w.detach().double()
        xc = x - x.mean(-1, keepdim=True) if kind == "layernorm" else x
        ref = xc / (xc.pow(2).mean(-1, keepdim=True) + EPS).sqrt() * w
        ref = ref + n.b.detach().double() if kind == "layernorm" else ref
        torch.testing.assert_close(plain, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm", "crmsnorm", "powernorm", "unified", "tdln", "fakeln"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gain_free_value_is_hook_in_over_hook_scale_as_docs_hooks_says(kind, mode):
    """docs/hooks.md: (hook_normalized − β) / γ = centre(hook_in) / hook_scale (centre for LayerNorm-type norms
    only); for PowerNorm GS(hook_in) / hook_scale, GS dividing each channel group of a token by its RMS."""
    d = 8
    n = make_norm(kind, d, **({"group_num": 2} if kind == "powernorm" else {})).double()
    getattr(n, mode)()
    with torch.no_grad():
        for name in ("running_phi", "running_var"):
            if hasattr(n, name):
                getattr(n, name).uniform_(0.5, 2)
    seen = {}
    for h in ("hook_in", "hook_scale", "hook_normalized"):
        getattr(n, h).add_hook(lambda t, hook, h=h: seen.__setitem__(h, t.detach()))
    x = torch.randn(2, 5, d, dtype=torch.float64) * 3 + 1
    n(x)
    x = seen["hook_in"]
    if kind in ("layernorm", "tdln", "fakeln"):
        x = x - x.mean(-1, keepdim=True)
    if kind == "powernorm":
        x = torch.cat([c / (c.pow(2).mean(-1, keepdim=True) + EPS).sqrt() for c in x.chunk(2, -1)], -1)
    gamma, beta = ([p[:, None] for p in n.params(torch.zeros(2, dtype=torch.float64))] if kind == "tdln"
                   else (n.w, getattr(n, "b", None)))  # TD-LN: γ(t), β(t) [b, 1, d] at t = 0 (cond unset)
    gain_free = (seen["hook_normalized"] - (0 if beta is None else beta.detach())) / gamma.detach()
    torch.testing.assert_close(gain_free, x / seen["hook_scale"], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind,kwargs,match", [
    ("unified", {"window": 0}, "window=0"),
    ("unified", {"momentum": 1.5}, "momentum=1.5"),
    ("unified", {"warmup_iters": "200"}, "warmup_iters='200'"),
    ("powernorm", {"alpha_fwd": -0.1}, "alpha_fwd=-0.1"),
    ("powernorm", {"warmup_iters": 2.5}, "warmup_iters=2.5"),
])
def test_batch_norm_options_out_of_range_are_refused_when_built(kind, kwargs, match):
    """window=0 divided by zero, a string warmup failed a comparison, only at the first training step; now the
    constructor (and so ZooConfig's model) refuses them in one line."""
    with pytest.raises(ValueError, match=match) as e:
        make_norm(kind, 8, **kwargs)
    assert "\n" not in str(e.value)
    make_norm(kind, 8, warmup_iters=0).train()(torch.randn(2, 3, 8))  # the edges are valid


@pytest.mark.parametrize("cls", [PowerNorm, UnifiedNorm])
def test_an_all_padding_training_batch_is_refused_before_the_statistics_move(cls):
    """The mean over no real tokens is NaN: it went into the running statistic, which then stayed NaN for good."""
    norm = cls(8).train()
    before = {k: v.clone() for k, v in norm.named_buffers()}
    norm.token_mask = torch.zeros(2, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="no real tokens"):
        norm(torch.randn(2, 5, 8))
    for k, v in norm.named_buffers():
        assert torch.equal(v, before[k]), k
    norm.token_mask = torch.tensor([[True] * 5, [False] * 5])   # half a batch of padding is fine
    norm(torch.randn(2, 5, 8))
    assert all(torch.isfinite(v.float()).all() for v in norm.buffers())


@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_hooking_the_scale_of_a_low_precision_norm_does_not_change_its_output(kind, dtype):
    """A bf16 / fp16 norm: the hooked path computed its statistics in the low format (bf16: ~40 % of outputs off by
    an ulp; fp16: x² overflowed above 256, every token came out 0), the fused kernel in float32. Both now give the
    float64 formula rounded once to the format (but for a rare tie of rounding)."""
    torch.manual_seed(0)
    n = make_norm(kind, 64)
    with torch.no_grad():
        n.w.uniform_(0.5, 2)
        if kind == "layernorm":
            n.b.uniform_(-1, 1)
    n = n.to(dtype)
    x = (torch.randn(4, 16, 64, dtype=torch.float64) * 300 + 5).to(dtype)
    w = n.w.detach().double()
    xc = x.double() - x.double().mean(-1, keepdim=True) if kind == "layernorm" else x.double()
    ref = xc / (xc.pow(2).mean(-1, keepdim=True) + EPS).sqrt() * w
    ref = (ref + n.b.detach().double() if kind == "layernorm" else ref).to(dtype)
    seen = []
    n.hook_scale.add_hook(lambda t, hook: seen.append(t))
    hooked = n(x)
    assert hooked.dtype == dtype and seen[0].dtype == torch.float32
    assert (hooked != ref).float().mean() < 1e-3
    torch.testing.assert_close(hooked, ref, rtol=2 ** -7, atol=0)
    torch.testing.assert_close(seen[0].double(), (xc.pow(2).mean(-1, keepdim=True) + EPS).sqrt(), rtol=1e-6, atol=0)
