"""Precision safety per site: would each residual-like tensor survive fp16, bf16 and int8?

In the same fp32 (or fp64) forward as the other collectors, for every site of `residual_sites(model.sites)`:
the largest |x| (headroom = format max / max |x|); how many values fp16 would turn into inf (|x| ≥ 65520) or
flush to zero (0 < |x| ≤ 2⁻²⁵); and the relative error ‖q(X) − X‖₂ / ‖X‖₂ of rounding the site's values X to
fp16, to bf16, and of symmetric int8 absmax quantization with one scale per sequence ("tensor") or per token;
for int8 also the mean over tokens of ‖q(x_t) − x_t‖₂ / ‖x_t‖₂ (a massive activation dominates ‖X‖ and
hides what per-tensor scaling does to every other token; the per-token mean shows it). Σ (q(x) − x)² and
Σ x² are accumulated separately, so shards merge exactly; values that overflow fp16 are left out of its
error (numerator and denominator: they are counted instead).

LLM.int8() outlier features (Dettmers et al. 2022, §4.1): dim j of a site family (one site name across the
blocks, e.g. `norm_in:ln1`) is an outlier feature when |x_j| ≥ `outlier_threshold` (6) at ≥ `outlier_layer_frac`
(25 %) of the family's layers and in ≥ `outlier_token_frac` (6 %) of all its hidden states (tokens × those
layers, pooled: "6 % of all sequence dimensions across all hidden states").
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from interp.collectors import precision_kernels as pk
from interp.collectors.base import F64, Collector
from interp.collectors.residual import residual_sites, site_widths
from interp.precision.formats import BF16_MAX, FP16_FLUSH, FP16_MAX, FP16_OVERFLOW, INT8_MAX, seq_index

# columns of state "sums" [S, K]; every one merges by addition
FIELDS = ("n_tokens", "n_values", "sum_sq", "n_fp16_overflow", "n_fp16_flush", "err_fp16", "err_bf16",
          "err_int8_tensor", "err_int8_token", "n_outlier_values", "tokrel_int8_tensor", "tokrel_int8_token",
          "sum_sq_fp16_finite")
K = {f: i for i, f in enumerate(FIELDS)}
TINY = 1e-30
# where the fused kernel's slots go in FIELDS
_FUSED = {"sum_sq": pk.SUM_SQ, "sum_sq_fp16_finite": pk.SUM_SQ_FP16_FINITE, "n_fp16_overflow": pk.N_FP16_OVERFLOW,
          "n_fp16_flush": pk.N_FP16_FLUSH, "err_fp16": pk.ERR_FP16, "err_bf16": pk.ERR_BF16,
          "err_int8_tensor": pk.ERR_INT8_TENSOR, "err_int8_token": pk.ERR_INT8_TOKEN,
          "tokrel_int8_tensor": pk.TOKREL_INT8_TENSOR, "tokrel_int8_token": pk.TOKREL_INT8_TOKEN,
          "n_outlier_values": pk.N_OUTLIER_VALUES}
_FUSED_FIELDS, _FUSED_SLOTS = np.array([K[f] for f in _FUSED]), np.array(list(_FUSED.values()))


class Precision(Collector):
    """Per site: max |x| and fp16/bf16 headroom, fp16 overflow / flush-to-zero fractions, rounding error of fp16,
    bf16 and int8 (per tensor, per token), LLM.int8() outlier features."""

    reads_output = "none"

    name = "precision"

    def __init__(self, outlier_threshold: float = 6.0, outlier_layer_frac: float = 0.25,
                 outlier_token_frac: float = 0.06):
        super().__init__()
        if outlier_threshold <= 0 or not 0 < outlier_layer_frac <= 1 or not 0 < outlier_token_frac <= 1:
            raise ValueError("outlier_threshold must be > 0 and the layer / token fractions in (0, 1]; got "
                             f"{outlier_threshold}, {outlier_layer_frac}, {outlier_token_frac}")
        self.alpha, self.layer_frac, self.token_frac = outlier_threshold, outlier_layer_frac, outlier_token_frac

    def config(self):
        return {"outlier_threshold": self.alpha, "outlier_layer_frac": self.layer_frac,
                "outlier_token_frac": self.token_frac}

    def bind(self, model) -> Precision:
        super().bind(model)
        sites = self.site_map(model)  # the map `collect` handed over, or built now
        self.sites = residual_sites(sites)
        L = sites.n_layers
        self.families = list(dict.fromkeys(s[1] for s in self.sites if s[0] < L))
        self.family_of = [self.families.index(s[1]) if s[0] < L else -1 for s in self.sites]
        S = len(self.sites)
        self.widths = site_widths(sites, self.card.d_model)  # values per token (QK-norm inputs: h·d_head)
        d = max(self.widths, default=self.card.d_model)  # site i's dims fill [:widths[i]] of the per-dim state
        self._add("sums", torch.zeros(S, len(FIELDS)), "sum")
        self._add("abs_max", torch.zeros(S), "max")
        self._add("dim_hits", torch.zeros(S, d), "sum")  # tokens with |x_j| ≥ threshold
        self.rows_of: dict[str, list[int]] = {}
        for i, (_, _, _, hook) in enumerate(self.sites):
            self.rows_of.setdefault(hook, []).append(i)
        self._last: tuple = (None, -1, None)
        self._buf: tuple | None = None
        return self

    def hooks(self, model):
        return [(hook, self._hook) for hook in self.rows_of]

    def begin_batch(self, batch) -> None:
        super().begin_batch(batch)
        self._seq = seq_index(batch.mask)  # [n] the sequence of each counted position
        # for the fused kernel: the counted positions as rows of x [b·t, ...] and their sequences
        mask = batch.mask.cpu()
        self._rows = np.flatnonzero(mask.reshape(-1).numpy())
        self._rows_seq = self._rows // max(mask.shape[1], 1)

    def _hook(self, x: torch.Tensor, hook) -> None:
        last, version, st = self._last
        if x is not last or x._version != version:  # the same tensor under another hook name: reuse its stats
            if pk.usable(x):  # one fused pass over x (CPU float32)
                st = self.fused_stats(x.detach())
            else:
                rows = self.batch.select(x.detach())
                st = self.stats(rows.flatten(1) if rows.dim() > 2 else rows)  # per-head: a row per token (n may be 0)
            self._last = (x, x._version, st)
        if st is None:
            return
        sums, amax, counts = st
        if isinstance(sums, np.ndarray) and self.state["sums"].device.type == "cpu":  # fused form: numpy in place
            S, M, H = self.state["sums"].numpy(), self.state["abs_max"].numpy(), self.state["dim_hits"].numpy()
            for i in self.rows_of[hook.name]:
                S[i] += sums
                M[i] = max(M[i], amax) if amax == amax else amax  # NaN propagates, as torch.maximum does
                if counts is not None:
                    self._check_width(hook, i, len(counts))
                    H[i, :len(counts)] += counts
            return
        if isinstance(sums, np.ndarray):
            sums, amax = torch.from_numpy(sums), torch.tensor(amax, dtype=F64)
            counts = None if counts is None else torch.from_numpy(counts)
        dev = self.state["sums"].device  # the statistics come on the CPU (sums, max) or the model's device (counts)
        sums, amax = sums.to(dev), amax.to(dev)
        counts = None if counts is None else counts.to(dev)
        for i in self.rows_of[hook.name]:
            self.state["sums"][i] += sums
            self.state["abs_max"][i] = torch.maximum(self.state["abs_max"][i], amax)
            if counts is not None:
                self._check_width(hook, i, len(counts))
                self.state["dim_hits"][i, :len(counts)] += counts

    def _check_width(self, hook, i: int, w: int) -> None:
        if w != self.widths[i]:
            raise ValueError(f"{hook.name} carries {w} values per token, the site map says "
                             f"{self.widths[i]}; declare its width in LayerSites.norm_widths")

    def _scratch(self, r: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Work buffers shaped like r [n, d]: three in r's dtype, one fp16, one bf16. Reused by every site of a
        batch (fresh tensors per operation cost more than the arithmetic: each is a new allocation)."""
        numel, buf = r.numel(), self._buf
        if buf is None or buf[0].numel() < numel or buf[0].dtype != r.dtype or buf[0].device != r.device:
            kw = {"device": r.device}
            buf = self._buf = (*(torch.empty(numel, dtype=r.dtype, **kw) for _ in range(3)),
                               torch.empty(numel, dtype=torch.float16, **kw), torch.empty(numel, dtype=torch.bfloat16, **kw))
        return tuple(b[:numel].view(r.shape) for b in buf)

    def fused_stats(self, x: torch.Tensor):
        """`stats` of x [b, t, ...]'s counted positions (one row per token), by the fused kernel
        (`precision_kernels.site_stats`): the same sums, one read of x, as numpy (sums [K], max |x| as a float,
        hits [d] or None)."""
        n = self._rows.size
        if n == 0:
            return None
        x2 = x.reshape(x.shape[0] * x.shape[1], -1)
        v, hits = pk.site_stats(x2, self._rows, self._rows_seq, x.shape[0], self.alpha)
        out = np.zeros(len(FIELDS))
        out[K["n_tokens"]], out[K["n_values"]] = n, n * x2.shape[1]
        out[_FUSED_FIELDS] = v[_FUSED_SLOTS]
        amax = float(v[pk.ABS_MAX])
        return out, amax, (hits if amax >= self.alpha else None)  # as `stats`: hits only past α

    def stats(self, r: torch.Tensor):
        """(sums [K] float64, max |x|, tokens with |x_j| ≥ α per dim [d] or None) of rows r [n, d].
        Written for few passes over r and no allocation of r's size: this runs on every site of every batch."""
        n, d = r.shape
        if n == 0:
            return None
        if r.dtype not in (torch.float32, torch.float64):
            r = r.float()
        a, b, c, h, g = self._scratch(r)
        torch.abs(r, out=a)
        tok = a.amax(-1)  # [n] per-token max |x|
        amax, amin = float(tok.max()), float(a.amin())
        out = [0.0] * len(FIELDS)  # filled as floats, made a tensor once
        counts = None
        if amax >= self.alpha:  # LLM.int8() outliers: tokens with |x_j| ≥ α, per dim
            counts = torch.ge(a, self.alpha, out=b).sum(0).to(F64)
            out[K["n_outlier_values"]] = float(counts.sum())
        xn = torch.linalg.vector_norm(r, dim=-1).to(F64)  # [n] ‖x_t‖
        out[K["n_tokens"]], out[K["n_values"]], out[K["sum_sq"]] = n, n * d, float((xn * xn).sum())
        inv_xn = torch.where(xn > 0, 1 / xn, torch.zeros_like(xn))
        # fp16: overflow to inf, flush to zero, rounding error of what stays finite (fp16 → fp32 and the
        # difference of two nearby floats are exact)
        h.copy_(r)
        b.copy_(h).sub_(r)
        out[K["sum_sq_fp16_finite"]] = out[K["sum_sq"]]
        if amax >= FP16_OVERFLOW:  # rare: recount what stays finite (a difference of sums would cancel)
            over = torch.isinf(h)
            out[K["n_fp16_overflow"]] = float(over.sum())
            out[K["sum_sq_fp16_finite"]] = float(r[~over].double().square().sum())
            b.masked_fill_(over, 0.0)
        out[K["err_fp16"]] = float(torch.dot(b.view(-1), b.view(-1)))
        if amin <= FP16_FLUSH:
            out[K["n_fp16_flush"]] = float(((h == 0) & (r != 0)).sum())
        g.copy_(r)
        b.copy_(g).sub_(r)
        out[K["err_bf16"]] = float(torch.dot(b.view(-1), b.view(-1)))
        # int8 absmax: Σ_t s_t² Σ_d (round(x/s_t) − x/s_t)², the rounding error in scaled units times the scale
        seq_max = tok.new_zeros(self.batch.mask.shape[0]).scatter_reduce_(0, self._seq, tok, "amax")
        for key, amax_rows in (("err_int8_token", tok), ("err_int8_tensor", seq_max[self._seq])):
            scale = amax_rows.clamp(min=TINY) / INT8_MAX  # [n]
            torch.div(r, scale[:, None], out=b)
            torch.round(b, out=c).sub_(b)
            en = torch.linalg.vector_norm(c, dim=-1).to(F64) * scale.to(F64)  # [n] ‖q(x_t) − x_t‖
            out[K[key]] = float((en * en).sum())
            out[K["tokrel" + key[3:]]] = float((en * inv_xn).sum())
        return torch.tensor(out, dtype=F64), torch.tensor(amax, dtype=F64), counts

    def end_batch(self, model, batch, output) -> None:
        self._last = (None, -1, None)  # release the last activation
        self._buf = None  # and the work buffers

    def describe(self, key, bad):
        i = int(bad.nonzero()[0, 0])
        return f"at {self.sites[i][3]} (layer {self.sites[i][0]}, {self.sites[i][1]})"

    # --- tables ---------------------------------------------------------------------------------------
    def _family(self, f: int) -> tuple[list[int], np.ndarray, np.ndarray]:
        """(site rows, per-layer hit fraction [layers, d], pooled hit fraction [d]) of site family f."""
        rows = [i for i, g in enumerate(self.family_of) if g == f]
        hits = self.state["dim_hits"].numpy()[rows]
        n_tok = self.state["sums"][:, K["n_tokens"]].numpy()[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            return rows, hits / np.maximum(n_tok, 1)[:, None], hits.sum(0) / max(n_tok.sum(), 1)

    def outlier_mask(self) -> np.ndarray:
        """[families, d] bool: the LLM.int8() outlier features of each site family."""
        out = np.zeros((len(self.families), self.state["dim_hits"].shape[1]), dtype=bool)
        for f in range(len(self.families)):
            _, per_layer, pooled = self._family(f)
            out[f] = ((per_layer > 0).mean(0) >= self.layer_frac) & (pooled >= self.token_frac)
        return out

    def result(self) -> pd.DataFrame:
        s, mx = self.state["sums"].numpy(), self.state["abs_max"].numpy()
        col = lambda f: s[:, K[f]]
        feats = self.outlier_mask()
        hits = self.state["dim_hits"].numpy() > 0
        n_feat = np.array([float((feats[f] & hits[i]).sum()) if f >= 0 else np.nan
                           for i, f in enumerate(self.family_of)])
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = lambda f: np.sqrt(col(f) / col("sum_sq"))
            frac = lambda f: col(f) / col("n_values")
            return pd.DataFrame({
                "model": self.model_name,
                "layer": [x[0] for x in self.sites], "site": [x[1] for x in self.sites],
                "kind": [x[2] for x in self.sites], "hook": [x[3] for x in self.sites],
                "n_tokens": col("n_tokens").astype(np.int64), "abs_max": mx,
                "fp16_headroom": FP16_MAX / mx, "bf16_headroom": BF16_MAX / mx,
                "frac_fp16_overflow": frac("n_fp16_overflow"), "frac_fp16_flush": frac("n_fp16_flush"),
                "fp16_rel_error": np.sqrt(col("err_fp16") / col("sum_sq_fp16_finite")),
                "bf16_rel_error": rel("err_bf16"),
                "int8_tensor_rel_error": rel("err_int8_tensor"), "int8_token_rel_error": rel("err_int8_token"),
                "int8_tensor_token_error": col("tokrel_int8_tensor") / col("n_tokens"),
                "int8_token_token_error": col("tokrel_int8_token") / col("n_tokens"),
                "frac_outlier_values": frac("n_outlier_values"), "n_outlier_features": n_feat})

    def outliers(self) -> pd.DataFrame:
        """One row per LLM.int8() outlier feature: its site family, dim, and how many layers / hidden states it hits."""
        feats, rows, name = self.outlier_mask(), [], self.model_name  # card is costly on real models: once
        for f, fam in enumerate(self.families):
            idx, per_layer, pooled = self._family(f)
            for j in np.nonzero(feats[f])[0]:
                n_hit = int((per_layer[:, j] > 0).sum())
                rows.append({"model": name, "site": fam, "dim": int(j), "n_layers_hit": n_hit,
                             "layer_frac": n_hit / len(idx), "token_frac": float(pooled[j])})
        return pd.DataFrame(rows, columns=["model", "site", "dim", "n_layers_hit", "layer_frac", "token_frac"])

    def tables(self):
        return {"precision": self.result(), "precision_outliers": self.outliers()}
