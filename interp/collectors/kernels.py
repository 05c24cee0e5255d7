"""Fused CPU passes for the forward collectors (numba): each reads an activation once and accumulates in float64.

A collector hook on CPU spends its time in memory passes: torch runs one pass per operation (x², Σx, Σx², …),
about ten per tensor. These kernels do the same work in one pass over the tensor, with float64 accumulators
(more exact than float32 partial sums, not less). They run on contiguous CPU float32 / float64 arrays;
`usable(x)` says when, and the collectors keep their torch form for everything else (GPU tensors, other
dtypes, or numba missing). Compiled code is cached on disk (`cache=True`), so only the first process compiles;
the kernel files that call into this one drop their cache when it changes (`kernel_cache`).

This file holds the moments and norm scales (ResidualStats, NormScales) and what every kernel file shares;
`select_kernels` the massive activations' medians and top values, `angle_kernels` LayerEffect's angles.
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

# reassociation lets float64 sums over a row vectorise; no finite-math flags, so NaN and inf propagate
FAST = {"reassoc", "contract"}


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
