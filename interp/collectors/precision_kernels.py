"""Fused CPU pass for the Precision collector (numba): every statistic of a site's tensor in one read.

`interp.collectors.precision.Precision.stats` in torch makes about fifteen memory passes over each tensor (|x|,
two casts, two differences, two divisions, two roundings, norms, ...). `site_stats` reads a float32 tensor twice:
once for each token's max |x| (the int8 scales need them before any error can be summed), then once for
everything else, a row at a time while the row sits in cache:

- Σx² per token, max |x|;
- fp16: values that round to inf (|x| ≥ 65520) and that flush to zero (0 < |x| ≤ 2⁻²⁵), and Σ (fp16(x) − x)²
  and Σ x² over the values that stay finite; fp16(x) is computed exactly, not approximated: in fp16's normal
  range by rounding x's float32 bits to 10 mantissa bits, round-to-nearest-even (what a cast does), in its
  subnormal range (|x| < 2⁻¹⁴) as rint(x · 2²⁴) · 2⁻²⁴ (multiples of 2⁻²⁴, ties to even);
- bf16: Σ (bf16(x) − x)², bf16(x) by rounding x's bits to 7 mantissa bits, round-to-nearest-even (torch's own
  conversion, subnormals included);
- int8 absmax per token and per sequence: Σ_d (round(x/s) − x/s)² with s = max |x| / 127 of the token or of the
  token's sequence, times s² per token (the rounding error in scaled units times the scale);
- per dim, the tokens with |x_j| ≥ α (LLM.int8() outlier features).

The roundings and differences are float32 and exact (fp16(x) − x, bf16(x) − x and round(y) − y of two nearby
floats are exact in float32); their squares and every sum are float64 (no square under- or overflows, as float32
ones would below 1e-22 or above 1.8e19); counts are float32 per row (exact up to 2^24), float64 over rows. No finite-math flags: NaN and inf propagate into the sums, where the driver's finiteness check sees
them. Compiled code is cached on disk (`cache=True`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from interp.collectors import kernel_cache
from interp.collectors.kernels import ENABLED, FAST, as_array

# slots of the float64 vector `site_stats` fills (Precision.FIELDS names the same quantities)
SUM_SQ, SUM_SQ_FP16_FINITE, N_FP16_OVERFLOW, N_FP16_FLUSH, ERR_FP16, ERR_BF16 = 0, 1, 2, 3, 4, 5
ERR_INT8_TENSOR, ERR_INT8_TOKEN, TOKREL_INT8_TENSOR, TOKREL_INT8_TOKEN, N_OUTLIER_VALUES, ABS_MAX = 6, 7, 8, 9, 10, 11
N_SLOTS = 12


def usable(x: torch.Tensor) -> bool:
    """True when `site_stats` can read x: numba present, a CPU float32 tensor (fp16 / bf16 rounding is done on
    float32 bits; other dtypes keep the torch form)."""
    return ENABLED and x.device.type == "cpu" and x.dtype == torch.float32


if ENABLED:
    from numba import njit

    @njit(cache=True, nogil=True, error_model="numpy")
    def _row_absmax(u, rows, tok):  # pragma: no cover - compiled
        """tok[k] = max_j |x[rows[k], j]| for float32 x given as its bits u (uint32): the bits of |x| (sign
        cleared) order as |x| does, so the max is an integer one (vectorised); a NaN comes out as NaN."""
        w = u.shape[1]
        tb = tok.view(np.uint32)
        sign_off = np.uint32(0x7FFFFFFF)
        for k in range(rows.size):
            r = u[rows[k]]
            m = np.uint32(0)
            for j in range(w):
                m = max(m, r[j] & sign_off)
            tb[k] = m

    @njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
    def _rows(x, u, rows, seq, n_seq, alpha, tok, hits, out, b16, bbf):  # pragma: no cover - compiled
        """The fused pass over x [N, w] float32 (u: its bits as uint32) at rows `rows` [n] of sequences `seq`
        [n] (< n_seq), with per-token max |x| tok [n]: out[slot] (float64) += the sums named by the slots,
        hits[j] (float32, exact up to 2^24 tokens) += tokens with |x_j| ≥ alpha. b16, bbf: uint32 scratch rows
        [w]. The row loop is branch-free, so it vectorises."""
        w = x.shape[1]
        n = rows.size
        seq_max = np.zeros(n_seq, dtype=np.float32)
        for k in range(n):
            seq_max[seq[k]] = max(seq_max[seq[k]], tok[k])
        f16 = b16.view(np.float32)
        fbf = bbf.view(np.float32)
        a = np.float32(alpha)
        two24, two_m24 = np.float32(2.0 ** 24), np.float32(2.0 ** -24)
        min_normal, flush, overflow = np.float32(2.0 ** -14), np.float32(2.0 ** -25), np.float32(65520.0)
        zero, one = np.float32(0.0), np.float32(1.0)
        amax = 0.0
        for k in range(n):
            r, ur = x[rows[k]], u[rows[k]]
            for j in range(w):  # fp16 (normal range) and bf16 by rounding the bits, ties to even
                b = ur[j]
                b16[j] = (b + np.uint32(0xFFF) + ((b >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
                bbf[j] = (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
            st, ss = tok[k], seq_max[seq[k]]
            it = np.float32(127.0) / st if st > 0 else zero  # 1 / s (an all-zero group has no error)
            iseq = np.float32(127.0) / ss if ss > 0 else zero
            sq, sqf, e16, ebf, et, es = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0  # float64: no square under- or overflows
            nover, nflush, nout = zero, zero, zero  # float32 counts: exact up to 2^24 per row
            for j in range(w):
                v = r[j]
                av = abs(v)
                v64 = np.float64(v)
                sq += v64 * v64
                q = np.rint(v * two24) * two_m24 if av < min_normal else f16[j]
                over = av >= overflow
                d = np.float64(zero if over else q - v)
                e16 += d * d
                sqf += 0.0 if over else v64 * v64
                nover += one if over else zero
                nflush += one if (av <= flush) & (av > zero) else zero
                d = np.float64(fbf[j] - v)
                ebf += d * d
                hit = one if av >= a else zero
                hits[j] += hit
                nout += hit
                y = v * it
                d = np.float64(np.rint(y) - y)
                et += d * d
                y = v * iseq
                d = np.float64(np.rint(y) - y)
                es += d * d
            amax = max(amax, np.float64(st))
            s_tok, s_seq = np.float64(st) / 127.0, np.float64(ss) / 127.0
            err_t, err_s = et * s_tok * s_tok, es * s_seq * s_seq
            out[SUM_SQ] += sq
            out[SUM_SQ_FP16_FINITE] += sqf
            out[N_FP16_OVERFLOW] += nover
            out[N_FP16_FLUSH] += nflush
            out[ERR_FP16] += e16
            out[ERR_BF16] += ebf
            out[ERR_INT8_TOKEN] += err_t
            out[ERR_INT8_TENSOR] += err_s
            if sq > 0:
                out[TOKREL_INT8_TOKEN] += math.sqrt(err_t / sq)
                out[TOKREL_INT8_TENSOR] += math.sqrt(err_s / sq)
            out[N_OUTLIER_VALUES] += nout
        out[ABS_MAX] = amax


def site_stats(x: torch.Tensor, rows: np.ndarray, seq: np.ndarray, n_seq: int, alpha: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """The fused pass over x [N, w] (`usable`, rows of tokens) at `rows` [n] int64, of sequences `seq` [n]
    int64 (< n_seq): (sums [N_SLOTS] float64 indexed by the slot constants, tokens with |x_j| ≥ alpha per dim
    [w] float64)."""
    a = as_array(x)
    u = a.view(np.uint32)
    tok = np.empty(rows.size, dtype=np.float32)
    _row_absmax(u, rows, tok)
    w = a.shape[1]
    out, hits = np.zeros(N_SLOTS), np.zeros(w, dtype=np.float32)
    _rows(a, u, rows, seq, n_seq, alpha, tok, hits, out, np.empty(w, dtype=np.uint32), np.empty(w, dtype=np.uint32))
    return out, hits.astype(np.float64)


kernel_cache.refresh(globals(), ("interp.collectors.kernels",))  # last: the cached kernels go when these change
