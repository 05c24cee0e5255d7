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


CE_CHUNK_BYTES = 4 << 20  # fp32 logits of the rows one cross-entropy call takes (token_ce)


def token_ce(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """F.cross_entropy(logits.float(), target, reduction="none", ignore_index=...) of logits [n, vocab], target [n],
    the same values bit for bit. On CPU without a gradient it runs a few rows at a time (~4 MB of fp32 logits)
    through one reused buffer: F.cross_entropy's log-softmax of the whole [n, vocab] (1 GB for 1,000 tokens of a
    262k vocabulary) goes through memory and, on a fresh allocation, through page faults
    (benchmarks/cross_entropy.py). With a gradient it is one call: the backward of row slices would write a zero
    gradient of the whole input per chunk (~10x slower)."""
    n, v = logits.shape
    rows = max(1, CE_CHUNK_BYTES // (4 * max(v, 1)))
    grad = torch.is_grad_enabled() and logits.requires_grad
    if logits.device.type != "cpu" or n <= 4 * rows or grad:
        return F.cross_entropy(logits.float(), target, reduction="none", ignore_index=ignore_index)
    keep = target != ignore_index
    safe = target.masked_fill(~keep, 0)[:, None]  # [n, 1]
    lp = torch.empty(rows, v, dtype=torch.float32)  # each chunk's log-probabilities, in place
    up = torch.empty(rows, v, dtype=torch.float32) if logits.dtype != torch.float32 else None  # each chunk upcast, in place
    out = torch.empty(n, dtype=torch.float32)  # float32 whatever torch's default dtype, as F.cross_entropy's
    for i in range(0, n, rows):
        x, r = logits[i:i + rows], min(rows, n - i)
        if up is not None:
            x = up[:r].copy_(x)
        torch.log_softmax(x, -1, out=lp[:r])
        torch.neg(lp[:r].gather(1, safe[i:i + r]).squeeze(1), out=out[i:i + r])  # nll_loss: −log p of the target
    return out.masked_fill_(~keep, 0.0)


def is_causal(model) -> bool:
    """Whether the model predicts the next token; encoders and masked-diffusion (MDLM) models take the probe.
    `model` may be its `ModelCard` instead (a collector's card, read once: a model's card walks its parameters)."""
    card = model if isinstance(model, ModelCard) else model.card
    return getattr(card, "objective", "causal_lm") not in ("encoder", "mdlm")


def next_token_ce(logits: torch.Tensor, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """`token_ce` of logits [b, t, vocab] against the next token at every position [b, t]: 0 at the last position
    and wherever keep [b, t - 1] is False. The logits are read as they are, not copied out by a mask (a [b, t, 262k]
    selection copies ~1 GB)."""
    tgt = torch.full_like(tokens, -100)
    tgt[:, :-1] = tokens[:, 1:].masked_fill(~keep, -100)
    return token_ce(logits.flatten(0, 1), tgt.flatten()).view(tokens.shape)


def loss_terms(model, output: torch.Tensor, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-item objective terms (differentiable): CE per predicted token [n] for causal LMs (only pairs of
    real tokens), ⟨r, pooled⟩ per sequence [b] for encoders."""
    if is_causal(model):
        pair = attention_mask[:, :-1] & attention_mask[:, 1:]
        return next_token_ce(output, tokens, pair)[:, :-1][pair]  # the pairs of real tokens kept
    m = attention_mask.to(output.dtype).unsqueeze(-1)
    pooled = (output * m).sum(1) / m.sum(1).clamp(min=1)
    return pooled @ probe(output.shape[-1]).to(output.device, output.dtype)


def objective_name(model) -> str:
    return "next_token_ce" if is_causal(model) else "encoder_probe"
