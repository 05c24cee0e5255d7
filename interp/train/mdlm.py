"""Masked diffusion (MDLM, Sahoo et al. 2024) for the zoo: the training loss and the held-out bound.

Forward process, linear schedule α_t = 1 − t: every token of x0 except position 0 is replaced by [MASK]
(`model.cfg.mask_id`) independently with probability t. Position 0 (the window's BOS) is a clean prefix: never
masked, never scored. With L = seq_len − 1 scored positions, MDLM's continuous-time bound (their eq. 10; the
weight −α'_t / (1 − α_t) is 1/t for this schedule) is, per sequence,

    NELBO(x0) = ∫₀¹ E_{z_t} [ (1/t) · Σ_{i ≥ 1, z_t,i = [MASK]} −log p_θ(x0_i | z_t, t) ] dt      (nats)

and NELBO(x0) ≥ −log p_θ(x0_{1..L} | x0_0). Everything here reports NELBO / L: nats per scored token, the unit
of the causal zoo's next-token loss (which is an exact −log p / L). Normalisation: the sum of 1/t-weighted
cross-entropies of the masked tokens is divided by L (all scored positions, masked or not), never by the
number of masked tokens; a batch's value is the mean of its sequences'.

`mdlm_loss` (the Trainer's `loss_fn`) is a one-sample Monte Carlo estimate per sequence. In train mode it draws
from the global RNG (so the Trainer's saved RNG state makes resume bitwise): t by MDLM's antithetic sampling,
t_i = (u_i + i) / B for row i of B with u_i ~ U(0, 1) (each t_i is U(0, 1); the batch is stratified), then the
masks. In eval mode it is deterministic: t_i = (i + ½) / B and masks from a generator seeded with EVAL_SEED.
`mdlm_eval` gives the held-out bound at fixed t and its integral over t by the midpoint rule.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from interp.data.batches import Batch

PREFIX = 1      # leading positions kept clean and unscored (the BOS)
EVAL_SEED = 0   # masks of the deterministic (eval-mode) loss


def check_mdlm(model: nn.Module) -> int:
    """[MASK]'s id of a masked-diffusion zoo model; a causal model raises one clear error."""
    cfg = getattr(model, "cfg", None)
    objective = getattr(cfg, "objective", "causal_lm")
    if objective != "mdlm":
        raise ValueError(f"{getattr(cfg, 'strategy', type(model).__name__)} is a {objective} model; the masked-"
                         "diffusion loss and bound need a bidirectional MDLM model (a preset with objective='mdlm', "
                         "e.g. mdlm-tdln, mdlm-adaln, mdlm-ln)")
    return cfg.mask_id


def check_t(t: torch.Tensor) -> torch.Tensor:
    """t as a 1-D float tensor; values outside [0, 1] (or NaN) raise one clear error."""
    t = torch.as_tensor(t, dtype=torch.float32).flatten()
    bad = ~((t >= 0) & (t <= 1))
    if bad.any():
        raise ValueError(f"t is the mask probability and must lie in [0, 1]; got {t[bad][:4].tolist()}")
    return t


