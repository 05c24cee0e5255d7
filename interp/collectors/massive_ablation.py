"""The massive-activation ablation (Sun et al. 2024 §3): the massive values at one depth set to zero or to each
dim's mean, and the next-token loss that follows, per sequence.

`MassiveActivations.ablation` / `ablation_runs` run it; `_AblationBatched` is the batched form they use (the two
edits run from the depth on as variants of the intact forward, `interp.collectors.variants`), `_AblationRun` the
direct form (one full forward per mode) it is tested against.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from interp.collectors.base import Collector, NonFiniteError
from interp.collectors.objective import loss_terms

if TYPE_CHECKING:
    from interp.collectors.massive import MassiveActivations

MODES = ("none", "zero", "mean")


def edit_massive(src: MassiveActivations, x: torch.Tensor, mask: torch.Tensor, dims: torch.Tensor,
                 mean: torch.Tensor, mode: str) -> tuple[torch.Tensor, int]:
    """(x with its massive values in `dims` set to zero or to `mean` (re-detected with src's rule), count)."""
    _, _, massive = src.detect(x, mask)
    sel = massive[..., dims]  # [b, t, k]
    x = x.clone()
    sub = x[..., dims]
    fill = torch.zeros_like(sub) if mode == "zero" else mean.to(x.dtype).expand_as(sub)
    x[..., dims] = torch.where(sel, fill, sub)
    return x, int(sel.sum())


def seq_sums(ce: torch.Tensor, batch) -> list[tuple[float, int]]:
    """(Σ next-token CE, predicted tokens) of each sequence of the batch, from the CE at each pair of real tokens in
    row-major order (`objective.loss_terms` of the logits, or `tail_loss` without them)."""
    am = batch.attention_mask
    counts = (am[:, :-1] & am[:, 1:]).sum(1).tolist()
    out = []
    for r, part in enumerate(ce.double().split(counts)):
        if not bool(torch.isfinite(part).all()):
            raise NonFiniteError(f"loss is not finite in sequence {r} of batch {batch.index}")
        out.append((float(part.sum()), int(counts[r])))
    return out


class _AblationBatched(Collector):
    """The three ablation modes in one pass: the intact forward gives "none" and the stream at the depth; the
    zero and mean edits run from that depth on as two batched variants."""

    name = "massive_ablation"
    reads_output = "ce"  # "none" is the intact CE: batch.ce when the driver computed it without logits

    def __init__(self, src: MassiveActivations, depth: int, dims: torch.Tensor, mean: torch.Tensor):
        super().__init__()
        self.src, self.depth, self.dims, self.mean = src, depth, dims, mean
        self.per_seq: dict[str, list[tuple[float, int]]] = {m: [] for m in MODES}
        self.replaced = {m: 0 for m in MODES}

    def hooks(self, model):
        return [(self.src.hooks_[self.depth], self._keep)]

    def _keep(self, x, hook):
        self._x = x.detach()

    def end_batch(self, model, batch, output):
        am = batch.attention_mask
        ce = batch.ce[am[:, :-1] & am[:, 1:]] if output is None else loss_terms(model, output, batch.tokens, am)
        self.per_seq["none"] += seq_sums(ce, batch)
        run_edits(self.src, model, self._x, batch, self.depth, self.dims, self.mean, self.per_seq, self.replaced)
        self._x = None


def run_edits(src: MassiveActivations, model, x: torch.Tensor, batch, depth: int, dims: torch.Tensor,
              mean: torch.Tensor, per_seq: dict, replaced: dict) -> None:
    """The zero and mean edits of the stream x at `depth`, run from that depth on as two batched variants; each
    sequence's (Σ CE, predicted tokens) is appended to per_seq[mode] and the elements replaced counted."""
    from interp.collectors.tail_loss import variant_ce
    from interp.collectors.variants import run_variants
    variants = []
    for mode in ("zero", "mean"):
        edited, n = edit_massive(src, x, batch.attention_mask, dims, mean, mode)
        variants.append((depth, edited))
        replaced[mode] += n
    tok, am = batch.tokens, batch.attention_mask
    ces = variant_ce(model, tok, am, variants) or [  # without the logits when it can, else from them
        loss_terms(model, out, tok, am) for out in run_variants(model, tok, am, variants)]
    for mode, ce in zip(("zero", "mean"), ces):
        try:
            per_seq[mode] += seq_sums(ce, batch)
        except NonFiniteError as e:
            raise NonFiniteError(f"{e} with {mode}-ablation at {src.hooks_[depth]}") from None


class _AblationRun(Collector):
    """One ablation pass per mode: replaces massive values at one hook inside a full forward and accumulates the
    LM loss (not mergeable). The direct form, which the batched `_AblationBatched` is tested against."""

    name = "massive_ablation"

    def __init__(self, src: MassiveActivations, hook: str, dims: torch.Tensor, mean: torch.Tensor, mode: str):
        super().__init__()
        self.src, self.hook, self.dims, self.mean, self.mode = src, hook, dims, mean, mode
        self.loss_sum, self.n, self.replaced = 0.0, 0, 0

    def hooks(self, model):
        return [(self.hook, self._hook)] if self.mode != "none" else []

    def _hook(self, x, hook):
        _, _, massive = self.src.detect(x, self.batch.attention_mask)
        sel = massive[..., self.dims]  # [b, t, k]
        self.replaced += int(sel.sum())
        x = x.clone()
        sub = x[..., self.dims]
        fill = torch.zeros_like(sub) if self.mode == "zero" else self.mean.to(x.dtype).expand_as(sub)
        x[..., self.dims] = torch.where(sel, fill, sub)
        return x

    def end_batch(self, model, batch, output):
        terms = loss_terms(model, output, batch.tokens, batch.attention_mask).double()
        if not bool(torch.isfinite(terms).all()):
            raise NonFiniteError(f"loss is not finite with {self.mode}-ablation at {self.hook} "
                                 f"in batch {batch.index}")
        self.loss_sum += float(terms.sum())
        self.n += terms.numel()
