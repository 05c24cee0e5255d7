"""Folding affine maps into linear layers, the shared step of LN removal and of the RMSNorm conversions.

A norm with a fixed divisor is affine: N(x) = C(x)/σ · w + b, C the mean-centring (or the identity). Followed
by a linear layer y = W·N(x) + c it is one linear layer: W' = (W·diag(w/σ))·C, c' = c + W·b. Centring a
matrix's *input* subtracts its mean over input columns; centring what it *writes* subtracts the mean over rows.
"""
from __future__ import annotations

import torch


def fold_affine(W: torch.Tensor, c: torch.Tensor | None, w: torch.Tensor, b: torch.Tensor | None,
                sigma: float | torch.Tensor = 1.0, centre: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [out, in], c [out]) reading N(x) = C(x)/σ·w + b  ->  (W', c') reading x directly."""
    c = torch.zeros(W.shape[0], dtype=W.dtype) if c is None else c
    c = c + (W @ b if b is not None else 0)
    W = W * (w / sigma)[None, :]
    if centre:
        W = W - W.mean(1, keepdim=True)
    return W, c


def centre_writes(W: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Make a layer's output zero-mean over d_model: W [d, in] (nn.Linear layout), c [d]."""
    return W - W.mean(0, keepdim=True), None if c is None else c - c.mean()


def copy_into(model, state: dict[str, torch.Tensor]) -> None:
    """Load `state` into `model` strictly (a tied unembedding may be missing), keeping the model's dtype."""
    dtype = next(model.parameters()).dtype
    missing, unexpected = model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False)
    missing = [k for k in missing if not (model.cfg.tie_embeddings and k == "unembed.weight")]
    if missing or unexpected:
        raise RuntimeError(f"surgery produced a state that does not fit the model: missing {missing[:4]}, "
                           f"unexpected {unexpected[:4]}")
