"""interp: look inside transformers to see what their normalization does.

    import interp
    model = interp.zoo.build("pre-ln")           # or interp.load_model("smollm2-135m")
    interp.STRATEGIES                            # the normalization strategies of the zoo
"""
from __future__ import annotations

from interp import norms, zoo
from interp.card import ModelCard
from interp.sites import LayerSites, SiteMap
from interp.zoo import STRATEGIES
from interp.models import available_models, load_model  # noqa: E402  (real trained models, offline)

from interp import collect  # noqa: E402  (a package you can call: interp.collect(model, data, ...))
from interp.collect import Results  # noqa: E402
from interp import attribution, surgery  # noqa: E402  (DLA with measured error, logit lens; LN removal, conversion)
from interp import report  # noqa: E402  (interp.report.build(results, "report.html"): the HTML comparison report)

collectors = collect  # interp.collectors.ResidualStats() reads better than interp.collect.ResidualStats()

__version__ = "0.1.0"

__all__ = ["STRATEGIES", "ModelCard", "SiteMap", "LayerSites", "norms", "zoo", "__version__",
           "collect", "collectors", "Results", "load_model", "available_models", "attribution", "surgery",
           "report"]
