"""The metrics claims are judged by, by name: each defined once, with the paper section it follows.

A metric is a function `fn(tables, subject, reference, **params) -> Estimate` (reference: the subject it is
compared with, or None) registered with `@metric(name, definition=..., source=...)`. It raises `NotTestable`
with a reason in words when the numbers it needs are absent or the model cannot show the effect.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from interp.analysis.intervals import Estimate


@dataclass(frozen=True)
class Metric:
    """name; definition: one line shown beside each verdict; source: the paper section it follows; unit."""

    name: str
    definition: str
    source: str
    unit: str
    fn: Callable[..., Estimate]


METRICS: dict[str, Metric] = {}


def metric(name: str, definition: str, source: str, unit: str = "") -> Callable:
    """Register the decorated function as metric `name` (a second registration of one name is an error)."""
    def deco(fn: Callable[..., Estimate]) -> Callable[..., Estimate]:
        if name in METRICS and METRICS[name].fn is not fn:
            raise ValueError(f"metric {name!r} is already defined by {METRICS[name].fn.__module__}")
        METRICS[name] = Metric(name, definition, source, unit, fn)
        return fn
    return deco
