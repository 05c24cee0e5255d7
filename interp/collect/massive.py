"""Massive activations (Sun et al. 2024; locuslab/massive-activations `main_llm.py`).

At every depth of the residual stream (0 = input of block 0, ℓ = output of block ℓ-1), an activation is
*massive* when |x| > `abs_threshold` (100) and |x| ≥ `ratio` (1000) × the median |x| of the whole hidden
state of its sequence at that depth (all real positions × dims; `median_scope="token"` uses the median of
its own position instead). Medians are lower medians (torch.median), as in the paper's code.
Also kept: per depth the per-sequence top-3 |x| and median (averaged over sequences, as the paper plots),
the top-k |x| overall with where they sit, and per (depth, dim) counts — the dimensions that recur.
`ablation()` replays the paper's test: set the massive values to zero vs to their mean, compare the loss.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from interp.collect.base import F64, Collector, NonFiniteError, TopK
from interp.collect.objective import is_causal, loss_terms

FIELDS = ("tk_depth", "tk_seq_pos", "tk_dim", "tk_token", "tk_value", "tk_median")


_PICKS: dict = {}  # (n, device) -> the fixed sample positions for rows of length n


def _pick(n: int, device) -> torch.Tensor:
    key = (n, str(device))
    if key not in _PICKS:
        if len(_PICKS) > 256:
            _PICKS.clear()
        _PICKS[key] = torch.randint(0, n, (4096,), generator=torch.Generator().manual_seed(0)).to(device)
    return _PICKS[key]


def row_medians(v: torch.Tensor) -> torch.Tensor:
    """torch.median of each row of v [r, n] (the lower median), exactly, without sorting whole rows: a fixed
    random sample brackets each row's median, one pass counts what lies below the bracket, kthvalue runs on
    the bracket only (falls back to a full kthvalue for a row whose bracket misses)."""
    r, n = v.shape
    k = (n - 1) // 2  # 0-based rank of the lower median
    if n <= 16384:
        return v.kthvalue(k + 1, dim=1).values
    s = v[:, _pick(n, v.device)]
    lo = s.kthvalue(1844, dim=1, keepdim=True).values  # the 45 % and 55 % points of the sample (two
    hi = s.kthvalue(2253, dim=1, keepdim=True).values  # kthvalues: far cheaper than sorting it on CPU)
    ge = v >= lo
    inb = ge & (v <= hi)
    below, cnt = (n - ge.sum(1)).tolist(), inb.sum(1).tolist()
    band = v[inb]  # the rows' brackets, concatenated in row order
    out, start = v.new_empty(r), 0
    for i in range(r):
        j = k - below[i]
        out[i] = (band[start:start + cnt[i]].kthvalue(j + 1).values if 0 <= j < cnt[i]
                  else v[i].kthvalue(k + 1).values)
        start += cnt[i]
    return out


def lower_median(v: torch.Tensor) -> torch.Tensor:
    """torch.median(v) (the lower median) of a 1-D tensor, exactly (see `row_medians`)."""
    return row_medians(v.reshape(1, -1))[0]


def seq_medians(a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Lower median of a [b, t, d] over each sequence's masked positions × dims -> [b] (0 where none)."""
    if bool(mask.all()):
        return row_medians(a.reshape(a.shape[0], -1))
    out = a.new_zeros(a.shape[0])
    for s in range(a.shape[0]):
        v = a[s][mask[s]].reshape(-1)
        if v.numel():
            out[s] = lower_median(v)
    return out


