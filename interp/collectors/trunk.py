"""Forwards that stop before the unembedding when no collector reads the model's output.

The default collectors (residual statistics, massive activations, the angular layer effect, norm scales) read the
stream, never the logits, yet a full forward still forms them: the [tokens, vocab] product is a fifth of
SmolLM2-135M's forward and most of Gemma-3-270M's (a 262k vocabulary), and the logits of one batch of Gemma-3 take
1.2 GB. When every collector of a run reads nothing of the output (`Collector.reads_output == "none"`), the driver
runs its forwards through `Trunk.forward`: the first batch runs whole and shows in which order the hook points the
run uses fire; if all of them fire before the unembedding and none after it, every later forward stops as it enters
the unembedding. No statistic changes, since no hook the run uses would have fired later (nor any other hook: a
module with a hook of its own that runs or ends after the unembedding keeps every forward whole). The check runs
on the run's own first batch, not on an extra forward, so a model whose forward draws random numbers (an MDLM at a
fixed noise level) draws the same ones as before.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from interp.collectors.tail_loss import unembedding

ENABLED = True  # False: every forward runs to its logits (benchmarks/collect_overhead.py times both)


class Stopped(Exception):
    """Raised by the unembedding's pre-hook inside `stopped`, which catches it: the forward ends there."""


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


class Trunk:
    """The forwards of one run whose collectors read nothing of the output: `forward()` wraps each. The first
    records the order in which the named hook points and the unembedding fire, and every module that starts or ends
    once the unembedding has started; the later ones stop at the unembedding (`stop`) when that order allows it and
    none of those modules has a hook of its own (a hook on the logits, or on the whole model, that the stop would
    silence), and run whole otherwise. Inactive (every forward whole) when ENABLED is off, or the model has no plain
    unembedding or no index of its hook points (`mod_dict`)."""

    def __init__(self, model, hook_names: Iterable[str]):
        points = getattr(model, "mod_dict", None)
        self.names = set(hook_names)
        u = unembedding(model) if ENABLED else None
        known = points is not None and all(isinstance(n, str) and n in points for n in self.names)
        self.u, self.points = (u, points) if known else (None, None)
        self.stop: nn.Module | None = None  # the unembedding, once the first forward has shown it is safe
        self.decided = self.u is None

    @contextlib.contextmanager
    def forward(self) -> Iterator[None]:
        """Wraps one forward of the run (its output, if any, is not to be read)."""
        if self.stop is not None:
            with stopped(self.stop):
                yield
            return
        if self.decided:
            yield
            return
        order: list[str | None] = []  # hook point names as they fire; None where the unembedding starts
        late: dict[int, nn.Module] = {}  # modules that start or end once the unembedding has started

        def seen(module, *a):
            if started:
                late[id(module)] = module

        def enter(*a):
            started.append(True)
            order.append(None)

        started: list[bool] = []
        handles = [self.points[n].register_forward_hook(lambda *a, n=n: order.append(n)) for n in self.names]
        handles.append(self.u.register_forward_pre_hook(enter))
        handles += [register_module_forward_pre_hook(seen), register_module_forward_hook(seen)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
        self.decided = True
        quiet = not any(m._forward_hooks or m._forward_pre_hooks for m in late.values())  # nobody else listens there
        self.stop = self.u if quiet and safe(order, self.names) else None


def safe(order: list[str | None], names: set[str]) -> bool:
    """Whether a forward whose hook points and unembedding (None) fired in `order` could have stopped at the
    unembedding's first call: every name fired before it, none after it."""
    if None not in order:
        return False  # the forward never called it (an output head this module does not know)
    i = order.index(None)
    return set(order[:i]) == names and not set(order[i:]) - {None}
