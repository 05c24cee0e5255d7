"""Variance growth with depth (Curse of Depth §3, Peri-LN §3): one definition of each growth figure.

All figures read the stream's variance var(j) at depths j = 1..L (the outputs of blocks 0..L−1; depth 0, the
embedding, is left out: the papers compare layer outputs, and a small embedding would dominate any ratio):
  ratio_last_first  var(L) / var(1)
  growth_factor     the per-layer growth factor, geometric mean of var(j+1)/var(j) = (var(L)/var(1))^(1/(L−1))
  slope_log_var     least-squares slope of ln var(j) against j
  shape             ln(RSS_linear / RSS_exponential): which of two 2-parameter laws explains the profile
                    better, both fitted by least squares to ln var(j): exponential var = a·e^(b·j) (ln var
                    linear in j) and linear var = α·|j − j0| (var linear in j, positive on 1..L). > 0: the
                    exponential law fits better (Curse of Depth's Pre-LN); < 0: the linear one (Peri-LN).
Beside each growth claim the report shows var and mean |h| = Σ|x|/n at depths 1 and L and the per-layer factor.
"""
from __future__ import annotations

import math

import numpy as np

from interp.analysis.intervals import NotTestable
from interp.analysis.registry import metric
from interp.analysis.sequence_tables import n_shared, stream_arrays
from interp.analysis.subjects import Subject
from interp.analysis.units import estimate

# the roots j0 the linear law may have: below depth 1 (rising line) or beyond depth L (falling line), 10^-4 .. 10^5
# away; a coarse grid (Δlog10 = 0.02), then a fine one (Δlog10 = 0.0005) around the best coarse root
_COARSE = np.arange(-4.0, 5.0, 0.02)
_FINE = np.arange(-0.04, 0.04, 0.0005)


