"""Layer effectiveness (Curse of Depth / Mix-LN): how much the stream still turns between depths, and what
is lost when a block is skipped.

Angular distance d(ℓ, ℓ+n) = arccos(cos(h_ℓ, h_ℓ+n)) / π per token between the stream at depth ℓ (0 = input
of block 0, ℓ = output of block ℓ-1) and depth ℓ+n, averaged over all real tokens and over the last real
token of each sequence (Mix-LN's measure). With `skip=True`, each block ℓ in turn is skipped (its output
replaced by its input): the mean next-token loss increase for causal LMs; for encoders (no LM head) the mean
cosine distance between the mean-pooled final states with and without the block. The skipped forwards share
the intact run's stream up to block ℓ and run batched (`interp.collectors.variants`): blocks ℓ+1.. only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from interp.collectors import angle_kernels, kernels
from interp.collectors.base import F64, Collector
from interp.collectors.objective import is_causal, loss_terms
from interp.collectors.tail_loss import stream_bytes, variant_ce
from interp.collectors.variants import chunks, run_variants


NP = {torch.float32: np.float32, torch.float64: np.float64}


def angular(a: torch.Tensor, b: torch.Tensor, a_norm: torch.Tensor | None = None,
            b_norm: torch.Tensor | None = None) -> torch.Tensor:
    """arccos(cos(a, b)) / π along the last dim, float64 (a zero vector counts as orthogonal); the norms
    along the last dim may be passed when already known."""
    a_norm = a.norm(dim=-1) if a_norm is None else a_norm
    b_norm = b.norm(dim=-1) if b_norm is None else b_norm
    cos = torch.linalg.vecdot(a, b) / (a_norm * b_norm).clamp(min=1e-300)
    return torch.arccos(cos.clamp(-1, 1)) / torch.pi


def last_real(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last True position per row [b] (rows without one give 0)."""
    return (mask.long() * torch.arange(mask.shape[1], device=mask.device)).argmax(1)