class MassiveActivations(Collector):
    """Counts, top-3 / median profile, top-k outliers and recurring dims of massive activations per depth."""

    name = "massive"

    def __init__(self, abs_threshold: float = 100.0, ratio: float = 1000.0, median_scope: str = "sequence",
                 top_k: int = 20):
        super().__init__()
        if median_scope not in ("sequence", "token"):
            raise ValueError(f"median_scope must be 'sequence' or 'token', got {median_scope!r}")
        self.abs_threshold, self.ratio, self.median_scope, self.k = abs_threshold, ratio, median_scope, top_k

    def config(self):
        return {"abs_threshold": self.abs_threshold, "ratio": self.ratio, "median_scope": self.median_scope,
                "top_k": self.k}

    def bind(self, model):
        super().bind(model)
        self.hooks_ = model.sites.stream()
        D, d = len(self.hooks_), model.card.d_model
        self.depth_of = {h: i for i, h in enumerate(self.hooks_)}
        self._add("n_seq", torch.zeros(D), "sum")             # sequences seen per depth
        self._add("n_massive", torch.zeros(D), "sum")         # massive activations per depth
        self._add("seq_with", torch.zeros(D), "sum")          # sequences with at least one massive activation
        self._add("top3_sum", torch.zeros(D, 3), "sum")       # Σ over sequences of its top-1/2/3 |x|
        self._add("median_sum", torch.zeros(D), "sum")        # Σ over sequences of its median |x|
        self._add("top1_max", torch.zeros(D), "max")          # largest |x| of any sequence
        self._add("dim_count", torch.zeros(D, d), "sum")      # massive activations per (depth, dim)
        self._add("dim_value_sum", torch.zeros(D, d), "sum")  # Σ of their signed values
        self._add_topk("top", TopK(self.k, "tk_abs", FIELDS))
        return self

    def hooks(self, model):
        return [(h, self._hook) for h in self.hooks_]

    def abs_median(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(|x| with padding at -1, per-element median [b, t, 1]) for x [b, t, d]."""
        a = x.detach().float().abs()
        if self.median_scope == "token":
            med = a.median(-1, keepdim=True).values
        else:
            med = seq_medians(a, mask)[:, None, None].expand(-1, a.shape[1], 1)
        if not bool(mask.all()):
            a = a.masked_fill(~mask[..., None], -1.0)
        return a, med

    def massive(self, a: torch.Tensor, med: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """massive [b, t, d] bool from `abs_median`'s output (False on padding, where a = -1)."""
        return (a > self.abs_threshold) & (a >= self.ratio * med)

    def detect(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(|x| with padding at -1, per-element median [b, t, 1], massive [b, t, d] bool) for x [b, t, d]."""
        a, med = self.abs_median(x, mask)
        return a, med, self.massive(a, med, mask)

    def begin_batch(self, batch) -> None:
        super().begin_batch(batch)
        self._rows = batch.mask.any(1)  # sequences with at least one counted position
        self._n_rows = self._rows.sum()
        self._first = batch.attention_mask.long().argmax(1)  # left padding: positions count from the first real token
        self._cand: list[dict[str, torch.Tensor]] = []  # top-k candidates of each depth, folded in at end_batch

    def _hook(self, x: torch.Tensor, hook) -> None:
        j, st, b = self.depth_of[hook.name], self.state, self.batch
        x = x.detach()
        a, med = self.abs_median(x, b.mask)
        rows = self._rows
        af = a.flatten(1)
        topv, topi = af.topk(min(max(3, self.k), af.shape[1]), dim=1)  # per sequence; holds the batch's top-k too
        st["n_seq"][j] += self._n_rows
        if float(topv[:, 0].max()) > self.abs_threshold:  # else nothing is massive (padding sits at -1)
            idx = self.massive(a, med, b.mask).nonzero()  # [m, 3]: few
            st["n_massive"][j] += len(idx)
            st["seq_with"][j] += torch.unique(idx[:, 0]).numel()
            st["dim_count"][j].index_add_(0, idx[:, 2], torch.ones(len(idx), dtype=F64))
            st["dim_value_sum"][j].index_add_(0, idx[:, 2], x[idx[:, 0], idx[:, 1], idx[:, 2]].to(F64))
        top = topv[rows, :3].to(F64)
        st["top3_sum"][j, : top.shape[1]] += top.sum(0)
        if len(top):
            st["top1_max"][j] = torch.maximum(st["top1_max"][j], top[:, 0].max())
        seq_med = med[:, 0, 0] if self.median_scope == "sequence" else seq_medians(a.clamp(min=0), b.mask)
        st["median_sum"][j] += seq_med[rows].sum(dtype=F64)
        vals, order = topv.flatten().topk(min(self.k, topv.numel()))
        keep = vals >= 0  # not padding
        vals, order = vals[keep], order[keep]
        bi = order // topv.shape[1]
        flat = topi[bi, order % topv.shape[1]]
        ti, di = flat // a.shape[2], flat % a.shape[2]
        self._cand.append({
            "tk_abs": vals, "tk_depth": torch.full_like(vals, j), "tk_seq_pos": ti - self._first[bi],
            "tk_dim": di, "tk_token": b.tokens[bi, ti], "tk_value": x[bi, ti, di], "tk_median": med[bi, ti, 0]})

    def end_batch(self, model, batch, output) -> None:
        """Fold the batch's top-k candidates of every depth into the buffer at once (the selection does not
        depend on arrival order, so this equals folding them in depth by depth)."""
        if self._cand:
            self.topk["top"].update(self.state, {f: torch.cat([c[f].to(F64) for c in self._cand])
                                                 for f in self.topk["top"].keys()})
        self._cand = []

    def describe(self, key, bad):
        i = int(bad.nonzero()[0, 0]) if bad.dim() else 0
        return f"at {self.hooks_[i]} (depth {i})" if key in ("top3_sum", "median_sum", "top1_max") else f"in {key!r}"

    # --- tables ---------------------------------------------------------------------------------------
    def _model_name(self) -> str:
        return self.model.card.name if self.model is not None else ""

    def result(self) -> pd.DataFrame:
        st = {k: v.numpy() for k, v in self.state.items()}
        n = np.maximum(st["n_seq"], 1)
        return pd.DataFrame({
            "model": self._model_name(), "depth": np.arange(len(self.hooks_)), "hook": self.hooks_,
            "n_sequences": st["n_seq"].astype(np.int64), "n_massive": st["n_massive"].astype(np.int64),
            "frac_sequences": st["seq_with"] / n,
            "top1_mean": st["top3_sum"][:, 0] / n, "top2_mean": st["top3_sum"][:, 1] / n,
            "top3_mean": st["top3_sum"][:, 2] / n, "median_mean": st["median_sum"] / n,
            "top1_max": st["top1_max"]})

    def top(self) -> pd.DataFrame:
        """The top-k |x| over every depth and token, with where each sits and whether it is massive."""
        st = {k: v.numpy() for k, v in self.state.items()}
        ok = np.isfinite(st["tk_abs"])
        tok = getattr(self.model, "tokenizer", None)
        ids = st["tk_token"][ok].astype(np.int64)
        depth = st["tk_depth"][ok].astype(np.int64)
        return pd.DataFrame({
            "model": self._model_name(), "rank": np.arange(ok.sum()), "depth": depth,
            "hook": [self.hooks_[i] for i in depth], "position": st["tk_seq_pos"][ok].astype(np.int64),
            "token_id": ids, "token": [tok.decode([i]) if tok is not None else str(i) for i in ids],
            "dim": st["tk_dim"][ok].astype(np.int64), "value": st["tk_value"][ok], "abs": st["tk_abs"][ok],
            "seq_median": st["tk_median"][ok],
            "massive": (st["tk_abs"][ok] > self.abs_threshold) & (st["tk_abs"][ok] >= self.ratio * st["tk_median"][ok])})

    def dims(self) -> pd.DataFrame:
        """(depth, dim) pairs that carried massive activations: how often, their mean value."""
        c, s = self.state["dim_count"].numpy(), self.state["dim_value_sum"].numpy()
        depth, dim = np.nonzero(c)
        n = np.maximum(self.state["n_seq"].numpy(), 1)
        return pd.DataFrame({"model": self._model_name(), "depth": depth, "dim": dim,
                             "count": c[depth, dim].astype(np.int64), "per_sequence": c[depth, dim] / n[depth],
                             "mean_value": s[depth, dim] / c[depth, dim]})

    def tables(self):
        return {"massive": self.result(), "massive_top": self.top(), "massive_dims": self.dims()}

    # --- the ablation test ----------------------------------------------------------------------------
    def appearance_depth(self) -> int:
        """Where the largest massive activation appears: the first depth at which the dim that carries the
        largest mean massive value is massive in at least half the sequences (Sun et al. ablate at the layer
        where the massive activations appear; a smaller, earlier outlier in another dim must not decide it)."""
        counts, n_seq = self.state["dim_count"], self.state["n_seq"].clamp(min=1)
        if not bool((counts > 0).any()):
            raise ValueError(f"no massive activations were found (|x| > {self.abs_threshold} and ≥ "
                             f"{self.ratio}× the median); nothing to ablate — collect on more text or lower "
                             "the thresholds")
        mean_abs = (self.state["dim_value_sum"] / counts.clamp(min=1)).abs()  # [D, d]
        dim = int(mean_abs.max(0).values.argmax())
        common = (counts[:, dim] >= 0.5 * n_seq).nonzero()
        return int(common[0, 0]) if len(common) else int((counts[:, dim] > 0).nonzero()[0, 0])

    def ablation(self, model, data, depth: int | None = None, batch_size: int = 8,
                 max_tokens: int | None = None, progress: bool = False) -> pd.DataFrame:
        """Loss on `data` (held text) when the massive activations at `depth` (default: `appearance_depth()`)
        are left alone, set to zero, or set to their mean value per dim (from this collector's state).
        Elements are re-detected on the held text with the same rule; only dims seen massive here are touched."""
        from interp.collect.driver import run_batches
        if not is_causal(model):
            raise ValueError(f"massive-activation ablation compares LM losses; {model.card.name} is an encoder")
        counts = self.state["dim_count"]
        if depth is None:
            depth = self.appearance_depth()
        dims = counts[depth].nonzero()[:, 0]
        if len(dims) == 0:
            raise ValueError(f"no massive activations at depth {depth}; nothing to ablate there")
        mean = (self.state["dim_value_sum"][depth, dims] / counts[depth, dims]).float()
        rows = []
        for mode in ("none", "zero", "mean"):
            probe = _AblationRun(self, self.hooks_[depth], dims, mean, mode)
            meta = run_batches(model, data, [probe], batch_size, max_tokens, progress=progress)
            loss = probe.loss_sum / probe.n
            with np.errstate(over="ignore"):  # an exploded loss gives ppl = inf, which is what it is
                ppl = float(np.exp(loss))
            rows.append({"model": model.card.name, "intervention": mode, "depth": depth,
                         "dims": " ".join(map(str, dims.tolist())), "n_replaced": int(probe.replaced),
                         "n_tokens": meta["n_tokens"], "loss": loss, "ppl": ppl})
        df = pd.DataFrame(rows)
        df["loss_delta"] = df["loss"] - df.loc[0, "loss"]
        return df


class _AblationRun(Collector):
    """One ablation pass: replaces massive values at one hook and accumulates the LM loss (not mergeable)."""

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
