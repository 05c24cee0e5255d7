"""Attribution you can check: DLA next to the true direct effect (path ablation), and a logit lens whose norm
statistics are recomputed on every intermediate stream."""
from __future__ import annotations

from interp.attribution.confidence import confidence_neurons
from interp.attribution.dla import dla, resolve_token, summary
from interp.attribution.dla_sublayers import dla_sublayers
from interp.attribution.figures import dla_scatter, lens_figure
from interp.attribution.logit_lens import logit_lens

__all__ = ["confidence_neurons", "dla", "dla_scatter", "dla_sublayers", "lens_figure", "logit_lens", "resolve_token",
           "summary"]
