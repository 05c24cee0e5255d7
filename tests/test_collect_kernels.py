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


@pytest.mark.parametrize("b,t,d", [(2, 12, 16), (3, 300, 64)])  # the short (≤ 16384 per sequence) and long forms
def test_stream_depth_matches_brute_force(b, t, d):
    g = torch.Generator().manual_seed(t)
    x = torch.randn(b, t, d, generator=g)
    x[0, 3, 5], x[-1, 7, 1] = 500.0, -700.0
    x[0, 10, :4], x[0, 11, 2] = 2.5, -2.5  # ties: the smaller (token, dim) first
    k = 20
    med, tmax, tv, tp, td, tx = kernels.stream_depth(x, k)
    a = x.abs().reshape(b, -1)
    assert torch.equal(med, a.median(1).values) and torch.equal(tmax, x.abs().amax(-1))
    check_top(x, k, tv, tp, td, tx)


def check_top(x, k, tv, tp, td, tx):
    """The k largest |x| of each sequence, ties by smaller (token, dim), against a sort of every value."""
    b, t, d = x.shape
    a = x.abs().reshape(b, -1)
    for r in range(b):
        order = sorted(range(t * d), key=lambda i: (-a[r, i].item(), i))[:k]
        assert tv[r].tolist() == a[r, order].tolist()
        assert (tp[r] * d + td[r]).tolist() == order
        assert tx[r].tolist() == x.reshape(b, -1)[r, order].tolist()


@pytest.mark.parametrize("k", [1, 5, 20, 40])
def test_stream_depth_top_with_tied_token_maxima(k):
    """Values on a coarse grid: many tokens share their max with the k-th largest token max (the kernel reads only
    tokens whose max reaches it), and many values tie with the k-th largest value."""
    g = torch.Generator().manual_seed(k)
    x = (torch.randn(2, 40, 32, generator=g) * 2).round() / 2
    *_, tv, tp, td, tx = kernels.stream_depth(x, k)
    check_top(x, k, tv, tp, td, tx)


def test_row_scales_match_float64():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 9, 3, 40, generator=g) * 5 + 2
    d = x.double()
    ln = (d.var(-1, unbiased=False) + 1e-5).sqrt()
    rms = (d.pow(2).mean(-1) + 1e-6).sqrt()
    torch.testing.assert_close(kernels.row_scales(x, True, 1e-5), ln.float(), rtol=1e-7, atol=0)
    torch.testing.assert_close(kernels.row_scales(x, False, 1e-6), rms.float(), rtol=1e-7, atol=0)
    assert kernels.row_scales(x[..., 1:], True, 1e-5).shape == (2, 9, 3)  # a non-contiguous view


