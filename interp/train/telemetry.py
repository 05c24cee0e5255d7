"""Per-step training telemetry: gradient norms and update/weight ratios per layer, batch-statistic fluctuation.

Parameters are grouped by layer from their names: `blocks.{l}.` / `h.{l}.` / `layers.{l}.` → layer l,
embeddings (names containing `embed`, `wte`, `wpe`) → "embed", everything else (final norm, unembedding) →
"final". Batch-statistic norms (PowerNorm, Unified) expose `last_x2`, the per-channel second moment of the
latest training batch; we log its mean and its relative change from the previous step, ‖x²ₜ − x²ₜ₋₁‖/‖x²ₜ₋₁‖
(the fluctuation of batch statistics that the PowerNorm paper measures). They also keep a running second
moment, the buffer their inference forward divides by (RUNNING_BUFFERS: PowerNorm's running ψ² `running_phi`,
Unified Norm's running σ² `running_var`); we log it the same way, its mean and its relative change over the
step, ‖Rₜ − Rₜ₋₁‖/‖Rₜ₋₁‖ with Rₜ the buffer after step t's forward (the steadiness PowerNorm §3–4 claims for
it). And `last_divisor`, the second moment the training forward divided by (PowerNorm: the batch ψ² in its
statistics warm-up, then the running ψ² as it stood before the step; Unified: the batch σ² in warm-up, then
the geometric mean of the last `window` batch statistics, its "fluctuation smoothing"), logged the same way.
The first step of a run has no previous value: NaN (a resumed run carries the previous values over in its
checkpoint, so it logs what the uninterrupted run logs).
"""
from __future__ import annotations

import math
import re

import numpy as np
import torch
from torch import nn

from interp.train import telemetry_kernels as TK

RUNNING_BUFFERS = ("running_phi", "running_var")   # a batch-statistic norm's running second moment, by class
_LAYER = re.compile(r"(?:^|\.)(?:blocks|h|layers|layer)\.(\d+)\.")


def group_of(name: str) -> str:
    """The telemetry group of a parameter or module name: a layer index as a string, "embed" or "final"."""
    m = _LAYER.search(name + ".")
    if m:
        return m.group(1)
    return "embed" if any(k in name for k in ("embed", "wte", "wpe")) else "final"


def _spans(lengths: list[int]) -> list[tuple[int, int]]:
    """[(start, end)] of consecutive runs of `lengths` elements."""
    ends = [sum(lengths[:i + 1]) for i in range(len(lengths))]
    return [(e - n, e) for n, e in zip(lengths, ends)]


def _group_squares(v: torch.Tensor, spans: list[tuple[int, int]]) -> torch.Tensor:
    """Sum of squares of each run `spans` of the vector v: [len(spans)], in v's dtype."""
    return torch.stack([torch.dot(v[a:b], v[a:b]) for a, b in spans])


