"""Attribution you can check: DLA next to the true direct effect (path ablation), and a logit lens whose norm
statistics are recomputed on every intermediate stream.

    d = interp.attribution.dla(model, tokens, target=" Paris")   # one row per component and sequence
    interp.attribution.dla_summary(d)                             # per model: how well DLA adds up, its error
"""
from __future__ import annotations

from interp.attribution.confidence import confidence_neurons
from interp.attribution.direct import dla, dla_summary
from interp.attribution.figures import dla_scatter, lens_figure
from interp.attribution.lens import logit_lens
from interp.attribution.sublayers import dla_sublayers
from interp.attribution.targets import resolve_token

summary = dla_summary  # the name before 0.2; prefer dla_summary

__all__ = ["confidence_neurons", "dla", "dla_scatter", "dla_summary", "dla_sublayers", "lens_figure", "logit_lens",
           "resolve_token"]
