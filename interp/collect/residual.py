"""Residual statistics: moments of the stream entering / leaving each block, each sublayer's delta and each
norm's input, pooled over real tokens × dimensions, plus per-dimension mean squares (outlier dims) and a
growth summary (slope of log-variance vs depth, last/first variance ratio — the Peri-LN / Curse-of-Depth measure).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from interp.collect.base import F64, Collector

# state key -> merge rule; S = number of sites, d = d_model. Few keys, so a hook does few tensor ops.
RULES = {
    "sums": "sum",      # [S, 4]    tokens seen, Σ x³, Σ x⁴ (over tokens × dims), Σ ‖x_t‖₂ (over tokens)
    "maxima": "max",    # [S, 2]    max ‖x_t‖₂, max |x|
    "dim_sums": "sum",  # [S, 2, d] Σ x and Σ x² per dimension
}


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
    """The per-batch contributions of rows x [n, d] to (sums, maxima, dim_sums); None when n = 0.
    Per-dimension and per-token sums over one batch run in float32 (torch's cascade summation), everything
    is accumulated in float64; the third and fourth powers, prone to cancellation, are summed in float64."""
    if x.shape[0] == 0:
        return None
    x = x.float() if x.dtype not in (torch.float32, torch.float64) else x
    x2 = x * x
    tok2 = x2.sum(-1)
    sums = torch.stack([torch.tensor(float(x.shape[0]), dtype=F64, device=x.device), (x2 * x).sum(dtype=F64),
                        (x2 * x2).sum(dtype=F64), tok2.sqrt().sum(dtype=F64)])
    lo, hi = torch.aminmax(x)  # max |x| without materialising |x|
    maxima = torch.stack([tok2.max().sqrt(), torch.maximum(-lo, hi)]).to(F64)
    return sums, maxima, torch.stack([x.sum(0), x2.sum(0)]).to(F64)


class ResidualStats(Collector):
    """Per layer and site: mean, variance, RMS, token-norm mean / max, max |x|, kurtosis; per-dim mean square."""

    name = "residual"

    def bind(self, model) -> "ResidualStats":
        super().bind(model)
        self.sites = residual_sites(model.sites)
        S, d = len(self.sites), model.card.d_model
        self.widths = site_widths(model.sites, d)  # per-dim sums of site i fill dim_sums[i, :, :widths[i]]
        self._add("sums", torch.zeros(S, 4), "sum")
        self._add("maxima", torch.zeros(S, 2), "max")
        self._add("dim_sums", torch.zeros(S, 2, max(self.widths, default=d)), "sum")
        self.rows_of: dict[str, list[int]] = {}
        for i, (_, _, _, hook) in enumerate(self.sites):
            self.rows_of.setdefault(hook, []).append(i)
        self._last: tuple = (None, -1, None)
        return self

    def hooks(self, model):
        return [(hook, self._hook) for hook in self.rows_of]

    def _hook(self, x: torch.Tensor, hook) -> None:
        last, version, m = self._last
        if x is not last or x._version != version:  # same tensor under another hook name: reuse its moments
            rows = self.batch.select(x.detach())
            if rows.dim() > 2:  # per-head tensors (QK-norm inputs [b, t, h, d_head]): one vector per token
                rows = rows.reshape(rows.shape[0], -1)
            m = moments(rows)
            self._last = (x, x._version, m)
        if m is None:
            return
        st = self.state
        for i in self.rows_of[hook.name]:
            st["sums"][i] += m[0]
            torch.maximum(st["maxima"][i], m[1], out=st["maxima"][i])
            w = m[2].shape[-1]
            if w == st["dim_sums"].shape[-1]:
                st["dim_sums"][i] += m[2]
            elif w == self.widths[i]:
                st["dim_sums"][i, :, :w] += m[2]
            else:
                raise ValueError(f"{hook.name} carries {w} values per token, the site map says {self.widths[i]}; "
                                 "declare its width in LayerSites.norm_widths")

    def end_batch(self, model, batch, output) -> None:
        self._last = (None, -1, None)  # release the last activation

    def describe(self, key, bad):
        i = int(bad.nonzero()[0, 0])
        return f"at {self.sites[i][3]} (layer {self.sites[i][0]}, {self.sites[i][1]})"

    def _summary(self) -> pd.DataFrame:
        sums, mx, ds = (self.state[k].cpu().numpy() for k in ("sums", "maxima", "dim_sums"))
        n = sums[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            N = n * np.asarray(self.widths, dtype=float)
            m1, m2 = ds[:, 0].sum(1) / N, ds[:, 1].sum(1) / N
            m3, m4 = sums[:, 1] / N, sums[:, 2] / N
            var = np.maximum(m2 - m1 ** 2, 0.0)
            c4 = m4 - 4 * m1 * m3 + 6 * m1 ** 2 * m2 - 3 * m1 ** 4
            kurt = np.where(var > 0, c4 / var ** 2, np.nan)
        return pd.DataFrame({
            "model": self.model.card.name if self.model is not None else "",
            "layer": [s[0] for s in self.sites], "site": [s[1] for s in self.sites],
            "kind": [s[2] for s in self.sites], "hook": [s[3] for s in self.sites],
            "n_tokens": n.astype(np.int64), "mean": m1, "var": var, "rms": np.sqrt(m2),
            "token_norm_mean": sums[:, 3] / n, "token_norm_max": mx[:, 0],
            "abs_max": mx[:, 1], "kurtosis": kurt})

    def result(self) -> pd.DataFrame:
        return self._summary()

    def dims(self) -> pd.DataFrame:
        """One row per site × dimension: mean and mean square (outlier dimensions stand out)."""
        ds = self.state["dim_sums"].cpu().numpy()
        n = self.state["sums"][:, 0].cpu().numpy()[:, None]
        s1, s2 = ds[:, 0] / n, ds[:, 1] / n
        S, d = s1.shape
        keep = (np.arange(d)[None, :] < np.asarray(self.widths)[:, None]).ravel()  # each site's own width
        return pd.DataFrame({
            "model": self.model.card.name if self.model is not None else "",
            "layer": np.repeat([s[0] for s in self.sites], d)[keep], "site": np.repeat([s[1] for s in self.sites], d)[keep],
            "dim": np.tile(np.arange(d), S)[keep], "mean": s1.ravel()[keep], "mean_square": s2.ravel()[keep]})

    def growth(self) -> pd.DataFrame:
        """Per series (the stream at depths 1..L, the block outputs; each norm's input over layers): slope of
        ln(var) per step (least squares) and var(last) / var(first) — the growth figures of docs/results.md
        (`interp.analysis.growth` defines them once; depth 0, the embedding, is not part of the stream series)."""
        df = self._summary()
        series = {"stream": df[df.site == "resid_post"]}
        L = len(self.model.sites.layers)
        for site in df[df.kind == "norm_input"].site.unique():
            s = df[(df.site == site) & (df.layer < L)]
            if len(s) == L and site != "norm_in:final":
                series[site] = s
        rows = []
        for name, s in series.items():
            v = s["var"].to_numpy()
            depth = np.arange(len(v), dtype=float)
            ok = v > 0
            slope = float(np.polyfit(depth[ok], np.log(v[ok]), 1)[0]) if ok.sum() >= 2 else np.nan
            rows.append({"model": df.model.iloc[0], "series": name, "n_points": len(v),
                         "slope_log_var": slope, "var_first": v[0], "var_last": v[-1],
                         "ratio_last_first": v[-1] / v[0] if v[0] > 0 else np.nan})
        return pd.DataFrame(rows)

    def tables(self):
        return {"residual": self.result(), "residual_dims": self.dims(), "residual_growth": self.growth()}
