"""Attribution patching: the first-order estimate of what an edit of the residual stream does to the loss.

An intervention that replaces the stream h_j at depth j (0 = input of block 0, j = output of block j-1) by h'_j
changes the summed next-token loss by

    ΔL = L(h'_j) − L(h_j) ≈ ∇_{h_j}L · (h'_j − h_j)        (summed over every real token of the batch)

(Nanda 2023, "Attribution patching: activation patching at industrial scale"; Syed, Rager & Conmy 2023,
"Attribution Patching Outperforms Automated Circuit Discovery", Eq. 2). One forward and one backward give
∇_{h_j}L at every depth at once, so the estimate of every edit costs a dot product each, where the exact value
needs a forward of the edited stream through every later block and the model's tail.

  SkipAttribution      skipping block ℓ sets h'_{ℓ+1} := h_ℓ, so ΔL(skip ℓ) ≈ −∇_{h_{ℓ+1}}L · (h_{ℓ+1} − h_ℓ),
                       for all L blocks from one backward. Exact counterpart: `LayerEffect(skip=True)`.
  MassiveAttribution   Sun et al.'s ablation: the massive values of the chosen dims at the appearance depth set
                       to zero or to their mean, ΔL(mode) ≈ ∇_{h_j}L · (h'_j − h_j). Exact counterpart:
                       `MassiveActivations.ablation`.

The estimate is the tangent of the loss at the intact stream: exact when the loss is linear in h_j along the
edit, and off by the curvature terms otherwise (later blocks, norms and the softmax are not linear). It is an
estimate to rank and screen edits with, reported beside the exact value (`beside_exact`), not in its place; its
measured error on real models is in docs/collectors.md. Losses are the mean next-token CE per predicted token
(nats), as in `LayerEffect`'s `layer_skip` table; causal LMs only.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch

from interp.collectors.base import F64, Collector
from interp.collectors.objective import is_causal, loss_terms


def first_order(grad: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ over the real tokens (mask [b, t]) of ⟨∇_h L, h' − h⟩: grad and delta [b, t, d]; float64 scalar."""
    g, d = grad[mask], delta[mask]  # [n, d]
    return torch.linalg.vecdot(g.to(F64), d.to(F64)).sum()


def _causal_only(model, what: str) -> None:
    if not is_causal(model):
        raise ValueError(f"{what} estimates a change of the next-token loss; {model.card.name} is not a causal LM")


class SkipAttribution(Collector):
    """First-order skip-one-block loss increase of every block from the batch's one backward (see module doc)."""

    name = "skip_attribution"
    needs_grad = True

    def bind(self, model):
        _causal_only(model, "SkipAttribution")
        super().bind(model)
        sites = self.site_map(model)  # the map `collect` handed over, or built now
        self.hooks_ = sites.stream()
        self.depth_of = {h: i for i, h in enumerate(self.hooks_)}
        L = sites.n_layers
        self._add("est_sum", torch.zeros(L), "sum")   # Σ over batches of ∇_{h_{ℓ+1}}L · (h_ℓ − h_{ℓ+1})
        self._add("base_sum", torch.zeros(1), "sum")  # Σ loss terms of the intact model
        self._add("n", torch.zeros(1), "sum")         # loss terms counted
        return self

    def hooks(self, model):
        return [(h, self._keep) for h in self.hooks_]

    def bwd_hooks(self, model):
        return [(h, self._grad) for h in self.hooks_[1:]]

    def begin_batch(self, batch):
        super().begin_batch(batch)
        self._prev: torch.Tensor | None = None
        self._delta: dict[int, torch.Tensor] = {}  # depth ℓ+1 -> h_ℓ − h_{ℓ+1} (the skip's edit there)

    def _keep(self, x: torch.Tensor, hook) -> None:
        j, x = self.depth_of[hook.name], x.detach()
        if j > 0 and self._prev is not None:
            self._delta[j] = self._prev - x
        self._prev = x

    def _grad(self, g: torch.Tensor, hook) -> None:
        j = self.depth_of[hook.name]
        delta = self._delta.pop(j, None)
        if delta is not None:
            self.state["est_sum"][j - 1] += first_order(g.detach(), delta, self.batch.attention_mask)

    def end_batch(self, model, batch, output) -> None:
        self._prev, self._delta = None, {}
        terms = loss_terms(model, output, batch.tokens, batch.attention_mask).to(F64)
        self.state["base_sum"] += terms.sum()
        self.state["n"] += terms.numel()

    def describe(self, key, bad):
        return f"in the estimate for block {int(bad.nonzero()[0, 0])}" if key == "est_sum" else super().describe(key, bad)

    def result(self) -> pd.DataFrame:
        st = {k: v.numpy() for k, v in self.state.items()}
        n = st["n"][0] if st["n"][0] > 0 else np.nan  # no next-token pair at all: undefined, not 0
        L = len(st["est_sum"])
        return pd.DataFrame({"model": self.model.card.name, "layer": np.arange(L), "metric": "next_token_ce",
                             "base": st["base_sum"][0] / n, "increase_first_order": st["est_sum"] / n})


