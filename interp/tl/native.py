"""What a TransformerLens user reaches for on a model: `run_with_cache` returning an `ActivationCache`, and
`to_tokens` / `to_str_tokens` / `to_single_token` / `tokens_to_residual_directions`, for the zoo and real models.

Tokens follow the model's own tokenizer conventions (`interp.tokenize.TextTokenizer`: BOS as the model was
trained, its padding side), so `model.to_tokens(text)` is what the collectors feed the model.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformer_lens import HookedRootModule

from interp.tl.cache import InterpActivationCache


class TransformerLensNative(HookedRootModule):
    """Base of every hooked model in interp: TransformerLens' model surface on top of `HookedRootModule`."""

    # --- caching ----------------------------------------------------------------------------------------------
    def run_with_cache(self, *model_args: Any, return_cache_object: bool = True, remove_batch_dim: bool = False,
                       **model_kwargs: Any) -> tuple[torch.Tensor, InterpActivationCache | dict]:
        """Run the model and cache activations (TransformerLens' `run_with_cache`); the cache is an
        `InterpActivationCache` (a `transformer_lens.ActivationCache`) unless `return_cache_object=False`.
        The first argument may be text (a string or a list of strings), tokenized with `to_tokens`."""
        if model_args and _is_text(model_args[0]):
            tokens, mask = self._encode(model_args[0])
            if not mask.all() and "attention_mask" not in model_kwargs:
                model_kwargs["attention_mask"] = mask
            model_args = (tokens, *model_args[1:])
        out, cache = super().run_with_cache(*model_args, remove_batch_dim=remove_batch_dim, **model_kwargs)
        if not return_cache_object:
            return out, cache
        return out, InterpActivationCache(cache, self, has_batch_dim=not remove_batch_dim)

    # --- tokens -----------------------------------------------------------------------------------------------
    def _text_tokenizer(self):
        tok = getattr(self, "tokenizer", None)
        if tok is None:
            raise ValueError(f"{self.card.name} has no tokenizer (a freshly built zoo model); load a trained "
                             "checkpoint with interp.zoo.load(dir) or set model.tokenizer")
        return tok

    def _encode(self, text: str | Sequence[str], prepend_bos: bool | None = None, padding_side: str | None = None,
                truncate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens [b, t], mask [b, t] True on real tokens) for text, with the model's BOS and padding."""
        tok = self._text_tokenizer()
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise ValueError("no text to tokenize: pass a string or a non-empty list of strings")
        bos = tok.add_bos if prepend_bos is None else prepend_bos
        if bos and tok.bos_id is None:
            raise ValueError(f"{self.card.name}'s tokenizer has no BOS token; pass prepend_bos=False")
        side = padding_side or tok.padding_side
        if side not in ("left", "right"):
            raise ValueError(f"unknown padding_side {side!r}; choose 'left' or 'right'")
        rows, suffix = [], list(getattr(tok, "suffix", ()))  # an encoder's [SEP], kept when truncating
        for i, t in enumerate(texts):
            ids = ([tok.bos_id] if bos else []) + list(tok.encode(t))
            if truncate and len(ids) > self.cfg.n_ctx:
                keep = suffix if suffix and ids[-len(suffix):] == suffix and self.cfg.n_ctx > len(suffix) else []
                ids = ids[: self.cfg.n_ctx - len(keep)] + keep
            if not ids:
                raise ValueError(f"text {i} encodes to no tokens; drop empty texts or pass prepend_bos=True")
            rows.append(ids)
        width = max(map(len, rows))
        tokens = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, r in enumerate(rows):
            sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
            tokens[i, sl], mask[i, sl] = torch.tensor(r), True
        dev = next(self.parameters()).device
        return tokens.to(dev), mask.to(dev)

    def to_tokens(self, input: str | Sequence[str], prepend_bos: bool | None = None, padding_side: str | None = None,
                  move_to_device: bool = True, truncate: bool = True) -> torch.Tensor:
        """Text → token ids [batch, pos] (TransformerLens' `to_tokens`). `prepend_bos=None` uses the model's own
        convention (SmolLM2: no BOS; zoo, Gemma-3, GPT-2: BOS); a batch is padded on the model's side."""
        tokens, _ = self._encode(input, prepend_bos, padding_side, truncate)
        return tokens if move_to_device else tokens.cpu()

    def to_str_tokens(self, input: str | Sequence | torch.Tensor | np.ndarray, prepend_bos: bool | None = None,
                      padding_side: str | None = None) -> list[str] | list[list[str]]:
        """Text or token ids → one string per token (TransformerLens' `to_str_tokens`)."""
        if isinstance(input, list):
            return [self.to_str_tokens(x, prepend_bos, padding_side) for x in input]
        if isinstance(input, str):
            ids = self.to_tokens(input, prepend_bos, padding_side)[0]
        elif isinstance(input, (torch.Tensor, np.ndarray)):
            ids = torch.as_tensor(input).squeeze()
            ids = ids[None] if ids.dim() == 0 else ids
            if ids.dim() != 1:
                raise ValueError(f"to_str_tokens takes one sequence of token ids; got shape {tuple(ids.shape)}")
        else:
            raise ValueError(f"to_str_tokens takes text, a list, or token ids; got {type(input).__name__}")
        tok = self._text_tokenizer()
        return [tok.decode([int(i)]) for i in ids.tolist()]

    def to_single_token(self, string: str) -> int:
        """The id of a string that is exactly one token (without BOS, or the [SEP] an encoder's encode appends);
        anything else raises ValueError."""
        tok = self._text_tokenizer()
        ids, suffix = list(tok.encode(string)), list(getattr(tok, "suffix", ()))
        if suffix and ids[-len(suffix):] == suffix:
            ids = ids[:-len(suffix)]
        if len(ids) != 1:
            raise ValueError(f"{string!r} is not a single token for {self.card.name} (it encodes to {len(ids)} "
                             "tokens)")
        return int(ids[0])

    def tokens_to_residual_directions(self, tokens: str | int | torch.Tensor) -> torch.Tensor:
        """The unembedding columns W_U[:, tokens] ([..., d_model]). They are not folded with the final norm's
        gain: `InterpActivationCache.apply_ln_to_stack` applies it, so the dot product is the logit share."""
        if isinstance(tokens, torch.Tensor) and tokens.numel() > 1:
            return self.W_U[:, tokens].movedim(0, -1)
        if isinstance(tokens, str):
            tokens = self.to_single_token(tokens)
        return self.W_U[:, int(tokens)]


def _is_text(x: Any) -> bool:
    return isinstance(x, str) or (isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(s, str) for s in x))
