"""Attention whose queries/keys and values read the stream through separate norms (for LN removal's Q/K, V stages).

The zoo's Attention applies one qkv projection to one normalized input. LN removal freezes ln1 for Q/K first
and for V later, so the input must be split: `SplitInputAttention` takes over the original's qkv / out weights
and hook points (hook names stay `blocks.{l}.attn.hook_q` etc.) and adds `ln_qk` and `ln_v`; the block's own
ln1 becomes an Identity. The zoo's forward is untouched.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from interp.norms import Norm
from interp.zoo.model import Attention


class SplitInputAttention(Attention):
    def __init__(self, attn: Attention, ln_qk: Norm, ln_v: Norm):
        nn.Module.__init__(self)
        self.n_heads, self.d_head = attn.n_heads, attn.d_head
        self.qkv, self.out = attn.qkv, attn.out
        for h in ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z"):
            setattr(self, h, getattr(attn, h))
        self.ln_qk, self.ln_v = ln_qk, ln_v

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:  # x: the raw stream [b, t, d]
        b, t, _ = x.shape
        w = self.n_heads * self.d_head
        W, c = self.qkv.weight, self.qkv.bias
        qk = F.linear(self.ln_qk(x), W[:2 * w], None if c is None else c[:2 * w])
        v = F.linear(self.ln_v(x), W[2 * w:], None if c is None else c[2 * w:])
        q, k, v = torch.cat([qk, v], -1).view(b, t, 3, self.n_heads, self.d_head).unbind(2)
        return self.attend(q, k, v, mask)
