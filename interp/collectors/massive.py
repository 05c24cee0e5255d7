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

from interp.collectors import kernels, select_kernels
from interp.collectors.base import F64, Collector, TopK
from interp.collectors.massive_ablation import MODES, _AblationBatched
from interp.collectors.objective import is_causal

FIELDS = ("tk_depth", "tk_seq_pos", "tk_dim", "tk_token", "tk_value", "tk_median")


# sample size, half-width of the bracket around the sample median (in sample ranks), fixed sample positions: the
# fused kernels' own (interp.collectors.select_kernels), so both paths sample the same values
SAMPLE, BRACKET, _pick = select_kernels.SAMPLE, select_kernels.HALF, select_kernels._pick


def _lower_median_np(a: np.ndarray) -> float:
    """The lower median (torch.median) of a 1-D float array, exactly, without sorting it: a fixed random
    sample brackets the median (±4 standard deviations of its rank), one pass counts what lies below the
    bracket and extracts what lies inside, and a selection runs on that ~6 % only; a bracket that misses
    falls back to a selection on the whole array. NaN anywhere gives NaN, as torch.median does."""
    n = a.size
    k = (n - 1) // 2
    if np.isnan(np.max(a)):  # max propagates NaN: one fast pass
        return float("nan")
    if n <= 16384:
        return float(np.partition(a, k)[k])
    s = np.partition(a[_pick(n)], (SAMPLE // 2 - BRACKET, SAMPLE // 2 + BRACKET))
    lo, hi = s[SAMPLE // 2 - BRACKET], s[SAMPLE // 2 + BRACKET]
    ge = a >= lo
    inside = np.logical_and(ge, a <= hi)
    j = k - (n - int(np.count_nonzero(ge)))  # rank of the median inside the bracket
    if 0 <= j < int(np.count_nonzero(inside)):
        band = np.compress(inside, a)
        return float(np.partition(band, j)[j])
    return float(np.partition(a, k)[k])


def row_medians(v: torch.Tensor) -> torch.Tensor:
    """torch.median of each row of v [r, n] (the lower median), exactly; on CPU without sorting whole rows
    (see `_lower_median_np`), elsewhere with kthvalue."""
    if v.device.type != "cpu":
        return v.kthvalue((v.shape[1] - 1) // 2 + 1, dim=1).values
    a = v.detach().float().contiguous().numpy()
    return torch.tensor([_lower_median_np(row) for row in a], dtype=v.dtype)


def lower_median(v: torch.Tensor) -> torch.Tensor:
    """torch.median(v) (the lower median) of a 1-D tensor, exactly (see `row_medians`)."""
    return row_medians(v.reshape(1, -1))[0]


def seq_abs_medians(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Lower median of |x| (x [b, t, d]) over each sequence's masked positions × dims -> float32 [b] (0 where
    none); on CPU straight from x by `select_kernels.abs_median` (no |x| tensor), else `seq_medians(|x|)`."""
    if not (kernels.ENABLED and x.device.type == "cpu"):
        return seq_medians(x.detach().float().abs(), mask)
    x = x.detach()
    full = bool(mask.all())
    if full:
        return select_kernels.abs_medians(x.reshape(x.shape[0], -1))
    out = torch.zeros(x.shape[0])
    for s in range(x.shape[0]):
        v = x[s] if full else x[s][mask[s]]
        if v.numel():
            out[s] = select_kernels.abs_median(v)
    return out


def top_first(v: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest values of each row of v [b, n] (1 ≤ k ≤ n) and their column indices, largest first, equal
    values by smaller index first (NaN ranks highest): a total order, so the result does not depend on how
    torch.topk breaks ties (arbitrarily). The k-th largest value is unique whatever the tie-break; every value
    above it is kept, and of those equal to it the first ones by index, as many as fill k."""
    key = torch.where(v.isnan(), torch.inf, v) if v.is_floating_point() else v
    kth = key.topk(k, dim=1).values[:, -1:]  # [b, 1]
    above, tie = key > kth, key == kth
    keep = above | (tie & (tie.cumsum(1) <= k - above.sum(1, keepdim=True)))  # exactly k per row
    idx = keep.nonzero()[:, 1].view(len(v), k)  # ascending index within each row
    idx = idx.gather(1, key.gather(1, idx).sort(dim=1, descending=True, stable=True).indices)
    return v.gather(1, idx), idx


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

    reads_output = "none"

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
        self.hooks_ = self.site_map(model).stream()
        D, d = len(self.hooks_), self.card.d_model
        self.depth_of = {h: i for i, h in enumerate(self.hooks_)}
        self._add("n_seq", torch.zeros(D), "sum")             # sequences seen per depth
        self._add("n_massive", torch.zeros(D), "sum")         # massive activations per depth
        self._add("seq_with", torch.zeros(D), "sum")          # sequences with at least one massive activation
        self._add("top3_sum", torch.zeros(D, 3), "sum")       # Σ over sequences of its top-1/2/3 |x|
        self._add("median_sum", torch.zeros(D), "sum")        # Σ over sequences of its median |x|
        self._add("top1_max", torch.zeros(D), "max")          # largest |x| of any sequence
        self._add("dim_count", torch.zeros(D, d), "sum")      # massive activations per (depth, dim)
        self._add("dim_value_sum", torch.zeros(D, d), "sum")  # Σ of their signed values
        self._add("dim_seqs", torch.zeros(D, d), "sum")       # sequences with a massive activation in (depth, dim)
        self._add_topk("top", TopK(self.k, "tk_abs", FIELDS))
        self._bufs: select_kernels.DepthBuffers | None = None  # the CPU kernel's per-batch outputs (reused)
        self._hitbuf = select_kernels.HitBuffers()  # the CPU kernel's massive values of a batch (reused)
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
        self._depth: list[tuple] = []  # per depth: (depth, median, top values, positions, dims, values, hits)
        self._fast: list[tuple] = []  # (depth, first, count) of depths whose results are in self._bufs, self._hitbuf
        self._hitbuf.clear()

    def _hook(self, x: torch.Tensor, hook) -> None:
        j, b = self.depth_of[hook.name], self.batch
        x = x.detach()
        if self.median_scope == "token":
            return self._hook_token_scope(j, x)
        K, d = max(3, self.k), x.shape[2]
        if b.full and kernels.ENABLED and x.device.type == "cpu" and x.dim() == 3:
            # one compiled call into per-batch buffers: medians, token maxima, top K (folded in at end_batch)
            nb, t = x.shape[:2]
            out = self._bufs
            if out is None or out.shape != (len(self.hooks_), nb, t, d, min(K, t * d)):
                out = self._bufs = select_kernels.DepthBuffers(len(self.hooks_), nb, t, d, min(K, t * d))
            top = select_kernels.stream_depth_into(x, j, out)
            first = count = 0
            if top > self.abs_threshold:  # the massive values: one compiled scan of the tokens that can hold one
                first, count = select_kernels.massive_hits_into(x, out.floats(out.tmax[j]), out.floats(out.med[j]),
                                                         self.abs_threshold, self.ratio, self._hitbuf)
            self._fast.append((j, first, count))
            return
        med = seq_abs_medians(x, b.mask).to(x.device)  # [b] float32
        tokmax = x.float().abs().amax(-1)  # [b, t] max |x| per token
        if not b.full:
            tokmax.masked_fill_(~b.mask, -1.0)
        # the top-K |x| of a sequence lie in the tokens whose max |x| reaches the K-th largest token max (tau: K
        # tokens hold a value ≥ tau, so no token below it holds one): select those first (cheap, ties at tau
        # included), in position order, then the top-K of their values, equal values by smaller (position, dim)
        # as the CPU kernel and TopK break ties (`top_first`)
        key = torch.where(tokmax.isnan(), torch.inf, tokmax)
        tau = key.topk(min(K, key.shape[1]), dim=1).values[:, -1:]  # [b, 1]
        c = int((key >= tau).sum(1).max())  # ≥ K (or t)
        tv, ti = key.topk(c, dim=1)  # [b, c] every token that can hold a top-K value (and a few that cannot)
        ti, order = ti.sort(dim=1)
        tv = tv.gather(1, order)
        cand = x.gather(1, ti[..., None].expand(-1, -1, d)).float().abs_()  # [b, c, d]
        if not b.full:
            cand.masked_fill_(tv[..., None] < 0, -1.0)  # padding tokens
        topv, topi = top_first(cand.flatten(1), min(K, cand[0].numel()))  # [b, ≤K] per sequence
        pos = ti.gather(1, topi // d)  # token position of each
        dim = topi % d
        xval = x.flatten(1).gather(1, pos * d + dim)  # the signed values
        hits = self._massive(x, tokmax, med) if float(tv.amax()) > self.abs_threshold else None
        self._depth.append((j, med, topv, pos, dim, xval, hits))

    def _massive(self, x: torch.Tensor, tokmax: torch.Tensor, med: torch.Tensor) -> tuple:
        """(sequence, dim, value) of the massive activations at one depth: only tokens whose max |x| passes both the
        threshold and ratio · median can hold one (as in `select_kernels.massive_hits_into`)."""
        s, t = ((tokmax > self.abs_threshold) & (tokmax >= self.ratio * med[:, None])).nonzero(as_tuple=True)
        rows = x[s, t].float().abs()  # [m, d]
        hit = ((rows > self.abs_threshold) & (rows >= self.ratio * med[s][:, None])).nonzero()  # [h, 2]
        seq, dim = s[hit[:, 0]], hit[:, 1]
        return seq, dim, x[seq, t[hit[:, 0]], dim]

    def _hook_token_scope(self, j: int, x: torch.Tensor) -> None:
        """median_scope="token": every element against the median of its own position (the direct form)."""
        b = self.batch
        a, med = self.abs_median(x, b.mask)  # padding at -1; med [b, t, 1]
        af = a.flatten(1)
        topv, topi = top_first(af, min(max(3, self.k), af.shape[1]))  # ties: smaller (position, dim) first
        hits = None
        if float(topv[:, 0].max()) > self.abs_threshold:
            idx = self.massive(a, med, b.mask).nonzero()
            hits = (idx[:, 0], idx[:, 2], x[idx[:, 0], idx[:, 1], idx[:, 2]])
        pos, dim = topi // a.shape[2], topi % a.shape[2]
        self._depth.append((j, seq_medians(a.clamp(min=0), b.mask), topv, pos, dim,
                            x.flatten(1).gather(1, topi), hits, med[:, :, 0].gather(1, pos)))

    def end_batch(self, model, batch, output) -> None:
        """Fold the batch's per-depth results into the state at once: sums, maxima, the massive counts and the
        top-k candidates (the top-k selection does not depend on arrival order, so this equals folding them in
        depth by depth)."""
        if self._fast:
            self._fold_buffers(batch)
        if self._depth:
            self._fold(batch)
        self._depth = []
        if self._cand:
            self.topk["top"].update(self.state, {f: torch.cat([c[f].to(F64) for c in self._cand])
                                                 for f in self.topk["top"].keys()})
        self._cand = []

    def _fold_buffers(self, batch) -> None:
        """`_fold` for the depths the kernel wrote into self._bufs and self._hitbuf (CPU, unpadded batch)."""
        if self._fold_numpy(batch):
            return
        out, fast, self._fast = self._bufs, self._fast, []
        idx = np.array([j for j, _, _ in fast])
        whole = len(idx) == out.shape[0] and bool((idx == np.arange(len(idx))).all())
        pick = (lambda a: a) if whole else (lambda a: a[idx])
        depth = []
        for j, first, count in fast:
            seq, _, dim, val = self._hitbuf.tensors(first, count)
            depth.append((j, None, None, None, None, None, (seq, dim, val) if count else None))
        self._fold(batch, depth,
                   (out.floats(pick(out.med)), out.floats(pick(out.tv)), torch.from_numpy(pick(out.tp)),
                    torch.from_numpy(pick(out.td)), out.floats(pick(out.tx))))

    def _fold_numpy(self, batch) -> bool:
        """`_fold_buffers` in numpy on the float64 CPU state, in place: the same sums, maxima, counts and top-k
        candidates, without the ~40 small torch operations of `_fold` (each costs µs). Every sequence of the
        (unpadded) batch counts and positions start at 0. False (nothing done) when the state is not on CPU."""
        st = self.state
        if not all(v.device.type == "cpu" and v.is_contiguous() for v in st.values()):
            return False
        out, fast, self._fast = self._bufs, self._fast, []
        s = {k: v.numpy() for k, v in st.items()}
        js = np.array([j for j, _, _ in fast], dtype=np.int64)
        b, d = len(batch.tokens), s["dim_count"].shape[1]
        med, tv = out.med.view(np.float32)[js], out.tvf[js]  # [D', b], [D', b, K]
        np.add.at(s["n_seq"], js, float(b))
        np.add.at(s["median_sum"], js, med.astype(np.float64).sum(1))
        top = tv[:, :, :3].astype(np.float64)
        np.add.at(s["top3_sum"][:, : top.shape[2]], js, top.sum(1))
        np.maximum.at(s["top1_max"], js, top[:, :, 0].max(1))  # NaN propagates, as torch.maximum
        hits = [(j, first, count) for j, first, count in fast if count]
        if hits:
            hb = self._hitbuf
            hj = np.concatenate([np.full(c, j, dtype=np.int64) for j, _, c in hits])
            seq, dim, val = (np.concatenate([a[f: f + c] for _, f, c in hits]) for a in (hb.seq, hb.dim, hb.val))
            np.add.at(s["n_massive"], hj, 1.0)
            cells = np.unique((hj * b + seq) * d + dim)  # (depth, sequence, dim) with a massive value, sorted
            np.add.at(s["dim_seqs"].reshape(-1), cells // (b * d) * d + cells % d, 1.0)
            pairs = cells // d  # (depth, sequence) pairs with a massive value, sorted, repeated per dim
            pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
            np.add.at(s["seq_with"], pairs // b, 1.0)
            np.add.at(s["dim_count"].reshape(-1), hj * d + dim, 1.0)
            np.add.at(s["dim_value_sum"].reshape(-1), hj * d + dim, val)
        # a NaN top value is no candidate (as in `_fold`), nor is one below every value the top-k buffer holds (it
        # could not enter: `TopK.update` drops it too), which leaves few rows to build once the buffer has filled
        held = st["tk_abs"].numpy()
        floor = float(np.min(np.where(np.isnan(held), np.inf, held))) if held.size else -np.inf
        valid = tv >= np.float64(max(0.0, floor))  # compared in float64, as TopK.update compares
        if not valid.any():
            return True
        pos = out.tp[js][valid]
        shape = tv.shape
        self._cand.append({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in (
            ("tk_abs", tv[valid]), ("tk_depth", np.broadcast_to(js[:, None, None], shape)[valid]),
            ("tk_seq_pos", pos), ("tk_dim", out.td[js][valid]),
            ("tk_token", batch.tokens.numpy()[np.broadcast_to(np.arange(b)[None, :, None], shape)[valid], pos]),
            ("tk_value", out.tx.view(np.float32)[js][valid]),
            ("tk_median", np.broadcast_to(med[:, :, None], shape)[valid]))})
        return True

    def _fold(self, batch, depth: list | None = None, stacked: tuple | None = None) -> None:
        depth = self._depth if depth is None else depth
        st, rows, dev = self.state, self._rows, self.state["n_seq"].device
        D, d = len(depth), st["dim_count"].shape[1]
        js = torch.tensor([e[0] for e in depth], device=dev)
        med, topv, pos, dim, xval = stacked or (torch.stack([e[i] for e in depth]) for i in range(1, 6))  # [D', b(, K)]
        st["n_seq"].index_add_(0, js, self._n_rows.to(F64).expand(D))
        st["median_sum"].index_add_(0, js, med[:, rows].to(F64).sum(1))
        top = topv[:, rows, :3].to(F64)
        st["top3_sum"][:, : top.shape[2]].index_add_(0, js, top.sum(1))
        if top.shape[1]:
            st["top1_max"][js] = torch.maximum(st["top1_max"][js], top[:, :, 0].amax(1))
        hits = [(e[0], e[6]) for e in depth if e[6] is not None and len(e[6][0])]
        if hits:
            hj = torch.cat([torch.full((len(h[0]),), j, device=dev) for j, h in hits])
            seq, hd, hv = (torch.cat([h[i] for _, h in hits]) for i in range(3))
            st["n_massive"].index_add_(0, hj, torch.ones(len(hj), dtype=F64, device=dev))
            B = len(batch.tokens)
            cells = torch.unique((hj * B + seq) * d + hd)  # (depth, sequence, dim) with a massive value
            st["dim_seqs"].view(-1).index_add_(0, cells // (B * d) * d + cells % d,
                                               torch.ones(len(cells), dtype=F64, device=dev))
            pairs = torch.unique(cells // d)  # (depth, sequence) pairs with a massive value
            st["seq_with"].index_add_(0, pairs // B, torch.ones(len(pairs), dtype=F64, device=dev))
            st["dim_count"].view(-1).index_add_(0, hj * d + hd, torch.ones(len(hj), dtype=F64, device=dev))
            st["dim_value_sum"].view(-1).index_add_(0, hj * d + hd, hv.to(F64))
        valid = (topv >= 0) & rows[None, :, None]  # not padding; a sequence with counted positions
        bi = torch.arange(len(batch.tokens), device=dev)[None, :, None].expand_as(topv)
        jj = js[:, None, None].expand_as(topv)
        self._cand.append({
            "tk_abs": topv[valid], "tk_depth": jj[valid], "tk_seq_pos": (pos - self._first[None, :, None])[valid],
            "tk_dim": dim[valid],
            "tk_token": batch.tokens[bi[valid], pos[valid]], "tk_value": xval[valid],
            "tk_median": (torch.stack([e[7] for e in depth]) if len(depth[0]) > 7
                          else med[:, :, None].expand_as(topv))[valid]})

    def describe(self, key, bad):
        i = int(bad.nonzero()[0, 0]) if bad.dim() else 0
        return f"at {self.hooks_[i]} (depth {i})" if key in ("top3_sum", "median_sum", "top1_max") else f"in {key!r}"

    # --- tables ---------------------------------------------------------------------------------------
    def result(self) -> pd.DataFrame:
        st = {k: v.numpy() for k, v in self.state.items()}
        n = np.maximum(st["n_seq"], 1)
        return pd.DataFrame({
            "model": self.model_name, "depth": np.arange(len(self.hooks_)), "hook": self.hooks_,
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
            "model": self.model_name, "rank": np.arange(ok.sum()), "depth": depth,
            "hook": [self.hooks_[i] for i in depth], "position": st["tk_seq_pos"][ok].astype(np.int64),
            "token_id": ids, "token": [tok.decode([i]) if tok is not None else str(i) for i in ids],
            "dim": st["tk_dim"][ok].astype(np.int64), "value": st["tk_value"][ok], "abs": st["tk_abs"][ok],
            "seq_median": st["tk_median"][ok],
            "massive": (st["tk_abs"][ok] > self.abs_threshold) & (st["tk_abs"][ok] >= self.ratio * st["tk_median"][ok])})

    def dims(self) -> pd.DataFrame:
        """(depth, dim) pairs that carried massive activations: how often, in what fraction of the sequences,
        their mean value."""
        c, s = self.state["dim_count"].numpy(), self.state["dim_value_sum"].numpy()
        depth, dim = np.nonzero(c)
        n = np.maximum(self.state["n_seq"].numpy(), 1)
        return pd.DataFrame({"model": self.model_name, "depth": depth, "dim": dim,
                             "count": c[depth, dim].astype(np.int64), "per_sequence": c[depth, dim] / n[depth],
                             "frac_sequences": self.state["dim_seqs"].numpy()[depth, dim] / n[depth],
                             "mean_value": s[depth, dim] / c[depth, dim]})

    def tables(self):
        return {"massive": self.result(), "massive_top": self.top(), "massive_dims": self.dims()}

    # --- the ablation test ----------------------------------------------------------------------------
    def appearance_depth(self) -> int:
        """Where the largest massive activation appears: the first depth at which the dim that carries the
        largest mean massive value is massive in at least half the sequences (Sun et al. ablate at the layer
        where the massive activations appear; a smaller, earlier outlier in another dim must not decide it, nor
        one sequence that holds it on many tokens); the first depth where it is massive at all if none."""
        counts, n_seq = self.state["dim_count"], self.state["n_seq"].clamp(min=1)
        if not bool((counts > 0).any()):
            raise ValueError(f"no massive activations were found (|x| > {self.abs_threshold} and ≥ "
                             f"{self.ratio}× the median); nothing to ablate — collect on more text or lower "
                             "the thresholds")
        mean_abs = (self.state["dim_value_sum"] / counts.clamp(min=1)).abs()  # [D, d]
        dim = int(mean_abs.max(0).values.argmax())
        common = (self.state["dim_seqs"][:, dim] >= 0.5 * n_seq).nonzero()  # sequences, not activations
        return int(common[0, 0]) if len(common) else int((counts[:, dim] > 0).nonzero()[0, 0])

    def ablation_target(self, depth: int | None = None) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(depth, dims, mean value per dim) the ablation edits: `depth` (default `appearance_depth()`) and the
        dims seen massive there in this collector's state."""
        counts = self.state["dim_count"]
        if depth is None:
            depth = self.appearance_depth()
        dims = counts[depth].nonzero()[:, 0]
        if len(dims) == 0:
            raise ValueError(f"no massive activations at depth {depth}; nothing to ablate there")
        return depth, dims, (self.state["dim_value_sum"][depth, dims] / counts[depth, dims]).float()

    def ablation_runs(self, model, data, depth: int | None = None, batch_size: int = 8,
                      max_tokens: int | None = None, progress: bool = False) -> dict:
        """Per mode ("none", "zero", "mean"): the summed next-token CE and predicted tokens of every sequence
        of `data`, and the elements replaced. One intact forward per batch gives "none" and the stream at
        `depth`; the two edited streams run from `depth` on only, batched (`interp.collectors.variants`)."""
        from interp.collectors.driver import run_batches
        if not is_causal(model):
            raise ValueError(f"massive-activation ablation compares LM losses; {model.card.name} is an encoder")
        depth, dims, mean = self.ablation_target(depth)
        probe = _AblationBatched(self, depth, dims, mean)
        meta = run_batches(model, data, [probe], batch_size, max_tokens, progress=progress)
        return {"depth": depth, "dims": dims, "n_tokens": meta["n_tokens"], "per_seq": probe.per_seq,
                "replaced": probe.replaced}

    def ablation(self, model, data, depth: int | None = None, batch_size: int = 8,
                 max_tokens: int | None = None, progress: bool = False) -> pd.DataFrame:
        """Loss on `data` (held text) when the massive activations at `depth` (default: `appearance_depth()`)
        are left alone, set to zero, or set to their mean value per dim (from this collector's state).
        Elements are re-detected on the held text with the same rule; only dims seen massive here are touched."""
        r = self.ablation_runs(model, data, depth, batch_size, max_tokens, progress)
        rows = []
        for mode in MODES:
            ce = np.array(r["per_seq"][mode], dtype=float).reshape(-1, 2)
            loss = ce[:, 0].sum() / ce[:, 1].sum()
            with np.errstate(over="ignore"):  # an exploded loss gives ppl = inf, which is what it is
                ppl = float(np.exp(loss))
            rows.append({"model": model.card.name, "intervention": mode, "depth": r["depth"],
                         "dims": " ".join(map(str, r["dims"].tolist())), "n_replaced": int(r["replaced"][mode]),
                         "n_tokens": r["n_tokens"], "loss": loss, "ppl": ppl})
        df = pd.DataFrame(rows)
        df["loss_delta"] = df["loss"] - df.loc[0, "loss"]
        return df
