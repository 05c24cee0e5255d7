"""Attention-logit scale: the largest |q·k|/√d_head per layer and head, the quantity QK-norm bounds.

Dehghani et al. 2023 (ViT-22B) and Wortsman et al. 2023 ("Small-scale proxies for large-scale Transformer
training instabilities", §3.1) trace a high-learning-rate instability to attention logits that grow without
bound, and show that normalizing q and k (QK-norm) removes it. This collector measures those logits on the
pairs a model attends: a query at a statistics position (`batch.mask`) and a key that is a real token at or
before it (any real key for encoders and masked-diffusion models).

It reads the query and key that enter the dot product from `blocks.{l}.attn.hook_q` / `hook_k`
([batch, pos, heads, d_head], TransformerLens's layout; after QK-norm and after any rotary embedding). Key
heads shared by several query heads (grouped-query attention) are repeated. Models without those hooks are
refused with one line.

State (merge rule): n [L, H] pairs (sum); sq [L, H] Σ logit² (sum); max [L, H] max |logit| (max);
qmax / kmax [L, H] max ‖q‖ over queries / ‖k‖ over keys (max).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from interp.collectors import attn_kernels
from interp.collectors.base import F64, Collector


def qk_hooks(model) -> list[tuple[str, str]]:
    """(q hook, k hook) of every layer, or a ValueError naming what is missing."""
    names = getattr(model, "hook_dict", {})
    out = [(f"blocks.{l}.attn.hook_q", f"blocks.{l}.attn.hook_k") for l in range(model.sites.n_layers)]
    missing = [h for pair in out for h in pair if h not in names]
    if missing:
        raise ValueError(f"{model.card.name} exposes no attention query/key hooks ({missing[0]}); the attention-"
                         "logit collector needs blocks.{l}.attn.hook_q / hook_k at the dot product")
    return out


class AttnLogits(Collector):
    """Per layer and head: pairs, max |q·k|/√d_head, RMS logit, max ‖q‖, max ‖k‖ (see the module docstring)."""

    reads_output = "none"

    name = "attn_logits"

    def __init__(self, head_chunk: int = 4):
        super().__init__()
        self.head_chunk = head_chunk  # heads per score block: bounds memory at batch · chunk · t² floats

    def config(self):
        return {"head_chunk": self.head_chunk}

    def bind(self, model) -> "AttnLogits":
        super().bind(model)
        self.pairs = qk_hooks(model)
        L, H = len(self.pairs), self._heads(model)
        for key, rule, fill in (("n", "sum", 0.0), ("sq", "sum", 0.0), ("max", "max", 0.0),
                                ("qmax", "max", 0.0), ("kmax", "max", 0.0)):
            self._add(key, torch.full((L, H), fill), rule)
        self.layer_of = {h: (l, i) for l, pair in enumerate(self.pairs) for i, h in enumerate(pair)}
        self.causal = self.card.objective == "causal_lm"  # encoders and masked diffusion attend both ways
        return self

    @staticmethod
    def _heads(model) -> int:
        cfg = getattr(model, "cfg", None)
        for name in ("n_heads", "num_attention_heads"):
            for src in (cfg, getattr(model, "config", None)):
                if src is not None and getattr(src, name, None):
                    return int(getattr(src, name))
        raise ValueError(f"{model.card.name}: cannot tell the number of attention heads (no cfg.n_heads)")

    def hooks(self, model):
        return [(h, self._hook) for h in self.layer_of]

    def begin_batch(self, batch) -> None:
        super().begin_batch(batch)
        self._seen: dict[int, list] = {}

    def end_batch(self, model, batch, output) -> None:
        self._seen = {}

    def _hook(self, x: torch.Tensor, hook) -> None:
        l, i = self.layer_of[hook.name]
        slot = self._seen.setdefault(l, [None, None])
        slot[i] = x.detach()
        if slot[0] is not None and slot[1] is not None:
            self._fold(l, *slot)
            del self._seen[l]

    def _fold(self, l: int, q: torch.Tensor, k: torch.Tensor) -> None:  # q [b, t, h, dh], k [b, t, h_kv, dh]
        q, k = q.float(), k.float()
        H = q.shape[2]
        qm, km = self.batch.mask.to(q.device), self.batch.attention_mask.to(q.device).bool()
        st = self.state
        qmax = q.norm(dim=-1).masked_fill(~qm[..., None], 0).amax((0, 1))  # [h]
        kmax = k.norm(dim=-1).masked_fill(~km[..., None], 0).amax((0, 1))  # [h_kv]: a shared key head serves
        st["qmax"][l] = torch.maximum(st["qmax"][l], qmax.to(F64))         # H / h_kv query heads
        st["kmax"][l] = torch.maximum(st["kmax"][l], kmax.repeat_interleave(H // k.shape[2]).to(F64))
        if attn_kernels.usable(q, k):  # one compiled pass, no [b, h, t, t] scores
            pairs, sq, mx = attn_kernels.score_moments(q, k, qm, km, self.causal)
            st["n"][l] += float(pairs)
            st["sq"][l] += torch.from_numpy(sq)
            st["max"][l] = torch.maximum(st["max"][l], torch.from_numpy(mx).to(F64))
        else:
            self._fold_scores(l, q, k, qm, km)

    def _fold_scores(self, l: int, q: torch.Tensor, k: torch.Tensor, qm: torch.Tensor, km: torch.Tensor) -> None:
        """The torch form of `attn_kernels.score_moments`: the scores of `head_chunk` heads at a time."""
        H, dh, t = q.shape[2], q.shape[3], q.shape[1]
        if k.shape[2] != H:  # grouped-query attention: each key head serves H / h_kv query heads
            k = k.repeat_interleave(H // k.shape[2], dim=2)
        valid = qm[:, :, None] & km[:, None, :]  # [b, t(query), t(key)]
        if self.causal:
            valid = valid & torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        st = self.state
        st["n"][l] += float(valid.sum())
        v = valid[:, None]
        for h0 in range(0, H, self.head_chunk):
            s = torch.einsum("bqhd,bkhd->bhqk", q[:, :, h0:h0 + self.head_chunk], k[:, :, h0:h0 + self.head_chunk])
            s = (s / math.sqrt(dh)).masked_fill(~v, 0.0)  # [b, chunk, t, t]
            sl = slice(h0, h0 + s.shape[1])
            st["sq"][l, sl] += s.pow(2).sum((0, 2, 3), dtype=F64)
            st["max"][l, sl] = torch.maximum(st["max"][l, sl], s.abs().amax((0, 2, 3)).to(F64))

    def describe(self, key, bad):
        l, h = (int(v) for v in bad.nonzero()[0])
        return f"at {self.pairs[l][0]} head {h}"

    def result(self) -> pd.DataFrame:
        st = {k: v.cpu().numpy() for k, v in self.state.items()}
        L, H = st["n"].shape
        dh = self._d_head()
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = np.sqrt(st["sq"] / st["n"])
        return pd.DataFrame({
            "model": self.model_name,
            "layer": np.repeat(np.arange(L), H), "head": np.tile(np.arange(H), L),
            "n_pairs": st["n"].ravel().astype(np.int64), "max_abs_logit": st["max"].ravel(),
            "rms_logit": rms.ravel(), "max_q_norm": st["qmax"].ravel(), "max_k_norm": st["kmax"].ravel(),
            "norm_bound": (st["qmax"] * st["kmax"]).ravel() / math.sqrt(dh)})

    def _d_head(self) -> int:
        cfg = getattr(self.model, "cfg", None)
        if cfg is not None and getattr(cfg, "d_head", None):
            return int(cfg.d_head)
        c = self.model.config
        return int(getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads)

    def layers(self) -> pd.DataFrame:
        """One row per layer: logits counted (pairs × heads), the largest over heads, the RMS pooled over heads,
        the largest norms and bound (NaN heads skipped in the maxima, as pandas' max does)."""
        st = {k: v.cpu().numpy() for k, v in self.state.items()}
        n, top = st["n"].sum(1), np.fmax.reduce
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = np.sqrt(st["sq"].sum(1) / n)
        return pd.DataFrame({
            "model": self.model_name, "layer": np.arange(len(n)), "n_logits": n.astype(np.int64),
            "max_abs_logit": top(st["max"], axis=1), "rms_logit": rms, "max_q_norm": top(st["qmax"], axis=1),
            "max_k_norm": top(st["kmax"], axis=1),
            "norm_bound": top(st["qmax"] * st["kmax"], axis=1) / math.sqrt(self._d_head())})

    def tables(self):
        return {"attn_logits": self.result(), "attn_logits_layers": self.layers()}


def for_model(model) -> list[AttnLogits]:
    """[AttnLogits()] when `model` exposes the query and key hooks it reads, else [] (for collector lists)."""
    try:
        qk_hooks(model)
    except (ValueError, AttributeError):
        return []
    return [AttnLogits()]
