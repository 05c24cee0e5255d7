"""Where each zoo strategy puts its norm, in one formula, and which released models use that design.

`CATALOG[name] = (formula, where the norm sits, models that ship it)`; the report and the docs place the newer
strategies (QK-norm, OLMo-2's reordered block, DeepNorm) beside the seed ones with it. N is the norm, F a
sublayer (attention or MLP), ℓ the layer counted from 1, L the number of layers.
"""
from __future__ import annotations

import pandas as pd

CATALOG: dict[str, tuple[str, str, str]] = {
    "post-ln": ("x = LN(x + F(x))", "after each residual sum", "Transformer (2017), BERT"),
    "pre-ln": ("x = x + F(LN(x))", "on each sublayer's input", "GPT-2, GPT-3"),
    "peri-ln": ("x = x + N(F(N(x)))", "on each sublayer's input and output", "Gemma-2, Gemma-3"),
    "mix-ln": ("Post-LN for ℓ ≤ ⌊αL⌋, Pre-LN after", "after the sum (early layers), on the input (later)", "—"),
    "lns": ("x = x + F(LN(x) / √ℓ)", "on the input, scaled by 1/√ℓ", "—"),
    "pre-rmsnorm": ("x = x + F(RMSNorm(x))", "on each sublayer's input", "LLaMA, Mistral, SmolLM2"),
    "pre-crmsnorm": ("x = x + F(CRMSNorm(x))", "on the input (d − 1 stored coordinates)", "—"),
    "powernorm": ("x = x + F(PN(x))", "on the input; statistics over the batch", "—"),
    "unified-norm": ("x = x + F(UN(x))", "on the input; statistics over the batch", "—"),
    "dyt": ("x = x + F(γ·tanh(αx) + β)", "on the input; no statistic", "—"),
    "no-norm": ("x = x + F(x)", "nowhere", "—"),
    "td-ln": ("x = x + F(LN_t(x))", "on the input; γ, β depend on a conditioning t", "DiMR (diffusion)"),
    "pre-rmsnorm-qk": ("x = x + F(RMSNorm(x)); softmax(RMS(q)·RMS(k)/√d)",
                       "on each sublayer's input, and on each head's q and k", "Qwen3"),
    "reordered": ("x = x + RMSNorm(F(x)); softmax(RMS(q)·RMS(k)/√d)",
                  "on each sublayer's output (none on its input), and on q and k", "OLMo-2"),
    "deepnorm": ("x = LN(α·x + F(x)), α = (2L)^¼; init × β = (8L)^-¼", "after each up-weighted residual sum",
                 "GLM-130B"),
}


def catalog_table(strategies: list[str] | None = None) -> pd.DataFrame:
    """The catalog as a tidy table (strategy, formula, norm_site, used_by), in CATALOG order."""
    names = [s for s in CATALOG if strategies is None or s in strategies]
    return pd.DataFrame([(s, *CATALOG[s]) for s in names], columns=["strategy", "formula", "norm_site", "used_by"])
