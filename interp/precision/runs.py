"""End-to-end precision runs: the model in bf16, in fp16 and with int8 activations against fp32, on the same tokens.

Batch by batch, the fp32 model and each format's run see the same tokens; per format the table has the loss
(next-token CE for causal LMs; for other objectives the output's relative error ‖y − y₃₂‖ / ‖y₃₂‖, so the
fp32 value is 0), its change, the top-1 agreement with fp32 and, when a run goes non-finite, where it did so
first (watch.py: the first batch with non-finite outputs at real positions, not padding, is run once more,
watched) and what the fp32 model computes there. A run with a non-finite output at any real position (the last
token's too) gets loss = inf and status "overflow"; it is never averaged into a finite number. A format whose
forward raises gets status "error".

Formats: bf16 and fp16 (the model cast, see lowp.py), int8 (every nn.Linear / Conv1D input fake-quantized with
one scale per sequence, see int8.py) and int8-token (one scale per token).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from interp.collectors.objective import next_token_ce
from interp.precision.formats import FP16_MAX, FP16_OVERFLOW
from interp.precision.gemm import gemm_kinds
from interp.precision.int8 import MaskRef, int8_linear_inputs
from interp.precision.lowp import low_precision
from interp.precision.watch import Found, Watch, layer_of, watching

FORMATS = ("bf16", "fp16", "int8", "int8-token")
DEFAULT_FORMATS = ("bf16", "fp16", "int8")
COLUMNS = ["model", "format", "metric", "n_tokens", "loss", "loss_fp32", "delta_loss", "top1_agreement",
           "frac_nonfinite", "status", "first_hook", "first_module", "layer", "position", "token", "dim", "what",
           "fp32_ops", "seconds", "seconds_fp32"]


@dataclass
class _Acc:
    """Running sums of one format."""

    loss_sum: float = 0.0
    n: int = 0
    n_real: int = 0      # real positions, and those whose output is not finite (the last token's too)
    n_real_bad: int = 0
    agree: int = 0
    n_agree: int = 0
    err_sq: float = 0.0
    ref_sq: float = 0.0
    seconds: float = 0.0
    error: str = ""
    watched: bool = True  # a non-finite output is located (watch.py); False: watch=False, or an int8 run
    watch: Watch = field(default_factory=Watch)
    batches: dict = field(default_factory=dict)  # batch index -> (tokens, mask) of the batches events came from


def _is_lm(model) -> bool:
    return getattr(model.card, "objective", "causal_lm") == "causal_lm"


def _finite_positions(out: torch.Tensor) -> torch.Tensor:
    """[b, t] bool: every value of out[b, t] is finite. 0 · x is 0 for a finite x and NaN otherwise, and a sum of
    zeros cannot overflow: one multiply and one sum, ~4× faster than isfinite(out).all(-1) on 262k-wide logits."""
    return torch.isfinite((out * 0).reshape(*out.shape[:2], -1).sum(-1))


def _compare(model, acc: _Acc, out: torch.Tensor, ref: torch.Tensor, tokens: torch.Tensor, am: torch.Tensor,
             finite_pos: torch.Tensor | None = None, ref_top: torch.Tensor | None = None) -> None:
    """Fold one batch's output `out` of a format into `acc`, against the fp32 output `ref`. `finite_pos`
    (`_finite_positions(out)`) and, for LMs, `ref_top` (ref.argmax(-1)) may be passed when already computed."""
    finite_pos = _finite_positions(out) if finite_pos is None else finite_pos  # [b, t]
    acc.n_real += int(am.sum())
    acc.n_real_bad += int((am & ~finite_pos).sum())  # a last token predicts nothing here, but generation samples it
    if _is_lm(model):
        pair = am[:, :-1] & am[:, 1:]
        ok = finite_pos[:, :-1][pair]
        acc.n += int(pair.sum())
        if bool(ok.any()):  # CE in fp32 on the format's logits (upcast exactly), non-finite positions left out
            acc.loss_sum += float(next_token_ce(out, tokens, pair & finite_pos[:, :-1]).sum())
        ref_top = ref.argmax(-1) if ref_top is None else ref_top
        same = (out.argmax(-1)[:, :-1][pair] == ref_top[:, :-1][pair]) & ok  # argmax is unchanged by the upcast
        acc.agree += int(same.sum())
        acc.n_agree += int(pair.sum())
    else:
        ok = finite_pos[am]
        acc.n += int(am.sum())
        y, y32 = out[am].double(), ref[am].double()
        acc.err_sq += float((y[ok] - y32[ok]).square().sum())
        acc.ref_sq += float(y32.square().sum())
        if out.shape[-1] == getattr(getattr(model, "cfg", None), "d_vocab", -1):  # logits: top-1 is defined
            acc.agree += int(((y.argmax(-1) == y32.argmax(-1)) & ok).sum())
            acc.n_agree += int(am.sum())


def _reference_loss(model, ref: torch.Tensor, tokens: torch.Tensor, am: torch.Tensor) -> tuple[float, int]:
    if not _is_lm(model):
        return 0.0, int(am.sum())
    pair = am[:, :-1] & am[:, 1:]
    return float(next_token_ce(ref, tokens, pair).sum()), int(pair.sum())


def fp32_value(model, batch: tuple, name: str, kind: str, row: int, pos: int, dim: int) -> tuple[float, float]:
    """(the fp32 value at [row, pos, dim] of hook or module `name`, max |x| over that position) on `batch`."""
    tokens, am = batch
    got: dict = {}

    def grab(y):
        y = y[0] if isinstance(y, (tuple, list)) else y
        v = y.detach()[row, pos].reshape(-1).double()
        got["v"], got["m"] = float(v[dim]) if dim >= 0 else float("nan"), float(v.abs().max())
        raise Found  # the rest of the forward is not needed

    with torch.no_grad():
        try:
            if kind == "hook":
                with model.hooks(fwd_hooks=[(name, lambda x, hook: grab(x))]):
                    model(tokens, attention_mask=am)
            else:
                h = model.get_submodule(name).register_forward_hook(lambda m, a, y: grab(y))
                try:
                    model(tokens, attention_mask=am)
                finally:
                    h.remove()
        except Found:
            pass
    return got.get("v", float("nan")), got.get("m", float("nan"))


def _what(model, acc: _Acc, fmt: str) -> str:
    """One line saying what went non-finite first and what fp32 computes there."""
    ev = acc.watch.module or acc.watch.hook
    if ev is None:
        if not acc.watched:
            return "non-finite outputs; where they started was not looked for (only bf16 / fp16 runs with watch=True are)"
        return "non-finite logits; no hook or module output was non-finite before them"
    kind = "module" if ev is acc.watch.module else "hook"
    where = f"{ev.name} output" if kind == "module" else ev.name
    s = f"{where} became {ev.value}"
    if ev.position >= 0 and ev.batch in acc.batches:
        batch = acc.batches[ev.batch]
        v, m = fp32_value(model, batch, ev.name, kind, ev.row, ev.position + int(batch[1][ev.row].long().argmax()),
                          ev.dim)
        s += f" (dim {ev.dim}); fp32 computes {v:.4g} there, max |x| {m:.4g} at that token"
        if fmt == "fp16":
            s += (f": beyond fp16's max {FP16_MAX:.0f}" if m >= FP16_OVERFLOW else
                  ": within fp16's range, so an intermediate inside it overflowed")
    if kind == "module" and not ev.inputs_finite:
        s += "; its inputs were already non-finite (the overflow happened between modules)"
    elif kind == "module" and any(True for _ in model.get_submodule(ev.name).children()):
        s += "; its inputs and its submodules' outputs were finite: the overflow is in its own code (e.g. the residual add)"
    return s


def _row(model, fmt: str, acc: _Acc, loss32: float, n32: int, sec32: float, notes: list[str]) -> dict:
    lm = _is_lm(model)
    tok = getattr(model, "tokenizer", None)
    r = {"model": model.card.name, "format": fmt, "metric": "next_token_ce" if lm else "output_rel_error",
             "n_tokens": acc.n, "loss_fp32": loss32 / max(n32, 1) if lm else 0.0, "first_hook": "", "first_module": "",
             "layer": -1, "position": -1, "token": "", "dim": -1, "what": "", "fp32_ops": "; ".join(notes),
             "seconds": acc.seconds, "seconds_fp32": sec32, "frac_nonfinite": acc.n_real_bad / max(acc.n_real, 1)}
    if acc.error:
        return dict(r, loss=math.nan, delta_loss=math.nan, top1_agreement=math.nan, status="error",
                    what=acc.error)
    if lm:
        loss = math.inf if acc.n_real_bad else acc.loss_sum / max(acc.n, 1)
    else:
        loss = math.inf if acc.n_real_bad else math.sqrt(acc.err_sq / acc.ref_sq) if acc.ref_sq > 0 else 0.0
    r.update(loss=loss, delta_loss=loss - r["loss_fp32"],
             top1_agreement=acc.agree / acc.n_agree if acc.n_agree else math.nan,
             status="overflow" if acc.n_real_bad else "ok")
    w = acc.watch
    if w.hook is not None or w.module is not None or acc.n_real_bad:
        ev = w.hook or w.module
        r.update(first_hook=w.hook.name if w.hook else "", first_module=w.module.name if w.module else "",
                 what=_what(model, acc, fmt))
        if ev is not None:
            r.update(layer=layer_of(ev.name), position=ev.position, dim=ev.dim,
                     token="" if ev.token_id < 0 else (tok.decode([ev.token_id]) if tok is not None else str(ev.token_id)))
    return r


def precision_runs(model, data, formats: tuple[str, ...] = DEFAULT_FORMATS, batch_size: int = 8,
                   max_tokens: int | None = None, linear: str = "fp32-accumulate", watch: bool = True,
                   progress: bool = True) -> pd.DataFrame:
    """One row per format (see COLUMNS, documented in docs/results.md): `model` (fp32) against itself in each
    format on `data` (what interp.collect takes), in eval mode. watch=False skips locating the first non-finite
    value. The model's train / eval mode is set back afterwards, module by module."""
    formats = (formats,) if isinstance(formats, str) else formats  # "fp16" is one format, not four letters
    formats = tuple(dict.fromkeys(formats))  # a format named twice runs once (one row per format)
    training = [m for m in model.modules() if m.training]
    model.eval()
    try:
        return _runs(model, data, formats, batch_size, max_tokens, linear, watch, progress)
    finally:
        for m in training:
            m.training = True


