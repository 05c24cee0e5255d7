"""Massive-activation kernels (numba): the exact lower median of |x| per row by radix select on the float32 bits,
each token's max |x|, a sequence's k largest |x| and the values past the massive thresholds, in one or two passes
per tensor and without sorting or copying |x|.

Used by `MassiveActivations` and `seq_kernels` on tensors that `kernels.usable` accepts; the torch forms stay for the
rest. Compiled code is cached on disk, as in `interp.collectors.kernels`.
"""
from __future__ import annotations

import numpy as np
import torch

from interp.collectors import kernel_cache
from interp.collectors.kernels import ENABLED, as_array
from interp.collectors.simd import LANES, VECTOR

if ENABLED:
    from numba import carray, njit

    from interp.collectors.kernels import _u32_ptr
    from interp.collectors.simd import scan_bracket

RADIX_BITS = 11  # bins of a radix-select round (`_kth`): 2048, a 16 KB histogram
SMALL = 16384  # up to this many values per row, a median selects on all of them (no sampled bracket)

if ENABLED:
    @njit(cache=True, nogil=True, error_model="numpy")
    def _select(a, k):  # pragma: no cover - compiled
        """The k-th smallest (0-based) of a 1-D array, which it reorders (Hoare quickselect, median of 3)."""
        lo, hi = 0, a.size - 1
        while hi > lo:
            mid = (lo + hi) // 2
            if a[mid] < a[lo]:
                a[mid], a[lo] = a[lo], a[mid]
            if a[hi] < a[lo]:
                a[hi], a[lo] = a[lo], a[hi]
            if a[hi] < a[mid]:
                a[hi], a[mid] = a[mid], a[hi]
            p = a[mid]
            i, j = lo, hi
            while i <= j:
                while a[i] < p:
                    i += 1
                while a[j] > p:
                    j -= 1
                if i <= j:
                    a[i], a[j] = a[j], a[i]
                    i += 1
                    j -= 1
            if k <= j:
                hi = j
            elif k >= i:
                lo = i
            else:
                return a[k]
        return a[k]

    @njit(cache=True, nogil=True, error_model="numpy")
    def _count(u, lo, hi, d, tmax):  # pragma: no cover - compiled
        """(values of |u| below lo, up to hi, NaN) for bits u; tmax[r] = max |u| bits of u[r·d : r·d + d] when
        tmax is not empty. Row slices keep both loops vectorised."""
        M, INF = np.uint32(0x7FFFFFFF), np.uint32(0x7F800000)
        below, upto, nan = 0, 0, 0
        if tmax.size:
            for r in range(u.size // d):
                row = u[r * d: r * d + d]
                top = np.uint32(0)
                for j in range(d):
                    b = row[j] & M
                    below += b < lo
                    upto += b <= hi
                    nan += b > INF
                    top = max(top, b)
                tmax[r] = top
        else:
            for i in range(u.size):
                b = u[i] & M
                below += b < lo
                upto += b <= hi
                nan += b > INF
        return below, upto, nan

    @njit(cache=True, nogil=True, error_model="numpy")
    def _inside(u, lo, hi, buf):  # pragma: no cover - compiled
        """Copy the |u| bits in [lo, hi] into buf (which must hold one more than their count); returns the count.
        Branch-free: every value is stored, the count advances only for those inside."""
        M = np.uint32(0x7FFFFFFF)
        width = np.uint32(hi - lo)
        c = 0
        for i in range(u.size):
            b = u[i] & M
            buf[c] = b
            c += np.uint32(b - lo) <= width
        return c

    @njit(cache=True, nogil=True, error_model="numpy")
    def _kth(a, k, lo, hi):  # pragma: no cover - compiled
        """The k-th smallest (0-based) of the uint32 array a, all of whose values lie in [lo, hi]; overwrites a.
        Radix select: a histogram of (v − lo) >> s in ≤ 2048 bins finds the bin holding rank k; that bin's values
        are packed to the front of a (in place: the write index never passes the read index, branch-free) and
        searched the same way, 11 bits narrower each round (at most 3 rounds for 32 bits). Two linear passes a
        round, where quickselect's data-dependent branches mispredict on every other value; `_select` finishes
        a bin of a few values."""
        hist = np.empty(1 << RADIX_BITS, dtype=np.int64)
        n, k, lo, hi = a.size, np.int64(k), np.int64(lo), np.int64(hi)
        while True:
            if lo == hi:
                return np.uint32(lo)
            if n <= 64:
                return _select(a[:n], k)
            s = 0
            while ((hi - lo) >> s) >= (1 << RADIX_BITS):
                s += 1
            hist[: ((hi - lo) >> s) + 1] = 0
            for i in range(n):
                hist[(np.int64(a[i]) - lo) >> s] += 1
            b, c = 0, np.int64(0)
            while c + hist[b] <= k:
                c += hist[b]
                b += 1
            k -= c
            blo = lo + (np.int64(b) << s)
            bhi = min(hi, blo + (np.int64(1) << s) - 1)
            w, m = bhi - blo, 0
            for i in range(n):
                v = a[i]
                a[m] = v
                m += np.uint64(np.int64(v) - blo) <= np.uint64(w)
            n, lo, hi = m, blo, bhi

    @njit(cache=True, nogil=True, error_model="numpy")
    def _range(a):  # pragma: no cover - compiled
        """(min, max) of a non-empty array in one pass."""
        lo, hi = a[0], a[0]
        for i in range(1, a.size):
            lo = min(lo, a[i])
            hi = max(hi, a[i])
        return lo, hi

    @njit(cache=True, nogil=True, error_model="numpy")
    def _kth_any(a, k):  # pragma: no cover - compiled
        """`_kth` of a over its own range."""
        lo, hi = _range(a)
        return _kth(a, k, lo, hi)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _abs_median_bits(u, pick, half, buf, d, tmax):  # pragma: no cover - compiled
        """Lower median of |v| for float32 v given as its bits u (uint32), returned as bits; 0xFFFFFFFF when v
        holds a NaN. |v|'s bits (sign cleared) order as |v| does, so the work is integer. A fixed sample brackets
        the median (its ranks half ± `half`); one vectorised pass counts the values below and up to the bracket;
        a second copies the few inside into `buf` and a selection finds the median there (on AVX-512 or AVX2, with u
        contiguous, one pass does both: `simd.scan_bracket`). A bracket that misses it (or overflows buf)
        selects on all of |v|. Every selection is a radix select (`_kth`). The counting pass also writes tmax[i]
        = the largest |v| bits of each run of d values (a token's max |x|) when tmax is not empty. Up to SMALL
        values (buf must hold them all): the counting pass for NaN and tmax, then a selection on every |v| in buf."""
        M = np.uint32(0x7FFFFFFF)
        n = u.size
        k = (n - 1) // 2
        if n <= SMALL:
            if _count(u, M, M, d, tmax)[2]:
                return np.uint32(0xFFFFFFFF)
            for i in range(n):
                buf[i] = u[i] & M
            return _kth_any(buf[:n], k)
        m = pick.size
        s = np.empty(m, dtype=np.uint32)
        for i in range(m):
            s[i] = u[pick[i]] & M
        a = m // 2 - half
        s2 = s.copy()  # `_kth` overwrites what it reads: one copy per rank
        slo, shi = _range(s)
        lo = _kth(s, a, slo, shi)
        hi = _kth(s2, a + 2 * half, slo, shi)
        if VECTOR and u.flags.c_contiguous and (tmax.size == 0 or d % LANES == 0):  # one vector pass (simd.py)
            below, upto, nan, inside, fits = scan_bracket(u, lo, hi, buf, d, tmax)
            if nan:
                return np.uint32(0xFFFFFFFF)
            j = k - below
            if fits and 0 <= j < inside:
                return _kth(buf[:inside], j, lo, hi)
        else:
            below, upto, nan = _count(u, lo, hi, d, tmax)
            if nan:
                return np.uint32(0xFFFFFFFF)
            j, inside = k - below, upto - below
            if 0 <= j < inside < buf.size:
                _inside(u, lo, hi, buf)
                return _kth(buf[:inside], j, lo, hi)
        full = np.empty(n, dtype=np.uint32)
        for i in range(n):
            full[i] = u[i] & M
        return _kth_any(full, k)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _abs_median_rows(u, pick, half, buf, out, d, tmax):  # pragma: no cover - compiled
        """`_abs_median_bits` of each row of u [r, n] into out [r]; tmax [r, n // d] (or empty: [r, 0])."""
        for r in range(u.shape[0]):
            out[r] = _abs_median_bits(u[r], pick, half, buf, d, tmax[r])

    @njit(cache=True, nogil=True, error_model="numpy")
    def _top_bits(u, tmax, d, k, tv, tp, td):  # pragma: no cover - compiled
        """The k largest |v| of one sequence u [t·d] (float32 bits, token-major) as (|v| bits, token, dim) into
        tv / tp / td [k], largest first, equal values by smaller (token, dim) first; tmax [t] holds each token's
        max |v| bits, so a token that cannot enter the buffer is skipped unread. Integer compares on bits order
        as |v| does (NaN above inf). Returns the number of entries (k, or t·d when fewer).
        Only tokens whose max reaches the k-th largest token max (tau) are read: k tokens each hold a value ≥ tau, so
        the k-th largest value is ≥ tau and a token whose max lies below tau holds no entry."""
        M = np.uint32(0x7FFFFFFF)
        nt = tmax.size
        tau = np.uint32(0)
        if k < nt:
            tau = _select(tmax.copy(), nt - k)  # the k-th largest token max
        c = 0
        for t in range(nt):
            if tmax[t] < tau or (c == k and tmax[t] <= tv[k - 1]):
                continue  # nothing in this token beats the k-th value (a tie loses: larger (token, dim))
            row = u[t * d: t * d + d]
            for j in range(d):
                b = row[j] & M
                if c == k and b <= tv[k - 1]:
                    continue
                i = c if c < k else k - 1  # the slot freed: the end of the buffer
                while i > 0 and tv[i - 1] < b:  # keep earlier arrivals first among equals
                    tv[i], tp[i], td[i] = tv[i - 1], tp[i - 1], td[i - 1]
                    i -= 1
                tv[i], tp[i], td[i] = b, t, j
                if c < k:
                    c += 1
        return c

    @njit(cache=True, nogil=True, error_model="numpy")
    def _stream_depth(u, pick, half, buf, d, k, med, tmax, tv, tp, td, tx):  # pragma: no cover - compiled
        """Per sequence r of u [b, t·d] (float32 bits): the lower median of |v| (`_abs_median_bits`, bits, into
        med [r]), each token's max |v| (tmax [r, t]) and the k largest |v| with token, dim and signed bits
        (tv / tp / td / tx [r, k], `_top_bits`)."""
        for r in range(u.shape[0]):
            med[r] = _abs_median_bits(u[r], pick, half, buf, d, tmax[r])
        _top_rows(u, tmax, d, k, tv, tp, td, tx)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _stream_depth_at(u, pick, half, buf, d, k, j, med, tmax, tv, tp, td, tx, tvf):  # pragma: no cover
        """`_stream_depth` of u [b, t·d] into row j of med [D, b], tmax [D, b, t], tv / tp / td / tx [D, b, k];
        returns the largest |v| of all b sequences as a float (tvf: tv's float32 view)."""
        _stream_depth(u, pick, half, buf, d, k, med[j], tmax[j], tv[j], tp[j], td[j], tx[j])
        top = tvf[j, 0, 0]
        for r in range(1, u.shape[0]):
            top = max(top, tvf[j, r, 0])
        return top

    @njit(cache=True, nogil=True, error_model="numpy")
    def _stream_depth_addr(addr, b, n, pick, half, buf, d, k, j, med, tmax, tv, tp, td, tx, tvf):  # pragma: no cover
        """`_stream_depth_at` of the contiguous float32 tensor [b, n / d, d] at address addr (its data_ptr(), kept
        alive by the caller), read as bits [b, n]: no array object made per call."""
        return _stream_depth_at(carray(_u32_ptr(addr), (b, n)), pick, half, buf, d, k, j, med, tmax, tv, tp, td, tx,
                                tvf)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _top_rows(u, tmax, d, k, tv, tp, td, tx):  # pragma: no cover - compiled
        """`_top_bits` of each sequence r of u [b, t·d], with the signed bits of each entry in tx [r, k]."""
        for r in range(u.shape[0]):
            _top_bits(u[r], tmax[r], d, k, tv[r], tp[r], td[r])
            for i in range(k):
                tx[r, i] = u[r, tp[r, i] * d + td[r, i]]

    @njit(cache=True, nogil=True, error_model="numpy")
    def _hits(a, tmax, med, thr, ratio, seq, tok, dim, val, start):  # pragma: no cover - compiled
        """(sequence, token, dim, value) of every value of a [b, t, d] with |v| > thr and |v| ≥ ratio · med[sequence]
        (float32 compares, ratio · med rounded to float32), in row-major order, into seq / tok / dim / val from
        index `start` on as far as they hold; returns how many there are. Only tokens whose max |v| (tmax [b, t])
        passes both tests are read: a token whose largest |v| misses either holds no value that passes it (in deep
        layers of a model with massive activations nearly every token passes thr alone, few pass ratio · med)."""
        b, t, d = a.shape
        c, cap = 0, seq.size - start
        for r in range(b):
            lim = ratio * med[r]
            for i in range(t):
                if tmax[r, i] > thr and tmax[r, i] >= lim:
                    row = a[r, i]
                    for j in range(d):
                        v = abs(row[j])
                        if v > thr and v >= lim:
                            if c < cap:
                                k = start + c
                                seq[k], tok[k], dim[k], val[k] = r, i, j, row[j]
                            c += 1
        return c


_NO_PICK = np.empty(0, dtype=np.int64)  # no sample: rows of up to SMALL values
SAMPLE, HALF = 4096, 128  # median sample size; half-width of its bracket, in sample ranks (±4 sd of the rank)
_PICKS: dict = {}


def _pick(n: int) -> np.ndarray:
    """Fixed sample positions for a row of n values (the same for every call: results do not vary)."""
    if n not in _PICKS:
        if len(_PICKS) > 256:
            _PICKS.clear()
        _PICKS[n] = torch.randint(0, n, (SAMPLE,), generator=torch.Generator().manual_seed(0)).numpy()
    return _PICKS[n]


def _median_inputs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(sample positions, work buffer) for `_abs_median_bits` on rows of n values: up to SMALL, a buffer that
    holds the whole row; above, the bracket's (an eighth of the row, at least four bracket widths)."""
    if n <= SMALL:
        return _NO_PICK, np.empty(max(n, 1), dtype=np.uint32)
    return _pick(n), np.empty(max(n // 8, 4 * HALF), dtype=np.uint32)


def abs_median(v: torch.Tensor) -> float:
    """torch.median(v.float().abs()) (the lower median) of a CPU tensor's values, exactly; NaN if v holds one.
    Integer work on the float32 bits (see `_abs_median_bits`): no sort and, for large v, no |v| copy."""
    return float(abs_medians(v.reshape(1, -1))[0])


def abs_medians(x: torch.Tensor, d: int | None = None):
    """`abs_median` of each row of x [r, n] (CPU) -> float32 [r]; with d: (medians, the max |x| of each run of d
    values of a row, float32 [r, n // d]), the maxima taken in the medians' counting pass (exact: bits order
    as |x| does; NaN where a run holds one)."""
    a = as_array(x if x.dtype == torch.float32 else x.float()).reshape(x.shape[0], -1)
    r, n = a.shape
    if n == 0:
        raise ValueError("the median of |x| over no values is undefined; pass rows with at least one value")
    out = np.empty(r, dtype=np.uint32)
    tmax = np.empty((r, n // d if d else 0), dtype=np.uint32)
    pick, buf = _median_inputs(n)
    _abs_median_rows(a.view(np.uint32), pick, HALF, buf, out, d or 1, tmax)
    med = torch.from_numpy(out.view(np.float32))  # 0xFFFFFFFF (a NaN in the row) reads as NaN
    return med if d is None else (med, torch.from_numpy(tmax.view(np.float32)))


def stream_depth(x: torch.Tensor, k: int):
    """For x [b, t, d] (`usable`, every position real): per sequence the lower median of |x| (float32 [b]),
    each token's max |x| (float32 [b, t]) and the k largest |x| over its tokens × dims (1 ≤ k ≤ t·d), largest
    first, ties by smaller (token, dim): (|x| float32 [b, k], token long [b, k], dim long [b, k], signed x
    float32 [b, k]); `stream_depth_into` on buffers for one depth. The medians and maxima are
    `abs_medians(x.reshape(b, -1), d)`'s (NaN where a sequence holds one; then its top k are those of its
    non-NaN |x| ranked with NaN highest)."""
    out = DepthBuffers(1, *x.shape, k)
    stream_depth_into(x, 0, out)
    return (out.floats(out.med[0]), out.floats(out.tmax[0]), out.floats(out.tv[0]), torch.from_numpy(out.tp[0]),
            torch.from_numpy(out.td[0]), out.floats(out.tx[0]))


class DepthBuffers:
    """Per-batch outputs of `stream_depth_into` for D depths of b sequences × t tokens, k top values each:
    med [D, b], tmax [D, b, t], tv / tx [D, b, k] (float32 bits: |x| and signed x), tp / td [D, b, k] (token, dim)."""

    def __init__(self, D: int, b: int, t: int, d: int, k: int):
        if not 1 <= k <= t * d:
            raise ValueError(f"k = {k} top values per sequence of {t} × {d} values; it must be in 1..{t * d}")
        self.shape = (D, b, t, d, k)
        self.med, self.tmax = np.empty((D, b), dtype=np.uint32), np.empty((D, b, t), dtype=np.uint32)
        self.tv, self.tx = np.empty((D, b, k), dtype=np.uint32), np.empty((D, b, k), dtype=np.uint32)
        self.tp, self.td = np.empty((D, b, k), dtype=np.int64), np.empty((D, b, k), dtype=np.int64)
        self.tvf = self.tv.view(np.float32)
        self.pick, self.buf = _median_inputs(t * d)

    def floats(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.view(np.float32))


def stream_depth_into(x: torch.Tensor, j: int, out: DepthBuffers) -> float:
    """The medians, token maxima and top k of x [b, t, d] (CPU, every position real, the shape `out` was made
    for) written into row j of `out` (see `stream_depth`); returns the largest |x|. One compiled call, no
    allocation."""
    b, t, d = x.shape
    if x.dtype is torch.float32 and x.is_contiguous():  # read by address: no array object made
        return _stream_depth_addr(x.data_ptr(), b, t * d, out.pick, HALF, out.buf, d, out.shape[4], j, out.med,
                                  out.tmax, out.tv, out.tp, out.td, out.tx, out.tvf)
    a = as_array(x.float())
    return _stream_depth_at(a.reshape(b, t * d).view(np.uint32), out.pick, HALF, out.buf, d, out.shape[4], j,
                            out.med, out.tmax, out.tv, out.tp, out.td, out.tx, out.tvf)


class HitBuffers:
    """Where `massive_hits_into` writes a batch's massive values, depth after depth: (sequence, token, dim) int64 and
    the value (float64) of each, `n` used. Kept from batch to batch (`clear` starts a batch), grown only when a
    batch holds more: the values of a batch are never allocated while its forward runs, where small allocations
    that live until the batch ends would sit between the forward's temporaries and fragment the heap."""

    def __init__(self, cap: int = 4096):
        self.seq, self.tok, self.dim = (np.empty(cap, dtype=np.int64) for _ in range(3))
        self.val = np.empty(cap)
        self.n = 0

    def clear(self) -> None:
        self.n = 0

    def grow(self, need: int) -> None:
        cap = max(need, 2 * self.seq.size)
        for k in ("seq", "tok", "dim", "val"):
            old = getattr(self, k)
            new = np.empty(cap, dtype=old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, k, new)

    def tensors(self, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sequence, token, dim, value) tensors of entries start .. start + count (views of the buffers)."""
        s = slice(start, start + count)
        return tuple(torch.from_numpy(a[s]) for a in (self.seq, self.tok, self.dim, self.val))


def massive_hits_into(x: torch.Tensor, tmax: torch.Tensor, med: torch.Tensor, thr: float, ratio: float,
                      out: HitBuffers) -> tuple[int, int]:
    """Append to `out` (sequence, token, dim, value) of the values of x [b, t, d] (CPU) with |x| > thr and
    |x| ≥ ratio · med per sequence, compared in float32 as torch compares a float32 tensor with Python scalars, in
    row-major order (as nonzero); tmax [b, t] and med [b] float32 are each token's max |x| and each sequence's
    median (`stream_depth_into`'s). The value is x's own, in float64. Returns (first entry, count)."""
    a = x.detach().numpy() if x.is_contiguous() and x.dtype == torch.float32 else as_array(x.float())
    tm, md = as_array(tmax), as_array(med)
    thr32, ratio32 = np.float32(thr), np.float32(ratio)
    start = out.n
    while True:
        c = _hits(a, tm, md, thr32, ratio32, out.seq, out.tok, out.dim, out.val, start)
        if start + c <= out.seq.size:
            break
        out.grow(start + c)
    out.n = start + c
    if c and x.dtype not in (torch.float32, torch.float16, torch.bfloat16):  # x.float() rounded the values
        seq, tok, dim, _ = out.tensors(start, c)
        out.val[start: start + c] = x.detach()[seq, tok, dim].double().numpy()
    return start, c


def massive_hits(x: torch.Tensor, tmax: torch.Tensor, med: torch.Tensor, thr: float, ratio: float):
    """(sequence, token, dim) long tensors of `massive_hits_into`'s values, in a buffer of their own."""
    out = HitBuffers(256)
    start, c = massive_hits_into(x, tmax, med, thr, ratio, out)
    return out.tensors(start, c)[:3]


kernel_cache.refresh(globals(), ("interp.collectors.kernels", "interp.collectors.simd"))  # last: the cached kernels go when these change
