"""The massive-activation kernels (medians of |x|, token maxima, top values, massive hits) against torch's median,
sorting and brute-force scans of the same values."""
import numpy as np
import pytest
import torch

from interp.collectors import kernels, select_kernels

pytestmark = pytest.mark.skipif(not kernels.ENABLED, reason="numba not installed")


@pytest.mark.parametrize("b,t,d", [(2, 12, 16), (3, 300, 64)])  # the short (≤ 16384 per sequence) and long forms
def test_stream_depth_matches_brute_force(b, t, d):
    g = torch.Generator().manual_seed(t)
    x = torch.randn(b, t, d, generator=g)
    x[0, 3, 5], x[-1, 7, 1] = 500.0, -700.0
    x[0, 10, :4], x[0, 11, 2] = 2.5, -2.5  # ties: the smaller (token, dim) first
    k = 20
    med, tmax, tv, tp, td, tx = select_kernels.stream_depth(x, k)
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
    *_, tv, tp, td, tx = select_kernels.stream_depth(x, k)
    check_top(x, k, tv, tp, td, tx)


@pytest.mark.parametrize("n", [1000, 65536])
def test_abs_medians_token_maxima(n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(3, n // 16, 16, generator=g)
    x[1, 2, 5] = -1e4
    x[2, 0, 3] = float("nan")
    med, tmax = select_kernels.abs_medians(x.reshape(3, -1), 16)
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
        assert select_kernels.abs_median(v) == torch.median(v.abs()).item()
    rows = torch.stack(cases)
    assert torch.equal(select_kernels.abs_medians(rows), torch.stack([torch.median(v.abs()) for v in cases]))
    v = cases[0].clone()
    v[n // 3] = float("nan")
    assert np.isnan(select_kernels.abs_median(v)) and torch.isnan(select_kernels.abs_medians(v[None]))[0]


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
            assert select_kernels._kth_any(v.copy(), k) == ref[k]
            assert select_kernels._kth(v.copy(), k, ref[0], ref[-1]) == ref[k]


def test_massive_hits_match_brute_force():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 40, 16, generator=g)
    x[0, 3, 5], x[0, 3, 6], x[2, 39, 0], x[1, 0, 15] = 500.0, -150.0, -2e4, 99.0
    x[2, :, 1] = 150.0  # every token of sequence 2 passes the threshold; only those at ≥ ratio · median hold a hit
    med = x.abs().reshape(3, -1).median(1).values
    x[2, 7, 2] = 1000.0 * float(med[2])  # exactly ratio · median: massive when above the threshold (≥)
    med[1] = float("nan")  # a sequence with a NaN median has none
    tmax = x.abs().amax(-1)
    seq, tok, dim = select_kernels.massive_hits(x, tmax, med, 100.0, 1000.0)
    a = x.abs()
    ref = ((a > 100.0) & (a >= 1000.0 * med[:, None, None])).nonzero()
    assert torch.equal(torch.stack([seq, tok, dim], 1), ref) and len(ref) >= 2


def test_massive_hits_into_appends_and_grows():
    """Depth after depth into one small buffer (which must grow), each depth's entries as nonzero orders them,
    the values x's own (float64 x: not rounded through float32)."""
    g = torch.Generator().manual_seed(6)
    out = select_kernels.HitBuffers(4)
    got, refs = [], []
    for dtype in (torch.float32, torch.float64, torch.float32):
        x = torch.randn(2, 30, 8, generator=g, dtype=torch.float64).to(dtype)
        x[0, :5, 3], x[1, 29, :4] = 3000.0 + 1e-9, -2500.0 + 1e-9  # 9 values each time: the buffer grows
        a = x.abs().float()
        med, tmax = a.reshape(2, -1).median(1).values, a.amax(-1)
        got.append(select_kernels.massive_hits_into(x, tmax, med, 100.0, 1000.0, out))
        idx = ((a > 100.0) & (a >= 1000.0 * med[:, None, None])).nonzero()
        refs.append((idx, x[idx[:, 0], idx[:, 1], idx[:, 2]].double()))
    assert [c for _, c in got] == [len(i) for i, _ in refs] == [9, 9, 9] and out.n == 27
    for (start, c), (idx, val) in zip(got, refs):
        seq, tok, dim, v = out.tensors(start, c)
        assert torch.equal(torch.stack([seq, tok, dim], 1), idx) and torch.equal(v, val)