def sample_masks(x0: torch.Tensor, t: torch.Tensor, mask_id: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """z_t [b, T] (x0 with each position ≥ PREFIX replaced by `mask_id` with probability t[b]) and the mask [b, T]."""
    u = torch.rand(x0.shape, generator=generator, device="cpu" if generator is not None else x0.device)
    masked = u.to(x0.device) < t.to(x0.device)[:, None]
    masked[:, :PREFIX] = False
    return x0.masked_fill(masked, mask_id), masked


def mdlm_terms(model: nn.Module, x0: torch.Tensor, t: torch.Tensor, masked: torch.Tensor,
               use_cond: bool = True, masked_only: bool = False) -> torch.Tensor:
    """Per sequence (1/t)·Σ_{masked i} −log p_θ(x0_i | z_t, t), nats [b]; cond = t when `use_cond`. `masked_only`:
    logits at the masked positions only, from the model's `final_hidden` when it has one (the unembedding and
    softmax of the unmasked positions, which the sum never reads, are skipped; the shapes then depend on the
    mask, so the compiled training step keeps the full form)."""
    mask_id = check_mdlm(model)
    t = check_t(t).to(x0.device)
    z = x0.masked_fill(masked, mask_id)
    kw = {"cond": t} if use_cond else {}
    if masked_only and hasattr(model, "final_hidden"):
        rows, pos = masked.nonzero(as_tuple=True)
        logits = model.unembed(model.final_hidden(z, **kw)[rows, pos])  # [n masked, d_vocab]
        ce = F.cross_entropy(logits.float(), x0[rows, pos], reduction="none")
        ce_masked = torch.zeros(x0.shape[0], dtype=ce.dtype, device=ce.device).index_add_(0, rows, ce)
    else:
        logits = model(z, **kw)  # [b, T, d_vocab]: [MASK] is never an output
        ce = F.cross_entropy(logits.flatten(0, 1).float(), x0.flatten(), reduction="none").view(x0.shape)
        ce_masked = (ce * masked).sum(1)                # 0 where nothing is masked
    return ce_masked / t.clamp(min=1e-12)               # t = 0 masks nothing: its term is 0, not 0/0


def _t_batch(n: int, training: bool) -> torch.Tensor:
    if training:  # MDLM's antithetic sampling: row i in [i/n, (i+1)/n)
        return (torch.rand(n) + torch.arange(n)) / n
    return (torch.arange(n) + 0.5) / n


def mdlm_loss(model: nn.Module, batch: Batch, use_cond: bool) -> torch.Tensor:
    """The MDLM bound per scored token (nats) of `batch.x`, one Monte Carlo sample of t and masks per sequence
    (see the module docstring); deterministic in eval mode. `batch.y` and `batch.cond` are not used."""
    mask_id = check_mdlm(model)
    x0 = batch.x
    if x0.shape[1] <= PREFIX:
        raise ValueError(f"sequences of {x0.shape[1]} tokens leave nothing to mask after the {PREFIX}-token prefix")
    t = _t_batch(x0.shape[0], model.training)
    gen = None if model.training else torch.Generator().manual_seed(EVAL_SEED)
    _, masked = sample_masks(x0, t, mask_id, gen)
    return mdlm_terms(model, x0, t, masked, use_cond).mean() / (x0.shape[1] - PREFIX)


def mdlm_loss_k(model: nn.Module, batch: Batch, use_cond: bool) -> torch.Tensor:
    """The same MDLM bound per scored token as `mdlm_loss`, estimated with bounded weights (the any-order form).

    Per sequence: draw u ~ U(0, 1)^L over the scored positions and a mask count k ~ U{1..L} (stratified over the
    batch in train mode; midpoints in eval mode), set t = the k-th smallest u and mask the k positions with
    u ≤ t. Then t | k ~ Beta(k, L − k + 1) and the mask is a uniform k-subset, and since
    ∫₀¹ (1/t)·t^k (1 − t)^(L−k) dt = (k − 1)!(L − k)!/L!, E[(1/k)·Σ_masked −log p_θ] = NELBO / L exactly: the
    1/t weight (unbounded at small t) becomes 1/k ≤ 1. Train mode draws from the global RNG; eval mode from a
    generator seeded with EVAL_SEED. `batch.y` and `batch.cond` are not used."""
    check_mdlm(model)
    x0 = batch.x
    b, L = x0.shape[0], x0.shape[1] - PREFIX
    if L < 1:
        raise ValueError(f"sequences of {x0.shape[1]} tokens leave nothing to mask after the {PREFIX}-token prefix")
    gen = None if model.training else torch.Generator().manual_seed(EVAL_SEED)
    frac = (torch.rand(b) + torch.arange(b)) / b if model.training else (torch.arange(b) + 0.5) / b
    k = (frac * L).long().clamp(0, L - 1) + 1                      # [b] in 1..L, stratified
    u = torch.rand(b, L, generator=gen)
    t = u.sort(1).values.gather(1, (k - 1)[:, None])[:, 0]        # the k-th smallest u
    masked = torch.zeros(x0.shape, dtype=torch.bool)
    masked[:, PREFIX:] = u <= t[:, None]
    masked = masked.to(x0.device)
    terms = mdlm_terms(model, x0, t, masked, use_cond) * t.to(x0.device)   # Σ_masked CE (undo the 1/t)
    return (terms / k.to(x0.device)).mean()


@dataclass
class MDLMEval:
    """Held-out MDLM bound. `per_t`: one row per t — t, in_nelbo (a midpoint of the NELBO grid), bound (mean over
    sequences of the 1/t-weighted masked cross-entropy / L, nats/token), bound_sem (its standard error over
    sequences), ce_masked (mean cross-entropy per masked token, nats), masked_frac, n_seq. `nelbo`: the integral
    over t of `bound` by the midpoint rule on the in_nelbo rows (nats/token); `nelbo_sem`: the standard error over
    sequences of each sequence's midpoint-rule NELBO; `per_seq`: seq (0-based, batch order), nelbo (that
    sequence's midpoint-rule NELBO, nats/token)."""

    per_t: pd.DataFrame
    nelbo: float
    nelbo_sem: float
    per_seq: pd.DataFrame


@torch.no_grad()
def mdlm_eval(model: nn.Module, batches: Iterable[Batch], n_t: int = 10, extra_t: Iterable[float] = (1.0,),
              seed: int = 0, use_cond: bool | None = None, n_draws: int = 1) -> MDLMEval:
    """The MDLM bound of `batches` at t = (k + ½)/n_t, k < n_t (their mean: the NELBO) and at `extra_t`, each
    sequence's value averaged over `n_draws` mask draws; masks from a generator seeded by (seed, k):
    deterministic, the global RNG untouched. Runs in eval mode."""
    check_mdlm(model)
    if n_t < 1 or n_draws < 1:
        raise ValueError(f"n_t and n_draws must be at least 1; got {n_t} and {n_draws}")
    extra = [float(x) for x in extra_t]
    check_t(torch.tensor(extra, dtype=torch.float64))   # the rows keep the t asked for, not its float32 rounding
    if any(t == 0 for t in extra):
        raise ValueError("t = 0 masks nothing, so the bound at t = 0 is undefined; use t in (0, 1]")
    use_cond = bool(getattr(model.cfg, "conditioned", False)) if use_cond is None else use_cond
    batches = list(batches)
    if not batches:
        raise ValueError("mdlm_eval needs at least one batch of held-out tokens")
    for b in batches:
        if b.x.dim() != 2 or b.x.shape[0] < 1 or b.x.shape[1] <= PREFIX:
            raise ValueError(f"mdlm_eval needs batches [sequences ≥ 1, tokens > {PREFIX}] (the first {PREFIX} token is "
                             f"a clean prefix, never masked); got a batch of shape {tuple(b.x.shape)}")
    grid = [(k + 0.5) / n_t for k in range(n_t)]
    was = model.training
    model.eval()
    rows, per_seq = [], []
    for k, t in enumerate(grid + extra):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + k)
        terms, ce_sum, n_masked, n_pos = [], 0.0, 0, 0
        for b in batches:
            x0 = b.x
            tt = torch.full((x0.shape[0],), t)
            term = torch.zeros(x0.shape[0], dtype=torch.float64)
            for _ in range(n_draws):
                _, masked = sample_masks(x0, tt, model.cfg.mask_id, gen)
                term += mdlm_terms(model, x0, tt, masked, use_cond, masked_only=True).double().cpu() / n_draws
                n_masked += int(masked.sum())
                n_pos += masked[:, PREFIX:].numel()
            terms.append(term / (x0.shape[1] - PREFIX))
            ce_sum += float(term.sum()) * t * n_draws
        seq = torch.cat(terms)
        if k < n_t:
            per_seq.append(seq)
        rows.append({"t": t, "in_nelbo": k < n_t, "bound": float(seq.mean()),
                     "bound_sem": float(seq.std() / len(seq) ** 0.5) if len(seq) > 1 else float("nan"),
                     "ce_masked": ce_sum / n_masked if n_masked else float("nan"),
                     "masked_frac": n_masked / n_pos, "n_seq": len(seq)})
    model.train(was)
    nelbo_seq = torch.stack(per_seq).mean(0)  # each sequence's midpoint-rule NELBO
    sem = float(nelbo_seq.std() / len(nelbo_seq) ** 0.5) if len(nelbo_seq) > 1 else float("nan")
    per_seq_df = pd.DataFrame({"seq": range(len(nelbo_seq)), "nelbo": nelbo_seq.numpy()})
    return MDLMEval(pd.DataFrame(rows), float(nelbo_seq.mean()), sem, per_seq_df)
