"""One colour per strategy / model, the same in every figure of a report (and in notebooks)."""
from __future__ import annotations

import hashlib
import re

# The zoo's strategies: related placements get related hues (the LayerNorm family in blues/greens,
# batch-statistic norms in browns, no norm in grey) so a reader can group lines at a glance.
STRATEGY_COLORS: dict[str, str] = {
    "pre-ln": "#1f77b4",
    "post-ln": "#d62728",
    "peri-ln": "#2ca02c",
    "mix-ln": "#9467bd",
    "lns": "#17becf",
    "pre-rmsnorm": "#ff7f0e",
    "pre-crmsnorm": "#bcbd22",
    "powernorm": "#8c564b",
    "unified-norm": "#e377c2",
    "dyt": "#393b79",
    "no-norm": "#7f7f7f",
    "td-ln": "#637939",
    "pre-rmsnorm-qk": "#fd8d3c",
    "reordered": "#e6ab02",
    "deepnorm": "#ff9896",
    "ln-free": "#000000",
    "pre-ln-lnfree": "#000000",
    # packaged real models (named by registry name)
    "smollm2-135m": "#fdae6b",
    "gemma-3-270m": "#74c476",
    "minilm-l6": "#fb6a4a",
    "qwen2.5-0.5b": "#e6550d",
    "mpnet-base": "#a50f15",
    "gpt2": "#6baed6",
}
_FALLBACK = ["#843c39", "#7b4173", "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194", "#6b6ecf",
             "#9c9ede", "#cedb9c", "#e7ba52", "#e7969c"]


def color_for(name: str) -> str:
    """The colour of strategy or model `name`: a fixed entry when known, else a stable hash-chosen one."""
    key = re.sub(r"\.seed\d+$", "", name.lower())  # the zoo's seeds ("pre-ln.seed1") share their strategy's colour
    if key in STRATEGY_COLORS:
        return STRATEGY_COLORS[key]
    # "zoo/pre-ln", "pre-ln-seed1" ... keep their strategy's colour (the longest match: pre-rmsnorm-qk, not pre-rmsnorm)
    for known in sorted(STRATEGY_COLORS, key=len, reverse=True):
        if key.endswith("/" + known) or key.startswith(known + "-") or key.startswith(known + "_"):
            return STRATEGY_COLORS[known]
    return _FALLBACK[int(hashlib.sha1(key.encode()).hexdigest(), 16) % len(_FALLBACK)]
