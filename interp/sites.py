"""The site map: one uniform description of *where* things live in a hooked model.

Hook names mean different things across families (in Gemma-3 `hook_attn_out` is the post-norm output, in
BERT `hook_attn_out` is LN1(x + attn)). Collectors never special-case a family: they read a `SiteMap`.

For every layer ℓ the map names the hook that carries
  - `resid_pre`:   the residual stream entering block ℓ          [batch, pos, d_model]
  - `resid_post`:  the residual stream leaving block ℓ           [batch, pos, d_model]
  - `deltas`:      what each sublayer *adds* to the stream, e.g. {"attn": ..., "mlp": ...}
  - `norm_inputs`: the input of each norm (for Post-LN this is the un-normalized sum x + F(x))
  - `norm_scales`: the `hook_scale` of each norm that divides by a statistic ([batch, pos, 1] for
                   token-wise norms, [1, 1, d_model] for batch-statistic norms)
  - `sublayer_out`: raw sublayer outputs before any output norm (Peri-LN), when they differ from deltas
  - `norm_widths`: for norms whose input is not one d_model vector per token (QK-norms: [batch, pos, heads,
                   d_head] or [batch, pos, heads·d_head]), the number of values per token, by norm name
plus the embedding output, the stream entering the final norm and the final norm's scale.
Norms inside the attention (QK-norm) are named "q_norm" / "k_norm" in `norm_inputs` / `norm_scales`, with hooks
`blocks.{l}.attn.q_norm.hook_in` / `.hook_scale` / `.hook_normalized`.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LayerSites:
    """Hook names for one block; see the module docstring for each field's meaning."""

    resid_pre: str
    resid_post: str
    deltas: dict[str, str] = field(default_factory=dict)
    norm_inputs: dict[str, str] = field(default_factory=dict)
    norm_scales: dict[str, str] = field(default_factory=dict)
    sublayer_out: dict[str, str] = field(default_factory=dict)
    placement: str = "pre"
    norm_widths: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SiteMap:
    """Where the residual stream, sublayer deltas and norm scales of a model can be read."""

    embed: str
    layers: tuple[LayerSites, ...]
    final_resid: str
    final_norm_scale: str | None = None
    final_norm_input: str | None = None

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def stream(self) -> list[str]:
        """The residual stream at depth 0..L: the input of block 0, then the output of every block."""
        return [self.layers[0].resid_pre] + [ls.resid_post for ls in self.layers]

    def all_hook_names(self) -> list[str]:
        """Every hook name the map mentions, each once, in depth order."""
        names: list[str] = [self.embed]
        for ls in self.layers:
            names += [ls.resid_pre, ls.resid_post, *ls.deltas.values(), *ls.norm_inputs.values(),
                      *ls.norm_scales.values(), *ls.sublayer_out.values()]
        names += [n for n in (self.final_resid, self.final_norm_input, self.final_norm_scale) if n]
        return list(dict.fromkeys(names))
