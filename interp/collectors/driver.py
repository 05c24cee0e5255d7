"""`collect(model, data, collectors)`: run the model over the data once, every collector hooked, and return
`Results`. Hooks go through the HookedRootModule's `hooks()` context, so none outlives the call."""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import time
from collections import Counter
from typing import Sequence

import torch
from tqdm.auto import tqdm
from transformer_lens.hook_points import HookPoint

from interp.collectors.base import Batch, Collector, NonFiniteError
from interp.collectors.batches import batches, model_context, to_sequences
from interp.collectors.objective import loss_terms, objective_name
from interp.collectors.results import Results
from interp.collectors.tail_loss import final_stream, fused_possible, pair_ce, tail_matches
from interp.collectors.trunk import Trunk
from interp.device import model_device


def default_collectors() -> list[Collector]:
    """The forward-only collectors (no backward, no extra passes): what `collect` runs by default."""
    from interp.collectors import LayerEffect, MassiveActivations, NormScales, ResidualStats
    return [ResidualStats(), MassiveActivations(), LayerEffect(skip=False), NormScales()]


_HEAP_KEPT = False


def keep_heap() -> None:
    """Once per process, on glibc: keep freed heap memory up to 256 MB instead of returning it to the system at
    every free (M_TRIM_THRESHOLD), and serve allocations under 32 MB from the heap (M_MMAP_THRESHOLD, the top
    of glibc's own adaptive range). A collector's small allocations between a batch's forward and the next
    otherwise leave the freed forward temporaries at the top of the heap, which glibc then hands back and the
    next forward faults in again, page by page (~30 MB per batch of 512 tokens on the zoo model: a tenth of the
    forward's CPU time). Peak memory is unchanged; the process keeps up to 256 MB of freed heap for reuse.
    INTERP_KEEP_HEAP=0 leaves malloc as it is."""
    global _HEAP_KEPT
    if _HEAP_KEPT:
        return
    _HEAP_KEPT = True
    if os.environ.get("INTERP_KEEP_HEAP", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - glibc always has it
        return
    mallopt(-3, 32 << 20)   # M_MMAP_THRESHOLD
    mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD


def first_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """True at the first real token of each row (handles left padding)."""
    first = attention_mask.long().argmax(1)
    m = torch.zeros_like(attention_mask)
    m[torch.arange(len(m)), first] = True
    return m & attention_mask


def gated(fn, live: list[bool]):
    """fn as a hook that acts only while live[0] is set (hooks stay registered for a whole run)."""
    def hook(x, hook):
        if live[0]:
            return fn(x, hook)
    return hook


def gated_all(fns: list, live: list[bool]):
    """The hooks fns of one hook point as one gated hook: each in turn, in the order given, and each sees
    what the one before returned (as separate hooks would); a hook point dispatches one hook instead of many."""
    if len(fns) == 1:
        return gated(fns[0], live)

    def hook(x, hook):
        if live[0]:
            changed = False
            for fn in fns:
                out = fn(x, hook)
                if out is not None:
                    x, changed = out, True
            return x if changed else None
    return hook


def merged(hooks: list, live: list[bool]) -> list:
    """[(name, fn)] -> one gated hook per hook name (first appearance order), calling its fns in order."""
    by: dict = {}
    for name, fn in hooks:
        by.setdefault(name, []).append(fn)
    return [(name, gated_all(fns, live)) for name, fns in by.items()]


def direct(hp, fn) -> bool:
    """Attach the forward hook fn to the hook point hp as its own `forward` (an instance attribute), where
    PyTorch's module call takes its fast path: no hook dispatch (~20 µs a call, 70+ calls a batch on a 12-layer
    model). Only on a plain HookPoint with nothing else attached and no conversion (a bridge's); False (nothing
    done) otherwise, and the caller registers fn as a PyTorch hook. `interp.norms.base.observed` counts it."""
    if type(hp) is not HookPoint or hp.hook_conversion is not None or "forward" in hp.__dict__ \
            or hp._forward_hooks or hp._forward_pre_hooks:
        return False

    def forward(x):
        out = fn(x, hook=hp)
        return x if out is None else out
    hp.forward = forward
    hp._interp_direct = True  # what `observed` reads: another tool may set a module's forward too (nnsight does)
    return True


@contextlib.contextmanager
def attached(model, fwd: list, bwd: list):
    """`model.hooks(fwd_hooks=fwd, bwd_hooks=bwd)`, but on exit only the hook points it used are reset (the
    HookedRootModule resets every hook point of the model, hundreds of module setattrs: ms per run). A hook
    point with one forward hook of this call and nothing else attached runs it directly (`direct`)."""
    points = getattr(model, "mod_dict", None)
    if points is None or not all(isinstance(n, str) and n in points for n, _ in fwd + bwd):
        with model.hooks(fwd_hooks=fwd, bwd_hooks=bwd):
            yield
        return
    model.context_level += 1
    level, used, direct_on = model.context_level, {}, []
    once = {n for n, c in Counter(n for n, _ in fwd).items() if c == 1}
    try:
        for name, fn in fwd:
            if name in once and direct(points[name], fn):
                direct_on.append(points[name])
            else:
                used[name] = points[name]
                used[name].add_hook(fn, dir="fwd", level=level)
        for name, fn in bwd:
            used[name] = points[name]
            used[name].add_hook(fn, dir="bwd", level=level)
        yield
    finally:
        for hp in direct_on:
            del hp.forward, hp._interp_direct
        for hp in used.values():
            hp.remove_hooks("both", including_permanent=False, level=level)
        model.context_level -= 1


def ce_without_logits(model, collectors: Sequence[Collector], seqs: list, pad_id: int, side: str,
                      device) -> torch.nn.Linear | None:
    """The unembedding to take each batch's next-token CE through without logits (`tail_loss`), or None: the
    collectors read no more of the output than the CE (some read it), and the model's own tail, run on one token
    with no collector hook live, matches its declared multiplier and soft-cap."""
    uses = {c.reads_output for c in collectors}
    u = fused_possible(model) if "ce" in uses and uses <= {"ce", "none"} and seqs else None
    if u is None:
        return None
    tokens, am = next(iter(batches(seqs[:1], 1, pad_id, side)))
    tokens, am = tokens[:, :1].to(device), am[:, :1].to(device)
    with torch.no_grad(), final_stream(u) as got:
        out = model(tokens, attention_mask=am)
    return u if tail_matches(model, u, got.get("h"), out, (1, 1)) else None


def run_batches(model, data, collectors: Sequence[Collector], batch_size: int = 8,
                max_tokens: int | None = None, exclude_first: bool = False, overflow: str = "split",
                progress: bool = True, first_seq: int = 0, first_batch: int = 0) -> dict:
    """Feed every batch through the model with the collectors' hooks; collectors must already be bound.
    first_seq / first_batch: position of data's first sequence and batch in the whole run (a shard's batch),
    what `Batch` and error messages carry. Returns run metadata (tokens, sequences, batches, seconds)."""
    seqs = to_sequences(model, data, model_context(model), overflow, max_tokens)
    tok = getattr(model, "tokenizer", None)
    pad_id, side = (tok.pad_id, tok.padding_side) if tok is not None else (0, "right")
    live = [False]  # hooks act only during a batch's own forward (and backward), not in end_batch's extra passes
    fwd = merged([(name, fn) for c in collectors for name, fn in c.hooks(model)], live)
    bwd = [(name, gated(fn, live)) for c in collectors for name, fn in c.bwd_hooks(model)]
    grad = any(c.needs_grad for c in collectors)
    device = next(iter(model.parameters())).device
    if device.type == "cpu":
        keep_heap()
    training = [m for m in model.modules() if m.training]  # set back after the run (a wrapper may differ)
    for m in training:  # model.eval() module by module, only where needed: a walk of setattrs costs ms
        m.training = False
    n_tok, t0 = 0, time.perf_counter()
    bar = tqdm(total=sum(map(len, seqs)), unit="tok", desc="collect", disable=not progress, leave=False)
    hooked = contextlib.ExitStack()
    try:
        u = None if grad else ce_without_logits(model, collectors, seqs, pad_id, side, device)  # before any hook
        # no collector reads the output: the forwards after the first may stop at the unembedding (`trunk`)
        trunk = None if grad or any(c.reads_output != "none" for c in collectors) else Trunk(model, [n for n, _ in fwd])
        hooked.enter_context(attached(model, fwd, bwd))  # once per run: registering costs ms
        for i, (tokens, am) in enumerate(batches(seqs, batch_size, pad_id, side), first_batch):
            tokens, am = tokens.to(device), am.to(device)  # the model's device (interp.device)
            mask = am & ~first_mask(am) if exclude_first else am
            batch = Batch(tokens, am, mask, i, first_seq + (i - first_batch) * batch_size)
            for c in collectors:
                c.begin_batch(batch)
            if grad:
                model.zero_grad(set_to_none=True)
            live[0] = True
            try:
                with contextlib.nullcontext() if grad else torch.no_grad():
                    if u is not None:  # the collectors read only the CE: it is taken without logits
                        with final_stream(u) as got:
                            model(tokens, attention_mask=am)
                        if tuple(got["h"].shape[:2]) != tuple(tokens.shape):
                            raise RuntimeError(f"the unembedding saw {tuple(got['h'].shape[:2])} positions of batch "
                                               f"{i} [b, t] = {tuple(tokens.shape)}; set interp.collectors."
                                               "tail_loss.FUSED = False to take the CE from the logits")
                        pair = am[:, :-1] & am[:, 1:]
                        batch.ce = torch.zeros(pair.shape, dtype=torch.float32, device=device)
                        batch.ce[pair] = pair_ce(model, u, got["h"], tokens, pair)
                        out = None
                    elif trunk is not None:
                        with trunk.forward():
                            model(tokens, attention_mask=am)
                        out = None
                    else:
                        out = model(tokens, attention_mask=am)
                    if grad:
                        terms = loss_terms(model, out, tokens, am)
                        if not bool(torch.isfinite(terms).all()):
                            raise NonFiniteError(f"the {objective_name(model)} objective is not finite in batch "
                                                 f"{i}; the model's outputs overflowed or its weights are broken")
                        terms.sum().backward()
            finally:
                live[0] = False
            with torch.no_grad():
                for c in collectors:
                    c.end_batch(model, batch, None if out is None else out.detach())
            out = terms = None  # the logits [b, t, vocab] (and the graph) must not live on through the next forward
            for c in collectors:
                c.check_finite(f" in batch {i}")
            n_tok += int(am.sum())
            bar.update(int(am.sum()))
    finally:
        hooked.close()
        bar.close()
        if grad:
            model.zero_grad(set_to_none=True)
        for m in training:
            m.training = True
    return {"n_tokens": n_tok, "n_sequences": len(seqs), "n_batches": -(-len(seqs) // batch_size),
            "batch_size": batch_size, "exclude_first": exclude_first, "overflow": overflow,
            "seconds": time.perf_counter() - t0}


def states_to(collectors: Sequence[Collector], device: torch.device | str) -> None:
    """Move every collector's state to `device`: the model's while it runs (what the hooks add to it is computed
    there; the state is made on the CPU by `bind`), the CPU for the tables. A no-op where it is there already."""
    for c in collectors:
        c.state = {k: v.to(device) for k, v in c.state.items()}


def check_measured(n_tokens: int, n_sequences: int, exclude_first: bool) -> None:
    """Refuse a run that measured no token (exclude_first on one-token sequences): its tables would be NaN."""
    if exclude_first and n_tokens - n_sequences <= 0:
        raise ValueError(f"exclude_first leaves no token to measure: each of the {n_sequences} sequences holds only "
                         "its first token; pass longer sequences or drop exclude_first")


def check_collectors(collectors) -> list:
    """The collectors to run (the defaults when None); refuses an empty list and two of one name."""
    collectors = list(collectors) if collectors is not None else default_collectors()
    if not collectors:
        raise ValueError("no collectors given; pass e.g. [interp.collectors.ResidualStats()] or leave the default")
    names = [c.name for c in collectors]
    if len(set(names)) != len(names):
        raise ValueError(f"two collectors share a name in {names}; run each kind once")
    return collectors


def collect(model, data, collectors: Sequence[Collector] | None = None, batch_size: int = 8,
            max_tokens: int | None = None, exclude_first: bool = False, overflow: str = "split",
            progress: bool = True) -> Results:
    """Run `collectors` (default: every forward-only collector) over `data` and return their tables.

    data: texts, token-id lists, a [n, t] token tensor or (tokens, mask); texts longer than the context are
    split into windows (overflow="truncate" keeps the first window). exclude_first drops position 0 (BOS)
    from every statistic. max_tokens caps the tokens read (the last sequence is cut to fit).
    """
    collectors = check_collectors(collectors)
    card = model.card  # read once: a model's card walks its parameters
    sites = model.sites if hasattr(type(model), "sites") else None  # and its site map, rebuilt on each read
    for c in collectors:
        c.use_card(model, card, sites)
        c.bind(model)
    states_to(collectors, model_device(model))  # float64 wherever the model runs
    meta = run_batches(model, data, collectors, batch_size, max_tokens, exclude_first, overflow, progress)
    check_measured(meta["n_tokens"], meta["n_sequences"], exclude_first)
    states_to(collectors, "cpu")
    meta["collectors"] = {c.name: {"type": type(c).__name__, **c.config()} for c in collectors}
    tables: dict = {}
    for c in collectors:
        tables.update(c.tables())
    return Results(tables=tables, card=card, meta=meta, states={c.name: c.state_dict() for c in collectors})
