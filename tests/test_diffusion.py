"""interp.diffusion: γ(t), β(t) read off the conditioned norms, checked against what the model's own forward does
with them; the fixed-noise-level wrapper against masks and conditioning seen inside the forward."""
import pytest
import torch

import interp.collectors as C
from interp.diffusion import at_noise_level, collect_over_t, norm_motion, norm_params_over_t
from interp.zoo import build

TINY = {"n_layers": 2, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_ctx": 12, "d_vocab": 29}


def _model(name):
    m = build(name, **TINY).double().eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if any(k in n for k in ("ln", "ada_gate", "mask_embed")):
                p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


@pytest.mark.parametrize("name", ["mdlm-tdln", "mdlm-adaln"])
def test_norm_params_reproduce_each_norms_output_in_the_forward(name):
    """For every conditioned norm and t: its output in the model's forward = LN(its input)·γ(t) + β(t), with γ, β
    taken from the frame (the model computes adaLN's conditioning vector itself)."""
    model = _model(name)
    ts = (0.0, 0.3, 1.0)
    frame = norm_params_over_t(model, ts)
    assert frame["norm"].nunique() == 2 * TINY["n_layers"] + 1
    tokens = torch.randint(0, 29, (3, 9), generator=torch.Generator().manual_seed(1))
    _, cache = model.run_with_cache(tokens, cond=torch.tensor(ts, dtype=torch.float64))
    for norm, g in frame.groupby("norm"):
        x, y = cache[f"{norm}.hook_in"], cache[f"{norm}.hook_normalized"]
        for i, t in enumerate(ts):
            r = g[g["t"] == t].sort_values("channel")
            gamma, beta = (torch.tensor(r[k].to_numpy()) for k in ("gamma", "beta"))
            want = torch.nn.functional.layer_norm(x[i], (TINY["d_model"],), eps=1e-5) * gamma + beta
            torch.testing.assert_close(y[i], want)


def test_norm_motion_is_the_channel_rms_of_the_range_over_t():
    frame = norm_params_over_t(_model("mdlm-tdln"), (0.0, 0.5, 1.0))
    mo = norm_motion(frame).set_index("norm")
    g = frame[frame["norm"] == "blocks.1.ln2"].pivot(index="channel", columns="t", values="gamma")
    want = float(((g.max(axis=1) - g.min(axis=1)) ** 2).mean() ** 0.5)
    assert mo.loc["blocks.1.ln2", "gamma_range"] == pytest.approx(want, rel=1e-12)
    assert mo["gamma_range"].gt(0).all()  # randomized end points: every norm moves with t


def test_norm_motion_is_in_depth_order_whatever_the_row_order():
    """Rows shuffled (a frame read back or concatenated): the summary is still ln1, ln2 of block 0, 1, ... (numeric,
    block 10 after block 2), ln_final last, with each norm's own numbers."""
    frame = norm_params_over_t(build("mdlm-tdln", **{**TINY, "n_layers": 11}).double(), (0.0, 1.0))
    shuffled = frame.sample(frac=1, random_state=3).reset_index(drop=True)
    mo = norm_motion(shuffled)
    want = [f"blocks.{i}.ln{j}" for i in range(11) for j in (1, 2)] + ["ln_final"]
    assert mo["norm"].tolist() == want
    assert mo["layer"].tolist() == [i for i in range(11) for _ in (1, 2)] + [11]
    ref = norm_motion(frame).set_index("norm")["gamma_rms"]
    assert mo.set_index("norm")["gamma_rms"].equals(ref.loc[want])


def test_a_model_without_conditioned_norms_gives_an_empty_frame():
    assert norm_params_over_t(_model("mdlm-ln")).empty


def test_at_noise_level_masks_at_rate_t_conditions_on_t_and_restores_the_forward():
    model = _model("mdlm-ln")
    tokens = torch.randint(0, 29, (64, 12), generator=torch.Generator().manual_seed(2))
    seen = {}
    model.hook_embed.add_hook(lambda x, hook: seen.__setitem__("embed", x.detach()))
    model.hook_t_embed.add_hook(lambda x, hook: seen.__setitem__("t_embed", x.detach()))
    with at_noise_level(model, 1.0):
        model(tokens)
        torch.testing.assert_close(seen["embed"][:, 1:], model.mask_embed.detach().expand(64, 11, -1))
        torch.testing.assert_close(seen["embed"][:, 0], model.embed.weight[tokens[:, 0]].detach())
        torch.testing.assert_close(seen["t_embed"][0], model.t_embed(torch.tensor([1.0], dtype=torch.float64))[0])
        with pytest.raises(ValueError, match="fixed noise level"):
            model(tokens, cond=torch.zeros(64))
    many = torch.randint(0, 29, (512, 12), generator=torch.Generator().manual_seed(3))
    with at_noise_level(model, 0.3, seed=5):
        model(many)
        masked = (seen["embed"] == model.mask_embed.detach()).all(-1)  # 5632 Bernoulli(0.3): sd 0.006
        assert abs(masked[:, 1:].double().mean().item() - 0.3) < 0.03 and not masked[:, 0].any()
    assert "forward" not in vars(model)  # the class's forward again
    model.reset_hooks()


def test_at_noise_level_refuses_nesting_and_keeps_a_forward_set_on_the_instance():
    """A second block inside the first is refused with one line, and the outer block still masks afterwards; a
    forward the caller had set on the instance is the forward again after the block (not the class's)."""
    model = _model("mdlm-ln")
    tokens = torch.randint(0, 29, (4, 12), generator=torch.Generator().manual_seed(2))
    seen = []
    model.hook_embed.add_hook(lambda x, hook: seen.append(x.detach()))
    with at_noise_level(model, 1.0):
        with pytest.raises(ValueError, match="already runs at the fixed noise level t = 1.0"):
            with at_noise_level(model, 0.5):
                pass
        model(tokens)
        torch.testing.assert_close(seen[-1][:, 1:], model.mask_embed.detach().expand(4, 11, -1))
    assert "forward" not in vars(model)
    model.reset_hooks()
    calls = []
    plain = model.forward
    model.forward = lambda *a, **k: calls.append(1) or plain(*a, **k)
    mine = model.forward
    with at_noise_level(model, 0.5):
        model(tokens)
    assert model.forward is mine and calls == [1]


def test_collect_at_t0_equals_a_plain_collect_and_t_changes_the_statistics():
    model = _model("mdlm-tdln")
    tokens = torch.randint(0, 29, (8, 12), generator=torch.Generator().manual_seed(3))
    over = collect_over_t(model, tokens, (0.0, 0.7), progress=False)
    plain = C.collect(model, tokens, collectors=[C.ResidualStats(), C.MassiveActivations()], progress=False)
    a, b = over[0.0].tables["residual"], plain.tables["residual"]
    assert a.drop(columns="model").equals(b.drop(columns="model"))
    assert not over[0.7].tables["residual"]["var"].equals(a["var"])


def test_collect_over_t_runs_the_collectors_asked_for_and_refuses_a_list():
    """A factory gives each t its own collectors (only their tables come back); a list of collector instances was
    silently replaced by the defaults before, and is now refused with one line."""
    model = _model("mdlm-tdln")
    tokens = torch.randint(0, 29, (4, 12), generator=torch.Generator().manual_seed(3))
    over = collect_over_t(model, tokens, (0.0, 0.5), collectors=lambda: [C.ResidualStats()], progress=False)
    for res in over.values():
        assert "residual" in res.tables and "massive" not in res.tables
    with pytest.raises(ValueError, match="collectors must be a callable returning fresh collectors"):
        collect_over_t(model, tokens, (0.5,), collectors=[C.ResidualStats()], progress=False)


def test_collect_over_t_refuses_repeated_or_no_noise_levels():
    """Results are keyed by t: a repeated t ran twice and kept one, and no t returned {}, each with no word."""
    model = _model("mdlm-tdln")
    tokens = torch.randint(0, 29, (2, 8), generator=torch.Generator().manual_seed(3))
    for ts in ((0.5, 0.5), (0.5, 0.25, 0.5), ()):
        with pytest.raises(ValueError, match="ts must be distinct noise levels, at least one"):
            collect_over_t(model, tokens, ts, progress=False)
