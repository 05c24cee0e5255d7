"""interp: look inside transformers to see what their normalization does.

    import interp
    model = interp.zoo.build("pre-ln")           # or interp.load_model("smollm2-135m")
    interp.STRATEGIES                            # the normalization strategies of the zoo

Subpackages load on first use (`interp.report` does not import the models, training does not import the
report), so `import interp` is fast and one area's import cost or failure stays in that area.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "norms": ("interp.norms", None),
    "zoo": ("interp.zoo", None),
    "STRATEGIES": ("interp.zoo", "STRATEGIES"),
    "ModelCard": ("interp.card", "ModelCard"),
    "SiteMap": ("interp.sites", "SiteMap"),
    "LayerSites": ("interp.sites", "LayerSites"),
    "load_model": ("interp.models", "load_model"),        # real trained models, offline
    "available_models": ("interp.models", "available_models"),
    "collect": ("interp.collectors.api", "collect"),      # interp.collect(model, data, ...) -> Results
    "collectors": ("interp.collectors", None),            # interp.collectors.ResidualStats(), ...
    "Results": ("interp.collectors", "Results"),
    "attribution": ("interp.attribution", None),          # DLA with measured error, logit lens
    "surgery": ("interp.surgery", None),                  # LN removal, Pre-LN -> RMSNorm / CRMSNorm conversion
    "report": ("interp.report", None),                    # the HTML comparison report
    "data": ("interp.data", None),                        # corpora, the zoo tokenizer, the held-out sample
    "train": ("interp.train", None),                      # the training loop, fine_tune
    "tl": ("interp.tl", None),                            # TransformerLens-native caches
}

if TYPE_CHECKING:
    from interp import attribution, collectors, data, norms, report, surgery, tl, train, zoo  # noqa: F401
    from interp.card import ModelCard  # noqa: F401
    from interp.collectors import Results  # noqa: F401
    from interp.models import available_models, load_model  # noqa: F401
    from interp.sites import LayerSites, SiteMap  # noqa: F401
    from interp.zoo import STRATEGIES  # noqa: F401


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'interp' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["STRATEGIES", "ModelCard", "SiteMap", "LayerSites", "norms", "zoo", "__version__",
           "collect", "collectors", "Results", "load_model", "available_models", "attribution", "surgery",
           "report", "data", "train", "tl"]
