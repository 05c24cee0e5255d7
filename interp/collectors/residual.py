"""Residual statistics: moments of the stream entering / leaving each block, each sublayer's delta and each
norm's input, pooled over real tokens × dimensions, plus per-dimension mean squares (outlier dims) and a
growth summary (slope of log-variance vs depth, last/first variance ratio — the Peri-LN / Curse-of-Depth measure).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from interp.collectors import kernels
from interp.collectors.base import F64, Collector, str_column

# state key -> merge rule; S = number of sites, d = d_model. Few keys, so a hook does few tensor ops.
RULES = {
    "sums": "sum",      # [S, 4]    tokens seen, Σ x³, Σ x⁴ (over tokens × dims), Σ ‖x_t‖₂ (over tokens)
    "maxima": "max",    # [S, 2]    max ‖x_t‖₂, max |x|
    "dim_sums": "sum",  # [S, 2, d] Σ x and Σ x² per dimension
}
FLOATS = (torch.float32, torch.float64)  # what the CPU kernels read in place


def residual_sites(sites) -> list[tuple[int, str, str, str]]:
    """(layer, site, kind, hook) for every residual-like tensor the site map names, in depth order."""
    out = []
    for l, ls in enumerate(sites.layers):
        out.append((l, "resid_pre", "stream", ls.resid_pre))
        out += [(l, f"norm_in:{k}", "norm_input", h) for k, h in ls.norm_inputs.items()]
        out += [(l, f"delta:{k}", "delta", h) for k, h in ls.deltas.items()]
        out += [(l, f"sublayer_out:{k}", "sublayer_out", h) for k, h in ls.sublayer_out.items()]
        out.append((l, "resid_post", "stream", ls.resid_post))
    if sites.final_norm_input:
        out.append((sites.n_layers, "norm_in:final", "norm_input", sites.final_norm_input))
    return out


def site_widths(sites, d_model: int) -> list[int]:
    """Values per token of each residual site (aligned with `residual_sites`): d_model, except norms the site map
    declares narrower or wider (QK-norm inputs: heads · d_head, `LayerSites.norm_widths`)."""
    out = []
    for ls in sites.layers:
        out.append(d_model)
        out += [ls.norm_widths.get(k, d_model) for k in ls.norm_inputs]
        out += [d_model] * (len(ls.deltas) + len(ls.sublayer_out) + 1)
    return out + ([d_model] if sites.final_norm_input else [])


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The per-batch contributions of rows x [n, d] to (sums, maxima, dim_sums) in float64; None when n = 0.
    The reference form of what `ResidualStats` folds in off CPU (the same float32 partial sums, written into a
    per-batch buffer): every sum over one batch runs in float32 with torch's cascade summation and is added
    to the float64 state. On CPU the collector accumulates in float64 in one pass (`interp.collectors.kernels`)."""
    if x.shape[0] == 0:
        return None
    x = x.float() if x.dtype not in (torch.float32, torch.float64) else x
    x2 = x * x
    tok2 = x2.sum(-1)
    sums = torch.stack([torch.tensor(float(x.shape[0]), device=x.device, dtype=x.dtype), (x2 * x).sum(),
                        (x2 * x2).sum(), tok2.sqrt().sum()]).to(F64)
    lo, hi = torch.aminmax(x)  # max |x| without materialising |x|
    maxima = torch.stack([tok2.max().sqrt(), torch.maximum(-lo, hi)]).to(F64)
    return sums, maxima, torch.stack([x.sum(0), x2.sum(0)]).to(F64)


def log_slope(v: np.ndarray) -> float:
    """Least-squares slope of ln v[j] against j over the j with v[j] > 0 (NaN with fewer than two): np.polyfit's
    degree-1 fit, in closed form (Σ (j − j̄)(y − ȳ) / Σ (j − j̄)²)."""
    ok = v > 0
    if ok.sum() < 2:
        return float("nan")
    j = np.flatnonzero(ok).astype(float)
    y = np.log(v[ok])
    j -= j.mean()
    return float((j * (y - y.mean())).sum() / (j * j).sum())


