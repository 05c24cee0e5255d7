"""The collector contract: forward hooks that fold each batch into fixed-shape float64 state, an exact merge.

A collector never keeps activation tensors. Its state is a `dict[str, Tensor]` of fixed shapes (set by `bind`
from the model's site map), and every key has a merge rule in `self.rules`:
  "sum"          counts, sums, sums of powers, histograms       merged by addition
  "max" / "min"  running extrema                                 merged element-wise
  "topk:<g>"     one field of top-k group g (see `TopK`)         merged by re-selecting the top k of both
so the state of two shards combined by `merge` equals the state of one run over both shards' batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd
import torch

Hook = tuple[str, Callable]
F64 = torch.float64


class NonFiniteError(FloatingPointError):
    """A hooked activation (or a loss) was NaN or infinite; statistics would be silently wrong."""


@dataclass
class Batch:
    """The batch being run: what hooks may read while the model runs on it.

    tokens [b, t] long; attention_mask [b, t] bool (real tokens); mask [b, t] bool: the positions that enter
    statistics (real tokens, minus the first of each sequence when `exclude_first`); index: batch number;
    first_seq: position in the whole run's data of the batch's first sequence (None: not known).
    """

    tokens: torch.Tensor
    attention_mask: torch.Tensor
    mask: torch.Tensor
    index: int = 0
    first_seq: int | None = None

    def __post_init__(self) -> None:
        self.full = bool(self.mask.all())
        self.n_tokens = int(self.mask.sum())
        # (tensor, its version, float64 (Σx, Σx²) of each of its selected rows [n, 2]) of the last tensor
        # ResidualStats read on CPU: what NormScales takes a norm's scale from when it hooks the same tensor
        self.stats: tuple | None = None
        # next-token CE [b, t - 1] (float32, 0 where the pair is not two real tokens) when the driver computed it
        # without logits (`tail_loss`): what collectors with reads_output = "ce" read; None otherwise
        self.ce: torch.Tensor | None = None

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """The masked positions of x [b, t, ...] as rows [n, ...] (a view when nothing is masked)."""
        return x.reshape(-1, *x.shape[2:]) if self.full else x[self.mask]


@dataclass(frozen=True)
class TopK:
    """A top-k buffer spread over state keys: `value` orders the rows (largest first), `fields` ride along.

    Ties in value are broken by the fields in order (smallest first), so the kept set does not depend on
    the order rows arrived in and merging is exact. Empty slots hold value -inf.
    """

    k: int
    value: str
    fields: tuple[str, ...]

    def keys(self) -> tuple[str, ...]:
        return (self.value, *self.fields)

    def empty(self) -> dict[str, torch.Tensor]:
        s = {f: torch.zeros(self.k, dtype=F64) for f in self.fields}
        s[self.value] = torch.full((self.k,), -torch.inf, dtype=F64)
        return s

    def select(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The top k of `rows` (1-D float64 tensors of equal length) under the total order above."""
        v = rows[self.value]
        if v.device.type == "cpu":  # one numpy lexsort (the last key leads): NaN first, value descending, fields
            vn = v.numpy()
            order = torch.from_numpy(np.lexsort([*(rows[f].numpy() for f in reversed(self.fields)), -vn,
                                                 ~np.isnan(vn)])[: self.k])
        else:
            order = torch.arange(len(v), device=v.device)
            for f in reversed(self.fields):  # lexicographic sort by stable sorts, least significant key first
                order = order[torch.sort(rows[f][order], stable=True).indices]
            order = order[torch.sort(v[order], descending=True, stable=True).indices]
            order = order[: self.k]
        out = {f: rows[f][order] for f in self.keys()}
        if len(order) < self.k:  # pad with empty slots
            pad = self.empty()
            out = {f: torch.cat([out[f], pad[f][len(order):].to(out[f].device)]) for f in self.keys()}
        return out

    def update(self, state: dict[str, torch.Tensor], rows: dict[str, torch.Tensor]) -> None:
        """Fold new candidate rows into the buffer held in `state`, in place. A row whose value lies below every
        value the buffer holds cannot enter it (k rows rank above it) and is dropped before the sort."""
        v, held = rows[self.value], state[self.value]
        keep = (v >= torch.where(held.isnan(), torch.inf, held).min()) | v.isnan()  # NaN ranks above every value
        if not bool(keep.all()):
            rows = {f: rows[f][keep] for f in self.keys()}
        merged = self.select({f: torch.cat([state[f], rows[f].to(F64)]) for f in self.keys()})
        state.update(merged)


