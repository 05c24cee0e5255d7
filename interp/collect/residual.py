"""Residual statistics: moments of the stream entering / leaving each block, each sublayer's delta and each
norm's input, pooled over real tokens × dimensions, plus per-dimension mean squares (outlier dims) and a
growth summary (slope of log-variance vs depth, last/first variance ratio — the Peri-LN / Curse-of-Depth measure).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from interp.collect.base import F64, Collector

# state key -> merge rule; S = number of sites, d = d_model
RULES = {
    "n": "sum",          # [S]    tokens seen
    "s3": "sum",         # [S]    Σ x³ over tokens × dims
    "s4": "sum",         # [S]    Σ x⁴
    "dim_s1": "sum",     # [S, d] Σ x per dimension
    "dim_s2": "sum",     # [S, d] Σ x² per dimension
    "norm_sum": "sum",   # [S]    Σ ‖x_t‖₂ over tokens
    "norm_max": "max",   # [S]    max ‖x_t‖₂
    "abs_max": "max",    # [S]    max |x|
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


def moments(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The per-batch contributions of rows x [n, d] to the state. Per-dimension and per-token sums over one
    batch run in float32 (torch's cascade summation), everything is accumulated in float64; the third and
    fourth powers, prone to cancellation, are summed in float64."""
    x = x.float() if x.dtype not in (torch.float32, torch.float64) else x
    x2 = x * x
    tok2 = x2.sum(-1)
    empty = x.new_zeros(())
    return {"n": torch.tensor(float(x.shape[0]), dtype=F64),
            "s3": (x2 * x).sum(dtype=F64), "s4": (x2 * x2).sum(dtype=F64),
            "dim_s1": x.sum(0).to(F64), "dim_s2": x2.sum(0).to(F64),
            "norm_sum": tok2.sqrt().sum(dtype=F64),
            "norm_max": (tok2.max().sqrt() if len(tok2) else empty).to(F64),
            "abs_max": (torch.maximum(x.max(), -x.min()) if x.numel() else empty).to(F64)}


class ResidualStats(Collector):
    """Per layer and site: mean, variance, RMS, token-norm mean / max, max |x|, kurtosis; per-dim mean square."""

    name = "residual"

    def bind(self, model) -> "ResidualStats":
        super().bind(model)
        self.sites = residual_sites(model.sites)
        S, d = len(self.sites), model.card.d_model
        for k, rule in RULES.items():
            shape = (S, d) if k.startswith("dim_") else (S,)
            self._add(k, torch.zeros(shape), rule)
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
            m = moments(self.batch.select(x.detach()))
            self._last = (x, x._version, m)
        st = self.state
        for i in self.rows_of[hook.name]:
            for k, v in m.items():
                if RULES[k] == "sum":
                    st[k][i] += v
                else:
                    st[k][i] = torch.maximum(st[k][i], v)

    def end_batch(self, model, batch, output) -> None:
        self._last = (None, -1, None)  # release the last activation

    def describe(self, key, bad):
        i = int(bad.nonzero()[0, 0])
        return f"at {self.sites[i][3]} (layer {self.sites[i][0]}, {self.sites[i][1]})"

    def _summary(self) -> pd.DataFrame:
        st = {k: v.numpy() for k, v in self.state.items()}
        n = st["n"]
        d = st["dim_s1"].shape[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            N = n * d
            m1, m2 = st["dim_s1"].sum(1) / N, st["dim_s2"].sum(1) / N
            m3, m4 = st["s3"] / N, st["s4"] / N
            var = np.maximum(m2 - m1 ** 2, 0.0)
            c4 = m4 - 4 * m1 * m3 + 6 * m1 ** 2 * m2 - 3 * m1 ** 4
            kurt = np.where(var > 0, c4 / var ** 2, np.nan)
        return pd.DataFrame({
            "model": self.model.card.name if self.model is not None else "",
            "layer": [s[0] for s in self.sites], "site": [s[1] for s in self.sites],
            "kind": [s[2] for s in self.sites], "hook": [s[3] for s in self.sites],
            "n_tokens": n.astype(np.int64), "mean": m1, "var": var, "rms": np.sqrt(m2),
            "token_norm_mean": st["norm_sum"] / n, "token_norm_max": st["norm_max"],
            "abs_max": st["abs_max"], "kurtosis": kurt})

    def result(self) -> pd.DataFrame:
        return self._summary()

    def dims(self) -> pd.DataFrame:
        """One row per site × dimension: mean and mean square (outlier dimensions stand out)."""
        n = self.state["n"].numpy()[:, None]
        s1, s2 = self.state["dim_s1"].numpy() / n, self.state["dim_s2"].numpy() / n
        S, d = s1.shape
        return pd.DataFrame({
            "model": self.model.card.name if self.model is not None else "",
            "layer": np.repeat([s[0] for s in self.sites], d), "site": np.repeat([s[1] for s in self.sites], d),
            "dim": np.tile(np.arange(d), S), "mean": s1.ravel(), "mean_square": s2.ravel()})

    def growth(self) -> pd.DataFrame:
        """Per series (the stream at depth 0..L; each norm's input over layers): slope of ln(var) per layer
        (least squares) and var(last) / var(first)."""
        df = self._summary()
        series = {"stream": pd.concat([df[(df.layer == 0) & (df.site == "resid_pre")],
                                       df[df.site == "resid_post"]])}
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
