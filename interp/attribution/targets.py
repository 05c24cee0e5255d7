"""The token an attribution reads: an id or a one-token string, one for the batch or one per sequence."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
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
    if t != token:
        raise ValueError(f"{what} {token!r} is not a token id; pass an integer id or a one-token string")
    if not 0 <= t < vocab:
        raise ValueError(f"{what} token id {t} is not in the vocabulary (ids 0..{vocab - 1})")
    return t


def _many(v) -> bool:
    """Whether v holds one value per sequence: a list, tuple, or a tensor / numpy array / Series with a dimension."""
    return isinstance(v, (list, tuple)) or getattr(v, "ndim", 0) > 0


def per_batch_tokens(model: HookedModel, v, b: int, what: str) -> torch.Tensor:
    """One token id per sequence from one id / string, or a list (tensor, numpy array) of them."""
    vals = list(v) if _many(v) else [v] * b
    if len(vals) != b:
        raise ValueError(f"{what} has {len(vals)} entries for a batch of {b}; pass one value or one per sequence")
    return torch.tensor([resolve_token(model, int(x) if isinstance(x, torch.Tensor) else x, what) for x in vals])


def batch_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Token ids as [b, t] (a single sequence [t] gets a batch of one); empty or other shapes raise."""
    tokens = tokens[None] if tokens.dim() == 1 else tokens
    if tokens.dim() != 2 or tokens.shape[1] == 0:
        raise ValueError(f"tokens must be token ids [batch, pos] with at least one position; got shape "
                         f"{tuple(tokens.shape)}")
    return tokens


def positions(pos, b: int, t: int) -> torch.Tensor:
    """The position read in each of b sequences of t tokens (one int, or one per sequence as a list, tensor or numpy
    array; negative from the end)."""
    if isinstance(pos, torch.Tensor):
        raw = (pos if pos.dim() > 0 else pos.expand(b)).flatten()
    else:
        raw = torch.as_tensor(np.asarray(pos if _many(pos) else [pos] * b)).flatten()
    p = raw.long()
    if not torch.equal(p.to(raw.dtype), raw):  # 2.5 is no position: not silently read as 2
        raise ValueError(f"pos {pos} is not a whole position; pass an int (or one per sequence)")
    if len(p) != b or ((p < -t) | (p >= t)).any():
        raise ValueError(f"pos {pos} is out of range for {b} sequences of {t} tokens; pass one position or one "
                         "per sequence")
    return p % t


def mask_kwargs(tokens: torch.Tensor, attention_mask: torch.Tensor | None) -> dict:
    """The forward's keyword for a padded batch (attention_mask [b, t], True on real tokens), checked; {} without."""
    if attention_mask is None:
        return {}
    mask = attention_mask[None] if attention_mask.dim() == 1 else attention_mask
    if mask.shape != tokens.shape:
        raise ValueError(f"attention_mask has shape {tuple(mask.shape)}, the tokens {tuple(tokens.shape)}; pass one "
                         "mask entry per token (True on real tokens, as batch_encode returns it)")
    return {"attention_mask": mask.bool()}
