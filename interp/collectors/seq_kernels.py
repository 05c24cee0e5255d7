"""One compiled pass per hidden state for `SequenceStats` on CPU: each sequence's Σx, Σx², Σ|x| in float64.

The torch form converts the whole [b, t, d] tensor to float64 and reads it about eight times (mask, products,
three sums, |x|, a copy per row for the median). Here one pass over the counted positions of each row gives
the three sums, and the median pass of `select_kernels.abs_medians` (exact lower median of |x|, on float32 bits) also
gives each token's max |x|, whose max is the row's.
"""
from __future__ import annotations

import numpy as np
import torch

from interp.collectors import kernel_cache, kernels, select_kernels

if kernels.ENABLED:
    from numba import njit

    @njit(cache=True, nogil=True, fastmath=kernels.FAST, error_model="numpy")
    def _row_sums(x, mask, out):  # pragma: no cover - compiled
        """x [b, t, d] float32, mask [b, t] bool: out[r] = (Σx, Σx², Σ|x|) over row r's counted positions,
        float64 (a NaN shows in the sums)."""
        b, t, d = x.shape
        for r in range(b):
            s1, s2, sa = 0.0, 0.0, 0.0
            for i in range(t):
                if not mask[r, i]:
                    continue
                row = x[r, i]
                for e in range(d):
                    v = np.float64(row[e])
                    s1 += v
                    s2 += v * v
                    sa += abs(v)
            out[r, 0], out[r, 1], out[r, 2] = s1, s2, sa


def usable(x: torch.Tensor) -> bool:
    """True when `row_stats` can read x [b, t, d]: numba, CPU, float32 (the median works on float32 bits)."""
    return kernels.ENABLED and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 3


def row_stats(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For x [b, t, d] (`usable`) over each row's positions where mask [b, t]: ((Σx, Σx², Σ|x|) float64 [b, 3],
    max |x| float32 [b], lower median of |x| float32 [b]); rows without a counted position give 0 everywhere. A NaN
    in a row makes its sums, max and median NaN (torch's kthvalue would rank it last instead)."""
    x = x.detach()
    b, t, d = x.shape
    sums = np.empty((b, 3))
    m = mask.bool()
    _row_sums(kernels.as_array(x), kernels.as_array(m), sums)
    if bool(m.all()):
        md, tmax = select_kernels.abs_medians(x.reshape(b, -1), d)
        return torch.from_numpy(sums), tmax.amax(1), md
    top, med = torch.zeros(b), torch.zeros(b)
    for r in range(b):
        if bool(m[r].any()):
            md, tmax = select_kernels.abs_medians(x[r][m[r]].reshape(1, -1), d)
            top[r], med[r] = tmax.max(), md[0]
    return torch.from_numpy(sums), top, med


kernel_cache.refresh(globals(), ("interp.collectors.kernels",))  # last: the cached kernels go when these change
