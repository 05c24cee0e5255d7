"""Gradient norms per layer (the Mix-LN paper's measure), over the batches of the run.

Objective: the summed next-token cross-entropy of the batch (encoders: the fixed random probe of
`interp.collectors.objective`). Two measures per block ℓ:
  - param: ‖∇_θℓ mean-loss‖₂ over all parameters of block ℓ (the gradient of the batch's *mean* loss,
    i.e. the summed-loss gradient / number of loss terms), averaged over batches. It depends on the batch
    (composition and size), like any training-time gradient norm; it is not padding-invariant.
  - stream: ‖∂(summed loss)/∂h_t‖₂ per real token at each stream depth (0 = input of block 0), averaged
    over tokens, and its RMS. Per token this does not depend on how texts were batched or padded.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from interp.collectors.base import F64, Collector


def block_parameters(model, n_layers: int) -> list[list[torch.nn.Parameter]]:
    """The parameters of each block: those of the model's layer list, found structurally as the first
    `nn.ModuleList` of `n_layers` modules that all hold parameters (zoo: `blocks`; wrapped transformers
    models: their own layer list, since their hook-point blocks hold none)."""
    for m in model.modules():
        if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers and n_layers > 0 \
                and all(any(True for _ in blk.parameters()) for blk in m):
            return [list(blk.parameters()) for blk in m]
    raise ValueError(f"found no list of {n_layers} blocks with parameters in {type(model).__name__}; "
                     "gradient norms per block need the model's layers in an nn.ModuleList")


class GradNorms(Collector):
    """Per block: mean parameter-gradient norm; per stream depth: mean and RMS per-token gradient norm."""

    name = "grad_norms"
    needs_grad = True

    def bind(self, model):
        super().bind(model)
        sites = self.site_map(model)  # the map `collect` handed over, or built now
        self.hooks_ = sites.stream()
        D, L = len(self.hooks_), sites.n_layers
        self.depth_of = {h: i for i, h in enumerate(self.hooks_)}
        self.params = block_parameters(model, L)
        self._add("n_batches", torch.zeros(1), "sum")    # batches with a backward pass
        self._add("param_sum", torch.zeros(L), "sum")    # Σ over batches of ‖∇θℓ mean-loss‖
        self._add("param_sq", torch.zeros(L), "sum")     # Σ over batches of ‖∇θℓ mean-loss‖²
        self._add("param_max", torch.zeros(L), "max")    # largest per-batch norm
        self._add("tok_n", torch.zeros(D), "sum")        # tokens counted per depth
        self._add("tok_sum", torch.zeros(D), "sum")      # Σ ‖∂L/∂h_t‖
        self._add("tok_sq", torch.zeros(D), "sum")       # Σ ‖∂L/∂h_t‖²
        self._add("tok_max", torch.zeros(D), "max")      # max ‖∂L/∂h_t‖
        return self

    def bwd_hooks(self, model):
        return [(h, self._grad_hook) for h in self.hooks_]

    def _grad_hook(self, g: torch.Tensor, hook) -> None:
        j, st = self.depth_of[hook.name], self.state
        sq = self.batch.select(g.detach()).pow(2).sum(-1, dtype=F64)  # [n]
        st["tok_n"][j] += sq.numel()
        st["tok_sum"][j] += sq.sqrt().sum()
        st["tok_sq"][j] += sq.sum()
        if sq.numel():
            st["tok_max"][j] = torch.maximum(st["tok_max"][j], sq.max().sqrt())

    def end_batch(self, model, batch, output):
        from interp.collectors.objective import is_causal
        am = batch.attention_mask
        n_terms = int((am[:, :-1] & am[:, 1:]).sum()) if is_causal(model) else len(am)
        st = self.state
        st["n_batches"] += 1
        for l, ps in enumerate(self.params):
            sq = sum((p.grad.to(F64).pow(2).sum() for p in ps if p.grad is not None), torch.zeros((), dtype=F64))
            norm = sq.sqrt() / max(n_terms, 1)
            st["param_sum"][l] += norm
            st["param_sq"][l] += norm ** 2
            st["param_max"][l] = torch.maximum(st["param_max"][l], norm)

    def describe(self, key, bad):
        i = int(bad.nonzero()[0, 0])
        return f"in the gradient at {self.hooks_[i]}" if key.startswith("tok") else f"in the gradient of block {i}"

    def result(self) -> pd.DataFrame:
        st = {k: v.numpy() for k, v in self.state.items()}
        name = self.model.card.name if self.model is not None else ""
        nb = max(st["n_batches"][0], 1)
        L = len(st["param_sum"])
        params = pd.DataFrame({"model": name, "kind": "param", "layer": np.arange(L), "hook": "",
                               "n": int(st["n_batches"][0]), "mean": st["param_sum"] / nb,
                               "rms": np.sqrt(st["param_sq"] / nb), "max": st["param_max"]})
        tn = np.maximum(st["tok_n"], 1)
        stream = pd.DataFrame({"model": name, "kind": "stream", "layer": np.arange(len(self.hooks_)),
                               "hook": self.hooks_, "n": st["tok_n"].astype(np.int64),
                               "mean": st["tok_sum"] / tn, "rms": np.sqrt(st["tok_sq"] / tn), "max": st["tok_max"]})
        return pd.concat([params, stream], ignore_index=True)