class Collector:
    """Base class. Subclasses set `name`, build state in `bind`, return hooks, and turn state into tables."""

    name: ClassVar[str] = "collector"
    needs_grad: ClassVar[bool] = False  # True: the driver runs backward on the objective every batch
    # what end_batch reads of the model's output: "logits" (the output itself), "ce" (only the next-token CE,
    # `batch.ce`, which may come without logits: output is then None) or "none" (nothing)
    reads_output: str = "logits"

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}
        self.rules: dict[str, str] = {}
        self.topk: dict[str, TopK] = {}
        self.model = None
        self._card: tuple | None = None  # (model, its card), see `card`

    # --- set-up ---------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-serialisable): `type(self)(**c.config())` is a fresh twin."""
        return {}

    def bind(self, model) -> "Collector":
        """Allocate the state for `model` (shapes from its site map). Subclasses call `_add` for each key."""
        self.model = model
        if getattr(self, "_card", None) is not None and self._card[0] is not model:
            self._card = None
        return self

    def use_card(self, model, card, sites=None) -> None:
        """Hand the collector `model`'s card (and its site map, when given) before `bind`, so that a run reads
        `model.card` and `model.sites` once, not once per collector and table (a model's card counts its
        parameters, a walk over every module; a site map is rebuilt on each read)."""
        self._card = (model, card)
        self._sites = (model, sites) if sites is not None else None

    def site_map(self, model):
        """`model.sites`, or the site map `use_card` handed over for this model; a handed-over map serves one
        `bind` (a later bind reads the model again, which may have changed in between)."""
        given, self._sites = getattr(self, "_sites", None), None
        return given[1] if given is not None and given[0] is model else model.sites

    @property
    def card(self):
        """The bound model's card, read once (or handed over by `use_card`)."""
        if getattr(self, "_card", None) is None or self._card[0] is not self.model:
            self._card = (self.model, self.model.card)
        return self._card[1]

    @property
    def model_name(self) -> str:
        """The bound model's name ("" when unbound): the tables' model column."""
        return self.card.name if self.model is not None else ""

    def _add(self, key: str, tensor: torch.Tensor, rule: str) -> None:
        if rule not in ("sum", "max", "min") and not rule.startswith("topk:"):
            raise ValueError(f"unknown merge rule {rule!r} for state key {key!r}")
        self.state[key], self.rules[key] = tensor.to(F64), rule

    def _add_topk(self, group: str, buf: TopK) -> None:
        self.topk[group] = buf
        for key, t in buf.empty().items():
            self._add(key, t, f"topk:{group}")

    # --- running --------------------------------------------------------------------------------------
    def hooks(self, model) -> list[Hook]:
        """Forward hooks `(hook_name, fn(tensor, hook))`, registered by the driver for one forward."""
        return []

    def bwd_hooks(self, model) -> list[Hook]:
        """Backward hooks, used when `needs_grad`."""
        return []

    def begin_batch(self, batch: Batch) -> None:
        self.batch = batch

    def end_batch(self, model, batch: Batch, output: torch.Tensor | None) -> None:
        """Called after the forward (and backward) of a batch with hooks removed; may run extra passes."""

    # --- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, extra = set(self.state) - set(state), set(state) - set(self.state)
        if missing or extra:
            raise ValueError(f"{self.name}: state keys differ (missing {sorted(missing)}, unexpected {sorted(extra)})")
        for k, v in state.items():
            if v.shape != self.state[k].shape:
                raise ValueError(f"{self.name}: state {k!r} has shape {tuple(v.shape)}, expected "
                                 f"{tuple(self.state[k].shape)} (a different model or configuration?)")
            self.state[k] = v.to(F64).clone()

    def merge(self, other: "Collector") -> "Collector":
        """Fold `other` (same class, config and model shapes) into self, exactly; returns self."""
        if type(other) is not type(self) or other.config() != self.config():
            raise ValueError(f"cannot merge {type(other).__name__}{other.config()} into "
                             f"{type(self).__name__}{self.config()}")
        self.state = merge_states(self.state, other.state, self.rules, self.topk)
        return self

    def check_finite(self, where: str = "") -> None:
        """Raise NonFiniteError when a sum or extremum is NaN/inf, naming the site when the collector can."""
        for k, v in self.state.items():
            if v.device.type == "cpu":  # the common case, through numpy (no tensor allocated per key)
                if np.isfinite(v.numpy()).all():
                    continue
            elif bool(torch.isfinite(v).all()):
                continue
            rule = self.rules[k]
            bad = torch.isnan(v) | (torch.isinf(v) if rule == "sum" else
                                    (v == torch.inf) if rule == "max" else (v == -torch.inf) if rule == "min"
                                    else torch.zeros_like(v, dtype=torch.bool))
            if bool(bad.any()):
                raise NonFiniteError(f"{self.name}: non-finite activations (NaN or inf) {self.describe(k, bad)}"
                                     f"{where}; the model overflowed or its weights are broken — check the dtype "
                                     "(fp16 overflows above 65504) and the weights")

    def describe(self, key: str, bad: torch.Tensor) -> str:
        """Where a non-finite value in state `key` came from (subclasses name the hook site)."""
        return f"in state {key!r}"

    # --- output ---------------------------------------------------------------------------------------
    def result(self) -> pd.DataFrame:
        """The collector's main tidy table."""
        raise NotImplementedError

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table the collector produces, by name (the main one is `self.name`)."""
        return {self.name: self.result()}


_STR = pd.Series(["a"]).dtype  # pandas' default string dtype


def str_column(values, idx) -> pd.Series | np.ndarray:
    """values[idx] (strings) as a column of pandas' default string dtype, made by one arrow take instead of one
    Python string per row (the per-dimension tables have ~10⁴ rows); an object array where pandas keeps
    strings as objects."""
    idx = np.asarray(idx, dtype=np.int64)
    if getattr(_STR, "storage", None) != "pyarrow":
        return np.asarray(list(values), dtype=object)[idx]
    import pyarrow as pa
    arr = pa.array(list(values), type=pa.large_string()).take(pa.array(idx))
    return arr.to_pandas(types_mapper=lambda t: _STR)


def merge_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rules: dict[str, str],
                 topk: dict[str, TopK]) -> dict[str, torch.Tensor]:
    """Merge two states key by key according to `rules` (see the module docstring). Pure function."""
    if set(a) != set(b):
        raise ValueError(f"cannot merge states with different keys: {sorted(set(a) ^ set(b))}")
    out: dict[str, torch.Tensor] = {}
    for k, rule in rules.items():
        if a[k].shape != b[k].shape:
            raise ValueError(f"cannot merge state {k!r}: shapes {tuple(a[k].shape)} and {tuple(b[k].shape)}")
        if rule == "sum":
            out[k] = a[k] + b[k]
        elif rule == "max":
            out[k] = torch.maximum(a[k], b[k])
        elif rule == "min":
            out[k] = torch.minimum(a[k], b[k])
    for buf in topk.values():
        out.update(buf.select({f: torch.cat([a[f], b[f]]) for f in buf.keys()}))
    return out