@pytest.mark.parametrize("n", [1000, 65536])
def test_abs_medians_token_maxima(n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(3, n // 16, 16, generator=g)
    x[1, 2, 5] = -1e4
    x[2, 0, 3] = float("nan")
    med, tmax = kernels.abs_medians(x.reshape(3, -1), 16)
    assert torch.equal(med[:2], torch.stack([torch.median(v.abs()) for v in x[:2].reshape(2, -1)]))
    assert torch.isnan(med[2])
    ref = x.abs().amax(-1)
    assert torch.equal(tmax[:2], ref[:2]) and torch.equal(tmax[2, 1:], ref[2, 1:]) and torch.isnan(tmax[2, 0])


@pytest.mark.parametrize("n", [100, 16385, 65536, 100001])
def test_abs_median_equals_torch_median(n):
    g = torch.Generator().manual_seed(n)
    cases = [torch.randn(n, generator=g), torch.randint(-4, 5, (n,), generator=g).float(),  # many ties
             torch.sort(torch.randn(n, generator=g)).values,  # sorted
             torch.cat([torch.zeros(n // 2), torch.full((n - n // 2,), -1e4)]),
             torch.randn(n, generator=g) * 10.0 ** torch.randint(-40, 38, (n,), generator=g),  # wide, subnormals
             torch.where(torch.rand(n, generator=g) < 0.3, float("inf"), torch.randn(n, generator=g))]  # infs
    for v in cases:
        assert kernels.abs_median(v) == torch.median(v.abs()).item()
    rows = torch.stack(cases)
    assert torch.equal(kernels.abs_medians(rows), torch.stack([torch.median(v.abs()) for v in cases]))
    v = cases[0].clone()
    v[n // 3] = float("nan")
    assert np.isnan(kernels.abs_median(v)) and torch.isnan(kernels.abs_medians(v[None]))[0]


@pytest.mark.skipif(not kernels.ENABLED, reason="numba not installed")
@pytest.mark.parametrize("n", [1, 2, 64, 65, 2049, 40000])
def test_kth_matches_sorting(n):
    """The radix select (`_kth`) against a sort, on spreads from one value to the whole uint32 range."""
    rng = np.random.default_rng(n)
    cases = [rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32),     # the whole range
             np.full(n, 7, dtype=np.uint32),                                       # all equal
             rng.integers(5, 7, n).astype(np.uint32),                              # two values
             np.concatenate([np.zeros(n // 2), np.full(n - n // 2, 2 ** 32 - 1)]).astype(np.uint32),
             (rng.integers(0, 2 ** 11, n) << 20).astype(np.uint32),                # one value per bin, bins apart
             rng.integers(1000, 1000 + 3 * n, n).astype(np.uint32)]                # narrow
    for v in cases:
        ref = np.sort(v)
        for k in sorted({0, n // 2, (n - 1) // 2, n - 1}):
            assert kernels._kth_any(v.copy(), k) == ref[k]
            assert kernels._kth(v.copy(), k, ref[0], ref[-1]) == ref[k]


def test_angular_matches_float64():
    from interp.collectors.effect import angular
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 5, 16, generator=g), torch.randn(3, 5, 16, generator=g)
    b[0, 0] = a[0, 0] * 2  # parallel: angle 0
    b[0, 1] = 0.0          # zero vector: orthogonal
    ang, bn = kernels.angular(a, b)
    torch.testing.assert_close(ang, angular(a.double(), b.double()), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bn, b.double().norm(dim=-1), rtol=1e-12, atol=1e-12)


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


def test_massive_hits_match_brute_force():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 40, 16, generator=g)
    x[0, 3, 5], x[0, 3, 6], x[2, 39, 0], x[1, 0, 15] = 500.0, -150.0, -2e4, 99.0
    x[2, :, 1] = 150.0  # every token of sequence 2 passes the threshold; only those at ≥ ratio · median hold a hit
    med = x.abs().reshape(3, -1).median(1).values
    x[2, 7, 2] = 1000.0 * float(med[2])  # exactly ratio · median: massive when above the threshold (≥)
    med[1] = float("nan")  # a sequence with a NaN median has none
    tmax = x.abs().amax(-1)
    seq, tok, dim = kernels.massive_hits(x, tmax, med, 100.0, 1000.0)
    a = x.abs()
    ref = ((a > 100.0) & (a >= 1000.0 * med[:, None, None])).nonzero()
    assert torch.equal(torch.stack([seq, tok, dim], 1), ref) and len(ref) >= 2


def test_massive_hits_into_appends_and_grows():
    """Depth after depth into one small buffer (which must grow), each depth's entries as nonzero orders them,
    the values x's own (float64 x: not rounded through float32)."""
    g = torch.Generator().manual_seed(6)
    out = kernels.HitBuffers(4)
    got, refs = [], []
    for dtype in (torch.float32, torch.float64, torch.float32):
        x = torch.randn(2, 30, 8, generator=g, dtype=torch.float64).to(dtype)
        x[0, :5, 3], x[1, 29, :4] = 3000.0 + 1e-9, -2500.0 + 1e-9  # 9 values each time: the buffer grows
        a = x.abs().float()
        med, tmax = a.reshape(2, -1).median(1).values, a.amax(-1)
        got.append(kernels.massive_hits_into(x, tmax, med, 100.0, 1000.0, out))
        idx = ((a > 100.0) & (a >= 1000.0 * med[:, None, None])).nonzero()
        refs.append((idx, x[idx[:, 0], idx[:, 1], idx[:, 2]].double()))
    assert [c for _, c in got] == [len(i) for i, _ in refs] == [9, 9, 9] and out.n == 27
    for (start, c), (idx, val) in zip(got, refs):
        seq, tok, dim, v = out.tensors(start, c)
        assert torch.equal(torch.stack([seq, tok, dim], 1), idx) and torch.equal(v, val)
