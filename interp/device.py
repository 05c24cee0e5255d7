"""Where a model runs and in which precision: `device` ("cpu", "cuda", "cuda:1", "auto") and `dtype`
("fp32", "bf16" or a torch.dtype). Statistics never use the model's dtype: collectors accumulate in float64.
"""
from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """A torch.device; "auto" (or None) is cuda when a GPU is visible, else cpu. Asking for cuda without one
    raises a one-line error saying so."""
    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; choose 'cpu', 'cuda', 'cuda:N' or 'auto'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} was asked for but no CUDA GPU is available "
                               f"(torch {torch.__version__}, cuda build: {torch.version.cuda or 'none'}); "
                               "use device='cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {device!r} does not exist: {torch.cuda.device_count()} GPU(s) visible")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r} is not supported; choose 'cpu', 'cuda', 'cuda:N' or 'auto'")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None = "fp32") -> torch.dtype:
    """torch.float32 or torch.bfloat16 from a name or a dtype (None = fp32). fp16 is refused: real models'
    residual streams overflow it (Gemma-3 reaches ~1e5)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float32, torch.bfloat16, torch.float64):
            return dtype
    elif str(dtype).lower() in DTYPES:
        return DTYPES[str(dtype).lower()]
    raise ValueError(f"unsupported dtype {dtype!r}; choose 'fp32' or 'bf16' (fp16 overflows real models' "
                     "residual streams)")


def model_device(model) -> torch.device:
    """The device of the model's first parameter (cpu for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def place(model, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None):
    """Move `model` to `device` and cast it to `dtype` (None leaves that one as it is); returns the model."""
    kw = {}
    if device is not None:
        kw["device"] = resolve_device(device)
    if dtype is not None:
        kw["dtype"] = resolve_dtype(dtype)
    return model.to(**kw) if kw else model
