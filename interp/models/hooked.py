"""HookedHF: a plain transformers model (SDPA attention) as a `HookedRootModule` with the zoo's hook contract.

The transformers model runs unchanged; the TransformerLens hook names (`blocks.{l}.hook_resid_pre`, ...) are
`HookPoint`s driven by PyTorch hooks on its submodules (see hooks.py), so an unobserved forward runs at
plain-transformers speed. Which submodule is which in each family is a row of the name table (families.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from interp.card import ModelCard
from interp.models.hooks import fire, observed, on_input, on_output
from interp.models.norm_hooks import NormHooks
from interp.sites import LayerSites, SiteMap
from interp.tl.native import TransformerLensNative


@dataclass(frozen=True)
class RealConfig:
    """The zoo config's common fields (`interp.zoo.ZooConfig` names) for a real model, so family-agnostic code
    can read `model.cfg.n_layers` or `model.cfg.final_norm` on any model; the full transformers config is
    `model.hf.config`."""

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    n_ctx: int
    d_vocab: int
    placement: str
    norm: str
    final_norm: bool
    strategy: str
    tie_embeddings: bool


def strategy_label(placement: str, norm_kind: str) -> str:
    """The zoo strategy name a real model corresponds to (pre-ln, post-ln, pre-rmsnorm, no-norm, peri-rmsnorm)."""
    if placement == "none":
        return "no-norm"
    return f"{placement}-{'ln' if norm_kind == 'layernorm' else norm_kind}"


class SublayerHooks(nn.Module):
    """`hook_out`: a sublayer's raw output, where it differs from what is added to the stream; an attention's
    QK-norms (`q_norm`, `k_norm`) live here too, so their hooks are `blocks.{l}.attn.q_norm.hook_in` etc."""

    def __init__(self, raw: bool = True):
        super().__init__()
        if raw:
            self.hook_out = HookPoint()  # [b, t, d]


QK_NORMS = ("q_norm", "k_norm")


class BlockHooks(nn.Module):
    """The hook points of one block, named as in the zoo's Block; `norms` maps a norm name to its kind,
    `qk` gives the kind of the attention's query / key norms (None: the block has none)."""

    def __init__(self, layer: int, placement: str, norms: dict[str, str], raw_sublayers: bool = False,
                 qk: str | None = None, qk_heads_first: bool = False):
        super().__init__()
        self.layer, self.placement = layer, placement
        for name in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"):
            setattr(self, f"hook_{name}", HookPoint())  # [b, t, d]
        self.norm_names = list(norms)
        for name, kind in norms.items():
            setattr(self, name, NormHooks(kind))
        if raw_sublayers or qk:
            self.attn = SublayerHooks(raw_sublayers)
        if raw_sublayers:
            self.mlp = SublayerHooks()
        if qk:
            for name in QK_NORMS:
                setattr(self.attn, name, NormHooks(qk, heads_first=qk_heads_first))
        self.norm_widths: dict[str, int] = {}  # values per token of norms not over d_model (QK-norms)

    def norm(self, name: str) -> NormHooks:
        """A norm by its site-map name (ln1, ln2_post, q_norm ...)."""
        return getattr(self.attn, name) if name in QK_NORMS else getattr(self, name)

    def sites(self) -> LayerSites:
        p = f"blocks.{self.layer}"
        real = {n: f"{p}.{n}" for n in self.norm_names if getattr(self, n).kind != "none"}
        if hasattr(self, "attn") and hasattr(self.attn, "q_norm"):
            real.update({n: f"{p}.attn.{n}" for n in QK_NORMS})
        raw = hasattr(self, "mlp")
        return LayerSites(
            resid_pre=f"{p}.hook_resid_pre", resid_post=f"{p}.hook_resid_post",
            deltas={"attn": f"{p}.hook_attn_out", "mlp": f"{p}.hook_mlp_out"},
            norm_inputs={n: f"{h}.hook_in" for n, h in real.items()},
            norm_scales={n: f"{h}.hook_scale" for n, h in real.items()},
            sublayer_out={"attn": f"{p}.attn.hook_out", "mlp": f"{p}.mlp.hook_out"} if raw else {},
            placement=self.placement, norm_widths=dict(self.norm_widths))