class ResidualStats(Collector):
    """Per layer and site: mean, variance, RMS, token-norm mean / max, max |x|, kurtosis; per-dim mean square.

    Each distinct tensor of a batch is read once, in its hook, while the model has just written it (it is
    still in cache): its partial sums (CPU: float64 from one fused pass, `interp.collectors.kernels`; elsewhere
    float32 from torch reductions) go into a per-batch buffer row, sites that see the same tensor point at the
    same row, and `end_batch` adds the buffer to the float64 state in one operation per key."""

    reads_output = "none"

    name = "residual"

    def bind(self, model) -> "ResidualStats":
        super().bind(model)
        sites = self.site_map(model)  # the map `collect` handed over, or built now
        self.sites, self.n_layers = residual_sites(sites), len(sites.layers)
        S, d = len(self.sites), self.card.d_model
        self.widths = site_widths(sites, d)  # per-dim sums of site i fill dim_sums[i, :, :widths[i]]
        self._add("sums", torch.zeros(S, 4), "sum")
        self._add("maxima", torch.zeros(S, 2), "max")
        self._add("dim_sums", torch.zeros(S, 2, max(self.widths, default=d)), "sum")
        self.rows_of: dict[str, list[int]] = {}
        for i, (_, _, _, hook) in enumerate(self.sites):
            self.rows_of.setdefault(hook, []).append(i)
        self._last: tuple = (None, -1, -1)
        self._work: torch.Tensor | None = None
        self._checked: dict[str, int] = {}  # hook -> width already checked against the site map
        self._tok: np.ndarray | None = None  # per-token (Σx, Σx²) of each buffer row (CPU)
        return self

    def hooks(self, model):
        return [(hook, self._hook) for hook in self.rows_of]

    def begin_batch(self, batch) -> None:
        super().begin_batch(batch)
        S, _, d = self.state["dim_sums"].shape
        dev = self.state["sums"].device
        self._src = [-1] * S        # site -> buffer row holding its tensor's partial sums (-1: not seen)
        self._rows = 0              # buffer rows used
        self._fused = kernels.ENABLED and dev.type == "cpu"  # one fused float64 pass per tensor (kernels)
        if self._fused:  # float64 buffers: Σ‖x_t‖, max ‖x_t‖², max |x|; Σx, Σx², Σx³, Σx⁴, max |x| per dim
            if getattr(self, "_acc", None) is None or self._acc.shape != (S, 5, d):
                self._sc64, self._acc = np.empty((S, 3)), np.empty((S, 5, d))
        else:
            self._sc = torch.empty(S, 6, device=dev)      # Σx³, Σx⁴, Σ‖x_t‖, max ‖x_t‖², min x, max x
            self._dim = torch.zeros(S, 2, d, device=dev)  # Σx, Σx² per dimension (zero past a narrower site's width)
        self._last = (None, -1, -1)
        self._direct = self._fused and batch.full  # tensors as wide as the state: read in place (`_direct_moments`)
        self._d = d

    def _hook(self, x: torch.Tensor, hook) -> None:
        last, version, row = self._last
        if x is not last or x._version != version:  # a new tensor (not the one the previous site saw)
            row = self._direct_moments(x) if self._direct else None
            if row is None:
                rows = self.batch.select(x.detach())  # a view of x when every token counts
                if rows.dim() > 2:  # per-head tensors (QK-norm inputs [b, t, h, d_head]): one vector per token
                    rows = rows.flatten(1)  # (not reshape(n, -1): with no counted token, n = 0 leaves -1 undefined)
                row = self._moments(rows, x)
            self._last = (x, x._version, row)
        if row < 0:
            return
        name = hook.name
        w = x.shape[-1] if x.dim() <= 3 else x[0, 0].numel()
        if self._checked.get(name) != w:  # each hook's width is checked once per run
            for i in self.rows_of[name]:
                if w != self.widths[i] and w != self.state["dim_sums"].shape[-1]:
                    raise ValueError(f"{name} carries {w} values per token, the site map says "
                                     f"{self.widths[i]}; declare its width in LayerSites.norm_widths")
            self._checked[name] = w
        for i in self.rows_of[name]:
            self._src[i] = row

    def _scratch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two float32 work tensors shaped like x, reused from batch to batch: a fresh allocation of this size
        can cost more (page faults after the allocator returned the memory) than the arithmetic done in it."""
        n = x.numel()
        if self._work is None or self._work.numel() < 2 * n or self._work.device != x.device:
            self._work = torch.empty(2 * n, device=x.device)
        return self._work[:n].view(x.shape), self._work[n: 2 * n].view(x.shape)

    def _moments(self, x: torch.Tensor, src: torch.Tensor | None = None) -> int:
        """Write the partial sums of rows x [n, w] into the next buffer row; -1 when n = 0. src: the hooked
        tensor the rows come from (the CPU form leaves its per-token sums in `batch.stats` for other collectors)."""
        if x.shape[0] == 0:
            return -1
        if self._fused:
            return self._moments_fused(x, src)
        if x.dtype != torch.float32:
            x = x.float()
        r, sc, dim, w = self._rows, self._sc, self._dim, x.shape[1]
        self._rows += 1
        x2, tmp = self._scratch(x)
        torch.mul(x, x, out=x2)
        torch.sum(x, 0, out=dim[r, 0, :w])
        torch.sum(x2, 0, out=dim[r, 1, :w])
        tok2 = x2.sum(-1)
        torch.amax(tok2, 0, out=sc[r, 3])
        torch.sum(tok2.sqrt_(), 0, out=sc[r, 2])
        torch.sum(torch.mul(x2, x, out=tmp), (0, 1), out=sc[r, 0])
        torch.sum(torch.mul(x2, x2, out=tmp), (0, 1), out=sc[r, 1])
        torch.aminmax(x, out=(sc[r, 4], sc[r, 5]))
        return r

    def _moments_fused(self, x: torch.Tensor, src: torch.Tensor | None = None) -> int:
        """The kernel form of `_moments` (CPU): one pass accumulating in float64 (kernels.moments), max |x|
        included. The pass also yields each token's float64 (Σx, Σx²), which it writes into a per-batch buffer
        and leaves in `batch.stats` as (src, src's version, sums [n, 2]) when src is [b, t, w]: NormScales takes
        a norm's scale from them instead of reading the same tensor again."""
        if not kernels.usable(x):
            x = x.float()
        r = self._rows
        self._rows += 1
        tok = None
        if src is not None and src.dim() == 3:
            n, buf = x.shape[0], self._tok
            if buf is None or buf.shape[1] < n:
                buf = self._tok = np.empty((len(self._src), n, 2))
            tok = buf[r, :n]
            self.batch.stats = (src, src._version, tok)
        self._sc64[r] = kernels.moments(x, self._acc[r], tok, True)
        return r

    def _direct_moments(self, x: torch.Tensor) -> int | None:
        """`_moments_fused` of x [b, t, d] (an unpadded batch) read in place through numpy, without the torch views
        and checks of the general path (a few µs each, at every site of every batch); None (nothing done) unless x
        is a contiguous CPU float32 / float64 tensor as wide as the state."""
        if x.dim() != 3 or x.dtype not in FLOATS or not x.is_cpu or not x.is_contiguous():
            return None
        b, t, w = x.shape
        n = b * t
        if w != self._d or n == 0:
            return None
        r, buf = self._rows, self._tok
        self._rows += 1
        if buf is None or buf.shape[1] < n:
            buf = self._tok = np.empty((len(self._src), n, 2))
        self.batch.stats = (x, x._version, buf[r, :n])
        if x.dtype is torch.float32:  # the kernel reads x's memory through its address: no array object made
            kernels.moments_at(x.data_ptr(), n, w, self._acc, buf, self._sc64, r)
        else:  # acc[r] is as wide as x: all of it reset
            self._sc64[r] = kernels._moments(x.detach().numpy().reshape(n, w), self._acc[r], buf[r, :n], True)
        return r

    def _buffers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's buffer rows in use as float64 (sc [R, 6] as `_sc`, dim [R, 2, d])."""
        R = self._rows
        if not self._fused:
            return self._sc[:R].to(F64), self._dim[:R].to(F64)
        acc = torch.from_numpy(self._acc[:R])
        sc64 = torch.from_numpy(self._sc64[:R])  # Σ‖x_t‖, max ‖x_t‖², max |x|: as (…, min, max) = (…, -max|x|, max|x|)
        sc = torch.cat([acc[:, 2:4].sum(-1), sc64[:, :2], -sc64[:, 2:], sc64[:, 2:]], 1)
        return sc.to(self.state["sums"].device), acc[:, :2].to(self.state["sums"].device)

    def end_batch(self, model, batch, output) -> None:
        """Add the batch's partial sums to the float64 state: one indexed operation per state key."""
        self._last = (None, -1, -1)  # release the last activation
        batch.stats = None
        st = self.state
        if self._fused and kernels.fold_moments(self._src, batch.n_tokens, self._acc, self._sc64, st["sums"],
                                                 st["maxima"], st["dim_sums"]):
            return
        sites = [i for i, r in enumerate(self._src) if r >= 0]
        if not sites:
            return
        dev = st["sums"].device
        idx = torch.tensor(sites, device=dev)
        src = torch.tensor([self._src[i] for i in sites], device=dev)
        sc, dim = (t[src] for t in self._buffers())
        n = torch.full((len(sites), 1), float(batch.n_tokens), dtype=F64, device=dev)
        st["sums"].index_add_(0, idx, torch.cat([n, sc[:, :3]], 1))
        mx = torch.stack([sc[:, 3].sqrt(), torch.maximum(-sc[:, 4], sc[:, 5])], 1)
        st["maxima"][idx] = torch.maximum(st["maxima"][idx], mx)
        st["dim_sums"].index_add_(0, idx, dim)

    def describe(self, key, bad):
        i = int(bad.nonzero()[0, 0])
        return f"at {self.sites[i][3]} (layer {self.sites[i][0]}, {self.sites[i][1]})"

    def _pooled(self) -> dict[str, np.ndarray]:
        """Per site: n, mean, var, second moment and kurtosis from the float64 state."""
        sums, ds = (self.state[k].cpu().numpy() for k in ("sums", "dim_sums"))
        n = sums[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            N = n * np.asarray(self.widths, dtype=float)
            m1, m2 = ds[:, 0].sum(1) / N, ds[:, 1].sum(1) / N
            m3, m4 = sums[:, 1] / N, sums[:, 2] / N
            var = np.maximum(m2 - m1 ** 2, 0.0)
            c4 = m4 - 4 * m1 * m3 + 6 * m1 ** 2 * m2 - 3 * m1 ** 4
            kurt = np.where(var > 0, c4 / var ** 2, np.nan)
        return {"n": n, "m1": m1, "m2": m2, "var": var, "kurt": kurt}

    def _summary(self) -> pd.DataFrame:
        m, sums, mx = self._pooled(), self.state["sums"].cpu().numpy(), self.state["maxima"].cpu().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            tok_mean = sums[:, 3] / m["n"]
        return pd.DataFrame({
            "model": self.model_name,
            "layer": [s[0] for s in self.sites], "site": [s[1] for s in self.sites],
            "kind": [s[2] for s in self.sites], "hook": [s[3] for s in self.sites],
            "n_tokens": m["n"].astype(np.int64), "mean": m["m1"], "var": m["var"], "rms": np.sqrt(m["m2"]),
            "token_norm_mean": tok_mean, "token_norm_max": mx[:, 0],
            "abs_max": mx[:, 1], "kurtosis": m["kurt"]})

    def result(self) -> pd.DataFrame:
        return self._summary()

    def dims(self) -> pd.DataFrame:
        """One row per site × dimension: mean and mean square (outlier dimensions stand out)."""
        ds = self.state["dim_sums"].cpu().numpy()
        n = self.state["sums"][:, 0].cpu().numpy()[:, None]
        s1, s2 = ds[:, 0] / n, ds[:, 1] / n
        S, d = s1.shape
        keep = (np.arange(d)[None, :] < np.asarray(self.widths)[:, None]).ravel()  # each site's own width
        rows = np.repeat(np.arange(S), d)[keep]
        return pd.DataFrame({
            "model": str_column([self.model_name], np.zeros(len(rows))),
            "layer": np.array([s[0] for s in self.sites])[rows],
            "site": str_column([s[1] for s in self.sites], rows),
            "dim": np.tile(np.arange(d), S)[keep], "mean": s1.ravel()[keep], "mean_square": s2.ravel()[keep]},
            copy=False)  # every column is a fresh array

    def growth(self) -> pd.DataFrame:
        """Per series (the stream at depths 1..L, the block outputs; each norm's input over layers): slope of
        ln(var) per step (least squares) and var(last) / var(first) — the growth figures of docs/results.md
        (`interp.analysis.growth` defines them once; depth 0, the embedding, is not part of the stream series)."""
        var = self._pooled()["var"]
        L = self.n_layers
        at = {(l, site): i for i, (l, site, _, _) in enumerate(self.sites)}
        series = {"stream": [at[(l, "resid_post")] for l in range(L)]}
        for site in dict.fromkeys(s[1] for s in self.sites if s[2] == "norm_input" and s[1] != "norm_in:final"):
            idx = [at.get((l, site)) for l in range(L)]
            if None not in idx:
                series[site] = idx
        v = var[np.array(list(series.values()), dtype=np.int64).reshape(len(series), L)]  # [series, L]
        slopes = np.array([log_slope(row) for row in v])
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(v[:, 0] > 0, v[:, -1] / v[:, 0], np.nan)
        return pd.DataFrame({"model": self.model_name, "series": list(series),
                             "n_points": np.full(len(v), L, dtype=np.int64), "slope_log_var": slopes,
                             "var_first": v[:, 0], "var_last": v[:, -1], "ratio_last_first": ratio})

    def tables(self):
        return {"residual": self.result(), "residual_dims": self.dims(), "residual_growth": self.growth()}