def _rss_roots(j: np.ndarray, y: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """RSS of ln var ≈ k + ln|j − root| for each root (k in closed form)."""
    r = y[None, :] - np.log(np.abs(j[None, :] - roots[:, None]))
    return ((r - r.mean(1, keepdims=True)) ** 2).sum(1)


def fit_exponential(var: np.ndarray) -> tuple[float, float, float]:
    """(ln a, b, RSS) of ln var(j) ≈ ln a + b·j, j = 1..len(var), by ordinary least squares."""
    j = np.arange(1, len(var) + 1, dtype=float)
    y = np.log(var)
    b, c = np.polyfit(j, y, 1)
    return float(c), float(b), float(((y - c - b * j) ** 2).sum())


def fit_linear(var: np.ndarray) -> tuple[float, float, float]:
    """(α, j0, RSS) of ln var(j) ≈ ln α + ln|j − j0|, minimised over the root j0 (grid, then ln α in closed form).

    A constant profile (slope 0) is the limit j0 → ±∞ and is included."""
    L = len(var)
    j = np.arange(1, L + 1, dtype=float)
    y = np.log(var)
    best = (math.inf, math.nan)
    for side, sign in ((1.0, -1.0), (float(L), 1.0)):   # root below depth 1, or beyond depth L
        rss = _rss_roots(j, y, side + sign * 10.0 ** _COARSE)
        u = _COARSE[int(rss.argmin())] + _FINE
        roots = side + sign * 10.0 ** u
        rss = _rss_roots(j, y, roots)
        i = int(rss.argmin())
        if rss[i] < best[0]:
            best = (float(rss[i]), float(roots[i]))
    const = float(((y - y.mean()) ** 2).sum())
    if const <= best[0]:
        return float(math.exp(y.mean())), math.inf, const
    k = float((y - np.log(np.abs(j - best[1]))).mean())
    return math.exp(k), best[1], best[0]


def growth_figures(var: np.ndarray) -> dict[str, float]:
    """The figures of the module docstring for var at depths 1..L (≥ 3 positive finite values)."""
    v = np.asarray(var, dtype=float)
    if len(v) < 3 or not (np.isfinite(v).all() and (v > 0).all()):
        raise ValueError(f"growth figures need ≥ 3 positive finite variances (depths 1..L), got {v.tolist()}")
    L = len(v)
    _, b, rss_e = fit_exponential(v)
    _, _, rss_l = fit_linear(v)
    eps = 1e-12 * L
    return {"ratio_last_first": float(v[-1] / v[0]), "growth_factor": float((v[-1] / v[0]) ** (1 / (L - 1))),
            "slope_log_var": b, "shape": float(math.log((rss_l + eps) / (rss_e + eps)))}


def pooled_variance(n: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Variance over every element of the chosen sequences, per depth: Σs2/Σn − (Σs1/Σn)² ([S, D] → [D])."""
    N = n.sum(0)
    m = s1.sum(0) / N
    return np.maximum(s2.sum(0) / N - m ** 2, 0.0)


def _profile(t, model: str, idx: np.ndarray | None) -> np.ndarray:
    a = stream_arrays(t, model)
    sel = slice(None) if idx is None else idx
    return pooled_variance(a["n"][sel], a["s1"][sel], a["s2"][sel])[1:]  # depths 1..L


def _figure(name: str):
    def stat(t, model: str, idx: np.ndarray | None) -> float:
        v = _profile(t, model, idx)
        if len(v) < 3 or not (v > 0).all():
            return math.nan
        return growth_figures(v)[name]
    return stat


def mean_abs(t, model: str) -> np.ndarray:
    """Mean |h| of the stream at depths 1..L over every held-out element: Σ|x| / n, pooled over sequences."""
    a = stream_arrays(t, model)
    return (a["sabs"].sum(0) / a["n"].sum(0))[1:]


def profile_text(t, s: Subject) -> str:
    """'label: var(1) → var(L), mean |h| a → b, ×g per layer' with the values averaged over the subject's seeds."""
    var = np.mean([_profile(t, m, None) for m in s.models], axis=0)
    mh = np.mean([mean_abs(t, m) for m in s.models], axis=0)
    g = (var[-1] / var[0]) ** (1 / (len(var) - 1)) if var[0] > 0 else math.nan
    return (f"{s.label}: var {var[0]:.3g} → {var[-1]:.3g}, mean |h| {mh[0]:.3g} → {mh[-1]:.3g} (depth 1 → "
            f"{len(var)}), ×{g:.3g} per layer")


def _growth_estimate(t, subject: Subject, ref: Subject | None, figure: str):
    models = subject.models + (ref.models if ref else ())
    for m in models:
        if len(_profile(t, m, None)) < 3:
            raise NotTestable(f"{m} has fewer than 3 block outputs: no growth law to fit")
    f = _figure(figure)
    est = estimate(lambda m, idx: f(t, m, idx), subject, ref, n_shared(t, models))
    est.detail = "; ".join(profile_text(t, s) for s in (subject, ref) if s is not None)
    return est


@metric("growth_shape", "ln(RSS of the linear law / RSS of the exponential law), both fitted to ln var(depth), "
        "depths 1..L of the residual stream; > 0: exponential fits better",
        "Curse of Depth §3 (Pre-LN variance grows exponentially); Peri-LN §3 (Peri-LN grows linearly)")
def growth_shape(t, subject: Subject, ref: Subject | None = None):
    """Which growth law the stream's variance follows (see `growth_figures`)."""
    return _growth_estimate(t, subject, ref, "shape")


@metric("growth_rate", "slope of ln var(depth) per layer, depths 1..L of the residual stream (ln of the per-layer "
        "growth factor)", "Curse of Depth §4 (LayerNorm Scaling bounds the growth)", "nats of variance per layer")
def growth_rate(t, subject: Subject, ref: Subject | None = None):
    """Slope of ln var per layer; with a reference, the difference of slopes."""
    return _growth_estimate(t, subject, ref, "slope_log_var")
