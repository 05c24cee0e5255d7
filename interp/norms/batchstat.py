"""Batch-statistic norms: PowerNorm (Shen et al. 2020) and Unified Normalization (Yang et al. 2022).

Both divide each channel by a *second moment over tokens* (no centring), not over the channels of one token,
and both replace exact backpropagation through that statistic with a cheap approximation. They follow the
authors' reference code (sIncerass/powernorm `MaskPowerNorm`, hikvision-research `UN1d`, NLP settings):

PowerNorm:  x ← x / RMS over each of `group_num` channel groups (their "group scaling", GroupScaling1D; the zoo
            uses group_num = n_heads as the authors' runs do); ψ²_c = mean over real tokens of x_c²;
            train: divide by the batch ψ² during warm-up, then by the running ψ²; the running ψ² is an EMA
            (a cumulative average during warm-up); backward: g − (1 − α_bkw)·ema(g·z)·z, over the batch ψ.
Unified:    σ²_c = mean over real tokens of x_c²; after warm-up the divisor is the geometric mean of the last
            `window` batch statistics; running σ² (EMA) at inference so the norm can be fused into a linear
            layer; backward with gradient compensation (window-averaged, EMA-smoothed mean of g·z, and the
            ratio r of batch to running scale, clamped to [1/5, 5] after max(1000, warm-up) iterations).
            Outlier filtration (off for NLP in the reference code) is not implemented.

In eval mode both divide by their running statistic only. `last_x2` holds the latest batch statistic [d]
so the training loop can log its fluctuation (the PowerNorm paper's measure), and `last_divisor` the second
moment the latest training forward divided by [d] (PowerNorm: ψ² in warm-up, then the running ψ² as it stood
before the step; Unified: σ² in warm-up, then the window's geometric mean), so it can log how much steadier
that is. Both are plain attributes, not buffers: they are not saved and do not enter the computation.
"""
from __future__ import annotations

import torch
from torch import nn

from interp.norms.base import Norm


def _check_options(norm: str, **options: tuple[object, float, float, bool]) -> None:
    """Each option (value, low, high, integer) must be a number (an int where integer) in [low, high]: else one line."""
    for name, (v, lo, hi, integer) in options.items():
        kinds = int if integer else (int, float)
        if not isinstance(v, kinds) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError(f"{norm} option {name}={v!r} must be {'an integer' if integer else 'a number'} in "
                             f"[{lo}, {hi}]")


def _masked_second_moment(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over real tokens of x², per channel: [b, t, d] -> [d]."""
    x = x.detach()
    if mask is None:
        return x.pow(2).mean(dim=(0, 1))
    real = x[mask]
    if not len(real):  # the mean of nothing is NaN, and a NaN running statistic stays for good
        raise ValueError("a training step of a batch-statistic norm (PowerNorm, Unified Norm) got a batch with no "
                         "real tokens (all padding): leave such batches out, or run the model in eval mode")
    return real.pow(2).mean(dim=0)


def _token_mean(v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over (real) tokens: [b, t, d] -> [d]."""
    return v.mean(dim=(0, 1)) if mask is None else v[mask].mean(dim=0)


class _PowerFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, batch_scale, ema_gz, abkw, mask):  # x [b,t,d], scales [1,1,d]
        z = x / scale
        ctx.save_for_backward(z, batch_scale, ema_gz)
        ctx.abkw, ctx.mask = abkw, mask
        return z

    @staticmethod
    def backward(ctx, g):
        z, batch_scale, ema_gz = ctx.saved_tensors
        approx = g - (1 - ctx.abkw) * ema_gz * z
        ema_gz.add_(_token_mean(approx * z, ctx.mask))
        return approx / batch_scale, None, None, None, None, None


