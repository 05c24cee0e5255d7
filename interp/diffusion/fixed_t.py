"""Run an MDLM zoo model at a fixed noise level t: every forward masks its input at rate t and passes cond = t.

`at_noise_level(model, t)` patches the model's forward for the duration of a `with` block, so the existing
collectors (`interp.collect`) run unchanged on clean token ids: inside, each batch is masked as in training
(position 0 kept, each later real token → [MASK] with probability t, drawn from a generator seeded once per
block) and the model is conditioned on t. Statistics then pool masked and unmasked positions alike.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from interp.train.mdlm import check_mdlm, check_t, sample_masks


@contextlib.contextmanager
def at_noise_level(model: nn.Module, t: float, seed: int = 0) -> Iterator[nn.Module]:
    """Within the block, `model(tokens, attention_mask=None, cond=None)` runs on tokens masked at rate `t`
    with cond = t (a cond passed explicitly is refused: t is fixed here)."""
    mask_id = check_mdlm(model)
    tt = float(check_t(torch.tensor([t]))[0])
    outer = getattr(model.forward, "noise_level", None)
    if outer is not None:
        raise ValueError(f"the model already runs at the fixed noise level t = {outer}; leave that block first")
    gen = torch.Generator().manual_seed(seed)
    plain, patched = model.forward, vars(model).get("forward")  # patched: a forward set on the instance before

    def forward(tokens: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            raise ValueError(f"the model runs at the fixed noise level t = {tt} here; do not pass cond")
        _, masked = sample_masks(tokens, torch.full((tokens.shape[0],), tt), mask_id, gen)
        if attention_mask is not None:
            masked &= attention_mask.bool()
        cond = torch.full((tokens.shape[0],), tt, device=tokens.device)
        return plain(tokens.masked_fill(masked, mask_id), attention_mask=attention_mask, cond=cond)

    forward.noise_level = tt
    model.forward = forward
    try:
        yield model
    finally:
        if patched is None:
            del model.forward
        else:
            model.forward = patched


def collect_over_t(model: nn.Module, data, ts: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
                   collectors=None, seed: int = 0, **kwargs) -> dict[float, object]:
    """t → `Results` of `interp.collect` at that noise level; `collectors`: a callable returning fresh collectors
    (each t needs its own; default: residual statistics and massive activations); `kwargs` go to
    `interp.collectors.collect` (batch_size, max_tokens, progress ...)."""
    from interp.collectors import MassiveActivations, ResidualStats, collect
    if collectors is not None and not callable(collectors):
        raise ValueError("collectors must be a callable returning fresh collectors, one set per t (e.g. "
                         f"lambda: [ResidualStats()]); got {type(collectors).__name__}")
    ts = [float(t) for t in ts]
    if not ts or len(set(ts)) < len(ts):  # the dict is keyed by t: a repeat would overwrite the earlier run
        raise ValueError(f"ts must be distinct noise levels, at least one; got {ts}")
    out = {}
    for t in ts:
        cols = collectors() if collectors is not None else [ResidualStats(), MassiveActivations()]
        with at_noise_level(model, t, seed):
            out[float(t)] = collect(model, data, collectors=cols, **kwargs)
    return out
