"""Many variants of one forward pass, each paying only for the blocks after the point where it differs.

A *variant* says: "the residual stream at depth s is x" (depth s = the input of block s; depth L = the output
of the last block). Skipping block ℓ is the variant (ℓ + 1, stream at depth ℓ); ablating the stream at depth j
is (j, edited stream at depth j). Every variant agrees with the intact forward before its depth, so that part
is taken from the intact run instead of being recomputed.

`run_variants` stacks the variants along the batch dimension and runs the model's own forward once on the
tiled tokens, with each block's `forward` swapped for one that
  - writes the variants that start at this block into their rows,
  - runs the block only on the rows of variants that have started (variants are ordered by depth, so those
    rows are a leading slice of the batch: a view, and every batch-shaped argument the model passes to the
    block — attention mask, rotary tables, position ids, relative-position bias — is sliced the same way, and
    so is per-forward state the model sets on the block's modules: the zoo's conditioning and rotary positions),
  - leaves the other rows untouched.
Blocks before the first start run on no rows at all. The embedding, the masks and the model's tail (final
norm, unembedding, soft-capping, whatever the model does) run on all rows as the model itself does them, so
the outputs are the model's own. Rows are independent in eval mode (no batch statistics), which is what makes
this exact; the model must be in eval mode. Cost: Σ over variants of (L − s) blocks, plus the tail per variant.
"""
from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn


def layer_list(model) -> nn.ModuleList:
    """The model's blocks as the modules its forward loops over (zoo: `blocks`; wrapped transformers models:
    their own layer list): the first `nn.ModuleList` of `n_layers` modules that all hold parameters."""
    from interp.collectors.grads import block_parameters
    L = model.sites.n_layers
    block_parameters(model, L)  # raises the clear error when there is no such list
    for _, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) == L and all(any(True for _ in b.parameters()) for b in m):
            return m
    raise AssertionError("unreachable")  # block_parameters found one


def _slice(obj, rows: int, batch: int):
    """obj with every tensor whose leading dimension is the tiled batch cut to its first `rows` rows."""
    if isinstance(obj, torch.Tensor):
        return obj[:rows] if obj.dim() >= 2 and obj.shape[0] == batch and rows < batch else obj
    if isinstance(obj, tuple):
        return tuple(_slice(o, rows, batch) for o in obj)
    if isinstance(obj, list):
        return [_slice(o, rows, batch) for o in obj]
    if isinstance(obj, dict):
        return {k: _slice(v, rows, batch) for k, v in obj.items()}
    return obj


@contextlib.contextmanager
def _sliced_state(layer: nn.Module, rows: int, batch: int) -> Iterator[None]:
    """Within the block, per-forward tensors the model set on the block's modules as plain attributes (not
    parameters or buffers) whose leading dimension is the tiled batch are cut to their first `rows` rows, like the
    block's arguments: the zoo's conditioning (adaLN `cond`, the norms' `cond` and `token_mask`) and rotary
    positions. Restored afterwards."""
    saved = []
    if rows < batch:
        for m in layer.modules():
            for k, v in list(vars(m).items()):
                if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == batch:
                    saved.append((m, k, v))
                    setattr(m, k, v[:rows])
    try:
        yield
    finally:
        for m, k, v in saved:
            setattr(m, k, v)


_TUPLE: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()  # block -> returns a tuple


def _probe(layer: nn.Module, orig: Callable, hidden: torch.Tensor, args, kwargs):
    """Learn whether `layer` returns a tuple by running it once on one row (then remembered)."""
    n = hidden.shape[0]
    out = orig(hidden[:1], *_slice(args, 1, n), **_slice(kwargs, 1, n))
    _TUPLE[layer] = isinstance(out, tuple)
    return (hidden, *out[1:]) if isinstance(out, tuple) else None


