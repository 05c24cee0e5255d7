"""The scalar a model is judged by on a batch: next-token cross-entropy for causal LMs, a fixed substitute
for encoders (which have no LM head).

Encoder substitute: s = Σ_sequences ⟨r, mean-pooled final hidden state⟩ with r a fixed random direction
(r ~ N(0, I/d), torch seed 0). It is linear in the pooled embedding, so its gradient reaches every layer and
does not depend on the embedding's scale; it is a probe, not a training loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from interp.card import ModelCard

_PROBES: dict[int, torch.Tensor] = {}


def probe(d: int) -> torch.Tensor:
    """The fixed random direction r [d] of the encoder substitute objective."""
    if d not in _PROBES:
        g = torch.Generator().manual_seed(0)
        _PROBES[d] = torch.randn(d, generator=g, dtype=torch.float64) / d ** 0.5
    return _PROBES[d]


def is_causal(model) -> bool:
    """Whether the model predicts the next token; encoders and masked-diffusion (MDLM) models take the probe.
    `model` may be its `ModelCard` instead (a collector's card, read once: a model's card walks its parameters)."""
    card = model if isinstance(model, ModelCard) else model.card
    return getattr(card, "objective", "causal_lm") not in ("encoder", "mdlm")


def loss_terms(model, output: torch.Tensor, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-item objective terms (differentiable): CE per predicted token [n] for causal LMs (only pairs of
    real tokens), ⟨r, pooled⟩ per sequence [b] for encoders."""
    if is_causal(model):
        pair = attention_mask[:, :-1] & attention_mask[:, 1:]
        # every position's CE on the logits as they are (no copy of the [b, t, vocab] logits selected by a mask:
        # 160 MB for Gemma-3's 262k vocabulary), the last position and unpaired ones ignored, then the pairs kept
        tgt = torch.full_like(tokens, -100)
        tgt[:, :-1] = tokens[:, 1:].masked_fill(~pair, -100)
        ce = F.cross_entropy(output.flatten(0, 1).float(), tgt.flatten(), reduction="none", ignore_index=-100)
        return ce.view(tokens.shape)[:, :-1][pair]
    m = attention_mask.to(output.dtype).unsqueeze(-1)
    pooled = (output * m).sum(1) / m.sum(1).clamp(min=1)
    return pooled @ probe(output.shape[-1]).to(output.device, output.dtype)


def objective_name(model) -> str:
    return "next_token_ce" if is_causal(model) else "encoder_probe"