class MassiveAttribution(Collector):
    """First-order loss change of the massive-activation ablation (zero / mean) at one depth.

    `src` is a MassiveActivations collector that has run (its state picks the depth, the dims and the mean per
    dim, as `src.ablation` does; `depth` overrides the appearance depth); elements are re-detected per batch with
    src's rule, as in the exact ablation."""

    name = "massive_attribution"
    needs_grad = True
    MODES = ("zero", "mean")

    def __init__(self, src, depth: int | None = None):
        super().__init__()
        self.src, self.depth_arg = src, depth

    def config(self):
        return {"depth": self.depth_arg}

    def bind(self, model):
        _causal_only(model, "MassiveAttribution")
        super().bind(model)
        self.depth, self.dims, self.mean = self.src.ablation_target(self.depth_arg)
        self.hook_ = model.sites.stream()[self.depth]
        self._add("est_sum", torch.zeros(len(self.MODES)), "sum")  # Σ ∇_{h_j}L · (h'_j − h_j) per mode
        self._add("replaced", torch.zeros(len(self.MODES)), "sum")  # elements edited per mode
        self._add("base_sum", torch.zeros(1), "sum")
        self._add("n", torch.zeros(1), "sum")
        return self

    def hooks(self, model):
        return [(self.hook_, self._keep)]

    def bwd_hooks(self, model):
        return [(self.hook_, self._grad)]

    def _keep(self, x: torch.Tensor, hook) -> None:
        from interp.collectors.massive_ablation import edit_massive
        x = x.detach()
        self._delta = []
        with torch.no_grad():
            for i, mode in enumerate(self.MODES):
                edited, n = edit_massive(self.src, x, self.batch.attention_mask, self.dims, self.mean, mode)
                self._delta.append(edited - x)
                self.state["replaced"][i] += n

    def _grad(self, g: torch.Tensor, hook) -> None:
        for i, delta in enumerate(self._delta):
            self.state["est_sum"][i] += first_order(g.detach(), delta, self.batch.attention_mask)
        self._delta = []

    def end_batch(self, model, batch, output) -> None:
        self._delta = []
        terms = loss_terms(model, output, batch.tokens, batch.attention_mask).to(F64)
        self.state["base_sum"] += terms.sum()
        self.state["n"] += terms.numel()

    def result(self) -> pd.DataFrame:
        st = {k: v.numpy() for k, v in self.state.items()}
        n = st["n"][0] if st["n"][0] > 0 else np.nan  # no next-token pair at all: undefined, not 0
        return pd.DataFrame({"model": self.model.card.name, "intervention": list(self.MODES), "depth": self.depth,
                             "dims": " ".join(map(str, self.dims.tolist())),
                             "n_replaced": st["replaced"].astype(np.int64), "base": st["base_sum"][0] / n,
                             "loss_delta_first_order": st["est_sum"] / n})


class _StreamLeaf(Collector):
    """Makes the stream at depth 0 a leaf that requires grad, so that with the weights frozen the backward
    computes the gradients along the stream only (no weight gradients: about half a backward's work)."""

    name = "stream_leaf"
    needs_grad = True

    def hooks(self, model):
        return [(model.sites.stream()[0], lambda x, hook: x.detach().requires_grad_(True))]


@contextlib.contextmanager
def _weights_frozen(model) -> Iterator[None]:
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def skip_first_order(model, data, batch_size: int = 8, max_tokens: int | None = None,
                     progress: bool = False) -> pd.DataFrame:
    """`SkipAttribution`'s table for `data` (as `interp.collect` takes it), from one forward and one backward
    per batch that computes the gradients along the stream only (the weights are frozen during the run and
    their `requires_grad` restored after). Inside `interp.collect`, `SkipAttribution` shares the backward of
    other gradient collectors (`GradNorms`) instead."""
    from interp.collectors.driver import run_batches, states_to
    from interp.device import model_device
    col = SkipAttribution().bind(model)
    states_to([col], model_device(model))  # where the gradients it adds up are
    with _weights_frozen(model):
        run_batches(model, data, [_StreamLeaf().bind(model), col], batch_size, max_tokens, progress=progress)
    states_to([col], "cpu")
    return col.result()


def beside_exact(estimate: pd.DataFrame, exact: pd.DataFrame) -> pd.DataFrame:
    """The first-order estimate next to the exact value, with the error (estimate − exact) per row.

    estimate: `SkipAttribution`'s table with exact: `LayerEffect`'s `layer_skip` table (joined on layer), or
    `MassiveAttribution`'s table with exact: `MassiveActivations.ablation`'s table (joined on intervention)."""
    if "increase_first_order" in estimate:
        key, est, ex = "layer", "increase_first_order", "increase"
    elif "loss_delta_first_order" in estimate:
        key, est, ex = "intervention", "loss_delta_first_order", "loss_delta"
    else:
        raise ValueError("estimate is neither SkipAttribution's nor MassiveAttribution's table")
    if key not in exact or ex not in exact:
        raise ValueError(f"exact table lacks {key!r} / {ex!r}: pass LayerEffect's layer_skip table for a skip "
                         "estimate, MassiveActivations.ablation's table for a massive one")
    out = estimate[[key, est]].merge(exact[[key, ex]], on=key, how="left")
    out["error"] = out[est] - out[ex]
    return out


def agreement(table: pd.DataFrame) -> dict[str, float]:
    """How well a `beside_exact` table's estimates agree with the exact values: mean and max absolute error
    (nats/token), and Spearman's rank correlation (average ranks for ties; NaN with fewer than 3 rows)."""
    est = table.filter(like="first_order").iloc[:, 0].to_numpy(float)
    ex = table["increase" if "increase" in table else "loss_delta"].to_numpy(float)
    err = np.abs(est - ex)
    rho = float(np.corrcoef(pd.Series(est).rank(), pd.Series(ex).rank())[0, 1]) if len(est) >= 3 else float("nan")
    return {"mean_abs_error": float(err.mean()), "max_abs_error": float(err.max()), "spearman": rho}
