"""`InterpActivationCache`: TransformerLens' `ActivationCache` for interp's models, whose weights are not folded.

TransformerLens computes direct logit attribution as `logit_attrs(decompose_resid())`: each component of the
residual stream is divided by the final norm's *cached* scale (centred first for LayerNorm) and dotted with
`W_U[:, token]`. That is right only after `fold_ln`, which moves the norm's gain into `W_U`. interp's models keep
their own weights, so here `apply_ln_to_stack` applies the norm's whole linear part with the scale frozen:

    component ↦ centre?(component) / cached scale · gain          (the norm's bias is left out of every row)

and `tokens_to_residual_directions` returns the plain `W_U` columns. The rows then equal interp's DLA rows
(`interp.attribution.dla`), and their sum plus `ln_final.b · W_U[:, t] + b_U[t]` is the logit.

This holds when the residual stream is a plain sum of what each sublayer adds and every norm on the way to the
logits divides each token by one statistic. Where it does not, the methods raise `UnsupportedByTransformerLens`
with the reason instead of returning a number that looks right:
  - Post-LN and Mix-LN blocks (x = N(x + F(x))): the stream is renormalized after every sublayer, so the
    sublayer outputs do not add up to it, and no norm reads the stream entering a block;
  - any other placement without input norms (e.g. OLMo-2's reordered x = x + N(F(x))): there is no input norm
    whose scale `apply_ln_to_stack(layer=l)` could use;
  - batch-statistic norms (PowerNorm, Unified Norm): each channel is divided by a second moment over the
    batch's tokens, not each token by its own scale;
  - DyT (γ·tanh(αx) + β divides by nothing and is not linear) and TD-LN (its gain depends on `cond`).
  - the attention input of a zoo model during LN removal (after stage ln1_qk): ln1 is split into attn.ln_qk
    (queries, keys) and attn.ln_v (values), two norms where a stack goes through one.
Parallel blocks (GPT-NeoX, GPT-J: x + F_attn(N1(x)) + F_mlp(N2(x))) are additive too. Peri-LN is supported at
sublayer level: `hook_attn_out` / `hook_mlp_out` are the outputs after the output norms,
which do add up to the stream. Per-head and per-neuron results are not (interp's models expose no `W_O` in
TransformerLens' layout; in Peri-LN the output norm also mixes heads): use `interp.attribution.dla`.
"""
from __future__ import annotations

from typing import Any

import torch
from transformer_lens import ActivationCache
from transformer_lens.utilities import Slice

from interp.norms import FakeLN

ADDITIVE = ("pre", "lns", "peri", "parallel", "none")  # placements whose sublayer outputs add up to the stream
INPUT_NORMS = ("pre", "lns", "peri", "parallel")        # placements whose ln1 / ln2 read the block's stream


class UnsupportedByTransformerLens(ValueError):
    """A TransformerLens helper was asked for something its assumptions do not cover on this model."""


def _name(model) -> str:
    card = getattr(model, "card", None)
    return card.name if card is not None else type(model).__name__


def _placement_error(model, layer: int, placement: str, what: str) -> UnsupportedByTransformerLens:
    why = {"post": "it is Post-LN (x = N(x + F(x))): the stream is renormalized after every sublayer, so the "
                   "sublayer outputs do not add up to it and no norm reads the stream entering the block"}.get(
        placement, f"its placement {placement!r} has no norm on the sublayer inputs in TransformerLens' sense "
                   "(TransformerLens assumes Pre-LN: x = x + F(N(x)))")
    return UnsupportedByTransformerLens(
        f"{what} is not defined on {_name(model)}: block {layer} is not a Pre-LN block, {why}. Use "
        "interp.attribution.dla(model, tokens, target), which follows every norm on the path and reports its error")


def check_norm(norm: Any, where: str, model) -> None:
    """Raise unless `norm` divides each token by one statistic (so a frozen scale makes it linear)."""
    from interp.models.norm_hooks import NormHooks
    if isinstance(norm, NormHooks):
        return
    from interp.attribution.replay import SUPPORTED
    if isinstance(norm, SUPPORTED):
        return
    kind = type(norm).__name__
    why = {"PowerNorm": "divides each channel by a second moment over the batch's tokens (hook_scale [1, 1, d]), "
                        "not each token by its own scale, so a token's share depends on the other tokens",
           "UnifiedNorm": "divides each channel by a second moment over the batch's tokens (hook_scale [1, 1, d]), "
                          "not each token by its own scale, so a token's share depends on the other tokens",
           "DyT": "computes γ·tanh(αx) + β: it divides by no statistic and is not linear in x, so no frozen scale "
                  "turns it into the linear map that logit attribution needs",
           "TDLayerNorm": "has a gain and bias that depend on the conditioning value cond, not one gain that "
                          "TransformerLens could fold into W_U"}.get(kind, "is not a token-wise norm with a scale")
    raise UnsupportedByTransformerLens(
        f"{where} of {_name(model)} is a {kind}, which {why}; TransformerLens' cached-scale LN does not apply. "
        "Read the stream without apply_ln, or use interp.attribution.dla on a token-wise-norm model")


