"""The model contract: what every model interp analyses provides, as typing Protocols.

The zoo's `ZooModel`, the wrapped transformers models (`interp.models.HookedHF`) and models in the middle of
surgery all satisfy `HookedModel`; collectors, attribution and the report are written against it and never
against a concrete class. `isinstance(model, HookedModel)` checks that the members are there.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from interp.card import ModelCard
from interp.sites import SiteMap
from interp.tokenize import TextTokenizer


@runtime_checkable
class ModelConfig(Protocol):
    """The config fields shared by `interp.zoo.ZooConfig` and a real model's `RealConfig`."""

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


@runtime_checkable
class HookedModel(Protocol):
    """A `transformer_lens.HookedRootModule` with TransformerLens hook names, a card, a site map and a tokenizer.

    Calling it maps tokens [batch, pos] (and an optional attention mask [batch, pos], True on real tokens) to
    logits [batch, pos, vocab], or to hidden states [batch, pos, d_model] for encoders.
    """

    cfg: ModelConfig
    tokenizer: TextTokenizer | None

    @property
    def card(self) -> ModelCard:
        """What the model is (family, placement, norm kind, size, where the weights came from)."""
        ...

    @property
    def sites(self) -> SiteMap:
        """Where the residual stream, each sublayer's write and each norm's input and scale are read."""
        ...

    @property
    def W_U(self) -> torch.Tensor:
        """The unembedding [d_model, vocab] (not folded with the final norm's gain)."""
        ...

    @property
    def b_U(self) -> torch.Tensor | None:
        """The unembedding bias [vocab], or None."""
        ...

    def __call__(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor: ...

    def apply_final_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The final norm applied to x [..., d_model], its token statistics recomputed on x (a batch-statistic norm
        uses its running statistics in eval mode); never a training step: running state is left as it was."""
        ...

    def run_with_cache(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        """TransformerLens' run_with_cache: (output, `transformer_lens.ActivationCache`)."""
        ...

    def run_with_hooks(self, *args: Any, fwd_hooks: Sequence[tuple[str | Callable, Callable]] = (),
                       bwd_hooks: Sequence[tuple[str | Callable, Callable]] = (), **kwargs: Any) -> Any: ...

    def to_tokens(self, input: str | Sequence[str], prepend_bos: bool | None = None) -> torch.Tensor:
        """Text → token ids [batch, pos] with the model's BOS and padding conventions."""
        ...

    def to_str_tokens(self, input: Any, prepend_bos: bool | None = None) -> list[str] | list[list[str]]:
        """Text or token ids → one string per token."""
        ...


__all__ = ["HookedModel", "ModelConfig"]