class LayerEffect(Collector):
    """Angular distance between stream depths ℓ and ℓ+n (n in `ns`), and optionally the skip-one-block loss."""

    name = "layer_effect"

    def __init__(self, ns: tuple[int, ...] = (1,), skip: bool = True):
        super().__init__()
        if not ns or min(ns) < 1:
            raise ValueError(f"ns must be positive depth offsets, got {ns}")
        self.ns, self.skip = tuple(sorted(set(int(n) for n in ns))), skip
        self.reads_output = "logits" if skip else "none"  # the skip losses' base is taken from the logits

    def config(self):
        return {"ns": list(self.ns), "skip": self.skip}

    def bind(self, model):
        super().bind(model)
        sites = self.site_map(model)  # the map `collect` handed over, or built now
        self.hooks_ = sites.stream()
        D, L = len(self.hooks_), sites.n_layers
        self.n_layers = L
        self.depth_of = {h: i for i, h in enumerate(self.hooks_)}
        self._add("ang_sum", torch.zeros(len(self.ns), D), "sum")       # Σ over tokens of d(ℓ, ℓ+n), [n, ℓ]
        self._add("ang_n", torch.zeros(len(self.ns), D), "sum")         # tokens counted
        self._add("ang_last_sum", torch.zeros(len(self.ns), D), "sum")  # Σ over sequences, last real token
        self._add("ang_last_n", torch.zeros(len(self.ns), D), "sum")    # sequences counted
        if self.skip:
            self._add("skip_sum", torch.zeros(L), "sum")   # Σ loss terms (or cosine distances) with block ℓ skipped
            self._add("base_sum", torch.zeros(1), "sum")   # Σ loss terms of the intact model (causal LMs)
            self._add("skip_n", torch.zeros(1), "sum")     # loss terms (or sequences) counted
        self._work: dict[int, torch.Tensor] = {}
        self._ring: angle_kernels.AngularRing | None = None
        self._ring_on = False
        # CPU: read the earlier depth's stream where it lies (no copy) once the first batch showed that the model
        # leaves each stream tensor unchanged until the next depth's hook; None: not yet known
        self._by_ref: bool | None = None
        self._refs: dict[int, tuple[torch.Tensor, int]] = {}  # depth -> (stream tensor, its _version at the hook)
        self._ref_ok = True
        return self

    def hooks(self, model):
        return [(h, self._hook) for h in self.hooks_]

    def begin_batch(self, batch):
        super().begin_batch(batch)
        self._buf: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # depth -> (h float64, ‖h‖ per token)
        self._ang: list[tuple[int, int, torch.Tensor]] = []  # (offset index, depth, d [b, t]) folded in at end_batch
        self._stream: dict[int, torch.Tensor] = {}  # depth -> intact stream (skip=True only)
        self._ring_on = False  # this batch's angles are in self._ring (the CPU kernel's per-batch state)
        self._refs = {}

    def _h64(self, x: torch.Tensor, j: int) -> torch.Tensor:
        """x as float64 in a work tensor reused across batches (one per depth still needed: max(ns) + 1)."""
        slot = j % (self.ns[-1] + 1)
        w = self._work.get(slot)
        if w is None or w.shape != x.shape or w.device != x.device:
            w = self._work[slot] = torch.empty(x.shape, dtype=F64, device=x.device)
        return w.copy_(x)

    def _hook(self, x: torch.Tensor, hook) -> None:
        j = self.depth_of[hook.name]
        if self.skip:
            self._stream[j] = x.detach()  # the intact stream at depth j: where the skip variants start
        if kernels.usable(x) and x.dim() == 3:  # CPU: one compiled call per depth into per-batch buffers
            r, shape = self._ring, (len(self.hooks_), x.shape[0] * x.shape[1], x.shape[2], NP[x.dtype])
            if r is None or r.shape != shape:
                r = self._ring = angle_kernels.AngularRing(*shape[:3], self.ns, shape[3])
            if not self._ring_on:
                r.seen[:] = False
                self._ring_on = True
            if self._by_ref is False or x.dtype is not torch.float32:
                return angle_kernels.angular_ring(x.detach(), j, r)
            if self._by_ref:
                st = self.batch.stats  # the per-token Σx² ResidualStats just took of this very tensor, if it did
                sq = st[2][:, 1] if st is not None and st[0] is x and st[1] == x._version and \
                    len(st[2]) == shape[1] else None
                x = x if x.is_contiguous() else x.contiguous()  # (a strided stream: read from our own copy)
                angle_kernels.angular_by_ref(x, j, r, self._kept(j, strict=True), sq)
            else:  # the first batch: copy, and watch the tensors for writes in place
                angle_kernels.angular_ring(x.detach(), j, r)
                self._kept(j, strict=False)
            self._refs[j] = (x, x._version)
            return None
        h = self._h64(x.detach(), j)
        hn = torch.linalg.vector_norm(h, dim=-1)  # computed once per depth, used by both pairs it enters
        self._buf[j] = (h, hn)
        for i, n in enumerate(self.ns):
            prev = self._buf.get(j - n)
            if prev is not None:
                self._ang.append((i, j - n, angular(prev[0], h, prev[1], hn)))  # [b, t]
        self._buf.pop(j - self.ns[-1], None)  # keep only the depths still needed

    def _kept(self, j: int, strict: bool) -> dict[int, torch.Tensor]:
        """The stream tensors of the depths j − n kept from earlier hooks, after checking that none was written in
        place since its hook: in the first batch (strict=False) a change only turns reading by reference off for
        the run; later (strict=True) it is an error, since the copy that would have kept the old values was not
        made. Drops the depths no longer needed."""
        out = {}
        for n in self.ns:
            kept = self._refs.get(j - n)
            if kept is None:
                continue
            x, version = kept
            if x._version != version:
                if strict:
                    raise RuntimeError(f"layer_effect: the model wrote the stream at {self.hooks_[j - n]} in place "
                                       "after its hook, which it did not in the first batch, so this batch's angles "
                                       "are lost; collect LayerEffect for this model off CPU or in float64, where "
                                       "each stream is copied")
                self._ref_ok = False
            out[j - n] = x
        self._refs.pop(j - self.ns[-1], None)
        return out

    def _fold(self, batch) -> None:
        """Add the batch's angular distances to the state: all (offset, depth) pairs in one pass."""
        st, mask = self.state, batch.mask
        if self._ring_on and self._fold_numpy(batch):
            return
        if self._ring_on:  # the kernel's: every (offset, depth) pair whose both depths were seen
            self._ring_on = False
            seen, D = self._ring.seen, len(self.hooks_)
            pairs = [(i, l) for i, n in enumerate(self.ns) for l in range(D - n) if seen[l] and seen[l + n]]
            if not pairs:
                return
            ii, ll = (torch.tensor(v) for v in zip(*pairs))
            ang = torch.from_numpy(self._ring.out)[ii, ll].view(len(pairs), *mask.shape)  # [m, b, t]
        elif not self._ang:
            return
        else:
            pairs = [(i, l) for i, l, _ in self._ang]
            ang = torch.stack([a for _, _, a in self._ang])  # [m, b, t]
        flat = torch.tensor([i * st["ang_sum"].shape[1] + l for i, l in pairs], device=ang.device)
        tot = ang.sum((1, 2)) if batch.full else (ang * mask).sum((1, 2))
        rows = torch.arange(len(mask), device=mask.device)[mask.any(1)]
        last = ang[:, rows, last_real(mask)[rows]].sum(1)
        st["ang_sum"].view(-1).index_add_(0, flat, tot)
        st["ang_n"].view(-1).index_add_(0, flat, torch.full_like(tot, float(batch.n_tokens)))
        st["ang_last_sum"].view(-1).index_add_(0, flat, last)
        st["ang_last_n"].view(-1).index_add_(0, flat, torch.full_like(tot, float(len(rows))))
        self._ang = []

    def _fold_numpy(self, batch) -> bool:
        """`_fold` of the kernel's angles in numpy on the float64 CPU state, in place (the same sums, without a
        dozen small torch operations); False (nothing done) unless the state is contiguous on CPU and the batch
        unpadded (every token counts; each sequence's last token is its last position)."""
        st = self.state
        if not batch.full or not all(st[k].device.type == "cpu" and st[k].is_contiguous()
                                     for k in ("ang_sum", "ang_n", "ang_last_sum", "ang_last_n")):
            return False
        self._ring_on = False
        seen, ns = self._ring.seen, np.asarray(self.ns)
        D, (b, t) = len(self.hooks_), batch.mask.shape
        ang = self._ring.out.reshape(len(ns), D, b, t)  # [offset, depth, b, t]
        for i, n in enumerate(self.ns):
            ok = np.flatnonzero(seen[: D - n] & seen[n:D]) if n < D else np.zeros(0, dtype=np.int64)
            if ok.size:
                a = ang[i, ok]  # [m, b, t]
                st["ang_sum"].numpy()[i, ok] += a.sum((1, 2))
                st["ang_n"].numpy()[i, ok] += float(batch.n_tokens)
                st["ang_last_sum"].numpy()[i, ok] += a[:, :, t - 1].sum(1)
                st["ang_last_n"].numpy()[i, ok] += float(b)
        return True

    def end_batch(self, model, batch, output) -> None:
        self._buf = {}
        if self._refs and self._by_ref is None:  # the first batch decides: by reference when nothing changed
            self._by_ref = self._ref_ok
        self._refs = {}
        self._fold(batch)
        if not self.skip:
            return
        st, am = self.state, batch.attention_mask
        causal = is_causal(model)
        base = loss_terms(model, output, batch.tokens, am).to(F64) if causal else _pooled(output, am)
        if causal:
            st["base_sum"] += base.sum()
        st["skip_n"] += base.numel() if causal else len(base)
        stream, self._stream = self._stream, {}
        L = self.n_layers
        if causal:  # the CE of every variant at once, without their logits (tail_loss)
            add = torch.zeros_like(st["skip_sum"])
            for group in chunks(L, stream_bytes(model, batch.tokens)):
                ces = variant_ce(model, batch.tokens, am, [(l + 1, stream[l]) for l in group])
                if ces is None:  # a tail variant_ce does not compute: the logits, as below
                    break
                for l, ce in zip(group, ces):
                    add[l] += ce.to(F64).sum()
            else:
                st["skip_sum"] += add
                return
        per = output[0].numel() * output.element_size() * len(am)  # bytes of one variant's output
        for group in chunks(L, per):  # skipping block l: the stream at depth l + 1 is the stream at depth l
            outs = run_variants(model, batch.tokens, am, [(l + 1, stream[l]) for l in group])
            for l, out in zip(group, outs):
                if causal:
                    st["skip_sum"][l] += loss_terms(model, out, batch.tokens, am).to(F64).sum()
                else:
                    st["skip_sum"][l] += (1 - F.cosine_similarity(base, _pooled(out, am), dim=-1)).sum()

    def describe(self, key, bad):
        """The hooks a non-finite angle or loss came from."""
        where = bad.nonzero()
        if key.startswith("ang"):  # [offset, depth]: the angle between the streams at depth l and l + n
            i, l = int(where[0, 0]), int(where[0, 1])
            n = self.ns[i]
            return f"at {self.hooks_[l]} or {self.hooks_[l + n]} (the angle from depth {l} to depth {l + n})"
        if key == "skip_sum":
            l = int(where[0, 0])
            return (f"in the loss with block {l} skipped ({self.hooks_[l + 1]} replaced by {self.hooks_[l]}, the "
                    "later blocks run on it)")
        return f"in the intact model's output (the loss after {self.hooks_[-1]})"

    def result(self) -> pd.DataFrame:
        st = {k: v.numpy() for k, v in self.state.items()}
        D = len(self.hooks_)
        ii = np.concatenate([np.full(max(D - n, 0), i, dtype=np.int64) for i, n in enumerate(self.ns)])
        ll = np.concatenate([np.arange(D - n, dtype=np.int64) for n in self.ns])
        nn = np.asarray(self.ns, dtype=np.int64)[ii]

        def mean(s, c):
            s, c = st[s][ii, ll], st[c][ii, ll]
            return np.divide(s, c, out=np.full(len(s), np.nan), where=c != 0)
        return pd.DataFrame({"model": self.model_name, "n": nn, "depth": ll, "depth_to": ll + nn,
                             "angular_all": mean("ang_sum", "ang_n"),
                             "angular_last": mean("ang_last_sum", "ang_last_n")})

    def skip_table(self) -> pd.DataFrame:
        """Per block: the metric with the block skipped, the intact metric and the increase (NaN when no loss term
        was counted: every sequence one token long, so no next-token pair)."""
        st = {k: v.numpy() for k, v in self.state.items()}
        causal = is_causal(self.model)
        n = st["skip_n"][0] if st["skip_n"][0] > 0 else np.nan  # 0/0 is undefined, not 0
        base = st["base_sum"][0] / n if causal else 0.0
        skipped = st["skip_sum"] / n
        return pd.DataFrame({"model": self.model_name, "layer": np.arange(len(skipped)),
                             "metric": "next_token_ce" if causal else "pooled_cosine_distance",
                             "base": base, "skipped": skipped, "increase": skipped - base})

    def tables(self):
        out = {"layer_effect": self.result()}
        if self.skip:
            out["layer_skip"] = self.skip_table()
        return out


def _pooled(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(F64).unsqueeze(-1)
    return (h.to(F64) * m).sum(1) / m.sum(1).clamp(min=1)
