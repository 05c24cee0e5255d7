"""Fused CPU passes for the forward collectors (numba): each reads an activation once and accumulates in float64.

A collector hook on CPU spends its time in memory passes: torch runs one pass per operation (x², Σx, Σx², …),
about ten per tensor. These kernels do the same work in one pass over the tensor, with float64 accumulators
(more exact than float32 partial sums, not less). They run on contiguous CPU float32 / float64 arrays;
`usable(x)` says when, and the collectors keep their torch form for everything else (GPU tensors, other
dtypes, or numba missing). Compiled code is cached on disk (`cache=True`), so only the first process compiles.
"""
from __future__ import annotations

import math

import numpy as np
import torch

try:
    from numba import carray, njit, types
    from numba.extending import intrinsic
    ENABLED = True
except ImportError:  # pragma: no cover - numba is a dependency; the torch forms stay correct without it
    ENABLED = False
from interp.collectors.simd import LANES, VECTOR

if ENABLED:
    from interp.collectors.simd import scan_bracket

# reassociation lets float64 sums over a row vectorise; no finite-math flags, so NaN and inf propagate
FAST = {"reassoc", "contract"}
RADIX_BITS = 11  # bins of a radix-select round (`_kth`): 2048, a 16 KB histogram
SMALL = 16384  # up to this many values per row, a median selects on all of them (no sampled bracket)


def usable(x: torch.Tensor) -> bool:
    """True when a kernel can read x directly: numba present, CPU, float32 or float64, no grad needed."""
    return ENABLED and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def as_array(x: torch.Tensor) -> np.ndarray:
    """x as a contiguous numpy array sharing memory when it can (a copy only for a non-contiguous x)."""
    x = x.detach()
    return (x if x.is_contiguous() else x.contiguous()).numpy()


