"""The token an attribution reads: an id or a one-token string, one for the batch or one per sequence."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from interp.contract import HookedModel


def resolve_token(model: HookedModel, token: int | str, what: str = "target") -> int:
    """A token id from an id or a string that the model's tokenizer encodes to exactly one token."""
    vocab = model.W_U.shape[1]
    if isinstance(token, str):
        tok = getattr(model, "tokenizer", None)
        if tok is None:
            raise ValueError(f"{what} {token!r} is text but the model has no tokenizer; pass a token id")
        ids = tok.encode(token)
        if len(ids) != 1:
            raise ValueError(f"{what} {token!r} is not a single token in the vocabulary (encodes to {len(ids)} "
                             "tokens); pass a token id or a one-token string")
        return int(ids[0])
    t = int(token)
    if not 0 <= t < vocab:
        raise ValueError(f"{what} token id {t} is not in the vocabulary (ids 0..{vocab - 1})")
    return t


def per_batch_tokens(model: HookedModel, v, b: int, what: str) -> torch.Tensor:
    """One token id per sequence from one id / string, or a list of them."""
    vals = list(v) if isinstance(v, (list, tuple, torch.Tensor)) else [v] * b
    if len(vals) != b:
        raise ValueError(f"{what} has {len(vals)} entries for a batch of {b}; pass one value or one per sequence")
    return torch.tensor([resolve_token(model, int(x) if isinstance(x, torch.Tensor) else x, what) for x in vals])
