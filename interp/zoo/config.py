"""The zoo's config and its named strategies: each normalization strategy is one preset of `ZooConfig`."""
from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import Any

from interp.card import PLACEMENTS
from interp.norms import NORMS


@dataclass
class ZooConfig:
    """A GPT-style decoder; `placement` and `norm` say where the norms sit and which norm it is.

    placement: pre  x = x + F(N(x))          post  x = N(x + F(x))  (DeepNorm: N(α·x + F(x)))
               peri x = x + N_out(F(N_in(x)))  mix  post for layers < ⌊mix_alpha·L⌋, pre after
               lns  x = x + F(N(x) / √ℓ), ℓ counted from 1          none  x = x + F(x)
               reordered  x = x + N(F(x)), a norm on each sublayer's output, none on its input (OLMo-2)
    qk_norm:   RMSNorm over each head's d_head on q and k before q·k, one learnable gain [d_head] shared by the
               heads (Qwen3, Gemma-3; OLMo-2 normalizes all heads' q together); eps = norm_eps.
    deepnorm:  DeepNet (Wang et al. 2022) on a post placement: the residual is up-weighted by α = (2N)^¼ and the
               init of the FFN weights (up, down), the value projection (v rows of qkv) and the output projection
               is multiplied by β = (8N)^-¼ (N = n_layers, the decoder-only values). The paper draws them from
               Xavier-normal with gain β; the zoo keeps its shared N(0, init_std) init and scales it by β, so
               those weights start at N(0, (β·init_std)²); q and k rows, embeddings, biases (0) and norms keep
               the shared init.
    objective: causal_lm  causal attention, next-token loss.
               mdlm       masked diffusion (MDLM, Sahoo et al. 2024): bidirectional attention; the input alphabet has
                          d_vocab + 1 symbols, the last (`mask_id` = d_vocab) is [MASK] with its own learned embedding
                          `mask_embed`; the output keeps d_vocab logits, so [MASK] is never predicted. The mask
                          probability t of a sequence comes in as `cond`; the loss is interp.train.mdlm.mdlm_loss.
    t_embed:   how a conditioned model takes t besides conditioned norms (TD-LN): "none"; "add": DiT's timestep
               embedder (sinusoidal features of 1000·t → Linear → SiLU → Linear) added to every position's
               embedding; "adaln": DiT's adaLN-Zero, the same embedding through SiLU and zero-initialised linear
               maps gives every norm's (shift, scale) (norm="adaln": LayerNorm without affine, x̂·(1 + scale) +
               shift) and each block's output gates (x + g·F(N(x))); pre placement only.
    positions: "learned": a learned absolute position embedding added to the token embedding (GPT-2).
               "rotary": no position embedding; q and k of every head are rotated by their position (RoPE, Su et
               al. 2021, in the half-split layout of GPT-NeoX and of MDLM's DiT backbone), so q·k depends on the
               offset between query and key. The MDLM presets use it, as MDLM's backbone does: a [MASK] input
               carries no token, so every gain comes through attention. With learned absolute positions (one
               free vector per position) the first MDLM zoo had every attention head uniform after 2000 steps
               (entropy ln 128 within 0.3), and on a copy task at n_ctx 128 a 2-layer MDLM stayed at ln V for
               300 steps where the rotary one learned it in 150.
    attn_local_init: c > 0 sets every q and k bias to c at init (rotary positions and bias=True only). The
               content-independent part of a logit is then (c²/√d_head)·Σ_k 2·cos(δ·θ_k) over the rotary pairs
               (δ = key − query offset): largest at δ = 0 and falling off within a few positions, so attention
               starts local instead of uniform. A masked-diffusion model leaves the unigram plateau sooner with it: a [MASK]
               input carries no token, so all of its information comes through attention, and with uniform
               attention a neighbour's token is 1/n_ctx of what a masked position sees; on the KJV the MDLM
               presets stayed at the unigram cross-entropy (bound 6.17–6.25 after 300 steps with each of: the zoo
               recipe, a fixed mask rate 0.15, learned positions, the bounded-weight loss, init_std 0.072, no t;
               and on 2 layers fixed t, learned positions, lr 1e-2), while with c = 1.5 a 2-layer model's masked cross-entropy at t = 0.1 was 5.55 after
               300 steps (fixed t = 0.15; 6.09 without), and the 12-layer mdlm-ln with the zoo recipe had a bound of 6.11
               after 300 steps (6.19 without; masked CE at t = 0.1: 5.94 vs 6.06) and mean attention entropy 3.2
               instead of ln 128 = 4.85. With the zoo recipe over its full 2000 steps (mdlm-ln, seed 0) the validation bound
               was 5.38 with c = 1.0 and 5.74 with c = 0 (unigram cross-entropy 6.21; c = 0 stays at 6.20 until step
               400 and falls only after step 800): the MDLM presets use c = 1.0. The biases train freely (no weight
               decay). Not part of MDLM's recipe (its DiT has no q, k biases; it trains on ~10⁴× the zoo's tokens).
               The prior works against long-range attention (the 1-layer copy task of tests/test_mdlm_learns.py,
               copies 8 positions apart, stayed at ln 15 = 2.71 after 200 steps with c = 1.5), so that test runs
               with c = 0.
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
    qk_norm: bool = False  # RMSNorm on each head's q and k (see the class docstring)
    deepnorm: bool = False  # DeepNorm residual weight α and init scale β (see the class docstring)
    objective: str = "causal_lm"  # "causal_lm" | "mdlm" (masked diffusion; see the class docstring)
    t_embed: str = "none"  # "none" | "add" | "adaln": how t enters besides TD-LN (see the class docstring)
    positions: str = "learned"  # "learned" | "rotary" (see the class docstring)
    attn_local_init: float = 0.0  # q and k biases at init; > 0 makes rotary attention start local (see the docstring)

    def __post_init__(self) -> None:
        self._check_fields()
        if self.placement not in PLACEMENTS:
            raise ValueError(f"unknown placement {self.placement!r}; choose one of: {', '.join(PLACEMENTS)}")
        if self.norm == "fakeln":
            raise ValueError("norm 'fakeln' is LN removal's frozen norm, not a zoo norm kind: interp.surgery makes it "
                             "from a trained model's norms (remove_layernorm)")
        if self.norm not in NORMS and self.norm != "none":
            raise ValueError(f"unknown norm kind {self.norm!r}; choose one of: "
                             f"{', '.join(k for k in NORMS if k != 'fakeln')}, none")
        self._check_norm_kwargs()
        if self.act not in ("gelu", "gelu_tanh"):
            raise ValueError(f"unknown activation {self.act!r}; choose 'gelu' or 'gelu_tanh'")
        if (self.d_attn or self.d_model) % self.n_heads:
            raise ValueError(f"attention width {self.d_attn or self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.placement != "none" and self.norm == "none":
            raise ValueError(f"placement {self.placement!r} needs a norm; use placement='none' for no norm")
        if self.qk_norm and self.d_head < 2:
            raise ValueError(f"qk_norm needs a head dimension of at least 2 (RMSNorm of one number is its sign); "
                             f"got d_head={self.d_head}: use fewer heads or a wider attention")
        if self.deepnorm and self.placement != "post":
            raise ValueError(f"deepnorm is Post-LN with an up-weighted residual and needs placement='post'; "
                             f"got placement={self.placement!r}")
        self._check_diffusion()
        if self.positions not in ("learned", "rotary"):
            raise ValueError(f"unknown positions {self.positions!r}; choose 'learned' or 'rotary'")
        if self.positions == "rotary" and self.d_head % 2:
            raise ValueError(f"rotary positions rotate pairs of channels and need an even head dimension; got "
                             f"d_head={self.d_head}: change d_model (or d_attn) or n_heads")
        if self.attn_local_init < 0 or (self.attn_local_init and (self.positions != "rotary" or not self.bias)):
            raise ValueError(f"attn_local_init={self.attn_local_init} must be ≥ 0, and above 0 it needs rotary positions "
                             f"and q, k biases; got positions={self.positions!r}, bias={self.bias}")
        if self.norm == "powernorm" and "group_num" not in self.norm_kwargs:  # the authors' runs: one group per head
            self.norm_kwargs = {**self.norm_kwargs, "group_num": self.n_heads}

    def _check_fields(self) -> None:
        """Types and ranges first (a config read from JSON may hold "2" or null): one line naming the field."""
        for f in dataclasses.fields(self):
            v, t = getattr(self, f.name), str(f.type)
            ok = {"int": isinstance(v, int) and not isinstance(v, bool),
                  "float": isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
                  "bool": isinstance(v, bool), "str": isinstance(v, str), "dict[str, Any]": isinstance(v, dict),
                  "int | None": v is None or (isinstance(v, int) and not isinstance(v, bool))}.get(t, True)
            if not ok:
                raise ValueError(f"zoo config field {f.name!r} must be {t.replace('float', 'a finite number')}, "
                                 f"got {v!r} ({type(v).__name__})")
        for name in ("n_layers", "d_model", "n_heads", "d_mlp", "n_ctx", "d_vocab"):
            if getattr(self, name) < 1:
                raise ValueError(f"zoo config field {name!r} must be at least 1, got {getattr(self, name)}")
        if self.d_attn is not None and self.d_attn < 1:
            raise ValueError(f"zoo config field 'd_attn' must be at least 1 (or None), got {self.d_attn}")
        if self.norm_eps <= 0 or self.init_std <= 0:
            raise ValueError(f"zoo config fields 'norm_eps' and 'init_std' must be above 0, got {self.norm_eps} "
                             f"and {self.init_std}")
        if not 0 <= self.mix_alpha <= 1:
            raise ValueError(f"zoo config field 'mix_alpha' must be in [0, 1], got {self.mix_alpha}")

    def _check_norm_kwargs(self) -> None:
        """norm_kwargs must be options of the norm's constructor (eps is `norm_eps`), else one line naming them."""
        kind = self.norm if self.norm != "none" else "layernorm"  # placement none: a final norm is a LayerNorm
        valid = sorted(set(inspect.signature(NORMS[kind].__init__).parameters) - {"self", "d", "eps"})
        bad = sorted(map(str, set(self.norm_kwargs) - set(valid)))
        if bad:
            raise ValueError(f"zoo config field 'norm_kwargs' has {bad}, not options of norm {kind!r}; valid: "
                             f"{', '.join(valid) or 'none'} (the norm's eps is the field 'norm_eps')")

    def _check_diffusion(self) -> None:
        if self.objective not in ("causal_lm", "mdlm"):
            raise ValueError(f"unknown objective {self.objective!r}; choose 'causal_lm' or 'mdlm'")
        if self.t_embed not in ("none", "add", "adaln"):
            raise ValueError(f"unknown t_embed {self.t_embed!r}; choose 'none', 'add' or 'adaln'")
        if self.t_embed != "none" and not self.conditioned:
            raise ValueError(f"t_embed={self.t_embed!r} embeds the conditioning scalar t; set conditioned=True")
        if (self.norm == "adaln") != (self.t_embed == "adaln") or (self.norm == "adaln" and self.placement != "pre"):
            raise ValueError("adaLN-Zero needs norm='adaln', t_embed='adaln' and placement='pre' together; "
                             f"got norm={self.norm!r}, t_embed={self.t_embed!r}, placement={self.placement!r}")

    @property
    def mask_id(self) -> int | None:
        """The [MASK] token id of a masked-diffusion model (= d_vocab, one past the output vocabulary), else None."""
        return self.d_vocab if self.objective == "mdlm" else None

    @property
    def d_head(self) -> int:
        return (self.d_attn or self.d_model) // self.n_heads

    @property
    def n_post_layers(self) -> int:
        """How many leading blocks are Post-LN (all for post, ⌊αL⌋ for mix, none otherwise); αL is floored with a
        1e-9 allowance, since the float product falls just below an integer αL (0.7·90 = 62.99…, not 63)."""
        if self.placement == "post":
            return self.n_layers
        if self.placement == "mix":
            return math.floor(self.mix_alpha * self.n_layers + 1e-9)
        return 0

    @property
    def deepnorm_alpha(self) -> float:
        """DeepNorm's residual weight α = (2N)^¼ for an N-layer decoder; 1 without DeepNorm."""
        return (2 * self.n_layers) ** 0.25 if self.deepnorm else 1.0

    @property
    def deepnorm_beta(self) -> float:
        """DeepNorm's init scale β = (8N)^-¼ for an N-layer decoder; 1 without DeepNorm."""
        return (8 * self.n_layers) ** -0.25 if self.deepnorm else 1.0

    def block_placement(self, layer: int) -> str:
        """The placement of block `layer` (0-based); resolves mix into post / pre."""
        if self.placement == "mix":
            return "post" if layer < self.n_post_layers else "pre"
        return self.placement

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ZooConfig":
        if not isinstance(d, dict):
            raise ValueError(f"a zoo config must be a JSON object of fields, got {type(d).__name__}")
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
    "pre-rmsnorm-qk": dict(placement="pre", norm="rmsnorm", qk_norm=True),
    "reordered":    dict(placement="reordered", norm="rmsnorm", qk_norm=True),
    "deepnorm":     dict(placement="post", norm="layernorm", final_norm=False, deepnorm=True),
    # masked diffusion (MDLM) conditioned on the mask probability t: TD-LN vs DiT's adaLN-Zero vs an added t-embedding;
    # rotary positions as in MDLM's backbone (see the class docstring)
    "mdlm-tdln":    dict(placement="pre", norm="tdln", conditioned=True, objective="mdlm", positions="rotary",
                         attn_local_init=1.0),
    "mdlm-adaln":   dict(placement="pre", norm="adaln", conditioned=True, objective="mdlm", t_embed="adaln",
                         positions="rotary", attn_local_init=1.0),
    "mdlm-ln":      dict(placement="pre", norm="layernorm", conditioned=True, objective="mdlm", t_embed="add",
                         positions="rotary", attn_local_init=1.0),
    # control: no t at all (absorbing-state diffusion's optimal denoiser does not depend on t; Ou et al. 2024)
    "mdlm-uncond":  dict(placement="pre", norm="layernorm", objective="mdlm", positions="rotary",
                         attn_local_init=1.0),
}


def strategy_config(name: str, **overrides: Any) -> ZooConfig:
    """The config of strategy `name` with `overrides` applied (e.g. n_layers=4)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    return ZooConfig(**{**STRATEGIES[name], "strategy": name, **overrides})
