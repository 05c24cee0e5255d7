"""Norm-scale statistics: the distribution of every norm's `hook_scale` (the divisor, e.g. sqrt(var + eps)),
per layer — how much each norm rescales, which is what LN removal must replace.

Quantiles come from a fixed-bin histogram of log10(scale) (`bins_per_decade` bins from 10^lo to 10^hi, plus
one underflow and one overflow bin), so two histograms merge exactly by addition; a quantile is exact to
within one bin (a factor 10^(1/bins_per_decade), 2.3 % at the default 100) and clamped to the exact min / max.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from interp.collectors import kernels
from interp.collectors.base import F64, Collector, str_column

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _layer_norm_scale(m, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The same ops as LayerNorm.forward's hooked path, the [b, t, d] temporaries in the work tensor w."""
    torch.sub(x, x.mean(-1, keepdim=True), out=w)
    return (torch.mul(w, w, out=w).mean(-1, keepdim=True) + m.eps).sqrt()  # x.pow(2) is x * x


def _rms_norm_scale(m, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The same ops as RMSNorm.forward's hooked path (x.pow(2) is x * x), the square in the work tensor w."""
    return (torch.mul(x, x, out=w).mean(-1, keepdim=True) + m.eps).sqrt()


def scale_from_input(model, hook: str):
    """(hook_in name, fn(x, w) -> scale, centre, eps) when `hook` is the hook_scale of a zoo LayerNorm / RMSNorm or
    of a wrapped transformers norm (`NormHooks`: RMSNorm, Gemma's RMSNorm, LayerNorm), else None.

    Those norms compute no scale unless hook_scale is observed (the zoo's run a fused kernel then); reading
    hook_in instead keeps the forward on its unhooked path (8x cheaper than the hooked path on CPU). On CPU the
    scale is recomputed from hook_in in one float64 pass (`kernels.row_scales`, rounded to float32); elsewhere
    `fn` uses the very ops of the hooked path, in at least float32 as it computes. Unhooked kernels round
    differently, so later layers see activations that differ from a hooked run's at float rounding (~1e-7
    relative), as in any unhooked forward."""
    from interp.models.norm_hooks import NormHooks
    from interp.norms.tokenwise import LayerNorm, RMSNorm
    path, _, leaf = hook.rpartition(".")
    if leaf != "hook_scale" or not path:
        return None
    try:
        m = model.get_submodule(path)
    except AttributeError:
        return None
    if isinstance(m, NormHooks) and m.kind in ("rmsnorm", "rmsnorm1p", "layernorm"):
        return f"{path}.hook_in", lambda x, w: m.scale(x), m.kind == "layernorm", m.eps
    fn = {LayerNorm: _layer_norm_scale, RMSNorm: _rms_norm_scale}.get(type(m))
    return None if fn is None else (f"{path}.hook_in", lambda x, w: fn(m, x, w), type(m) is LayerNorm, m.eps)


def scale_sites(sites) -> list[tuple[int, str, str]]:
    """(layer, norm, hook) for every norm that divides by a statistic; the final norm has layer = L."""
    out = [(l, k, h) for l, ls in enumerate(sites.layers) for k, h in ls.norm_scales.items()]
    if sites.final_norm_scale:
        out.append((sites.n_layers, "final", sites.final_norm_scale))
    return out


class NormScales(Collector):
    """Per norm: count, mean, min, max and histogram quantiles of hook_scale over real tokens."""

    reads_output = "none"

    name = "norm_scales"

    def __init__(self, lo: int = -8, hi: int = 8, bins_per_decade: int = 100):
        super().__init__()
        self.lo, self.hi, self.bpd = lo, hi, bins_per_decade
        self.nb = (hi - lo) * bins_per_decade

    def config(self):
        return {"lo": self.lo, "hi": self.hi, "bins_per_decade": self.bpd}

    def bind(self, model):
        super().bind(model)
        self.sites = scale_sites(self.site_map(model))
        S = len(self.sites)
        self.row_of = {h: i for i, (_, _, h) in enumerate(self.sites)}
        self._add("n", torch.zeros(S), "sum")                  # scale values seen
        self._add("sum", torch.zeros(S), "sum")                # Σ scale
        self._add("min", torch.full((S,), torch.inf), "min")   # smallest scale
        self._add("max", torch.full((S,), -torch.inf), "max")  # largest scale
        self._add("hist", torch.zeros(S, self.nb + 2), "sum")  # counts per log10 bin; [0] under, [-1] over
        self._work: torch.Tensor | None = None  # float32 work tensor for scales recomputed from hook_in
        self._rowbuf: np.ndarray | None = None  # [S, n] float32: the CPU kernels' scales of a batch, per site (reused)
        return self

    def hooks(self, model):
        out = []
        for h in self.row_of:
            src = scale_from_input(model, h)
            if src is None:
                out.append((h, self._hook))
            else:
                out.append((src[0], self._from_input(self.row_of[h], *src[1:])))
        return out

    def _from_input(self, i: int, fn, centre: bool, eps: float):
        def hook(x: torch.Tensor, hook) -> None:
            st = self.batch.stats  # the per-token sums ResidualStats just took of this very tensor, if it did
            if (st is not None and st[0] is x and st[1] == x._version and x.dim() == 3 and kernels.usable(x)
                    and len(st[2]) == self.batch.n_tokens):
                out = self._row(i, len(st[2]))  # straight into the row buffer when there is one
                v = kernels.scales_from_sums(st[2], x.shape[-1], centre, eps, out)
                if v is not None:
                    if v.numel():
                        self._pending.append((i, v if out is None else len(out)))
                    return
                if out is not None:  # a row the one-pass variance cannot take: the two-pass kernel below
                    self._rowused[i] = False
            x = x.detach()
            if kernels.usable(x) and x.dim() >= 2 and tuple(x.shape[:2]) == tuple(self.batch.mask.shape):
                rows = self.batch.select(x)  # real tokens only
                out = self._row(i, rows[..., 0].numel())
                v = kernels.row_scales(rows, centre, eps, out).reshape(-1)
                if v.numel():
                    self._pending.append((i, v if out is None else len(out)))
                return
            if x.dtype != torch.float32:  # in at least float32, as the hooked norm computes (bf16 / fp16 promoted)
                x = x.to(torch.promote_types(x.dtype, torch.float32))
                w = torch.empty_like(x)
            else:
                if self._work is None or self._work.numel() < x.numel() or self._work.device != x.device:
                    self._work = torch.empty(x.numel(), device=x.device)
                w = self._work[: x.numel()].view(x.shape)
            self._fold(i, fn(x, w))
        return hook

    def _values(self, x: torch.Tensor) -> torch.Tensor:
        b = self.batch
        if x.dim() >= 2 and tuple(x.shape[:2]) == tuple(b.mask.shape):  # token-wise: real tokens only
            return b.select(x.detach()).reshape(-1)
        return x.detach().reshape(-1)  # batch-statistic norms: one scale per channel for the whole batch

    def _hook(self, x: torch.Tensor, hook) -> None:
        self._fold(self.row_of[hook.name], x)

    def _row(self, i: int, n: int) -> np.ndarray | None:
        """Row i of the batch's scale buffer, n values, for a CPU kernel to write site i's scales into (None when
        it has no room, or site i already wrote there in this batch: then the kernel allocates). The scales then
        live until end_batch in memory allocated before the forward, not in small allocations made while the
        forward's temporaries come and go, which would fragment the heap."""
        buf = self._rowbuf
        if buf is None or n > buf.shape[1] or self._rowused[i]:
            return None
        self._rowused[i] = True
        return buf[i, :n]

    def begin_batch(self, batch) -> None:
        super().begin_batch(batch)
        self._pending: list[tuple[int, torch.Tensor | int]] = []  # (site, scale values or n in self._rowbuf[site])
        S, n = len(self.sites), batch.n_tokens
        if kernels.ENABLED and self.state["n"].device.type == "cpu":
            if self._rowbuf is None or self._rowbuf.shape[1] < n:
                self._rowbuf, self._rowused = np.empty((S, n), dtype=np.float32), np.zeros(S, dtype=np.bool_)
            self._rowused[:] = False

    def _fold(self, i: int, x: torch.Tensor) -> None:
        v = self._values(x).float()
        if v.numel():
            self._pending.append((i, v))

    def end_batch(self, model, batch, output) -> None:
        """Fold every site's scales of the batch at once: one [sites, n] pass per value count, not one per site."""
        pend, self._pending = self._pending, []
        if pend and all(isinstance(v, int) for _, v in pend) and kernels.fold_scales(
                self._rowbuf, [i for i, _ in pend], [v for _, v in pend], self.state, self.lo, self.bpd, self.nb):
            return  # every site's scales in the row buffer: one compiled pass
        pend = [(i, torch.from_numpy(self._rowbuf[i, :v]) if isinstance(v, int) else v) for i, v in pend]
        st, nb = self.state, self.nb
        for n in sorted({v.numel() for _, v in pend}):
            rows = [(i, v) for i, v in pend if v.numel() == n]
            idx = torch.tensor([i for i, _ in rows], device=st["n"].device)
            V = torch.stack([v for _, v in rows])  # [r, n]
            st["n"].index_add_(0, idx, torch.full((len(rows),), float(n), dtype=F64, device=idx.device))
            st["sum"].index_add_(0, idx, V.sum(1, dtype=F64))
            lo, hi = torch.aminmax(V, dim=1)
            st["min"].scatter_reduce_(0, idx, lo.to(F64), "amin")
            st["max"].scatter_reduce_(0, idx, hi.to(F64), "amax")
            pos = ((V.to(F64).log10() - self.lo) * self.bpd).floor()  # bin index; log10(<=0) gives -inf / nan
            bins = (pos.nan_to_num(nan=-1.0, neginf=-1.0, posinf=nb).clamp(-1, nb) + 1).long()
            flat = (bins + idx[:, None] * (nb + 2)).reshape(-1)
            st["hist"].view(-1).add_(torch.bincount(flat, minlength=st["hist"].numel()).to(F64))

    def describe(self, key, bad):
        i = int(bad.nonzero()[0, 0])
        return f"at {self.sites[i][2]}"

    def quantile(self, i: int, q: float) -> float:
        """Quantile q of site i from its histogram (linear in log space inside a bin), clamped to [min, max]."""
        return float(self.quantiles((q,))[i, 0])

    def quantiles(self, qs=QUANTILES) -> np.ndarray:
        """[sites, len(qs)] quantiles from the histograms (linear in log space inside a bin), clamped to the
        exact [min, max]; an under- or overflow bin gives the exact extremum; NaN for a site with no values."""
        h = self.state["hist"].cpu().numpy()
        lo_, hi_ = self.state["min"].cpu().numpy()[:, None], self.state["max"].cpu().numpy()[:, None]
        c = np.cumsum(h, axis=1)
        n = c[:, -1:]
        target = np.asarray(qs, dtype=float)[None, :] * n  # [S, Q]
        j = np.stack([np.searchsorted(c[s], target[s], "left") for s in range(len(c))]) if len(c) else \
            np.zeros(target.shape, dtype=np.int64)  # per site: how many cumulative counts lie below each target
        before = np.where(j > 0, np.take_along_axis(c, np.maximum(j - 1, 0), 1), 0.0)
        hj = np.take_along_axis(h, np.minimum(j, h.shape[1] - 1), 1)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            frac = np.where(hj > 0, (target - before) / np.where(hj > 0, hj, 1.0), 0.0)
            val = np.clip(10 ** (self.lo + (j - 1 + frac) / self.bpd), lo_, hi_)
        out = np.where(j == 0, lo_, np.where(j == self.nb + 1, hi_, val))
        out[n[:, 0] <= 0] = np.nan
        return out

    def result(self) -> pd.DataFrame:
        st = {k: v.cpu().numpy() for k, v in self.state.items()}
        qv = self.quantiles()
        return pd.DataFrame({
            "model": self.model_name,
            "layer": [s[0] for s in self.sites], "norm": [s[1] for s in self.sites],
            "hook": [s[2] for s in self.sites], "n": st["n"].astype(np.int64),
            "mean": st["sum"] / np.maximum(st["n"], 1), "min": st["min"], "max": st["max"],
            **{f"q{round(q * 100):02d}": qv[:, k] for k, q in enumerate(QUANTILES)}})

    def hist(self) -> pd.DataFrame:
        """Non-empty histogram bins per site: [bin_lo, bin_hi) in scale units and the count."""
        h = self.state["hist"].numpy()
        s, j = np.nonzero(h)
        edges = 10.0 ** (self.lo + (np.arange(self.nb + 3) - 1) / self.bpd)
        lo = np.where(j == 0, 0.0, edges[j])
        hi = np.where(j == self.nb + 1, np.inf, edges[j + 1])
        return pd.DataFrame({"model": str_column([self.model_name], np.zeros(len(s))),
                             "layer": np.array([site[0] for site in self.sites], dtype=np.int64)[s],
                             "norm": str_column([site[1] for site in self.sites], s),
                             "bin_lo": lo, "bin_hi": hi, "count": h[s, j].astype(np.int64)}, copy=False)

    def tables(self):
        return {"norm_scales": self.result(), "norm_scales_hist": self.hist()}