def wire_residual(blk: BlockHooks, layer: nn.Module, attn_delta: nn.Module, mlp_delta: nn.Module,
                  scale: float = 1.0) -> list:
    """Hooks for a block computing x = x + A(...); x = x + M(...) (or x = x + A(...) + M(...) in parallel
    blocks), where `attn_delta` / `mlp_delta` are the submodules whose outputs, times `scale` (Granite's
    residual multiplier), are added to the stream. resid_mid is x + A, computed only when observed; an edit to
    it is written back by changing what the attention adds (exact up to one float rounding)."""
    state: dict[str, torch.Tensor] = {}

    def pre(x):
        state["x"] = x = fire(blk.hook_resid_pre, x)
        return x

    def attn(a):
        if not (observed(blk.hook_attn_out) or observed(blk.hook_resid_mid)):
            return a
        d = a * scale if scale != 1.0 else a
        d2 = fire(blk.hook_attn_out, d)
        if observed(blk.hook_resid_mid):
            mid = state["x"] + d2
            mid2 = blk.hook_resid_mid(mid)
            if mid2 is not mid:
                d2 = mid2 - state["x"]
        if d2 is d:
            return a
        return d2 / scale if scale != 1.0 else d2

    def mlp(m):
        if not observed(blk.hook_mlp_out):
            return m
        d = m * scale if scale != 1.0 else m
        d2 = blk.hook_mlp_out(d)
        return m if d2 is d else (d2 / scale if scale != 1.0 else d2)

    def post(x):
        state.clear()
        return fire(blk.hook_resid_post, x)

    return [on_input(layer, pre), on_output(attn_delta, attn), on_output(mlp_delta, mlp), on_output(layer, post)]