class Telemetry:
    """Collects per-group gradient norms and update ratios, and batch-statistic norm fluctuation, per step."""

    def __init__(self, model: nn.Module):
        self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.groups = sorted({group_of(n) for n, _ in self.params}, key=lambda g: (not g.isdigit(), g != "embed",
                                                                                  int(g) if g.isdigit() else 0))
        # parameters by group (groups in order of first appearance, as logged), each group one contiguous run of a
        # flat vector
        order = list(dict.fromkeys(group_of(n) for n, _ in self.params))
        self._by_group = [(g, [p for n, p in self.params if group_of(n) == g]) for g in order]
        self._flat = [p for _, ps in self._by_group for p in ps]
        self._spans = _spans([sum(p.numel() for p in ps) for _, ps in self._by_group])
        self._gid = np.array([k for k, (_, ps) in enumerate(self._by_group) for _ in ps], dtype=np.int64)
        self._old: np.ndarray | None = None  # the weights before the update (float32, `telemetry_kernels` form)
        self._have_old = False                # whether _old holds them (reused from step to step)
        self.bstat = [(n, m) for n, m in model.named_modules() if hasattr(m, "last_x2")]
        self.prev_x2: dict[str, torch.Tensor] = {}
        self.prev_running: dict[str, torch.Tensor] = {}
        self.prev_divisor: dict[str, torch.Tensor] = {}
        self._before: torch.Tensor | None = None

    @staticmethod
    def _cat64(tensors: list[torch.Tensor]) -> torch.Tensor:
        """The tensors flattened into one float64 vector (float32 values are exact in float64)."""
        return torch.cat([t.detach().reshape(-1) for t in tensors]).double()

    @torch.no_grad()
    def grad_norms(self) -> tuple[float, dict[str, float]]:
        """(global L2 norm of all gradients, {group: L2 norm}); non-finite values propagate as nan/inf.

        Squares summed in float64: on CPU by one compiled pass reading every gradient in place
        (`telemetry_kernels`), elsewhere over one flat float64 vector (one dot product per group, one sync)."""
        if TK.usable(self._flat):
            have = [(p.grad, k) for p, k in zip(self._flat, self._gid) if p.grad is not None]
            if not have:
                return 0.0, {}
            if TK.usable([g for g, _ in have]):
                sq = TK.group_squares([g for g, _ in have], np.array([k for _, k in have], dtype=np.int64),
                                      len(self._by_group))
                present = sorted({int(k) for _, k in have})  # groups in order of first appearance, as below
                return (math.sqrt(sum(sq[k] for k in present)),
                        {self._by_group[k][0]: math.sqrt(sq[k]) for k in present})
        grads, lengths, groups = [], [], []
        for g, ps in self._by_group:
            have = [p.grad for p in ps if p.grad is not None]
            if have:
                grads += have
                lengths.append(sum(t.numel() for t in have))
                groups.append(g)
        if not grads:
            return 0.0, {}
        sq = _group_squares(self._cat64(grads), _spans(lengths))
        vals = torch.cat([sq, sq.sum()[None]]).sqrt().tolist()
        return vals[-1], dict(zip(groups, vals[:-1]))

    @torch.no_grad()
    def before_update(self) -> None:
        """Keep the weights as they are before the update (for `update_ratios`)."""
        if TK.usable(self._flat):
            n = int(sum(p.numel() for p in self._flat))
            if self._old is None or self._old.shape[0] != n:
                self._old = np.empty(n, dtype=np.float32)
            TK.gather(self._flat, self._old)
            self._before, self._have_old = None, True
            return
        self._have_old = False
        self._before = self._cat64(self._flat)

    @torch.no_grad()
    def update_ratios(self) -> tuple[float, dict[str, float]]:
        """‖Δθ‖ / ‖θ‖ over all parameters and per group, for the update just applied (float64)."""
        if self._have_old and TK.usable(self._flat):
            du, w = TK.delta_squares(self._flat, self._old, self._gid, len(self._by_group))
            self._have_old = False
            return self._ratios(du.tolist(), w.tolist())
        old, self._before, self._have_old = self._before, None, False
        if old is None or not self._flat:
            return 0.0, {}
        return self._ratios(_group_squares(self._cat64(self._flat).sub_(old), self._spans).tolist(),
                            _group_squares(old, self._spans).tolist())

    def _ratios(self, du_l: list[float], w_l: list[float]) -> tuple[float, dict[str, float]]:
        """(‖Δθ‖ / ‖θ‖ overall, per group) from each group's Σ Δθ² and Σ θ²."""
        ratio = {g: (a / b) ** 0.5 if b > 0 else float("nan") for (g, _), a, b in zip(self._by_group, du_l, w_l)}
        return (sum(du_l) / max(sum(w_l), 1e-30)) ** 0.5, ratio

    @torch.no_grad()
    def batch_stats(self) -> list[tuple[str, str, float, float]]:
        """[(norm name, group, mean of x², relative change from the previous step)] for batch-statistic norms."""
        return self._changes(lambda m: m.last_x2, self.prev_x2)

    @torch.no_grad()
    def running_stats(self) -> list[tuple[str, str, float, float]]:
        """[(norm name, group, mean of the running x², its relative change over the step)] for batch-statistic
        norms, read after the step's forward has updated the running buffer (RUNNING_BUFFERS)."""
        def running(m):
            return next((getattr(m, b) for b in RUNNING_BUFFERS if isinstance(getattr(m, b, None), torch.Tensor)),
                        None)
        return self._changes(running, self.prev_running)

    @torch.no_grad()
    def divisor_stats(self) -> list[tuple[str, str, float, float]]:
        """[(norm name, group, mean of the divisor x², its relative change from the previous step)] for
        batch-statistic norms that expose `last_divisor` (the second moment their training forward divided by)."""
        return self._changes(lambda m: getattr(m, "last_divisor", None), self.prev_divisor)

    def _changes(self, get, prev_of: dict[str, torch.Tensor]) -> list[tuple[str, str, float, float]]:
        out = []
        for n, m in self.bstat:
            v = get(m)
            if v is None or m.last_x2 is None:
                continue
            v = v.detach().double()
            prev = prev_of.get(n)
            rel = float((v - prev).norm() / prev.norm().clamp_min(1e-30)) if prev is not None else float("nan")
            prev_of[n] = v.clone()
            out.append((n, group_of(n), float(v.mean()), rel))
        return out
