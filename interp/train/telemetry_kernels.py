"""Compiled telemetry passes (numba): per-group sums of squares of float32 tensors read in place, in float64.

The torch form of the step's telemetry copies every gradient and every weight into one float64 vector (three
870k-value copies a step on the zoo model, then a subtraction and a dot product per group): about 6 % of a
training step. These passes read each parameter's (or gradient's) memory where it lies, through its address,
and square and sum in float64 as that form does (a float32 value and the difference of two are exact in float64),
so only the summation order differs. `usable` says when they apply; the telemetry keeps its torch form otherwise.
"""
from __future__ import annotations

import numpy as np
import torch

from interp.collectors import kernel_cache, kernels

ENABLED = kernels.ENABLED

if ENABLED:
    from numba import carray, njit

    @njit(cache=True, nogil=True, fastmath=kernels.FAST, error_model="numpy")
    def _group_squares_at(addrs, lens, groups, out):  # pragma: no cover - compiled
        """out[groups[i]] += Σ v² over the float32 values v of tensor i (lens[i] of them at address addrs[i])."""
        for i in range(addrs.shape[0]):
            v = carray(kernels._f32_ptr(addrs[i]), (lens[i],))
            s = 0.0
            for j in range(lens[i]):
                x = np.float64(v[j])
                s += x * x
            out[groups[i]] += s

    @njit(cache=True, nogil=True, error_model="numpy")
    def _gather_at(addrs, lens, dst):  # pragma: no cover - compiled
        """dst = the float32 values of tensors i = 0, 1, ... one after another (a flat copy)."""
        o = 0
        for i in range(addrs.shape[0]):
            v = carray(kernels._f32_ptr(addrs[i]), (lens[i],))
            dst[o:o + lens[i]] = v
            o += lens[i]

    @njit(cache=True, nogil=True, fastmath=kernels.FAST, error_model="numpy")
    def _delta_squares_at(addrs, lens, groups, old, du, w):  # pragma: no cover - compiled
        """Tensor i now (at addrs[i]) against its earlier values old[o : o + lens[i]] (tensors one after another):
        du[groups[i]] += Σ (v − v_old)², w[groups[i]] += Σ v_old², in float64."""
        o = 0
        for i in range(addrs.shape[0]):
            v = carray(kernels._f32_ptr(addrs[i]), (lens[i],))
            a, b = 0.0, 0.0
            for j in range(lens[i]):
                p = np.float64(old[o + j])
                d = np.float64(v[j]) - p
                a += d * d
                b += p * p
            du[groups[i]] += a
            w[groups[i]] += b
            o += lens[i]


def usable(tensors: list[torch.Tensor]) -> bool:
    """True when the passes can read every tensor in place: numba present, dense contiguous CPU float32."""
    return ENABLED and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.layout == torch.strided
                           and t.is_contiguous() for t in tensors)


def addresses(tensors: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """(data addresses, value counts) of `tensors`, as the passes take them; the caller keeps the tensors alive."""
    return (np.array([t.data_ptr() for t in tensors], dtype=np.int64),
            np.array([t.numel() for t in tensors], dtype=np.int64))


def group_squares(tensors: list[torch.Tensor], groups: np.ndarray, n_groups: int) -> np.ndarray:
    """[n_groups] float64: Σ v² over the values of the tensors of each group (`groups[i]`: tensor i's group)."""
    out = np.zeros(n_groups)
    addrs, lens = addresses(tensors)
    _group_squares_at(addrs, lens, groups, out)
    return out


def gather(tensors: list[torch.Tensor], dst: np.ndarray) -> None:
    """Copy the values of `tensors`, one after another, into the float32 vector `dst`."""
    _gather_at(*addresses(tensors), dst)


def delta_squares(tensors: list[torch.Tensor], old: np.ndarray, groups: np.ndarray,
                  n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(Σ (v − v_old)², Σ v_old²) per group, float64, of `tensors` against `old` (their values, as `gather` wrote)."""
    du, w = np.zeros(n_groups), np.zeros(n_groups)
    addrs, lens = addresses(tensors)
    _delta_squares_at(addrs, lens, groups, old, du, w)
    return du, w


kernel_cache.refresh(globals(), ("interp.collectors.kernels",))  # last: the cached kernels go when these change
