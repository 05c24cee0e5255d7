"""Where a low-precision forward first goes non-finite: the first hook point (the site) and the first module
(the op) whose output holds an inf or a NaN, with the token position, token and dim.

Hooks fire in execution order, and a module's forward hook fires after its children's, so the first module
reported is the innermost op that produced the first non-finite value (or, when the overflow happens in
functional code between modules, such as a residual add, the module that contains it). Hook points whose
observation would change the computation are not watched: `hook_scale` (a zoo norm leaves its fused kernel
when it is observed), `hook_attn_scores` and `hook_pattern` (the zoo's attention leaves SDPA; the scores hold
−inf by design).
"""
from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

UNWATCHED = ("hook_scale", "hook_attn_scores", "hook_pattern")


@dataclass
class Event:
    """The first non-finite tensor of one kind (hook or module) in a run."""

    name: str
    batch: int
    row: int = -1
    position: int = -1     # counted from the sequence's first real token; -1 when the tensor is not [b, t, ...]
    token_id: int = -1
    dim: int = -1
    value: str = ""        # "+inf", "-inf" or "nan"
    n_positions: int = 0   # real positions of the batch with a non-finite value in this tensor
    inputs_finite: bool = True


def layer_of(name: str) -> int:
    """The block index in a hook or module name (blocks.3..., model.layers.3..., encoder.layer.3...), or -1."""
    m = re.search(r"(?:blocks|layers|layer|h)\.(\d+)\.", name + ".")
    return int(m.group(1)) if m else -1


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.is_floating_point() else []
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


class Found(Exception):
    """Raised from a hook to end a forward whose answer is already known (`watching(..., stop=True)`)."""


@dataclass
class Watch:
    """Collects the first non-finite hook and module of a run, batch by batch (`batch` set before each forward)."""

    # not in repr: TransformerLens names every hook it adds by the hook's repr (a bound method's includes this)
    tokens: torch.Tensor | None = field(default=None, repr=False)
    mask: torch.Tensor | None = field(default=None, repr=False)
    batch: int = 0
    hook: Event | None = None
    module: Event | None = None
    _first: torch.Tensor | None = field(default=None, repr=False)
    stop: bool = field(default=False, repr=False)  # raise Found once both firsts are known (nothing later counts)

    def start_batch(self, tokens: torch.Tensor, mask: torch.Tensor, index: int) -> None:
        self.tokens, self.mask, self.batch = tokens, mask, index
        self._first = mask.long().argmax(1)  # left padding: positions count from the first real token

    @property
    def done(self) -> bool:
        return self.hook is not None and self.module is not None

    def locate(self, name: str, y: torch.Tensor, inputs_finite: bool = True) -> Event:
        """The event for non-finite tensor y: the earliest real position holding a non-finite value."""
        ev = Event(name, self.batch, inputs_finite=inputs_finite)
        bad = ~torch.isfinite(y.detach())
        b, t = self.mask.shape
        if y.dim() >= 2 and tuple(y.shape[:2]) == (b, t):
            per_pos = bad.reshape(b, t, -1).any(-1) & self.mask
            if not bool(per_pos.any()):  # only padding went non-finite
                return ev
            ev.n_positions = int(per_pos.sum())
            rel = torch.arange(t, device=self.mask.device)[None, :] - self._first[:, None]
            rel = torch.where(per_pos, rel, torch.full_like(rel, t + 1))
            row = int(rel.min(1).values.argmin())
            pos = int(per_pos[row].nonzero()[0, 0])
            ev.row, ev.position, ev.token_id = row, pos - int(self._first[row]), int(self.tokens[row, pos])
            flat = bad[row, pos].reshape(-1)
            ev.dim = int(flat.nonzero()[0, 0])
            v = float(y.detach()[row, pos].reshape(-1)[ev.dim])
        else:
            v = float(y.detach().reshape(-1)[bad.reshape(-1).nonzero()[0, 0]])
            ev.n_positions = -1
        ev.value = "nan" if math.isnan(v) else ("+inf" if v > 0 else "-inf")
        return ev

    def real_bad(self, y: torch.Tensor) -> bool:
        """Whether y holds a non-finite value at a real position (any position when y is not [b, t, ...])."""
        if bool(torch.isfinite(y).all()):
            return False
        b, t = self.mask.shape
        if y.dim() >= 2 and tuple(y.shape[:2]) == (b, t):
            return bool(((~torch.isfinite(y)).reshape(b, t, -1).any(-1) & self.mask).any())
        return True

    def on_hook(self, x: torch.Tensor, hook) -> None:
        if self.hook is None and x.is_floating_point() and self.real_bad(x.detach()):
            self.hook = self.locate(hook.name, x)
            self._stop_if_done()

    def _stop_if_done(self) -> None:
        if self.stop and self.done:
            raise Found

    def on_module(self, name: str):
        def fn(mod, args, out):
            if self.module is not None:
                return
            for y in _tensors(out):
                if self.real_bad(y.detach()):
                    fin = all(bool(torch.isfinite(a).all()) for a in _tensors(args))
                    self.module = self.locate(name, y, fin)
                    self._stop_if_done()
                    return
        return fn


@contextmanager
def watching(model, watch: Watch, stop: bool = False):
    """Attach `watch` to every watchable hook point (TransformerLens hooks) and every other module of `model`.
    With `stop`, the forward ends (Found, caught here) as soon as the first non-finite hook and module are known:
    the rest of the forward cannot change them."""
    watch.stop = stop
    names = [n for n in model.hook_dict if not n.endswith(UNWATCHED)]
    handles = [m.register_forward_hook(watch.on_module(n)) for n, m in model.named_modules()
               if n and not isinstance(m, HookPoint) and not isinstance(m, nn.ModuleList)]
    try:
        with model.hooks(fwd_hooks=[(n, watch.on_hook) for n in names]):
            try:
                yield watch
            except Found:
                if not stop:
                    raise
    finally:
        watch.stop = False
        for h in handles:
            h.remove()
