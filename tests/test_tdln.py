"""TD-LN (DiMR) learns a time dependence by gradient descent from its default init, as DiMR's code intends."""
import math

import torch

from interp.norms import LayerNorm, TDLayerNorm

D, N = 8, 256


def _task(seed=0):
    """x [N, 1, D], t [N] ~ U(0, 1), target = LN(x)·γ*(t) + β*(t) with γ*, β* that move with t."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 1, D, generator=g, dtype=torch.float64) * 3 + 1
    t = torch.rand(N, generator=g, dtype=torch.float64)
    s = torch.sigmoid(6 * t - 3)[:, None, None]  # target gate: from 0.05 (t = 0) to 0.95 (t = 1)
    g_hi, g_lo = 1 + torch.rand(D, generator=g, dtype=torch.float64), 0.2 * torch.rand(D, generator=g, dtype=torch.float64)
    b_hi, b_lo = torch.randn(D, generator=g, dtype=torch.float64), torch.randn(D, generator=g, dtype=torch.float64)
    xn = torch.nn.functional.layer_norm(x, (D,), eps=1e-5)
    return x, t, xn * (s * g_hi + (1 - s) * g_lo) + s * b_hi + (1 - s) * b_lo


def _fit(norm, x, t, y, steps=400, lr=0.05):
    """Adam on the mean squared error from the module's own init; the final loss."""
    opt = torch.optim.Adam(norm.parameters(), lr=lr)
    for _ in range(steps):
        norm.cond = t
        loss = (norm(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        norm.cond = t
        return float((norm(x) - y).pow(2).mean())


def test_tdln_learns_a_time_dependent_target_a_plain_layernorm_cannot():
    x, t, y = _task()
    td, ln = TDLayerNorm(D).double(), LayerNorm(D).double()
    assert torch.equal(td.w0, td.w1) and torch.equal(td.b0, td.b1)  # starts as a plain LayerNorm
    loss_td, loss_ln = _fit(td, x, t, y), _fit(ln, x, t, y)
    # LN's best is the t-average of γ*, β*: its loss is the variance of the target over t; TD-LN fits t.
    assert loss_td < 0.05 * loss_ln, (loss_td, loss_ln)
    assert (td.w0 - td.w1).abs().max() > 0.5 and (td.b0 - td.b1).abs().max() > 0.5  # p0 ≠ p1 reached
    assert td.gate_w.abs().max() > 0.1 and td.gate_b.abs().max() > 0.1                # the gates moved


def test_with_slope_zero_the_gate_never_leaves_one_half():
    """The failure the slope-1 init removes: slope 0 (gate_w = −1) makes s = ½ for every t, so p0 and p1 get the
    same gradient, stay equal, and the gates get none — training ends as a plain LayerNorm."""
    x, t, y = _task()
    td = TDLayerNorm(D).double()
    with torch.no_grad():
        td.gate_w.fill_(-1.0)
    _fit(td, x, t, y, steps=50)
    assert torch.equal(td.w0, td.w1) and torch.equal(td.b0, td.b1)
    assert torch.equal(td.gate_w, torch.full_like(td.gate_w, -1.0)) and not td.gate_b.any()


def test_tdln_default_gate_depends_on_t_from_init():
    td = TDLayerNorm(D)
    s = td.gates(torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(s[0], torch.full((2, D), 0.5))
    torch.testing.assert_close(s[1], torch.full((2, D), 1 / (1 + math.exp(-1))))


def test_checkpoint_of_the_scalar_gate_tdln_loads_with_the_same_function():
    """An earlier TD-LN stored one (slope, offset) per γ / β as [2] tensors; it loads into per-channel gates."""
    td = TDLayerNorm(D).double()
    g = torch.Generator().manual_seed(1)
    old = {k: torch.randn(D, generator=g, dtype=torch.float64) for k in ("w0", "w1", "b0", "b1")}
    old["gate_w"], old["gate_b"] = torch.tensor([2.0, -0.5], dtype=torch.float64), torch.tensor([0.3, 0.1], dtype=torch.float64)
    td.load_state_dict(old)
    x = torch.randn(3, 5, D, generator=g, dtype=torch.float64)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
    td.cond = t
    xn = torch.nn.functional.layer_norm(x, (D,), eps=1e-5)
    for i in range(3):  # the old formula: s = σ(w·t + b), one scalar per parameter
        sg, sb = torch.sigmoid(2.0 * t[i] + 0.3), torch.sigmoid(-0.5 * t[i] + 0.1)
        expect = xn[i] * (sg * old["w0"] + (1 - sg) * old["w1"]) + sb * old["b0"] + (1 - sb) * old["b1"]
        torch.testing.assert_close(td(x)[i], expect)
