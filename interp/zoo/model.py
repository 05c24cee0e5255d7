"""The zoo decoder: one GPT-style model whose blocks take their norm placement and kind from the config.

Hook names follow TransformerLens (see docs/hooks.md for the full list and shapes). In a Post-LN block the
carried stream is normalized; the un-normalized sum x + F(x) is `blocks.{l}.ln1.hook_in` / `ln2.hook_in`
(DeepNorm: α·x + F(x)). With QK-norm, `blocks.{l}.attn.q_norm.hook_in` is the raw query projection
[b, t, h, dh], `hook_scale` its RMS per token and head [b, t, h, 1], and `attn.hook_q` the normalized query
that enters q·k (the same for k_norm / hook_k). With rotary positions (`positions="rotary"`), `hook_q` / `hook_k`
are the rotated query and key, again what enters q·k, and `hook_pos_embed` carries zeros (there is no position
embedding; its term in an embedding decomposition is 0).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from interp.card import ModelCard
from interp.norms import Norm, RMSNorm, make_norm
from interp.norms.base import observed
from interp.sites import LayerSites, SiteMap
from interp.tl.native import TransformerLensNative
from interp.zoo.conditioning import TimeEmbedding
from interp.zoo.config import ZooConfig


def rope_tables(pos: torch.Tensor, d_head: int, dtype: torch.dtype,
                base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE's (C, S) for `rotate`, [t, 1, d_head] or [b, t, 1, d_head] as pos is [t] or [b, t]: C = [cos, cos],
    S = [−sin, sin] of pos·base^(−k/(d_head/2)), angles and cos / sin in `dtype`, for bf16 / fp16 in float32 and
    then rounded to `dtype` (as MDLM's and transformers' rotary code do: a bf16 angle is off by up to 0.125 rad at
    position 127). One pair serves q and k of every layer of a forward."""
    half, work = d_head // 2, torch.promote_types(dtype, torch.float32)
    inv = base ** (-torch.arange(half, dtype=torch.float64, device=pos.device) / half)
    ang = (pos.to(torch.float64)[..., None] * inv).to(work)  # [t, half] or [b, t, half]
    cos, sin = ang.cos()[..., None, :].to(dtype), ang.sin()[..., None, :].to(dtype)  # broadcast over heads
    return torch.cat([cos, cos], -1), torch.cat([-sin, sin], -1)


