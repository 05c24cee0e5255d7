"""Next-token cross-entropy without the [rows, vocab] logits.

`variant_ce` runs forward variants (`interp.collectors.variants`) up to the unembedding, then computes every
variant's per-token CE at once: the unembedding a block of vocabulary columns at a time over all variants' rows,
with a running log-sum-exp, so no [rows, vocab] tensor exists. The driver does the same for a plain run whose
collectors read only the CE (`Collector.reads_output`, `pair_ce`). The GEMM is the same multiply-adds in
better-shaped pieces: on a 262k vocabulary one [149, 262144] product runs slower than [1024, 1024] tiles, and its
logits go through memory twice more in the log-softmax (benchmarks/skip_ablation.py measures both paths side by
side). The log-sum-exp is summed in float64, so the values are closer to a float64 computation than
F.cross_entropy of the float32 logits, whose log-softmax sums in float32.

The model's tail after the unembedding is taken as `logit_multiplier` and `logit_softcap` (the families'
attributes DLA uses too), and checked: the model's own tail runs on one position (the unembedding's input cut to
it, `final_stream`) and must give the same logits (`tail_matches`); `variant_ce` checks every call and returns
None otherwise (the caller takes the logits), the driver checks once per run on one token.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

FUSED = True  # False: every caller takes the model's logits instead (benchmarks/skip_ablation.py compares both)
VOCAB_BLOCK = 1024  # vocabulary columns per GEMM: one [ROW_BLOCK, VOCAB_BLOCK] float32 tile is 4 MB
ROW_BLOCK = 1024


def unembedding(model) -> nn.Linear | None:
    """The model's unembedding when it is a plain nn.Linear [vocab, d] (zoo: `model.unembed`; wrapped transformers
    models: `model.unembed()`, their output embeddings), else None."""
    u = getattr(model, "unembed", None)
    if u is not None and not isinstance(u, nn.Module):
        try:
            u = u()
        except ValueError:  # an encoder: no unembedding
            return None
    return u if type(u) is nn.Linear else None  # exactly nn.Linear: a subclass may compute something else


def _tail(lg: torch.Tensor, mult: float, cap: float | None) -> torch.Tensor:
    """The model's logits from its unembedding's output, in place: × multiplier, then cap · tanh(· / cap)."""
    if mult != 1.0:
        lg.mul_(mult)
    if cap:
        lg.div_(cap).tanh_().mul_(cap)
    return lg


def fused_ce(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, target: torch.Tensor,
             mult: float = 1.0, cap: float | None = None) -> torch.Tensor:
    """CE [n] (float32) of the logits _tail(h @ weight.T + bias) of rows h [n, d] against target [n], a
    [ROW_BLOCK, VOCAB_BLOCK] tile at a time: the running max m and Σ exp(logit − m) (float64) per row, the
    target's logit taken from its tile. Non-finite logits give a non-finite CE, as in F.cross_entropy."""
    n, V = h.shape[0], weight.shape[0]
    dt = torch.promote_types(h.dtype, torch.float32)  # half-precision logits are upcast, as token_ce does
    out = torch.empty(n, dtype=torch.float32, device=h.device)
    for r0 in range(0, n, ROW_BLOCK):
        x, t = h[r0:r0 + ROW_BLOCK], target[r0:r0 + ROW_BLOCK]
        k = x.shape[0]
        m = torch.full((k,), -torch.inf, dtype=dt, device=x.device)
        s = torch.zeros(k, dtype=torch.float64, device=x.device)
        tl = torch.full((k,), torch.nan, dtype=dt, device=x.device)
        for c0 in range(0, V, VOCAB_BLOCK):
            lg = _tail(torch.nn.functional.linear(x, weight[c0:c0 + VOCAB_BLOCK],
                                                  None if bias is None else bias[c0:c0 + VOCAB_BLOCK]), mult, cap).to(dt)
            here = ((t >= c0) & (t < c0 + lg.shape[1])).nonzero().squeeze(1)
            if len(here):
                tl[here] = lg[here, t[here] - c0]
            new = torch.maximum(m, lg.amax(1))
            # rows whose max is still -inf (every logit -inf so far) add exp(nan): a non-finite CE, as torch's
            s = s * torch.exp(m - new).double() + lg.sub_(new[:, None]).exp_().sum(1, dtype=torch.float64)
            m = new
        out[r0:r0 + k] = ((m.double() + s.log()) - tl.double()).float()
    return out