@contextlib.contextmanager
def _swapped(layers: nn.ModuleList, starts: Sequence[int], xs: Sequence[torch.Tensor], b: int) -> Iterator[None]:
    """Swap each block's forward for the variant-aware one described in the module docstring."""
    L, K = len(layers), len(starts)
    originals = [layer.forward for layer in layers]

    def make(i: int, orig: Callable):
        layer = layers[i]
        begin = [k for k in range(K) if starts[k] == i]      # variants whose stream is given at depth i
        after = [k for k in range(K) if starts[k] == i + 1 == L]  # given at depth L: written after the last block
        active = sum(1 for s in starts if s <= i) * b           # rows that run this block

        def forward(hidden, *args, **kwargs):
            if begin:
                hidden = hidden.clone()
                for k in begin:
                    hidden[k * b:(k + 1) * b] = xs[k].to(hidden.dtype)
            if active:
                with _sliced_state(layer, active, K * b):
                    out = orig(_slice(hidden, active, K * b), *_slice(args, active, K * b),
                               **_slice(kwargs, active, K * b))
                h = out[0] if isinstance(out, tuple) else out
                _TUPLE[layer] = isinstance(out, tuple)
                if active < K * b:
                    h = torch.cat([h, hidden[active:]])
            else:  # no row runs this block; the model still expects the block's own output structure
                out, h = (_probe(layer, orig, hidden, args, kwargs) if _TUPLE.get(layer) is None else
                          (hidden,) if _TUPLE[layer] else None), hidden
            if after:
                h = h.clone()
                for k in after:
                    h[k * b:(k + 1) * b] = xs[k].to(h.dtype)
            return (h, *out[1:]) if isinstance(out, tuple) else h  # out[1:]: the block's extras (attention maps)
        return forward

    try:
        for i, layer in enumerate(layers):
            layer.forward = make(i, originals[i])
        yield
    finally:
        for layer in layers:
            if "forward" in layer.__dict__:
                del layer.forward


def run_stacked(model, tokens: torch.Tensor, attention_mask: torch.Tensor,
                variants: Sequence[tuple[int, torch.Tensor]]) -> tuple[torch.Tensor, list[int]]:
    """(the model's output on the variants stacked along the batch, order): one forward on the tokens tiled once
    per variant, variant order[j] in rows j·b .. (j + 1)·b (sorted by start depth)."""
    if any(m.training for m in model.modules()):
        raise ValueError("run_variants needs the model in eval mode (training-mode batch statistics would mix "
                         "the variants' rows); call model.eval()")
    layers = layer_list(model)
    L, b = len(layers), tokens.shape[0]
    bad = [s for s, _ in variants if not 0 <= s <= L]
    if bad:
        raise ValueError(f"variant start depths {bad} outside 0..{L}")
    order = sorted(range(len(variants)), key=lambda k: variants[k][0])
    starts = [variants[k][0] for k in order]
    xs = [variants[k][1].detach() for k in order]
    K = len(order)
    with torch.no_grad(), _swapped(layers, starts, xs, b):
        out = model(tokens.repeat(K, 1), attention_mask=attention_mask.repeat(K, 1))
    return out, order


def run_variants(model, tokens: torch.Tensor, attention_mask: torch.Tensor,
                 variants: Sequence[tuple[int, torch.Tensor]]) -> list[torch.Tensor]:
    """The model's output [b, t, ...] for each variant (start depth s, stream x [b, t, d] at depth s) on
    `tokens` [b, t], in the order given; one forward over the variants stacked along the batch."""
    if not variants:
        return []
    out, order = run_stacked(model, tokens, attention_mask, variants)
    b = tokens.shape[0]
    res: list[torch.Tensor] = [None] * len(order)  # type: ignore[list-item]
    for j, k in enumerate(order):
        res[k] = out[j * b:(j + 1) * b]
    return res


def chunks(n: int, per_variant_bytes: int, budget: int = 256 * 2 ** 20) -> list[range]:
    """Split n variants into consecutive groups whose stacked outputs stay under `budget` bytes."""
    size = max(1, budget // max(per_variant_bytes, 1))
    return [range(i, min(i + size, n)) for i in range(0, n, size)]