class HookedHF(TransformerLensNative):
    """A transformers model with TransformerLens hook names, `.card`, `.sites` and `.tokenizer`.

    forward(tokens [b, t] long, attention_mask [b, t] bool | None) -> logits [b, t, vocab] (causal LMs) or
    the final hidden states [b, t, d] (encoders, card.objective == "encoder").
    """

    family = placement = norm_kind = ""
    objective = "causal_lm"
    logit_multiplier = 1.0              # logits = multiplier · lm_head(x) (Granite 1/logits_scaling, Cohere logit_scale)
    logit_softcap: float | None = None  # logits = cap · tanh(raw / cap) (Gemma-2); DLA attributes the raw logit

    def __init__(self, hf: nn.Module, tokenizer, name: str, weight_source: str = "", quantization: str = "",
                 extra: dict | None = None):
        super().__init__()
        self.hf = hf.eval()
        self.tokenizer = tokenizer
        self.hook_embed = HookPoint()  # [b, t, d]
        self._info = dict(name=name, weight_source=weight_source, quantization=quantization, extra=extra or {})
        self._tokens_shape: tuple[int, int] = (0, 0)  # [b, t] of the running forward (see wire_pos_embed)
        self._handles = [on_output(self.embed_module(), self._on_embed)]
        self.blocks = nn.ModuleList()
        self.ln_final: NormHooks | None = None
        self.wire()
        self.setup()

    def __deepcopy__(self, memo: dict) -> HookedHF:
        """A copy with its own hook points (none attached; the tokenizer shared): the wrapped model is copied without
        this wrapper's PyTorch hooks, whose closures would fire the original's points, and wired again."""
        import copy
        ids = {h.id for h in self._handles}
        hf = copy.deepcopy(self.hf, memo)
        for m in hf.modules():
            for name, d in vars(m).items():
                if name.startswith(("_forward", "_backward")) and isinstance(d, dict):
                    for k in ids & set(d):
                        del d[k]
        twin = type(self)(hf, self.tokenizer, **copy.deepcopy(self._info, memo))
        memo[id(self)] = twin
        for a, b in zip(self.modules(), twin.modules()):  # the same modes (the wrapped model is built in eval mode)
            b.training = a.training
        return twin

    # --- what each family provides -------------------------------------------------------------------------
    def embed_module(self) -> nn.Module:
        """The token embedding (transformers' own accessor: embed_tokens, wte, word_embeddings, ...)."""
        return self.hf.get_input_embeddings()

    def wire(self) -> None:
        """Create self.blocks (and self.ln_final) and register their PyTorch hooks into self._handles."""
        raise NotImplementedError

    def _on_embed(self, x: torch.Tensor) -> torch.Tensor:
        self._tokens_shape = (x.shape[0], x.shape[1])
        return fire(self.hook_embed, x)

    def wire_pos_embed(self, module: nn.Module) -> None:
        """`hook_pos_embed` [b, t, d] on the output of the learned position embedding `module`. transformers
        looks up one row of positions for the whole batch when none are passed (GPT-2, BERT, DistilBERT: [1, t, d],
        broadcast when added); the hook sees it expanded (a copy, so in-place edits work) to the batch of the token
        embedding that ran just before it in the same forward. The model then adds the expanded tensor, which
        gives the same values. Unobserved, nothing is expanded."""
        self.hook_pos_embed = HookPoint()  # [b, t, d]

        def pos(x: torch.Tensor) -> torch.Tensor:
            (b, t), self._tokens_shape = self._tokens_shape, (0, 0)  # this forward's only, never a stale one
            if not observed(self.hook_pos_embed):
                return x
            if x.dim() == 3 and x.shape[0] == 1 and b > 1 and x.shape[1] == t:
                x = x.expand(b, t, x.shape[-1]).clone()
            return self.hook_pos_embed(x)

        self._handles.append(on_output(module, pos))

    def context_length(self) -> int:
        """The longest input the model takes: max_position_embeddings (encoders may take fewer)."""
        return self.hf.config.max_position_embeddings

    def unembed(self) -> nn.Linear:
        out = self.hf.get_output_embeddings()
        if out is None:
            raise ValueError(f"{self.family} is an encoder: it has no unembedding (W_U); use its hidden states")
        return out

    # --- the contract -----------------------------------------------------------------------------------
    def setup(self) -> None:
        """Index the hook points only (not the wrapped model's own modules, which live under `hf`)."""
        self.mod_dict, self.hook_dict = {}, {}
        for name, module in self.named_modules():
            if name == "" or name == "hf" or name.startswith("hf."):
                continue
            module.name = name
            self.mod_dict[name] = module
            if isinstance(module, HookPoint):
                self.hook_dict[name] = module

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        kw: dict = {"input_ids": tokens}
        if attention_mask is not None:
            kw["attention_mask"] = attention_mask.long()
            if self.objective == "causal_lm":  # left padding: real tokens count positions from 0
                kw["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        if self.objective == "causal_lm":
            return self.hf(**kw, use_cache=False).logits
        return self.hf(**kw).last_hidden_state

    def apply_final_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The final norm applied to x [..., d], its statistics recomputed on x (identity when there is none)."""
        return self.ln_final.normalize(x) if self.ln_final is not None else x

    @property
    def W_U(self) -> torch.Tensor:
        """Unembedding [d_model, vocab] (times the family's logit multiplier, so x @ W_U is the logit)."""
        w = self.unembed().weight.T
        return w * self.logit_multiplier if self.logit_multiplier != 1.0 else w

    @property
    def b_U(self) -> torch.Tensor | None:
        """Unembedding bias [vocab] (times the logit multiplier), or None."""
        b = self.unembed().bias
        return b * self.logit_multiplier if b is not None and self.logit_multiplier != 1.0 else b

    @property
    def cfg(self) -> RealConfig:
        """The zoo-style config (the transformers config is `model.hf.config`)."""
        c = self.hf.config
        d = c.hidden_size
        d_head = getattr(c, "head_dim", None) or d // c.num_attention_heads
        d_mlp = next((v for v in (getattr(c, k, None) for k in ("intermediate_size", "n_inner", "hidden_dim"))
                      if isinstance(v, int)), 4 * d)
        return RealConfig(n_layers=len(self.blocks), d_model=d, n_heads=c.num_attention_heads, d_head=d_head,
                          d_mlp=d_mlp, n_ctx=self.context_length(), d_vocab=c.vocab_size,
                          placement=self.placement, norm=self.norm_kind,
                          final_norm=self.ln_final is not None and self.ln_final.kind != "none",
                          strategy=strategy_label(self.placement, self.norm_kind),
                          tie_embeddings=bool(getattr(c, "tie_word_embeddings", False)))

    @property
    def card(self) -> ModelCard:
        c = self.hf.config
        return ModelCard(family=self.family, strategy=strategy_label(self.placement, self.norm_kind),
                         placement=self.placement, norm_kind=self.norm_kind, n_layers=len(self.blocks),
                         d_model=c.hidden_size, n_params=sum(p.numel() for p in self.hf.parameters()),
                         objective=self.objective, **self._info)

    @property
    def sites(self) -> SiteMap:
        fn = self.ln_final is not None and self.ln_final.kind != "none"
        return SiteMap(embed="hook_embed", layers=tuple(b.sites() for b in self.blocks),
                       final_resid=f"blocks.{len(self.blocks) - 1}.hook_resid_post",
                       final_norm_input="ln_final.hook_in" if fn else None,
                       final_norm_scale="ln_final.hook_scale" if fn else None)
