"""Attention whose queries/keys and values read the stream through separate norms (for LN removal's Q/K, V stages).

The zoo's Attention applies one qkv projection to one normalized input. LN removal freezes ln1 for Q/K first
and for V later, so the input must be split: `SplitInputAttention` takes over the original's submodules (qkv,
out, QK-norm's q_norm / k_norm, the hook points: hook names stay `blocks.{l}.attn.hook_q` etc.) and its settings
(heads, causal or bidirectional, QK-norm, rotary positions and the per-forward rotary state the model sets), and
adds `ln_qk` and `ln_v`; the block's own ln1 becomes an Identity. A bare qkv is applied by rows (Q/K rows to
ln_qk's output, V rows to ln_v's); a wrapped or hooked one (precision twins, int8 inputs) runs whole on each
input. Between the projections and `attend` it does what `Attention.forward` does (QK-norm, then RoPE on q and
k), so with ln_qk = ln_v = ln1 the function is unchanged. The zoo's forward is untouched.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from interp.norms import Norm
from interp.zoo.model import Attention, rope_tables, rotate


def _plain(m: nn.Module) -> bool:
    """Whether `m` is a bare nn.Linear: no forward of its own and no hooks, so slicing its weight is its function."""
    return type(m) is nn.Linear and "forward" not in vars(m) and not (m._forward_hooks or m._forward_pre_hooks)


class SplitInputAttention(Attention):
    def __init__(self, attn: Attention, ln_qk: Norm, ln_v: Norm):
        nn.Module.__init__(self)
        for name, mod in attn.named_children():  # qkv, out, q_norm / k_norm, hook points
            setattr(self, name, mod)
        for k, v in vars(attn).items():  # n_heads, d_head, causal, qk_norm, rotary, positions, rope_c, rope_s
            if not k.startswith("_"):
                setattr(self, k, v)
        self.ln_qk, self.ln_v = ln_qk, ln_v

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:  # x: the raw stream [b, t, d]
        b, t, _ = x.shape
        w = self.n_heads * self.d_head
        if _plain(self.qkv):  # one projection's rows per input
            W, c = self.qkv.weight, self.qkv.bias
            qk = F.linear(self.ln_qk(x), W[:2 * w], None if c is None else c[:2 * w])
            v = F.linear(self.ln_v(x), W[2 * w:], None if c is None else c[2 * w:])
        else:  # a wrapped or hooked projection (precision emulation, int8 inputs, a user's hook): through it, twice
            qk, v = self.qkv(self.ln_qk(x))[..., :2 * w], self.qkv(self.ln_v(x))[..., 2 * w:]
        q, k, v = torch.cat([qk, v], -1).view(b, t, 3, self.n_heads, self.d_head).unbind(2)
        # from here on as Attention.forward (tests/test_surgery_split_attention.py holds the two equal)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary:
            pos, cs = self.positions, (self.rope_c, self.rope_s)
            if pos is None or pos.shape[-1] != t:
                pos = torch.arange(t, device=x.device)
            if cs[0] is None or cs[0].dtype != q.dtype or cs[0].shape[:-2] != pos.shape:
                cs = rope_tables(pos, self.d_head, q.dtype)
            q, k = rotate(q, pos, tables=cs), rotate(k, pos, tables=cs)
        return self.attend(q, k, v, mask)