def _runs(model, data, formats: tuple[str, ...], batch_size: int, max_tokens: int | None, linear: str, watch: bool,
          progress: bool) -> pd.DataFrame:
    from interp.collectors.batches import batches, model_context, to_sequences
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown precision format(s) {unknown or formats}; choose from {', '.join(FORMATS)}")
    p = next(iter(model.parameters()))
    if p.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"precision runs compare against the fp32 model, but {model.card.name} is {p.dtype}; "
                         "load it with dtype='fp32'")
    seqs = to_sequences(model, data, model_context(model), "split", max_tokens)
    if _is_lm(model) and not any(len(s) > 1 for s in seqs):  # else every loss would be 0 / 0, reported as 0
        raise ValueError(f"precision runs need a sequence of at least 2 tokens (one next-token prediction); got "
                         f"{sum(map(len, seqs))} token(s) in {len(seqs)} sequence(s): give more tokens "
                         "(--run-tokens / max_tokens ≥ 2)")
    tok = getattr(model, "tokenizer", None)
    pad_id, side = (tok.pad_id, tok.padding_side) if tok is not None else (0, "right")
    twins, notes = {}, {}
    for fmt in formats:
        notes[fmt] = []
        if fmt in ("bf16", "fp16"):
            twins[fmt], notes[fmt] = low_precision(model, fmt, linear)
        else:
            per = "tensor (sequence)" if fmt == "int8" else "token"
            notes[fmt] = [f"weights fp32; {gemm_kinds(model)} inputs int8 per {per}"]
    accs = {fmt: _Acc(watched=watch and fmt in twins) for fmt in formats}
    ref_mask = MaskRef()
    loss32 = sec32 = 0.0
    n32 = 0
    bar = tqdm(total=sum(map(len, seqs)), unit="tok", desc="precision", disable=not progress, leave=False)
    try:
        with torch.no_grad():
            for i, (tokens, am) in enumerate(batches(seqs, batch_size, pad_id, side)):
                tokens, am = tokens.to(p.device), am.to(p.device)
                t0 = time.perf_counter()
                ref = model(tokens, attention_mask=am)
                sec32 += time.perf_counter() - t0
                l, n = _reference_loss(model, ref, tokens, am)
                loss32, n32 = loss32 + l, n32 + n
                ref_mask.mask = am
                ref_top = ref.argmax(-1) if _is_lm(model) else None  # fp32 top-1, shared by every format
                for fmt, acc in accs.items():
                    if acc.error:
                        continue
                    t0 = time.perf_counter()
                    try:
                        if fmt in twins:
                            out = twins[fmt](tokens, attention_mask=am)
                        else:
                            with int8_linear_inputs(model, "tensor" if fmt == "int8" else "token", ref_mask):
                                out = model(tokens, attention_mask=am)
                        acc.seconds += time.perf_counter() - t0
                        fin = _finite_positions(out)
                        if fmt in twins and watch and not acc.watch.done and not bool((fin | ~am).all()):
                            acc.watch.start_batch(tokens, am, i)  # rerun this batch watched: where did it start?
                            with watching(twins[fmt], acc.watch, stop=True):  # ends at the first overflow
                                twins[fmt](tokens, attention_mask=am)
                            acc.batches[i] = (tokens, am)
                    except (RuntimeError, NotImplementedError) as e:
                        acc.error = f"{fmt} forward failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                        continue
                    _compare(model, acc, out, ref, tokens, am, fin, ref_top)
                bar.update(int(am.sum()))
    finally:
        bar.close()
        ref_mask.mask = None
    rows = [_row(model, fmt, accs[fmt], loss32, n32, sec32, notes[fmt]) for fmt in formats]
    return pd.DataFrame(rows, columns=COLUMNS)
