"""The zoo's config and its named strategies: each normalization strategy is one preset of `ZooConfig`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from interp.card import PLACEMENTS
from interp.norms import NORMS


@dataclass
class ZooConfig:
    """A GPT-style decoder; `placement` and `norm` say where the norms sit and which norm it is.

    placement: pre  x = x + F(N(x))          post  x = N(x + F(x))
               peri x = x + N_out(F(N_in(x)))  mix  post for layers < ⌊mix_alpha·L⌋, pre after
               lns  x = x + F(N(x) / √ℓ), ℓ counted from 1          none  x = x + F(x)
    """

    n_layers: int = 12
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 256
    n_ctx: int = 128
    d_vocab: int = 4096
    placement: str = "pre"
    norm: str = "layernorm"
    final_norm: bool = True
    mix_alpha: float = 0.25
    norm_eps: float = 1e-5
    norm_kwargs: dict[str, Any] = field(default_factory=dict)
    bias: bool = True
    tie_embeddings: bool = True
    init_std: float = 0.02
    strategy: str = "custom"
    conditioned: bool = False  # TD-LN: forward takes a per-sequence conditioning scalar `cond`
    d_attn: int | None = None  # attention inner width (q, k, v, z); None = d_model (CRMSNorm conversion: d_model = d − 1)
    unembed_bias: bool = False  # b_U (a folded final-norm bias needs it)
    act: str = "gelu"  # MLP activation: "gelu" (exact) or "gelu_tanh" (GPT-2's tanh approximation, "gelu_new")

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f"unknown placement {self.placement!r}; choose one of: {', '.join(PLACEMENTS)}")
        if self.norm not in NORMS and self.norm != "none":
            raise ValueError(f"unknown norm kind {self.norm!r}; choose one of: {', '.join(NORMS)}, none")
        if self.act not in ("gelu", "gelu_tanh"):
            raise ValueError(f"unknown activation {self.act!r}; choose 'gelu' or 'gelu_tanh'")
        if (self.d_attn or self.d_model) % self.n_heads:
            raise ValueError(f"attention width {self.d_attn or self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.placement != "none" and self.norm == "none":
            raise ValueError(f"placement {self.placement!r} needs a norm; use placement='none' for no norm")

    @property
    def d_head(self) -> int:
        return (self.d_attn or self.d_model) // self.n_heads

    @property
    def n_post_layers(self) -> int:
        """How many leading blocks are Post-LN (all for post, ⌊αL⌋ for mix, none otherwise)."""
        if self.placement == "post":
            return self.n_layers
        if self.placement == "mix":
            return int(self.mix_alpha * self.n_layers)
        return 0

    def block_placement(self, layer: int) -> str:
        """The placement of block `layer` (0-based); resolves mix into post / pre."""
        if self.placement == "mix":
            return "post" if layer < self.n_post_layers else "pre"
        return self.placement

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ZooConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"zoo config has unknown fields {sorted(unknown)}; valid fields: {sorted(names)}")
        return cls(**d)


# name -> (placement, norm, overrides). The strategies users compare, at one shared size.
STRATEGIES: dict[str, dict[str, Any]] = {
    "post-ln":      dict(placement="post", norm="layernorm", final_norm=False),
    "pre-ln":       dict(placement="pre", norm="layernorm"),
    "peri-ln":      dict(placement="peri", norm="layernorm"),
    "mix-ln":       dict(placement="mix", norm="layernorm"),
    "lns":          dict(placement="lns", norm="layernorm"),
    "pre-rmsnorm":  dict(placement="pre", norm="rmsnorm"),
    "pre-crmsnorm": dict(placement="pre", norm="crmsnorm"),
    "powernorm":    dict(placement="pre", norm="powernorm"),
    "unified-norm": dict(placement="pre", norm="unified"),
    "dyt":          dict(placement="pre", norm="dyt"),
    "no-norm":      dict(placement="none", norm="none", final_norm=False),
    "td-ln":        dict(placement="pre", norm="tdln", conditioned=True),
}


def strategy_config(name: str, **overrides: Any) -> ZooConfig:
    """The config of strategy `name` with `overrides` applied (e.g. n_layers=4)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    return ZooConfig(**{**STRATEGIES[name], "strategy": name, **overrides})