def rotate(x: torch.Tensor, pos: torch.Tensor, base: float = 10_000.0,
           tables: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """RoPE (Su et al. 2021) in the half-split layout (GPT-NeoX, MDLM's DiT): channel k and k + dh/2 of each head
    form a pair rotated by pos·base^(−k/(dh/2)). x [b, t, h, dh]; pos [t] or [b, t] (positions) → [b, t, h, dh].
    As x·C + swap(x)·S on whole heads (`rope_tables`, or `tables` when given): per half x1·cos − x2·sin and
    x2·cos + x1·sin, the same roundings as the pairwise form."""
    half = x.shape[-1] // 2
    c, s = tables if tables is not None else rope_tables(pos, x.shape[-1], x.dtype, base)
    return x * c + torch.cat([x[..., half:], x[..., :half]], -1) * s


def _per_sequence(cond: torch.Tensor | float | None, b: int, device: torch.device) -> torch.Tensor | None:
    """`cond` as a tensor [b]: a number (or a one-value tensor) is shared by the b sequences; other shapes raise. A
    Python float becomes float64 (each norm casts t to its own dtype), so a float64 model gets t = 0.3, not float32's."""
    if cond is None:
        return None
    cond = torch.as_tensor(cond, dtype=torch.float64 if isinstance(cond, float) else None, device=device)
    if cond.numel() == 1 and cond.dim() <= 1:
        return cond.reshape(1).expand(b)
    if cond.shape != (b,):
        raise ValueError(f"cond must hold one value per sequence: a number or a [{b}] tensor for {b} sequences; "
                         f"got shape {tuple(cond.shape)}")
    return cond


class Attention(nn.Module):
    """Multi-head self-attention, causal (bidirectional for objective="mdlm"); SDPA unless scores/pattern are hooked."""

    causal = True

    def __init__(self, cfg: ZooConfig):
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        width = cfg.d_attn or cfg.d_model
        self.qkv = nn.Linear(cfg.d_model, 3 * width, bias=cfg.bias)
        self.out = nn.Linear(width, cfg.d_model, bias=cfg.bias)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # [b, t, h, dh]
        self.hook_attn_scores = HookPoint()  # [b, h, q, k]
        self.hook_pattern = HookPoint()      # [b, h, q, k]
        self.hook_z = HookPoint()            # [b, t, h, dh]
        if cfg.objective == "mdlm":  # masked diffusion: every position sees every other
            self.causal = False
        self.qk_norm = cfg.qk_norm
        if cfg.qk_norm:  # RMSNorm over each head's d_head, one gain shared by the heads
            self.q_norm, self.k_norm = RMSNorm(cfg.d_head, eps=cfg.norm_eps), RMSNorm(cfg.d_head, eps=cfg.norm_eps)
        self.rotary = cfg.positions == "rotary"
        self.positions: torch.Tensor | None = None  # rotary: [t] or [b, t], set by the model before a forward
        self.rope_c: torch.Tensor | None = None  # rotary: `rope_tables` of those positions, set with them (plain
        self.rope_s: torch.Tensor | None = None  # tensors, so that code slicing per-forward state slices these too)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:  # [b, t, d] -> [b, t, d]
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.d_head).unbind(2)
        if self.qk_norm:  # QK-norm: q, k [b, t, h, dh] each divided by its RMS over dh
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary:  # RoPE on q, k (after QK-norm, as Qwen3 / OLMo-2 do)
            pos, cs = self.positions, (self.rope_c, self.rope_s)
            if pos is None or pos.shape[-1] != t:  # called on its own: positions 0..t-1
                pos = torch.arange(t, device=x.device)
            if cs[0] is None or cs[0].dtype != q.dtype or cs[0].shape[:-2] != pos.shape:  # not the tables of pos
                cs = rope_tables(pos, self.d_head, q.dtype)
            q, k = rotate(q, pos, tables=cs), rotate(k, pos, tables=cs)
        return self.attend(q, k, v, mask)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Heads [b, t, h, dh] → output [b, t, d]. mask [b|1, 1, t, t] bool (True = may attend); None = causal
        (all pairs when not `causal`)."""
        b, t = q.shape[:2]
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        q, k, v = (y.transpose(1, 2) for y in (q, k, v))  # [b, h, t, dh]
        if observed(self.hook_attn_scores, self.hook_pattern):
            if mask is None and self.causal:
                mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
            scores = self.hook_attn_scores(scores if mask is None else scores.masked_fill(~mask, float("-inf")))
            z = self.hook_pattern(scores.softmax(-1)) @ v
        else:
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and self.causal)
        z = self.hook_z(z.transpose(1, 2))  # [b, t, h, dh]
        return self.out(z.reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ZooConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_mlp, bias=cfg.bias)
        self.down = nn.Linear(cfg.d_mlp, cfg.d_model, bias=cfg.bias)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()  # [b, t, d_mlp]
        self.approximate = "tanh" if cfg.act == "gelu_tanh" else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.hook_post(F.gelu(self.hook_pre(self.up(x)), approximate=self.approximate)))


class Block(nn.Module):
    """One transformer block; `forward` shows where each norm sits, two lines per placement."""

    def __init__(self, cfg: ZooConfig, layer: int):
        super().__init__()
        self.layer, self.placement = layer, cfg.block_placement(layer)
        self.depth_scale = 1 / math.sqrt(layer + 1) if self.placement == "lns" else 1.0
        self.alpha = cfg.deepnorm_alpha  # DeepNorm's residual weight (post blocks); 1 otherwise
        self.attn, self.mlp = Attention(cfg), MLP(cfg)
        norm = lambda: make_norm(cfg.norm, cfg.d_model, eps=cfg.norm_eps, **cfg.norm_kwargs)
        if self.placement not in ("none", "reordered"):
            self.ln1, self.ln2 = norm(), norm()
        if self.placement in ("peri", "reordered"):
            self.ln1_post, self.ln2_post = norm(), norm()
        for name in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"):
            setattr(self, f"hook_{name}", HookPoint())
        self.adaln = cfg.t_embed == "adaln"
        if self.adaln:  # adaLN-Zero's output gates (attn, mlp) = W·c + b, c = SiLU(t-embedding) set as self.cond
            self.ada_gate_w = nn.Parameter(torch.zeros(2 * cfg.d_model, cfg.d_model))
            self.ada_gate_b = nn.Parameter(torch.zeros(2 * cfg.d_model))
            self.cond: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:  # [b, t, d] -> [b, t, d]
        x = self.hook_resid_pre(x)
        attn = lambda h: self.hook_attn_out(self.attn(h, mask))
        mlp = lambda h: self.hook_mlp_out(self.mlp(h))
        if self.adaln:                  # adaLN-Zero (DiT): x + g(t)·F(N_t(x)), gates 0 at init
            g_attn, g_mlp = (self.cond @ self.ada_gate_w.T + self.ada_gate_b)[:, None].chunk(2, -1)  # [b, 1, d]
            x = self.hook_resid_mid(x + self.hook_attn_out(g_attn * self.attn(self.ln1(x), mask)))
            x = x + self.hook_mlp_out(g_mlp * self.mlp(self.ln2(x)))
        elif self.placement == "pre":   # x + F(N(x))
            x = self.hook_resid_mid(x + attn(self.ln1(x)))
            x = x + mlp(self.ln2(x))
        elif self.placement == "post" and self.alpha == 1.0:  # N(x + F(x))
            x = self.hook_resid_mid(self.ln1(x + attn(x)))
            x = self.ln2(x + mlp(x))
        elif self.placement == "post":  # DeepNorm: N(α·x + F(x))
            x = self.hook_resid_mid(self.ln1(self.alpha * x + attn(x)))
            x = self.ln2(self.alpha * x + mlp(x))
        elif self.placement == "peri":  # x + N_out(F(N_in(x)))
            x = self.hook_resid_mid(x + self.hook_attn_out(self.ln1_post(self.attn(self.ln1(x), mask))))
            x = x + self.hook_mlp_out(self.ln2_post(self.mlp(self.ln2(x))))
        elif self.placement == "reordered":  # x + N(F(x)), no input norm (OLMo-2)
            x = self.hook_resid_mid(x + self.hook_attn_out(self.ln1_post(self.attn(x, mask))))
            x = x + self.hook_mlp_out(self.ln2_post(self.mlp(x)))
        elif self.placement == "lns":   # x + F(N(x) / √ℓ)
            x = self.hook_resid_mid(x + attn(self.ln1(x) * self.depth_scale))
            x = x + mlp(self.ln2(x) * self.depth_scale)
        else:                           # none: x + F(x)
            x = self.hook_resid_mid(x + attn(x))
            x = x + mlp(x)
        return self.hook_resid_post(x)


class ZooModel(TransformerLensNative):
    """The configurable decoder. `forward(tokens [b, t]) -> logits [b, t, vocab]`."""

    def __init__(self, cfg: ZooConfig, tokenizer=None):
        super().__init__()
        self.cfg, self.tokenizer = cfg, tokenizer
        self.embed = nn.Embedding(cfg.d_vocab, cfg.d_model)
        if cfg.positions == "learned":
            self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()  # [b, t, d]
        self.blocks = nn.ModuleList(Block(cfg, layer) for layer in range(cfg.n_layers))
        if cfg.final_norm:
            kind = cfg.norm if cfg.norm != "none" else "layernorm"
            self.ln_final = make_norm(kind, cfg.d_model, eps=cfg.norm_eps, **cfg.norm_kwargs)
        self.unembed = nn.Linear(cfg.d_model, cfg.d_vocab, bias=cfg.unembed_bias)
        if cfg.t_embed != "none":  # DiT's timestep embedder of t = cond
            self.t_embed, self.hook_t_embed = TimeEmbedding(cfg.d_model), HookPoint()  # [b, d]
        if cfg.objective == "mdlm":  # [MASK] (id d_vocab): an input-only embedding; the output has d_vocab logits
            self.mask_embed = nn.Parameter(torch.empty(cfg.d_model).normal_(std=cfg.init_std))
        self.apply(self._init)
        if cfg.attn_local_init:  # q and k biases = c: rotary attention starts local (ZooConfig docstring)
            w = cfg.d_attn or cfg.d_model
            with torch.no_grad():
                for blk in self.blocks:
                    blk.attn.qkv.bias[:2 * w].fill_(cfg.attn_local_init)
        if cfg.deepnorm:
            self._deepnorm_init(cfg.deepnorm_beta)
        if cfg.tie_embeddings:
            self.unembed.weight = self.embed.weight
        self._norms = [m for m in self.modules() if isinstance(m, Norm)]
        self.setup()

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=self.cfg.init_std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    @torch.no_grad()
    def _deepnorm_init(self, beta: float) -> None:
        """DeepNorm: scale the shared init of the FFN, value and output projections by β (q, k rows keep it)."""
        w = self.cfg.d_attn or self.cfg.d_model
        for blk in self.blocks:
            blk.attn.qkv.weight[2 * w:].mul_(beta)
            for lin in (blk.attn.out, blk.mlp.up, blk.mlp.down):
                lin.weight.mul_(beta)

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [b, t] long; attention_mask [b, t] bool (True = real token); cond [b] (or one number for all) for
        conditioned models (TD-LN, t-embedding; unset: 0). An MDLM model (objective "mdlm") also takes [MASK] = `cfg.mask_id` in `tokens`."""
        return self.unembed(self.final_hidden(tokens, attention_mask, cond))  # [b, t, vocab]

    def final_hidden(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     cond: torch.Tensor | None = None) -> torch.Tensor:
        """The forward up to the unembedding: the stream after the final norm [b, t, d] (`forward`'s arguments), for
        callers that need logits at a few positions only (`unembed` of those rows)."""
        self._check_tokens(tokens)
        b, t = tokens.shape
        if t > self.cfg.n_ctx:
            raise ValueError(f"sequence of {t} tokens is longer than the context of {self.cfg.n_ctx}")
        if attention_mask is not None:
            if attention_mask.shape != tokens.shape:
                raise ValueError(f"attention_mask must have the tokens' shape {tuple(tokens.shape)}; got "
                                 f"{tuple(attention_mask.shape)}")
            attention_mask = attention_mask.bool()
        cond = _per_sequence(cond, b, tokens.device)
        if attention_mask is None or bool(attention_mask.all()):  # every token real: SDPA's own causal (or full)
            pos, mask = torch.arange(t, device=tokens.device), None  # attention, no [b, 1, t, t] mask (~5 % faster)
        else:  # keys must be real tokens; a query always sees itself so no row is empty
            pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            causal = torch.ones(t, t, dtype=torch.bool, device=tokens.device)
            causal = causal.tril() if self.cfg.objective != "mdlm" else causal  # MDLM: bidirectional
            eye = torch.eye(t, dtype=torch.bool, device=tokens.device)
            mask = (causal & (attention_mask[:, None, :] | eye))[:, None]  # [b, 1, t, t]
        for n in self._norms:
            n.token_mask, n.cond = attention_mask, cond
        emb = self.embed(tokens) if self.cfg.objective != "mdlm" else self._embed_masked(tokens)
        if self.cfg.positions == "rotary":  # positions enter q·k in every attention; no embedding (zeros)
            c, s = rope_tables(pos, self.cfg.d_head, emb.dtype)  # once per forward, for every layer
            for block in self.blocks:
                block.attn.positions, block.attn.rope_c, block.attn.rope_s = pos, c, s
            x = self.hook_embed(emb) + self.hook_pos_embed(torch.zeros_like(emb))
        else:
            x = self.hook_embed(emb) + self.hook_pos_embed(self.pos_embed(pos).expand(b, t, -1))
        if self.cfg.t_embed != "none":
            x = self._condition(x, cond)
        for block in self.blocks:
            x = block(x, mask)
        if self.cfg.final_norm:
            x = self.ln_final(x)
        return x

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        """tokens must be [b, t] integer ids in the vocabulary (MDLM: checked with [MASK] by `_embed_masked`); the
        range is not checked while compiling (it would split the compiled graph)."""
        if tokens.dim() != 2 or tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise ValueError(f"tokens must be a [batch, positions] tensor of integer ids; got {tuple(tokens.shape)} "
                             f"{tokens.dtype} (a single sequence is tokens[None])")
        if self.cfg.objective == "mdlm" or torch.compiler.is_compiling() or not tokens.numel():
            return
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= self.cfg.d_vocab:
            raise ValueError(f"token ids must lie in [0, {self.cfg.d_vocab - 1}] (the vocabulary of {self.cfg.d_vocab}); "
                             f"got {lo}..{hi}")

    def _embed_masked(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings [b, t, d] with [MASK] (id d_vocab) read from `mask_embed`."""
        if int(tokens.max()) > self.cfg.mask_id or int(tokens.min()) < 0:
            raise ValueError(f"token ids must lie in [0, {self.cfg.mask_id}] ({self.cfg.mask_id} = [MASK]); got "
                             f"{int(tokens.min())}..{int(tokens.max())}")
        masked = tokens == self.cfg.mask_id
        return torch.where(masked[..., None], self.mask_embed, self.embed(tokens.masked_fill(masked, 0)))

    def _condition(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Embed t = cond (0 if unset): added to the stream ("add"), or SiLU(c) handed to every adaLN norm and
        block ("adaln")."""
        t = cond if cond is not None else torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        c = self.hook_t_embed(self.t_embed(t.expand(x.shape[0])))  # [b, d]
        if self.cfg.t_embed == "add":
            return x + c[:, None]
        c = F.silu(c)
        for m in [*self._norms, *self.blocks]:
            m.cond = c
        return x

    @property
    def mask_id(self) -> int | None:
        """[MASK]'s token id (= d_vocab) for a masked-diffusion model, else None."""
        return self.cfg.mask_id

    def apply_final_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The final norm applied to a residual stream x [..., d]: token-wise norms recompute their statistics on x;
        a batch-statistic norm (PowerNorm, Unified) uses its running statistics in eval mode and x's in train mode,
        and an analysis call never moves its running state (a lens is not a training step)."""
        if not self.cfg.final_norm:
            return x
        state = [(b, b.clone()) for b in self.ln_final.buffers()] if self.ln_final.training else []
        out = self.ln_final(x)
        with torch.no_grad():
            for b, was in state:
                b.copy_(was)
        return out

    @property
    def b_U(self) -> torch.Tensor | None:
        """Unembedding bias [vocab], or None (the zoo has none unless `unembed_bias`)."""
        return self.unembed.bias

    @property
    def W_U(self) -> torch.Tensor:
        """Unembedding [d_model, vocab]."""
        return self.unembed.weight.T

    @property
    def card(self) -> ModelCard:
        c = self.cfg
        seed = getattr(self, "seed", None)  # set by interp.zoo.load from the training record
        return ModelCard(name=getattr(self, "name", None) or c.strategy, family="zoo", strategy=c.strategy, placement=c.placement,
                         norm_kind=c.norm, n_layers=c.n_layers, d_model=c.d_model,
                         n_params=sum(p.numel() for p in self.parameters()), objective=c.objective,
                         weight_source=getattr(self, "weight_source", "random init"),
                         extra={"n_post_layers": c.n_post_layers, "final_norm": c.final_norm,
                                **({"seed": seed} if seed is not None else {}),
                                **({"qk_norm": True} if c.qk_norm else {}),
                                **({"deepnorm_alpha": c.deepnorm_alpha, "deepnorm_beta": c.deepnorm_beta}
                                   if c.deepnorm else {})})

    @property
    def sites(self) -> SiteMap:
        layers = []
        for blk in self.blocks:
            p, norms = f"blocks.{blk.layer}", [n for n in ("ln1", "ln2", "ln1_post", "ln2_post") if hasattr(blk, n)]
            hook = {n: f"{p}.{n}" for n in norms} | ({n: f"{p}.attn.{n}" for n in ("q_norm", "k_norm")}
                                                      if blk.attn.qk_norm else {})  # QK-norm: [b, t, h, dh]
            mod = lambda n: blk.get_submodule(hook[n][len(p) + 1:])
            layers.append(LayerSites(
                resid_pre=f"{p}.hook_resid_pre", resid_post=f"{p}.hook_resid_post",
                deltas={"attn": f"{p}.hook_attn_out", "mlp": f"{p}.hook_mlp_out"},
                norm_inputs={n: f"{h}.hook_in" for n, h in hook.items()},
                norm_scales={n: f"{h}.hook_scale" for n, h in hook.items() if mod(n).has_scale},
                sublayer_out={"attn": f"{p}.ln1_post.hook_in", "mlp": f"{p}.ln2_post.hook_in"}
                if blk.placement in ("peri", "reordered") else {},
                placement=blk.placement,
                norm_widths={n: self.cfg.n_heads * self.cfg.d_head for n in ("q_norm", "k_norm") if n in hook}))
        fn = self.cfg.final_norm
        return SiteMap(embed="hook_embed", layers=tuple(layers),
                       final_resid=f"blocks.{self.cfg.n_layers - 1}.hook_resid_post",
                       final_norm_input="ln_final.hook_in" if fn else None,
                       final_norm_scale="ln_final.hook_scale" if fn and self.ln_final.has_scale else None)