def frozen_linear(norm: Any, x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """The norm's output without its bias, dividing by the frozen `scale`: centre?(x) / scale · gain (a gain of
    None is the identity)."""
    from interp.models.norm_hooks import NormHooks
    if isinstance(norm, NormHooks):
        if norm.kind == "none":
            return x
        x = x - x.mean(-1, keepdim=True) if norm.centre else x
        x = x / scale.to(x.dtype)
        gain = norm.gain  # None: a norm without a learnable gain (OLMo's LayerNorm) multiplies by one
        return x if gain is None else x * gain.to(x.dtype)
    from interp.attribution.replay import norm_linear
    return norm_linear(norm, x, scale.to(x.dtype) if scale is not None else None)


def _has_scale(norm: Any) -> bool:
    return bool(getattr(norm, "has_scale", True))


class InterpActivationCache(ActivationCache):
    """A `transformer_lens.ActivationCache` whose LN helpers are exact on unfolded interp models (see module)."""

    def __contains__(self, key: object) -> bool:
        return key in self.cache_dict

    # --- where the norms are ------------------------------------------------------------------------------
    def _final_norm(self):
        m = self.model
        return m.ln_final if m.cfg.final_norm else None

    def _block_norm(self, layer: int, mlp_input: bool, what: str) -> tuple[Any, float]:
        """The norm reading the stream at the input of block `layer`'s attention (or MLP), and any factor after
        it (LayerNorm Scaling's 1/√ℓ); (None, 1) when the block has no norm."""
        n = self.model.cfg.n_layers
        if not 0 <= layer < n:
            raise ValueError(f"layer {layer} does not exist; {_name(self.model)} has layers 0..{n - 1} (or {n}: the "
                             "final norm)")
        blk = self.model.blocks[layer]
        if blk.placement == "none":
            return None, 1.0
        if blk.placement not in INPUT_NORMS:
            raise _placement_error(self.model, layer, blk.placement, what)
        if not mlp_input and getattr(getattr(blk, "attn", None), "ln_qk", None) is not None:  # SplitInputAttention
            raise UnsupportedByTransformerLens(
                f"{what} at block {layer}'s attention input is not defined on {_name(self.model)}: LN removal split "
                "its ln1 (now an Identity) into two norms, attn.ln_qk for queries and keys and attn.ln_v for values, "
                f"and a stack goes through one; apply model.blocks[{layer}].attn.ln_qk or .ln_v yourself, use "
                "mlp_input=True or the final norm, or fold the finished removal (interp.surgery.fold_fakeln)")
        name = "ln2" if mlp_input and hasattr(blk, "ln2") else "ln1"  # one shared norm (GPT-J, Phi): the MLP reads ln1
        norm = getattr(blk, name)
        check_norm(norm, f"blocks.{layer}.{name}", self.model)
        return norm, float(getattr(blk, "depth_scale", 1.0))

    def _check_additive(self, upto: int, what: str) -> None:
        for l in range(min(upto, self.model.cfg.n_layers)):
            pl = self.model.blocks[l].placement
            if pl not in ADDITIVE:
                raise _placement_error(self.model, l, pl, what)

    # --- TransformerLens' API, exact on unfolded weights -----------------------------------------------------
    def apply_ln_to_stack(self, residual_stack: torch.Tensor, layer: int | None = None, mlp_input: bool = False,
                          pos_slice: Slice | Any = None, batch_slice: Slice | Any = None, has_batch_dim: bool = True,
                          recompute_ln: bool = False) -> torch.Tensor:
        """Each entry of `residual_stack` [n, ..., d] through the norm read at `layer` (n_layers / None / -1: the
        final norm), with the scale cached in the forward pass frozen: centre?(x) / scale · gain, no bias.
        `recompute_ln=True` at the final norm applies the whole norm with statistics recomputed per entry."""
        pos_slice = pos_slice if isinstance(pos_slice, Slice) else Slice(pos_slice)
        batch_slice = batch_slice if isinstance(batch_slice, Slice) else Slice(batch_slice)
        n = self.model.cfg.n_layers
        layer = n if layer is None or layer == -1 else layer
        if has_batch_dim:
            residual_stack = batch_slice.apply(residual_stack, dim=1)
        if layer == n:
            norm, factor = self._final_norm(), 1.0
            if norm is None:
                return residual_stack
            check_norm(norm, "ln_final", self.model)
            if recompute_ln and not isinstance(norm, FakeLN):
                return self.model.apply_final_norm(residual_stack)
            if recompute_ln:  # a constant divisor per position (LN removal): recomputing it is reading the cached one
                scale = self._get_cached_ln_scale(layer, mlp_input, pos_slice, batch_slice)
                out = frozen_linear(norm, residual_stack, scale)
                return out if norm.b is None else out + norm.b.to(out.dtype)
        else:
            norm, factor = self._block_norm(layer, mlp_input, "apply_ln_to_stack")
            if norm is None:
                return residual_stack
            mlp_input = mlp_input and hasattr(self.model.blocks[layer], "ln2")  # its scale is ln1's where ln1 is shared
        scale = self._get_cached_ln_scale(layer, mlp_input, pos_slice, batch_slice) if _has_scale(norm) else None
        out = frozen_linear(norm, residual_stack, scale)
        return out * factor if factor != 1.0 else out

    def decompose_resid(self, layer: int | None = None, mlp_input: bool = False, mode: str = "all",
                        apply_ln: bool = False, pos_slice: Slice | Any = None, incl_embeds: bool = True,
                        return_labels: bool = False):
        """The residual stream entering block `layer` (default: the final stream) as a stack of what the
        embeddings and each attention / MLP added ([n, batch, pos, d]); refused where they do not add up."""
        pos_slice = pos_slice if isinstance(pos_slice, Slice) else Slice(pos_slice)
        n = self.model.cfg.n_layers
        layer = n if layer is None or layer == -1 else layer
        if mode not in ("all", "mlp", "attn"):
            raise ValueError(f"unknown mode {mode!r}; choose 'all', 'mlp' or 'attn'")
        self._check_additive(layer + (1 if mlp_input else 0), "decompose_resid")
        if mlp_input and layer < n and self.model.blocks[layer].placement == "parallel":
            raise UnsupportedByTransformerLens(
                f"decompose_resid(mlp_input=True) is not defined on {_name(self.model)}: block {layer} is a parallel "
                "block (x + F_attn(N1(x)) + F_mlp(N2(x))), whose MLP reads the block's input, not the stream after "
                "the attention; use mlp_input=False")
        comps, labels = [], []
        if incl_embeds:
            for key, lab in (("hook_embed", "embed"), ("hook_pos_embed", "pos_embed")):
                if key in self.cache_dict:
                    comps.append(self[key])
                    labels.append(lab)
        for l in range(layer):
            for kind in ("attn", "mlp"):
                if mode in ("all", kind):
                    comps.append(self[f"blocks.{l}.hook_{kind}_out"])
                    labels.append(f"{l}_{kind}_out")
        if mlp_input and mode != "mlp":
            comps.append(self[f"blocks.{layer}.hook_attn_out"])
            labels.append(f"{layer}_attn_out")
        if not comps:
            raise ValueError("nothing to decompose: cache the embeddings and sublayer outputs (hook_embed, "
                             "blocks.*.hook_attn_out, blocks.*.hook_mlp_out)")
        stack = torch.stack([pos_slice.apply(c, dim=-2) for c in comps])
        if mode == "all" and incl_embeds:
            self._check_sum(stack, layer, mlp_input, pos_slice)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input, pos_slice=pos_slice,
                                           has_batch_dim=self.has_batch_dim)
        return (stack, labels) if return_labels else stack

    def _check_sum(self, stack: torch.Tensor, layer: int, mlp_input: bool, pos_slice: Slice) -> None:
        """The components must add up to the cached stream they decompose (a family whose hooks mean something
        else fails here rather than giving plausible numbers)."""
        n = self.model.cfg.n_layers
        key = (f"blocks.{n - 1}.hook_resid_post" if layer == n else
               f"blocks.{layer}.hook_resid_{'mid' if mlp_input else 'pre'}")
        if key not in self.cache_dict:
            return
        ref = pos_slice.apply(self.cache_dict[key], dim=-2).float()
        gap = (stack.float().sum(0) - ref).abs().max().item()
        if gap > 1e-4 * max(ref.abs().max().item(), 1.0):
            raise UnsupportedByTransformerLens(
                f"the cached embeddings and sublayer outputs of {_name(self.model)} do not add up to {key} (max gap "
                f"{gap:.3g}): its hooks do not decompose the residual stream; use interp.attribution.dla")

    # --- helpers that need TransformerLens' own weight layout -----------------------------------------------
    def _per_head(self, *args: Any, **kwargs: Any):
        raise UnsupportedByTransformerLens(
            "per-head and per-neuron results need TransformerLens' weight layout (W_O, hook_result), which interp's "
            "models do not expose (and in Peri-LN the output norm mixes the heads, so head results do not add up); "
            "use interp.attribution.dla(model, tokens, target, neuron_layers=[...]), which splits heads and neurons "
            "and reports each row's error")

    compute_head_results = stack_head_results = get_full_resid_decomposition = _per_head
    get_neuron_results = stack_neuron_results = _per_head

    def logit_lens(self, **kwargs: Any):
        """Not TransformerLens' bridge-only logit lens: use `interp.attribution.logit_lens` (norms recomputed)."""
        raise UnsupportedByTransformerLens(
            "ActivationCache.logit_lens needs a TransformerBridge; use interp.attribution.logit_lens(model, tokens), "
            "or cache.accumulated_resid(apply_ln=True) @ model.W_U")
