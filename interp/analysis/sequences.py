"""Per-sequence statistics of the residual stream and the loss: what the bootstrap over held-out sequences needs.

The report's other collectors pool over sequences; an interval for a single model (one seed, or a real
model) needs each sequence's share. This collector rides the same forward pass and keeps, per sequence s and
stream depth j (`model.sites.stream()`: 0 = input of block 0, j = output of block j−1), over the positions
that enter statistics (`batch.mask`):

  n       elements counted (tokens × d_model)        s1, s2   Σx and Σx² (pooled variance of any set of
  sabs    Σ|x|                                                 sequences = Σs2/Σn − (Σs1/Σn)²)
  top1    max |x|                                    median   lower median of |x| over the sequence's hidden
                                                              state at that depth (Sun et al. 2024's median)
  ang     arccos(cos(h_j, h_j+1))/π on the sequence's last counted token (Mix-LN's angular distance, n = 1)
and, for causal LMs, the summed next-token cross-entropy and the number of predicted tokens per sequence.
Sequence s sits in slot s, its position in the run's data (`Batch.first_seq` + row; a shard of
`collect_sharded` or a resumed run is given its batches' global positions), so the states of disjoint shards
merge by addition into one run's.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from interp.collectors import seq_kernels
from interp.collectors.base import F64, Collector
from interp.collectors.effect import angular, last_real
from interp.collectors.objective import is_causal, token_ce

STREAM_KEYS = ("n", "s1", "s2", "sabs", "top1", "median", "ang")


class SequenceStats(Collector):
    """Per-sequence, per-depth sums of the stream, |x| extremes and medians, angular distance, and loss."""

    name = "seq_stats"
    reads_output = "ce"  # the per-sequence loss only: batch.ce when the driver computed it without logits

    def __init__(self, max_sequences: int = 512):
        super().__init__()
        self.max_sequences = int(max_sequences)

    def config(self):
        return {"max_sequences": self.max_sequences}

    def bind(self, model):
        super().bind(model)
        self.hooks_ = model.sites.stream()
        self.depth_of = {h: j for j, h in enumerate(self.hooks_)}
        S, D = self.max_sequences, len(self.hooks_)
        for k in STREAM_KEYS:
            self._add(k, torch.zeros(S, D), "max" if k == "top1" else "sum")
        self._add("loss_sum", torch.zeros(S), "sum")
        self._add("loss_n", torch.zeros(S), "sum")
        self._add("seen", torch.zeros(S), "max")
        self._rows_per_batch: int | None = None
        return self

    def hooks(self, model):
        return [(h, self._hook) for h in self.hooks_]

    def begin_batch(self, batch):
        super().begin_batch(batch)
        if self._rows_per_batch is None:
            self._rows_per_batch = len(batch.tokens)
        # the sequence's place in the run's data; a Batch made without it: batch number × rows of the first batch
        start = batch.first_seq if batch.first_seq is not None else batch.index * self._rows_per_batch
        if start + len(batch.tokens) > self.max_sequences:
            raise ValueError(f"{self.name}: more than {self.max_sequences} sequences; pass a larger "
                             "max_sequences or collect on fewer sequences")
        dev = self.state["n"].device  # the model's during a run (`driver.states_to`): sums are added there
        self._slots = torch.arange(start, start + len(batch.tokens), device=dev)
        self._has = batch.mask.any(1).to(dev)
        self._last = last_real(batch.mask)
        self._buf: dict[int, torch.Tensor] = {}
        self.state["seen"][self._slots[self._has]] = 1.0

    def _hook(self, x: torch.Tensor, hook) -> None:
        j, st, b = self.depth_of[hook.name], self.state, self.batch
        x = x.detach()
        d = x.shape[-1]
        sl = self._slots
        st["n"][sl, j] += (b.mask.sum(1).to(F64) * d).to(sl.device)
        if seq_kernels.usable(x):  # one compiled pass for the sums; medians and maxima from the median pass
            sums, top, med = seq_kernels.row_stats(x, b.mask)
            st["s1"][sl, j] += sums[:, 0]
            st["s2"][sl, j] += sums[:, 1]
            st["sabs"][sl, j] += sums[:, 2]
            rows = sl[self._has]
            st["top1"][rows, j] = torch.maximum(st["top1"][rows, j], top[self._has].to(F64))
            st["median"][rows, j] += med[self._has].to(F64)
        else:
            self._torch_sums(x, j)
        rows = torch.arange(len(x), device=x.device)
        self._buf[j] = x[rows, self._last].to(F64)                   # the last counted token [b, d]
        has = self._has.to(x.device)
        for lo in (j - 1, j):                                         # pairs (j−1, j) and (j, j+1), whichever fired
            if lo in self._buf and lo + 1 in self._buf:
                ang = angular(self._buf[lo], self._buf[lo + 1])
                st["ang"][sl, lo] += torch.where(has, ang, torch.zeros_like(ang)).to(sl.device)

    def _torch_sums(self, x: torch.Tensor, j: int) -> None:
        """The torch form of `seq_kernels.row_stats` (other devices and dtypes): float64 sums, kthvalue medians."""
        st, b, sl = self.state, self.batch, self._slots
        h = x.to(F64)
        m = b.mask.to(F64).unsqueeze(-1)                         # [b, t, 1]
        hm = h * m
        st["s1"][sl, j] += hm.sum((1, 2)).to(sl.device)
        st["s2"][sl, j] += (hm * h).sum((1, 2)).to(sl.device)
        a = h.abs()
        st["sabs"][sl, j] += (a * m).sum((1, 2)).to(sl.device)
        for r in range(len(h)):
            if not bool(self._has[r]):
                continue
            v = a[r][b.mask[r]].reshape(-1)
            st["top1"][sl[r], j] = torch.maximum(st["top1"][sl[r], j], v.max().to(sl.device))
            st["median"][sl[r], j] += torch.kthvalue(v, (v.numel() + 1) // 2).values.to(sl.device)

    def end_batch(self, model, batch, output) -> None:
        self._buf = {}
        if not is_causal(self.card):
            return
        pair = (batch.attention_mask[:, :-1] & batch.attention_mask[:, 1:])
        for r in range(len(pair)):  # row by row: a real LM's logits [t, vocab] are large
            ce = (batch.ce[r] if output is None else token_ce(output[r, :-1], batch.tokens[r, 1:])).to(F64)
            p = pair[r]
            self.state["loss_sum"][self._slots[r]] += (ce * p).sum().to(self._slots.device)
            self.state["loss_n"][self._slots[r]] += p.sum().to(F64).to(self._slots.device)

    def _seqs(self) -> np.ndarray:
        return np.nonzero(self.state["seen"].numpy() > 0)[0]

    def result(self) -> pd.DataFrame:
        """seq_stream: one row per sequence × depth (columns: see the module docstring)."""
        seqs, D = self._seqs(), len(self.hooks_)
        st = {k: self.state[k].numpy()[seqs] for k in STREAM_KEYS}
        out = pd.DataFrame({"model": self.model_name,
                            "seq": np.repeat(seqs, D), "depth": np.tile(np.arange(D), len(seqs))})
        for k in STREAM_KEYS:
            out[k] = st[k].reshape(-1)
        out.loc[out["depth"] == D - 1, "ang"] = np.nan  # no depth after the last
        return out

    def losses(self) -> pd.DataFrame:
        """seq_loss: one row per sequence: summed next-token CE and predicted tokens (causal LMs only)."""
        seqs = self._seqs()
        n = self.state["loss_n"].numpy()[seqs]
        out = pd.DataFrame({"model": self.model_name, "seq": seqs,
                            "loss_sum": self.state["loss_sum"].numpy()[seqs], "n_pred": n})
        return out[out["n_pred"] > 0].reset_index(drop=True)

    def tables(self):
        return {"seq_stream": self.result(), "seq_loss": self.losses()}