if ENABLED:
    @njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
    def _moments(x, acc, tok, init):  # pragma: no cover - compiled
        """x [n, w]: acc[0..3, :w] += Σx, Σx², Σx³, Σx⁴ per dim (float64), acc[4, :w] = running max |x| per dim
        (with init: acc[:, :w] starts at 0); tok [n, 2] (unless empty) = (Σ_j x_tj, Σ_j x_tj²) per row; returns
        (Σ_t ‖x_t‖, max_t ‖x_t‖², max |x|). Four rows at a time (each accumulator is loaded and stored once per four
        rows). |x| and its per-dim max stay in x's own precision (exact, and twice the lanes of float64 for
        float32), reduced over the w dims once at the end."""
        n, w = x.shape
        a1, a2, a3, a4 = acc[0], acc[1], acc[2], acc[3]
        top_abs = np.empty(w, x.dtype)
        if init:
            for j in range(w):
                a1[j], a2[j], a3[j], a4[j], top_abs[j] = 0.0, 0.0, 0.0, 0.0, 0.0
        else:
            for j in range(w):
                top_abs[j] = acc[4, j]
        keep = tok.shape[0] > 0
        norms, top = 0.0, 0.0
        t = 0
        while t + 3 < n:
            r0, r1, r2, r3 = x[t], x[t + 1], x[t + 2], x[t + 3]
            s0, s1, s2, s3 = 0.0, 0.0, 0.0, 0.0
            m0, m1, m2, m3 = 0.0, 0.0, 0.0, 0.0
            for j in range(w):
                b = max(max(abs(r0[j]), abs(r1[j])), max(abs(r2[j]), abs(r3[j])))
                top_abs[j] = b if b > top_abs[j] else top_abs[j]
                p, q, u, v = np.float64(r0[j]), np.float64(r1[j]), np.float64(r2[j]), np.float64(r3[j])
                p2, q2, u2, v2 = p * p, q * q, u * u, v * v
                a1[j] += (p + q) + (u + v)
                a2[j] += (p2 + q2) + (u2 + v2)
                a3[j] += (p2 * p + q2 * q) + (u2 * u + v2 * v)
                a4[j] += (p2 * p2 + q2 * q2) + (u2 * u2 + v2 * v2)
                s0 += p2
                s1 += q2
                s2 += u2
                s3 += v2
                m0 += p
                m1 += q
                m2 += u
                m3 += v
            norms += (math.sqrt(s0) + math.sqrt(s1)) + (math.sqrt(s2) + math.sqrt(s3))
            top = max(top, s0, s1, s2, s3)
            if keep:
                tok[t, 0], tok[t, 1], tok[t + 1, 0], tok[t + 1, 1] = m0, s0, m1, s1
                tok[t + 2, 0], tok[t + 2, 1], tok[t + 3, 0], tok[t + 3, 1] = m2, s2, m3, s3
            t += 4
        while t < n:
            row = x[t]
            s, m = 0.0, 0.0
            for j in range(w):
                b = abs(row[j])
                top_abs[j] = b if b > top_abs[j] else top_abs[j]
                v = np.float64(row[j])
                v2 = v * v
                a1[j] += v
                a2[j] += v2
                a3[j] += v2 * v
                a4[j] += v2 * v2
                s += v2
                m += v
            norms += math.sqrt(s)
            top = max(top, s)
            if keep:
                tok[t, 0], tok[t, 1] = m, s
            t += 1
        mx = 0.0
        for j in range(w):
            acc[4, j] = top_abs[j]
            mx = max(mx, acc[4, j])
        return norms, top, mx

    def _pointer_at(elem):
        """An intrinsic giving the `elem` pointer at an integer address (a contiguous tensor's data_ptr())."""
        @intrinsic
        def ptr_at(typingctx, addr):  # pragma: no cover - compiled
            if not isinstance(addr, types.Integer):
                return None
            ptr = types.CPointer(elem)

            def codegen(context, builder, signature, args):
                return builder.inttoptr(args[0], context.get_value_type(ptr))
            return ptr(addr), codegen
        return ptr_at

    _f32_ptr = _pointer_at(types.float32)  # a contiguous float32 tensor's values
    _u32_ptr = _pointer_at(types.uint32)   # a float32 tensor's values as bits

    @njit(cache=True, nogil=True, error_model="numpy")
    def moments_at(addr, n, w, acc, tok, sc, r):  # pragma: no cover - compiled
        """`_moments` (init) of the contiguous float32 rows [n, w] at address addr (a live tensor's data_ptr(), which
        the caller keeps alive; w = acc.shape[2]) into acc[r], tok[r, :n] and sc[r] = its three returns: one compiled
        call on the caller's buffers, no array object made per tensor (in a forward hook each costs µs)."""
        s = _moments(carray(_f32_ptr(addr), (n, w)), acc[r], tok[r, :n], True)  # C-contiguous views: vectorised
        sc[r, 0], sc[r, 1], sc[r, 2] = s[0], s[1], s[2]

    @njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
    def _row_scales(x, centre, eps, out):  # pragma: no cover - compiled
        """x [n, w]: out[t] = sqrt(mean_j (x_tj − μ_t)² + eps) with μ_t the row mean (centre, LayerNorm) or 0
        (RMSNorm), the mean and the squares summed in float64; each row is read twice while it is in cache."""
        n, w = x.shape
        for t in range(n):
            row = x[t]
            mu = 0.0
            if centre:
                for j in range(w):
                    mu += np.float64(row[j])
                mu /= w
            s = 0.0
            for j in range(w):
                v = np.float64(row[j]) - mu
                s += v * v
            out[t] = math.sqrt(s / w + eps)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _scales_from_sums(tok, w, centre, eps, out):  # pragma: no cover - compiled
        """out[t] = sqrt(Σx²/w − (Σx/w)² + eps) (centre) or sqrt(Σx²/w + eps) from tok[t] = (Σx, Σx²), float64
        rounded to float32; False (out unfinished) at a row whose mean² exceeds 2¹⁶ · its one-pass variance."""
        for t in range(tok.shape[0]):
            m2 = tok[t, 1] / w
            if centre:
                mu = tok[t, 0] / w
                m2 = m2 - mu * mu
                if not mu * mu <= 65536.0 * m2:  # also False for NaN
                    return False
            out[t] = math.sqrt(m2 + eps)
        return True

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
        a second copies the few inside into `buf` and a selection finds the median there (on AVX-512, with u
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
    def _max_nan(a, b):  # pragma: no cover - compiled
        """max(a, b), NaN when either is NaN (torch.maximum)."""
        return a if (a > b or a != a) else b

    @njit(cache=True, nogil=True, error_model="numpy")
    def _fold_moments(src, n, acc, sc, sums, maxima, dim_sums):  # pragma: no cover - compiled
        """ResidualStats' batch fold: for each site i with a buffer row r = src[i] ≥ 0 (`moments`' acc [R, 5, d]
        and its returns sc [R, 3]): sums[i] += (n, Σ_j acc[r, 2], Σ_j acc[r, 3], sc[r, 0]); maxima[i] = max(maxima[i],
        (sqrt(sc[r, 1]), sc[r, 2])) (NaN propagates); dim_sums[i, :2] += acc[r, :2]."""
        w = dim_sums.shape[2]
        for i in range(src.size):
            r = src[i]
            if r < 0:
                continue
            a = acc[r]
            s3, s4 = 0.0, 0.0
            for j in range(w):
                s3 += a[2, j]
                s4 += a[3, j]
            sums[i, 0] += n
            sums[i, 1] += s3
            sums[i, 2] += s4
            sums[i, 3] += sc[r, 0]
            maxima[i, 0] = _max_nan(maxima[i, 0], math.sqrt(sc[r, 1]))
            maxima[i, 1] = _max_nan(maxima[i, 1], sc[r, 2])
            for j in range(w):
                dim_sums[i, 0, j] += a[0, j]
                dim_sums[i, 1, j] += a[1, j]

    @njit(cache=True, nogil=True, error_model="numpy")
    def _fold_scales(buf, sites, counts, n, s, mn, mx, hist, lo, bpd, nb):  # pragma: no cover - compiled
        """NormScales' batch fold: for each r, site i = sites[r] with scales v = buf[i, :counts[r]] (float32):
        n[i] += counts[r]; s[i] += Σ v (float64); mn[i] / mx[i] = running min / max (NaN propagates); hist[i, b] += 1
        per value, b = clamp(floor((log10 v − lo) · bpd), −1, nb) + 1 with v ≤ 0 or NaN in bin 0 (`NormScales`' bins)."""
        for r in range(sites.size):
            i, c = sites[r], counts[r]
            row, h = buf[i], hist[i]
            tot, lo_, hi_ = 0.0, mn[i], mx[i]
            for j in range(c):
                v = np.float64(row[j])
                tot += v
                lo_ = v if (v < lo_ or v != v) else lo_
                hi_ = v if (v > hi_ or v != v) else hi_
                p = -1.0
                if v > 0:
                    p = min(max(math.floor((math.log10(v) - lo) * bpd), -1.0), nb)
                h[int(p) + 1] += 1.0
            n[i] += c
            s[i] += tot
            mn[i], mx[i] = lo_, hi_

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

    @njit(cache=True, nogil=True, error_model="numpy")
    def _angle(dot, na, nb):  # pragma: no cover - compiled
        """arccos(dot / (na · nb)) / π, the cosine clamped to [−1, 1]; a zero norm counts as orthogonal."""
        c = dot / max(na * nb, 1e-300)
        return math.acos(min(max(c, -1.0), 1.0)) / math.pi

    @njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
    def _angular(a, b, out, bn):  # pragma: no cover - compiled
        """a, b [n, w]: out[t] = arccos(cos(a_t, b_t)) / π and bn[t] = ‖b_t‖, in float64 (a zero vector counts
        as orthogonal, as `interp.collectors.effect.angular` does)."""
        n, w = a.shape
        for t in range(n):
            ra, rb = a[t], b[t]
            d, na, nb = 0.0, 0.0, 0.0
            for j in range(w):
                x = np.float64(ra[j])
                y = np.float64(rb[j])
                d += x * y
                na += x * x
                nb += y * y
            na, nb = math.sqrt(na), math.sqrt(nb)
            bn[t] = nb
            out[t] = _angle(d, na, nb)


if ENABLED:
    @njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
    def _pair_angles(a, b, an, bn, out):  # pragma: no cover - compiled
        """out[t] = arccos(cos(a_t, b_t)) / π for rows a, b [n, w], from their float64 row norms an, bn: one pass of
        float64 dot products."""
        n, w = a.shape
        for t in range(n):
            ra, rb = a[t], b[t]
            dot = 0.0
            for k in range(w):
                dot += np.float64(ra[k]) * np.float64(rb[k])
            out[t] = _angle(dot, an[t], bn[t])

    @njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
    def _angular_ring(x, ring, ns, j, seen, out, bn):  # pragma: no cover - compiled
        """x [n, w] is the stream at depth j: copied into ring[j % R] with its row norms (float64) into bn[j % R]
        (R = ring.shape[0] > max(ns)) in one pass, then for each offset ns[i] whose depth l = j − ns[i] was
        seen, out[i, l] = arccos(cos(stream at l, x)) / π per row, from the stream and norms kept at l: each
        depth's norms are taken once, where `_angular` takes both sides' at every pair (a zero vector counts as
        orthogonal, as there)."""
        R = ring.shape[0]
        n, w = x.shape
        dst, xn = ring[j % R], bn[j % R]
        for t in range(n):  # element loops: a slice assignment (ring[j % R] = x) copies ~3x slower
            row, d_ = x[t], dst[t]
            s = 0.0
            for i in range(w):
                v = row[i]
                d_[i] = v
                f = np.float64(v)
                s += f * f
            xn[t] = math.sqrt(s)
        for i in range(ns.size):
            l = j - ns[i]
            if l < 0 or not seen[l]:
                continue
            _pair_angles(ring[l % R], dst, bn[l % R], xn, out[i, l])
        seen[j] = True


    @njit(cache=True, nogil=True, error_model="numpy")
    def _angular_ring_addr(addr, n, w, ring, ns, j, seen, out, bn):  # pragma: no cover - compiled
        """`_angular_ring` of the contiguous float32 rows [n, w] at address addr (a live tensor's data_ptr())."""
        _angular_ring(carray(_f32_ptr(addr), (n, w)), ring, ns, j, seen, out, bn)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _angular_pair_at(a_addr, b_addr, n, w, an, bn, out):  # pragma: no cover - compiled
        """`_pair_angles` of the contiguous float32 rows [n, w] at addresses a_addr and b_addr (live tensors'
        data_ptr())."""
        _pair_angles(carray(_f32_ptr(a_addr), (n, w)), carray(_f32_ptr(b_addr), (n, w)), an, bn, out)

    @njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
    def _row_norms_at(addr, n, w, out):  # pragma: no cover - compiled
        """out[t] = ‖x_t‖ (float64) of the contiguous float32 rows [n, w] at address addr."""
        x = carray(_f32_ptr(addr), (n, w))
        for t in range(n):
            r = x[t]
            s = 0.0
            for k in range(w):
                f = np.float64(r[k])
                s += f * f
            out[t] = math.sqrt(s)


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


_NO_TOK = np.empty((0, 2))


def moments(x: torch.Tensor, acc: np.ndarray, tok: np.ndarray | None = None,
            init: bool = False) -> tuple[float, float, float]:
    """Rows x [n, w] (`usable`): acc [5, ≥w] float64: rows 0-3 += Σx, Σx², Σx³, Σx⁴ per dim, row 4 the running
    max |x| per dim (start it at 0, or pass init=True: all of acc is reset first, the columns past w too, which a
    narrower site leaves at 0: a caller that folds the whole row never reads what an earlier, wider site or the
    allocation left there); tok [n, 2] float64, when given, receives each row's (Σx, Σx²); returns (Σ_t ‖x_t‖,
    max_t ‖x_t‖², max |x|) in float64 (a NaN row shows in the sums, not in the maxima)."""
    if init and acc.shape[1] > x.shape[1]:
        acc[:, x.shape[1]:] = 0.0
    return _moments(as_array(x), acc, _NO_TOK if tok is None else tok, init)


def scales_from_sums(tok: np.ndarray, w: int, centre: bool, eps: float,
                     out: np.ndarray | None = None) -> torch.Tensor | None:
    """Norm scales from per-row float64 sums tok [n, 2] = (Σx, Σx²) over w values (`moments`'s tok):
    sqrt(Σx²/w − (Σx/w)² + eps) (centre: LayerNorm) or sqrt(Σx²/w + eps) (RMSNorm), in float64 rounded to float32
    -> [n] (into out, float32 [n], when given); None when a row's mean is so large against its spread
    (mean² > 2¹⁶ · variance) that the one-pass variance could lose float32 digits: then `row_scales` (two passes
    per row) must be used."""
    out = np.empty(len(tok), dtype=np.float32) if out is None else out
    return torch.from_numpy(out) if _scales_from_sums(tok, float(w), centre, float(eps), out) else None


def row_scales(x: torch.Tensor, centre: bool, eps: float, out: np.ndarray | None = None) -> torch.Tensor:
    """sqrt(mean((x − mean(x))²) + eps) (centre: LayerNorm) or sqrt(mean(x²) + eps) (RMSNorm) of each row of
    x [..., w] (`usable`), in float64 rounded to float32 -> [...] (into out, float32 with one value per row, when
    given): a norm's scale in one pass, no temporaries."""
    a = as_array(x).reshape(-1, x.shape[-1])
    out = np.empty(len(a), dtype=np.float32) if out is None else out
    _row_scales(a, centre, float(eps), out)
    return torch.from_numpy(out).view(x.shape[:-1])


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


def fold_scales(buf: np.ndarray, sites, counts, state: dict[str, torch.Tensor], lo: float, bpd: float, nb: int) -> bool:
    """Add a batch's norm scales, site sites[r]'s in buf[sites[r], :counts[r]] (float32), to NormScales' float64 state
    (n, sum, min, max, hist) in one compiled call (`_fold_scales`). False (nothing done) unless every state tensor
    is contiguous CPU float64, which the call updates in place."""
    st = [state[k] for k in ("n", "sum", "min", "max", "hist")]
    if not all(t.device.type == "cpu" and t.dtype == torch.float64 and t.is_contiguous() for t in st):
        return False
    _fold_scales(buf, np.asarray(sites, dtype=np.int64), np.asarray(counts, dtype=np.int64), *(t.numpy() for t in st),
                 float(lo), float(bpd), float(nb))
    return True


def fold_moments(src, n: int, acc: np.ndarray, sc: np.ndarray, sums: torch.Tensor, maxima: torch.Tensor,
                 dim_sums: torch.Tensor) -> bool:
    """Add a batch's `moments` buffers to ResidualStats' float64 state in one compiled call (see `_fold_moments`);
    src: the buffer row of each site (-1: not seen). False (nothing done) unless the state tensors are contiguous
    CPU float64, which the call updates in place."""
    st = (sums, maxima, dim_sums)
    if not all(t.device.type == "cpu" and t.dtype == torch.float64 and t.is_contiguous() for t in st):
        return False
    _fold_moments(np.asarray(src, dtype=np.int64), float(n), acc, sc, *(t.numpy() for t in st))
    return True


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


class AngularRing:
    """Per-batch state of `angular_ring` for D depths of n rows × w values: the last R streams (float32 or
    float64, x's dtype) and their row norms bn [R, n], which depths were seen, and the angular distances out
    [len(ns), D, n] (float64)."""

    def __init__(self, D: int, n: int, w: int, ns: tuple[int, ...], dtype):
        self.shape = (D, n, w, dtype)
        self.ns = np.asarray(ns, dtype=np.int64)
        self.ring = np.empty((max(ns) + 1, n, w), dtype=dtype)
        self.out, self.bn = np.empty((len(ns), D, n)), np.empty((max(ns) + 1, n))  # bn: the ring's row norms
        self.seen = np.zeros(D, dtype=np.bool_)


def angular_ring(x: torch.Tensor, j: int, st: AngularRing) -> None:
    """x [..., w] (`usable`) is the stream at depth j: the angular distances to the depths j − n seen before it
    (into st.out), then x kept for the depths after it. One compiled call (a contiguous float32 x read by address)."""
    w = x.shape[-1]
    if x.dtype is torch.float32 and x.is_contiguous():
        _angular_ring_addr(x.data_ptr(), x.numel() // w if w else 0, w, st.ring, st.ns, j, st.seen, st.out, st.bn)
        return
    _angular_ring(as_array(x).reshape(-1, w), st.ring, st.ns, j, st.seen, st.out, st.bn)


def angular_by_ref(x: torch.Tensor, j: int, st: AngularRing, prev: dict, sq: np.ndarray | None = None) -> None:
    """`angular_ring` without the copy: x [b, t, w] (contiguous float32) is the stream at depth j, and prev maps
    each earlier depth still needed to its tensor, which the caller keeps alive and unchanged (its `_version`
    checked); x's row norms come from sq (each row's float64 Σx², when another pass already took it) or one pass.
    The angles read both tensors where they lie (float64 dot products), into st.out as `angular_ring` does."""
    w = x.shape[-1]
    n = x.numel() // w if w else 0
    R = st.bn.shape[0]
    xn = st.bn[j % R]
    if sq is not None:
        np.sqrt(sq, out=xn)
    else:
        _row_norms_at(x.data_ptr(), n, w, xn)
    for i in range(st.ns.size):
        l = j - int(st.ns[i])
        if l >= 0 and st.seen[l]:
            _angular_pair_at(prev[l].data_ptr(), x.data_ptr(), n, w, st.bn[l % R], xn, st.out[i, l])
    st.seen[j] = True


def angular(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(arccos(cos(a_t, b_t)) / π, ‖b_t‖) per row of a, b [..., w] (`usable`), both float64 [...]."""
    shape = a.shape[:-1]
    A, B = as_array(a).reshape(-1, a.shape[-1]), as_array(b).reshape(-1, b.shape[-1])
    out, bn = np.empty(len(A)), np.empty(len(A))
    _angular(A, B, out, bn)
    return torch.from_numpy(out).view(shape), torch.from_numpy(bn).view(shape)