@contextlib.contextmanager
def final_stream(u: nn.Linear) -> Iterator[dict[str, torch.Tensor]]:
    """Within: every forward's unembedding input is kept as got["h"] and the unembedding (and the model's tail after
    it) runs on its first position only, so the model returns logits [1, 1, vocab]."""
    got: dict[str, torch.Tensor] = {}

    def cut(module, args):
        got["h"] = args[0]
        return (args[0][:1, :1], *args[1:])

    handle = u.register_forward_pre_hook(cut)
    try:
        yield got
    finally:
        handle.remove()


def tail_matches(model, u: nn.Linear, h: torch.Tensor | None, out: torch.Tensor, shape: tuple[int, int]) -> bool:
    """Whether `out`, the model's logits of the first position of h [*shape, d] under `final_stream`, equal
    _tail(h[0, 0] @ W.T + b) with the model's declared multiplier and soft-cap (False for a non-finite row)."""
    if h is None or tuple(h.shape[:2]) != shape or out.numel() != u.weight.shape[0]:
        return False
    with torch.no_grad():
        own = _tail(torch.nn.functional.linear(h[0, 0], u.weight, u.bias), *_tail_of(model))
        ref = out.reshape(-1).to(own.dtype)
        if not bool(torch.isfinite(ref).all()):
            return False  # the row cannot tell; the logits path reports what went non-finite
        return torch.allclose(own, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max().clamp(min=1.0)))


def _tail_of(model) -> tuple[float, float | None]:
    return float(getattr(model, "logit_multiplier", 1.0)), getattr(model, "logit_softcap", None)


def pair_ce(model, u: nn.Linear, h: torch.Tensor, tokens: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
    """CE [n_pairs] (row-major) of the final streams h [b, t, d] at the pairs pair [b, t - 1] of real tokens."""
    with torch.no_grad():
        return fused_ce(h[:, :-1][pair], u.weight, u.bias, tokens[:, 1:][pair], *_tail_of(model))


def fused_possible(model) -> nn.Linear | None:
    """The unembedding `variant_ce` and the driver compute the CE through, or None (FUSED off, not a next-token
    model, or no plain unembedding)."""
    from interp.collectors.objective import is_causal
    return unembedding(model) if FUSED and is_causal(model) else None


def variant_ce(model, tokens: torch.Tensor, attention_mask: torch.Tensor,
               variants: Sequence[tuple[int, torch.Tensor]]) -> list[torch.Tensor] | None:
    """Per variant (as `run_variants` takes them), the next-token CE [n_pairs] (float32) at each pair of real
    tokens in row-major order (what `objective.loss_terms` returns from the variant's logits), or None when the
    model's unembedding or tail is not one this computes (then use `run_variants` and the logits)."""
    from interp.collectors.variants import run_stacked
    u = fused_possible(model)
    if u is None or not variants:
        return None
    with final_stream(u) as got:
        out, order = run_stacked(model, tokens, attention_mask, variants)
    b, t, K = tokens.shape[0], tokens.shape[1], len(variants)
    h = got.get("h")
    if not tail_matches(model, u, h, out, (K * b, t)):
        return None  # the model does more after its unembedding than multiplier and soft-cap
    pair = attention_mask[:, :-1] & attention_mask[:, 1:]
    ce = pair_ce(model, u, h, tokens.repeat(K, 1), pair.repeat(K, 1)).view(K, int(pair.sum()))
    res: list[torch.Tensor] = [None] * K  # type: ignore[list-item]
    for j, k in enumerate(order):
        res[k] = ce[j]
    return res


def stream_bytes(model, tokens: torch.Tensor) -> int:
    """Rough bytes one variant's rows hold inside a block (float32 MLP hidden and attention scores), for grouping
    variants when no logits are kept (`variants.chunks`)."""
    cfg = getattr(model, "cfg", None)
    b, t = tokens.shape[0], tokens.shape[1]
    d = getattr(cfg, "d_model", 1024)
    return 4 * b * t * (4 * getattr(cfg, "d_mlp", 4 * d) + getattr(cfg, "n_heads", 16) * t)
