"""Angular-distance kernels (numba) for `LayerEffect`: arccos(cos(h_l, h_{l+n})) / π per token between depths of
the residual stream, from float64 dot products and row norms, each depth's norms taken once.

The stream of the last depths is kept in a ring (`angular_ring`), or read where it lies when the caller keeps those
tensors alive (`angular_by_ref`). Compiled code is cached on disk, as in `interp.collectors.kernels`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from interp.collectors import kernel_cache
from interp.collectors.kernels import ENABLED, FAST, as_array

if ENABLED:
    from numba import carray, njit

    from interp.collectors.kernels import _f32_ptr

if ENABLED:
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


kernel_cache.refresh(globals(), ("interp.collectors.kernels",))  # last: the cached kernels go when these change
