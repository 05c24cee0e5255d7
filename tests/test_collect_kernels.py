"""The fused CPU kernels against direct float64 / torch computations, and the collectors' torch form (what runs
off CPU) against the same brute force as their kernel form."""
import numpy as np
import pytest
import torch

from interp.collectors import kernels

pytestmark = pytest.mark.skipif(not kernels.ENABLED, reason="numba not installed")


def test_moments_match_float64():
    g = torch.Generator().manual_seed(0)
    for n, w in ((1, 7), (5, 33), (130, 64)):  # row counts around the kernel's four-row blocks
        x = torch.randn(n, w, generator=g) * 3
        x[0, 0] = 3000.0  # an outlier
        x[-1, -1] = -4000.0
        acc = np.zeros((5, w + 3))
        norms, top, amax = kernels.moments(x, acc)
        d = x.double()
        for k in range(4):
            np.testing.assert_allclose(acc[k, :w], (d ** (k + 1)).sum(0).numpy(), rtol=1e-12, atol=1e-9)
        assert not acc[:, w:].any()
        assert np.array_equal(acc[4, :w], d.abs().amax(0).numpy())
        tok2 = (d ** 2).sum(1)
        assert norms == pytest.approx(tok2.sqrt().sum().item(), rel=1e-12)
        assert top == pytest.approx(tok2.max().item(), rel=1e-12)
        assert amax == x.abs().max().item() == 4000.0


def test_moments_running_max_over_calls():
    """Without init, acc accumulates across calls: the sums add and the per-dim max |x| is the max over both calls
    (float32 and float64 rows, whose |x| the kernel compares in their own precision)."""
    g = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.float64):
        x = (torch.randn(23, 10, generator=g) * 5).to(dtype)
        x[20, 2] = -700.0
        acc = np.zeros((5, 10))
        kernels.moments(x[:9], acc)
        *_, amax = kernels.moments(x[9:], acc)
        d = x.double()
        np.testing.assert_allclose(acc[1], (d * d).sum(0).numpy(), rtol=1e-12)
        assert np.array_equal(acc[4], d.abs().amax(0).numpy()) and amax == 700.0


def test_moments_token_sums_and_init():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(11, 24, generator=g) * 4 + 1
    acc = np.full((5, 30), 7.0)  # stale values (an earlier, wider site): init resets every column
    tok = np.empty((11, 2))
    kernels.moments(x, acc, tok, init=True)
    d = x.double()
    np.testing.assert_allclose(acc[0, :24], d.sum(0).numpy(), rtol=1e-12, atol=1e-9)
    assert np.array_equal(acc[4, :24], d.abs().amax(0).numpy())
    assert (acc[:, 24:] == 0).all()
    np.testing.assert_allclose(tok, torch.stack([d.sum(1), (d * d).sum(1)], 1).numpy(), rtol=1e-12)


def test_moments_at_reads_a_tensor_by_address():
    """moments_at on a float32 tensor's memory, into row r of shared buffers that hold stale values: the float64
    sums, per-dim max |x|, per-token sums and returns of the tensor, other rows untouched."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 9, 16, generator=g) * 3
    x[1, 4, 3] = -5000.0
    acc, tok, sc = np.full((3, 5, 16), 7.0), np.full((3, 20, 2), 7.0), np.full((3, 3), 7.0)
    kernels.moments_at(x.data_ptr(), 18, 16, acc, tok, sc, 1)
    d = x.reshape(18, 16).double()
    for k in range(4):
        np.testing.assert_allclose(acc[1, k], (d ** (k + 1)).sum(0).numpy(), rtol=1e-12, atol=1e-9)
    assert np.array_equal(acc[1, 4], d.abs().amax(0).numpy())
    np.testing.assert_allclose(tok[1, :18], torch.stack([d.sum(1), (d * d).sum(1)], 1).numpy(), rtol=1e-12)
    tok2 = (d * d).sum(1)
    np.testing.assert_allclose(sc[1], [tok2.sqrt().sum().item(), tok2.max().item(), 5000.0], rtol=1e-12)
    assert (acc[[0, 2]] == 7.0).all() and (tok[[0, 2]] == 7.0).all() and (tok[1, 18:] == 7.0).all()
    assert (sc[[0, 2]] == 7.0).all()


def test_scales_from_sums_match_float64():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(13, 40, generator=g) * 5 + 2
    d = x.double()
    tok = torch.stack([d.sum(1), (d * d).sum(1)], 1).numpy()
    ln = (d.var(-1, unbiased=False) + 1e-5).sqrt().float()
    rms = (d.pow(2).mean(-1) + 1e-6).sqrt().float()
    torch.testing.assert_close(kernels.scales_from_sums(tok, 40, True, 1e-5), ln, rtol=1e-7, atol=0)
    torch.testing.assert_close(kernels.scales_from_sums(tok, 40, False, 1e-6), rms, rtol=1e-7, atol=0)
    big = torch.stack([d.sum(1) + 40 * 1e5, ((d + 1e5) ** 2).sum(1)], 1).numpy()  # mean ≫ spread: refused
    assert kernels.scales_from_sums(big, 40, True, 1e-5) is None


def test_row_scales_match_float64():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 9, 3, 40, generator=g) * 5 + 2
    d = x.double()
    ln = (d.var(-1, unbiased=False) + 1e-5).sqrt()
    rms = (d.pow(2).mean(-1) + 1e-6).sqrt()
    torch.testing.assert_close(kernels.row_scales(x, True, 1e-5), ln.float(), rtol=1e-7, atol=0)
    torch.testing.assert_close(kernels.row_scales(x, False, 1e-6), rms.float(), rtol=1e-7, atol=0)
    assert kernels.row_scales(x[..., 1:], True, 1e-5).shape == (2, 9, 3)  # a non-contiguous view


@pytest.mark.parametrize("strategy", ["pre-ln", "post-ln", "peri-ln"])
def test_torch_form_matches_brute_force(strategy, monkeypatch):
    """With the kernels off (as on a GPU), the residual, massive and angle tables still match brute force."""
    import interp.zoo as zoo
    from interp.collectors import LayerEffect, MassiveActivations, ResidualStats, collect
    from test_collect_residual import brute, padded_tokens
    model = zoo.build(strategy, n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512)
    toks, mask = padded_tokens(vocab=512)
    on = collect(model, (toks, mask), [ResidualStats(), MassiveActivations(abs_threshold=1.0, ratio=2.0),
                                       LayerEffect(skip=False)], batch_size=3, progress=False)
    monkeypatch.setattr(kernels, "ENABLED", False)
    off = collect(model, (toks, mask), [ResidualStats(), MassiveActivations(abs_threshold=1.0, ratio=2.0),
                                        LayerEffect(skip=False)], batch_size=3, progress=False)
    ref = brute(model, toks, mask)
    df = off["residual"].set_index(["layer", "site"])
    for key, r in ref.items():
        for col in ("mean", "var", "rms", "token_norm_mean", "token_norm_max", "abs_max", "kurtosis"):
            assert df.loc[key, col] == pytest.approx(r[col], rel=1e-5, abs=1e-6 * r["rms"]), (key, col)
    for name in ("massive", "layer_effect"):  # the brute-force tests of these tables run the kernel form
        a, b = on[name].select_dtypes("number"), off[name].select_dtypes("number")
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-5, atol=1e-7, err_msg=name)
