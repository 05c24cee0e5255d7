"""Forwards that stop before the unembedding when no collector reads the model's output.

The default collectors (residual statistics, massive activations, the angular layer effect, norm scales) read the
stream, never the logits, yet a full forward still forms them: the [tokens, vocab] product is a fifth of
SmolLM2-135M's forward and most of Gemma-3-270M's (a 262k vocabulary), and the logits of one batch of Gemma-3 take
1.2 GB. When every collector of a run reads nothing of the output (`Collector.reads_output == "none"`), the driver
stops each forward as it enters the unembedding (`stopped`), once a one-token probe (`stop_point`) has shown
that every hook point the collectors use runs before it: no statistic changes, since no hook the run uses would
have fired later.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from interp.collectors.tail_loss import unembedding

ENABLED = True  # False: every forward runs to its logits (benchmarks/collect_overhead.py times both)


class Stopped(Exception):
    """Raised by the unembedding's pre-hook inside `stopped`, which catches it: the forward ends there."""


def stop_point(model, hook_names: Iterable[str], tokens: torch.Tensor, attention_mask: torch.Tensor) -> nn.Module | None:
    """The unembedding to stop at, or None: ENABLED, the model has a plain unembedding and a hook-point index
    (`mod_dict`), and in one forward of `tokens` (one token is enough; no collector hook may be attached yet)
    every named hook point runs, each before the unembedding's first call, and none after it."""
    u = unembedding(model) if ENABLED else None
    points = getattr(model, "mod_dict", None)
    names = set(hook_names)
    if u is None or points is None or not all(isinstance(n, str) and n in points for n in names):
        return None
    order: list[str | None] = []
    handles = [points[n].register_forward_hook(lambda *a, n=n: order.append(n)) for n in names]
    handles.append(u.register_forward_pre_hook(lambda *a: order.append(None)))
    try:
        with torch.no_grad():
            model(tokens, attention_mask=attention_mask)
    finally:
        for h in handles:
            h.remove()
    if None not in order:
        return None  # the forward never called it (an output head this module does not know)
    before = order[:order.index(None)]
    return u if set(before) == names and not (set(order[len(before):]) - {None}) else None


@contextlib.contextmanager
def stopped(u: nn.Module) -> Iterator[None]:
    """Within: a forward ends as it enters `u` (its exception is caught here), and returns nothing."""
    def stop(module, args):
        raise Stopped

    handle = u.register_forward_pre_hook(stop)
    try:
        yield
    except Stopped:
        pass
    finally:
        handle.remove()
