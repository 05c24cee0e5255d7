"""The median bracket's counting and copying pass (interp.collectors.simd.scan_bracket, and the two scalar passes
select_kernels._count / select_kernels._inside used where the CPU lacks AVX-512) against numpy on the same float32 bits."""
from __future__ import annotations

import numpy as np
import pytest

from interp.collectors import kernels, select_kernels, simd

pytestmark = pytest.mark.skipif(not kernels.ENABLED, reason="numba missing: the kernels are off")


def reference(x: np.ndarray, lo: int, hi: int, d: int):
    """(below, up to, NaN, the inside |x| bits in order, per-run-of-d max |x| bits) by numpy."""
    b = x.view(np.uint32) & np.uint32(0x7FFFFFFF)
    inside = b[(b >= lo) & (b <= hi)]
    tmax = b.reshape(-1, d).max(1) if d else np.empty(0, np.uint32)
    return int((b < lo).sum()), int((b <= hi).sum()), int((b > 0x7F800000).sum()), inside, tmax


def values(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    x[3], x[n // 2], x[-1] = np.nan, -np.inf, -0.0
    return x


LO, HI = np.uint32(np.float32(0.4).view(np.uint32)), np.uint32(np.float32(0.5).view(np.uint32))


@pytest.mark.parametrize("n, d", [(4096, 64), (65536, 256), (18432, 576)])
def test_scan_bracket_with_token_maxima(n, d):
    x = values(n, n)
    below, upto, nan, inside, tmax = reference(x, LO, HI, d)
    buf, tm = np.empty(n, np.uint32), np.empty(n // d, np.uint32)
    out = simd.scan_bracket(x.view(np.uint32), LO, HI, buf, d, tm)
    assert out == (below, upto, nan, len(inside), True)
    assert np.array_equal(buf[:len(inside)], inside) and np.array_equal(tm, tmax)


@pytest.mark.parametrize("n", [15, 16, 100001])
def test_scan_bracket_without_maxima_scans_the_tail(n):
    x = values(n, n)
    below, upto, nan, inside, _ = reference(x, LO, HI, 0)
    buf = np.empty(n, np.uint32)
    out = simd.scan_bracket(x.view(np.uint32), LO, HI, buf, 1, np.empty(0, np.uint32))
    assert out == (below, upto, nan, len(inside), True) and np.array_equal(buf[:len(inside)], inside)


def test_scan_bracket_says_when_the_inside_values_do_not_fit():
    x = values(4096, 1)
    below, upto, nan, inside, _ = reference(x, LO, HI, 0)
    assert len(inside) > 64
    out = simd.scan_bracket(x.view(np.uint32), LO, HI, np.empty(64, np.uint32), 1, np.empty(0, np.uint32))
    assert out == (below, upto, nan, len(inside), False)  # the counts stay exact


@pytest.mark.parametrize("cap", [0, 1, simd.LANES - 1])
def test_scan_bracket_writes_nothing_past_a_buffer_smaller_than_a_vector(cap):
    """buf a view of `cap` values at the front of a sentinel-filled array: the counts stay exact, nothing is kept,
    and no value past buf changes (a whole-vector store at buf would overwrite the sentinels)."""
    x = values(4096 + 5, 3)  # a tail too
    below, upto, nan, inside, _ = reference(x, LO, HI, 0)
    room = np.full(cap + 64, 0xDEADBEEF, np.uint32)
    out = simd.scan_bracket(x.view(np.uint32), LO, HI, room[:cap], 1, np.empty(0, np.uint32))
    assert out == (below, upto, nan, len(inside), False)
    assert (room[cap:] == 0xDEADBEEF).all()
    none_inside = np.full(64, 2.0, np.float32)  # no value in [0.4, 0.5]: an empty inside set fits any buf
    assert simd.scan_bracket(none_inside.view(np.uint32), LO, HI, room[:cap], 1, np.empty(0, np.uint32)) == (
        0, 0, 0, 0, True)


@pytest.mark.parametrize("d", [16, 0])
def test_scalar_passes_match_numpy(d):
    x = values(4096, 7)
    below, upto, nan, inside, tmax = reference(x, LO, HI, d)
    tm = np.empty(4096 // d if d else 0, np.uint32)
    assert select_kernels._count(x.view(np.uint32), LO, HI, d or 1, tm) == (below, upto, nan)
    buf = np.empty(len(inside) + 1, np.uint32)
    assert select_kernels._inside(x.view(np.uint32), LO, HI, buf) == len(inside)
    assert np.array_equal(buf[:len(inside)], inside) and np.array_equal(tm, tmax)


def test_median_of_a_strided_row_takes_the_scalar_passes():
    # bits read with a stride are not what the vector pass reads (it takes the address of a contiguous row)
    x = np.random.default_rng(5).standard_normal(2 * 40000).astype(np.float32)
    u = x.view(np.uint32)[::2]
    pick, buf = select_kernels._median_inputs(u.size)
    med = select_kernels._abs_median_bits(u, pick, select_kernels.HALF, buf, 1, np.empty(0, np.uint32))
    assert np.uint32(med).view(np.float32) == np.sort(np.abs(x[::2]))[(u.size - 1) // 2]