class PowerNorm(Norm):
    """PowerNorm with running quadratic mean and approximate backward (MaskPowerNorm with GroupScaling1D)."""

    def __init__(self, d: int, eps: float = 1e-5, alpha_fwd: float = 0.9, alpha_bkw: float = 0.9,
                 warmup_iters: int = 10000, group_scaling: bool = True, group_num: int = 1):
        super().__init__(d, eps)
        _check_options("PowerNorm", alpha_fwd=(alpha_fwd, 0, 1, False), alpha_bkw=(alpha_bkw, 0, 1, False),
                       warmup_iters=(warmup_iters, 0, float("inf"), True))
        if group_num < 1 or d % group_num:
            raise ValueError(f"PowerNorm group_num={group_num} must be ≥ 1 and divide the width {d}")
        self.alpha_fwd, self.alpha_bkw, self.warmup_iters = alpha_fwd, alpha_bkw, warmup_iters
        self.group_scaling, self.group_num = group_scaling, group_num
        self.w = nn.Parameter(torch.ones(d))
        self.b = nn.Parameter(torch.zeros(d))
        self.register_buffer("running_phi", torch.ones(d))
        self.register_buffer("ema_gz", torch.zeros(d))
        self.register_buffer("iters", torch.zeros((), dtype=torch.long))
        self.last_x2: torch.Tensor | None = None
        self.last_divisor: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, t, d] -> [b, t, d]
        x = self.hook_in(x)
        if self.group_scaling:  # each group of d / group_num channels divided by its RMS, per token
            g = x.unflatten(-1, (self.group_num, -1))  # [b, t, groups, d / groups]
            x = (g / (g.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()).flatten(-2)
        if not self.training:
            z = x / self.hook_scale((self.running_phi + self.eps).sqrt().view(1, 1, -1))
            return self.hook_normalized(z * self.w + self.b)
        x2 = _masked_second_moment(x, self.token_mask)  # [d]
        self.iters += 1
        it = int(self.iters)
        self.last_x2 = x2
        phi = x2 if it <= self.warmup_iters else self.running_phi.clone()
        self.last_divisor = phi
        with torch.no_grad():
            if it < self.warmup_iters:
                self.running_phi.mul_((it - 1) / it).add_(x2 / it)
            self.running_phi.mul_(self.alpha_fwd).add_((1 - self.alpha_fwd) * x2)
        scale = self.hook_scale((phi + self.eps).sqrt().view(1, 1, -1))
        batch_scale = (x2 + self.eps).sqrt().view(1, 1, -1)
        z = _PowerFn.apply(x, scale, batch_scale, self.ema_gz.view(1, 1, -1), self.alpha_bkw, self.token_mask)
        return self.hook_normalized(z * self.w + self.b)


class _UnifiedFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, scale, r, ema_gz, buffer_gz, it, window, warmup, momentum, mask):
        z = x / scale
        ctx.save_for_backward(z, w, scale, r, ema_gz, buffer_gz)
        ctx.it, ctx.window, ctx.warmup, ctx.momentum, ctx.mask = it, window, warmup, momentum, mask
        return z * w + b

    @staticmethod
    def backward(ctx, grad_out):
        z, w, scale, r, ema_gz, buffer_gz = ctx.saved_tensors
        g = grad_out * w * r
        gz = _token_mean(g * z, ctx.mask)  # [d]
        buffer_gz[ctx.it % ctx.window].copy_(gz)
        early = ctx.it <= ctx.window or ctx.it < ctx.warmup
        mean_gz = gz if early else buffer_gz.mean(0)
        ema_gz.mul_(ctx.momentum).add_((1 - ctx.momentum) * mean_gz)
        gx = (g - ema_gz * z) / scale
        dims = tuple(range(grad_out.dim() - 1))
        return (gx, (grad_out * r * z).sum(dims), grad_out.sum(dims), None, None, None, None, None, None,
                None, None, None)


class UnifiedNorm(Norm):
    """Unified Normalization (UN1d, NLP settings): fusable at inference, smoothed statistics in training."""

    def __init__(self, d: int, eps: float = 1e-5, window: int = 4, warmup_iters: int = 4000,
                 momentum: float = 0.9):
        super().__init__(d, eps)
        _check_options("UnifiedNorm", window=(window, 1, float("inf"), True), momentum=(momentum, 0, 1, False),
                       warmup_iters=(warmup_iters, 0, float("inf"), True))
        self.window, self.warmup_iters, self.momentum = window, warmup_iters, momentum
        self.w = nn.Parameter(torch.ones(d))
        self.b = nn.Parameter(torch.zeros(d))
        self.register_buffer("running_var", torch.ones(d))
        self.register_buffer("ema_gz", torch.zeros(d))
        self.register_buffer("buffer_x2", torch.zeros(window, d))
        self.register_buffer("buffer_gz", torch.zeros(window, d))
        self.register_buffer("iters", torch.zeros((), dtype=torch.long))
        self.last_x2: torch.Tensor | None = None
        self.last_divisor: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, t, d] -> [b, t, d]
        x = self.hook_in(x)
        if not self.training:
            z = x / self.hook_scale((self.running_var + self.eps).sqrt().view(1, 1, -1))
            return self.hook_normalized(z * self.w + self.b)
        x2 = _masked_second_moment(x, self.token_mask)  # [d]
        self.iters += 1
        it = int(self.iters)
        self.last_x2 = x2
        with torch.no_grad():
            self.buffer_x2[it % self.window].copy_(x2)
            if it <= self.window or it < self.warmup_iters:
                var = x2
            else:  # geometric mean of the window, computed in log space
                var = self.buffer_x2.clamp_min(1e-30).log().mean(0).exp()
            self.last_divisor = var
            r = (var + self.eps).sqrt() / (self.running_var + self.eps).sqrt()
            r = torch.ones_like(r) if it <= max(1000, self.warmup_iters) else r.clamp(0.2, 5.0)
            self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var)
        scale = self.hook_scale((var + self.eps).sqrt().view(1, 1, -1))
        y = _UnifiedFn.apply(x, self.w, self.b, scale, r.view(1, 1, -1), self.ema_gz.view(1, 1, -1),
                             self.buffer_gz, it, self.window, self.warmup_iters, self.momentum, self.token_mask)
        return self.hook_normalized(y)
