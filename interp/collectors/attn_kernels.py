"""One compiled fold for `AttnLogits` on CPU: the attended logits q·k/√d_head of a layer, read once.

The torch form scales the [b, heads, t, t] score tensor, masks it, squares it, sums it in float64 and takes
its |max|: five passes and as many temporaries. Here the raw scores come from one batched product (a key head
shared by a group of query heads is broadcast to it, not repeated) and one numba pass folds each counted
query's attended keys (causal: up to the query) into Σ s² (float64) and max |s| per head, with s scaled by
1/√d_head in float32 (within an ulp of torch's division).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from interp.collectors import kernel_cache
from interp.collectors.kernels import ENABLED, as_array

if ENABLED:
    from numba import njit

    from interp.collectors.kernels import FAST

    @njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
    def _fold_scores(s, qm, km, causal, inv, sq, mx):  # pragma: no cover - compiled
        """s [b, H, t, t] float32 raw scores q·k, qm / km [b, t] bool: query counted / key real. Over every counted
        query and attended key (causal: at or before the query), with x = s · inv in float32: sq[h] += Σ x²
        (float64) and mx[h] = max |x| as float32 bits (uint32: the bits of non-negative floats order as the
        values do, and a NaN's lie above +inf's, so it propagates). Returns the pairs per head."""
        b, H, t = s.shape[0], s.shape[1], s.shape[2]
        row = np.empty(t, dtype=np.float32)
        bits = row.view(np.uint32)
        pairs = 0
        for r in range(b):
            real = km[r]
            for i in range(t):
                if not qm[r, i]:
                    continue
                end = i + 1 if causal else t
                for j in range(end):
                    pairs += 1 if real[j] else 0
                for h in range(H):
                    src = s[r, h, i]
                    s2 = 0.0
                    for j in range(end):
                        x = src[j] * inv
                        row[j] = x
                        s2 += np.float64(x) * np.float64(x) if real[j] else 0.0
                    top = mx[h]
                    for j in range(end):
                        top = max(top, bits[j] & np.uint32(0x7FFFFFFF) if real[j] else np.uint32(0))
                    sq[h] += s2
                    mx[h] = top
        return pairs


def usable(q: torch.Tensor, k: torch.Tensor) -> bool:
    """True when the kernel can fold these q [b, t, H, dh] and k [b, t, Hk, dh]: numba, CPU, float32, Hk | H."""
    return (ENABLED and q.device.type == "cpu" and q.dtype == torch.float32 and k.dtype == torch.float32
            and q.dim() == 4 and k.dim() == 4 and q.shape[2] % k.shape[2] == 0)


def score_moments(q: torch.Tensor, k: torch.Tensor, qm: torch.Tensor, km: torch.Tensor,
                  causal: bool) -> tuple[int, np.ndarray, np.ndarray]:
    """(pairs per head, Σ s² per head float64 [H], max |s| per head float32 [H]) of the logits s = q·k/√d_head over
    counted queries (qm [b, t]) and real keys (km [b, t]) at or before them when `causal` (`usable` inputs)."""
    b, t, H, dh = q.shape
    Hk = k.shape[2]
    with torch.no_grad():  # raw scores [b, H, t, t]: one batched product, a shared key head broadcast to its group
        s = torch.matmul(q.detach().transpose(1, 2).reshape(b, Hk, H // Hk, t, dh),
                         k.detach().permute(0, 2, 3, 1)[:, :, None]).reshape(b, H, t, t)
    sq, mx = np.zeros(H), np.zeros(H, dtype=np.uint32)
    inv = np.float32(1.0 / math.sqrt(dh))  # within an ulp of torch's division by √d_head
    pairs = _fold_scores(as_array(s), as_array(qm.bool()), as_array(km.bool()), causal, inv, sq, mx)
    return int(pairs), sq, mx.view(np.float32)


kernel_cache.refresh(globals(), ("interp.collectors.kernels",))  # last: the cached kernels go when these change
