"""The matrix-multiply layers the precision runs act on: `nn.Linear` (weight [out, in]) and transformers' `Conv1D`
(GPT-2's attention and MLP projections: the same affine map y = x W + b with the weight stored [in, out]).
Selecting `nn.Linear` alone would leave every GEMM inside GPT-2's blocks untouched."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

try:  # transformers comes with transformer-lens; a zoo-only install without it has no Conv1D to find
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover
    Conv1D = None

GEMM_TYPES: tuple[type, ...] = (nn.Linear,) if Conv1D is None else (nn.Linear, Conv1D)


def is_gemm(mod: nn.Module) -> bool:
    return isinstance(mod, GEMM_TYPES)


def gemm_modules(model: nn.Module) -> Iterator[nn.Module]:
    """Every nn.Linear and Conv1D of `model`, each once."""
    return (m for m in model.modules() if is_gemm(m))


def gemm_kinds(model: nn.Module) -> str:
    """The kinds of GEMM layer `model` has, for run notes: "nn.Linear", "Conv1D" or "nn.Linear / Conv1D"."""
    kinds = {"nn.Linear" if isinstance(m, nn.Linear) else "Conv1D" for m in gemm_modules(model)}
    return " / ".join(k for k in ("nn.Linear", "Conv1D") if k in kinds) or "nn.Linear"


def linear_weight(mod: nn.Module) -> torch.Tensor:
    """The layer's weight in nn.Linear's layout [out, in] (Conv1D's [in, out] transposed; a view, no copy)."""
    return mod.weight if isinstance(mod, nn.Linear) else mod.weight.T
