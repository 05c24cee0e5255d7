"""How a zoo model takes the diffusion time t: DiT's timestep embedder, and a census of conditioning parameters."""
from __future__ import annotations

import math

import torch
from torch import nn


class TimeEmbedding(nn.Module):
    """DiT's TimestepEmbedder: t [b] → sinusoidal features of 1000·t (n_freq of them, periods up to 10⁴), scaled to
    unit norm → Linear → SiLU → Linear → [b, d]. t ∈ [0, 1] is scaled to DiT's 0..1000 timestep range.

    DiT feeds the features raw (norm √(n_freq/2) = 11.3). The features are the same at every position and smooth in
    t, so Adam moves all n_freq weights into a hidden unit together: each step changes it by about lr·Σ|f_k| (0.25 at
    the zoo's lr 2e-3 with raw features). Added to the stream (t_embed="add"), that embedding then outgrew the token
    embeddings within ~50 steps and the model stopped using the context (the first mdlm-ln: t-embedding norm 62,
    token embeddings 1.6, masked CE equal to the unigram entropy at every t). Unit-norm features make that step
    11× smaller; the tests/test_mdlm_learns.py run learns with them and does not without."""

    def __init__(self, d: int, n_freq: int = 256, t_scale: float = 1000.0, max_period: float = 10_000.0):
        super().__init__()
        self.n_freq, self.t_scale, self.max_period = n_freq, t_scale, max_period
        self.mlp = nn.Sequential(nn.Linear(n_freq, d), nn.SiLU(), nn.Linear(d, d))

    def features(self, t: torch.Tensor) -> torch.Tensor:
        """[cos(1000·t·f_k), sin(1000·t·f_k)] / √half, f_k = max_period^(−k/half), k < half = n_freq/2: [b, n_freq]
        (unit norm), in the weights' dtype; a bf16 / fp16 model computes them in float32 as DiT does (its arguments
        reach 1000, where a bf16 number is off by up to 2) and rounds the features."""
        half = self.n_freq // 2
        dtype = self.mlp[0].weight.dtype
        work = torch.promote_types(dtype, torch.float32)
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, dtype=work, device=t.device) / half)
        args = (self.t_scale * t.to(work))[:, None] * freqs[None]
        return (torch.cat([torch.cos(args), torch.sin(args)], -1) / math.sqrt(half)).to(dtype)

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # [b] -> [b, d]
        return self.mlp(self.features(t))


def conditioning_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters that exist only to take t in, by kind: `t_embed` (the timestep embedder), `adaln` (adaLN-Zero's
    modulation maps of the norms and the blocks' gates), `tdln` (TD-LN's second end point p1 and its gates: what
    it has beyond a plain LayerNorm's γ, β), and `total`. Zero for unconditioned models."""
    from interp.norms import AdaLayerNorm, TDLayerNorm
    out = {"t_embed": 0, "adaln": 0, "tdln": 0}
    for m in model.modules():
        if isinstance(m, TimeEmbedding):
            out["t_embed"] += sum(p.numel() for p in m.parameters())
        elif isinstance(m, AdaLayerNorm):
            out["adaln"] += m.mod_w.numel() + m.mod_b.numel()
        elif isinstance(m, TDLayerNorm):
            out["tdln"] += sum(getattr(m, k).numel() for k in ("w1", "b1", "gate_w", "gate_b"))
    out["adaln"] += sum(p.numel() for n, p in model.named_parameters() if n.split(".")[-1].startswith("ada_gate"))
    out["total"] = sum(out.values())
    return out
