"""The training loop: AdamW, warm-up + cosine, optional clipping, telemetry, spike and NaN/Inf detection,
atomic checkpoints and bitwise-identical resume.

Log frames (tidy, saved with every checkpoint as parquet):
  steps:  one row per update — step (0-based), tokens (seen before this step), lr, loss (training loss of the
          batch, before the update), grad_norm (global L2, before clipping), clipped (bool), update_ratio
          (‖Δθ‖/‖θ‖ over all parameters), spike (bool), val_loss (validation loss measured before this step's
          update, every `eval_every` steps; NaN elsewhere), tokens_per_s, epoch.
  layers: one row per update × group × metric — step, group ("embed", "0".."L-1", "final"), site (parameter
          group, or the batch-statistic norm's module name), metric ∈ {grad_norm, update_ratio, bstat_x2_mean,
          bstat_x2_rel_change, rstat_x2_mean, rstat_x2_rel_change, dstat_x2_mean, dstat_x2_rel_change}, value
          (bstat: the batch's second moment, rstat: the norm's running second moment after the step, dstat: the
          second moment the training forward divided by; see interp.train.telemetry).
A loss spike is a loss above mean + `spike_sigma`·std of the previous `spike_window` losses and 10 % above
their mean. A non-finite loss or gradient stops the run before the update is applied, and weights (or
batch-statistic buffers) that turn non-finite in an update stop it right after: nothing is saved after either,
so the last checkpoint on disk is the last good one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from interp.data.batches import Batch, TokenBatches
from interp.train.checkpoint import (check_fingerprint, check_run_dir, latest, load_checkpoint, run_fingerprint,
                                     save_checkpoint)
from interp.train.fast import CompiledLoss, adamw
from interp.train.schedule import lr_at
from interp.train.telemetry import Telemetry


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (recorded in the checkpoint; a resume must use the same ones)."""

    steps: int = 300
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 2e-3
    warmup: int = 30
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1          # on every parameter with dim ≥ 2 (matrices, embeddings, adaLN's modulation
    #                                    maps, TD-LN's [2, d] gate slopes and offsets), never on 1-D ones (gains, biases)
    betas: tuple[float, float] = (0.9, 0.95)
    clip: float | None = 1.0           # global gradient-norm clipping; None: off
    seed: int = 0
    eval_every: int = 50
    eval_batches: int = 4
    ckpt_every: int = 50
    spike_window: int = 20
    spike_sigma: float = 4.0
    log_layers: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """Refuse hyper-parameters no run can use (steps ≤ 0, lr inf, warm-up < 0, ...): one line naming it."""
        for name in ("steps", "batch_size", "seq_len", "eval_every", "eval_batches", "ckpt_every", "spike_window"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"train config {name} must be a whole number ≥ 1, got {v!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"train config warmup must be a whole number ≥ 0, got {self.warmup!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"train config lr must be a finite number > 0, got {self.lr!r}")
        if not (math.isfinite(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1):
            raise ValueError(f"train config min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"train config weight_decay must be a finite number ≥ 0, got {self.weight_decay!r}")
        if self.clip is not None and not (math.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"train config clip must be a finite number > 0 or None, got {self.clip!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"train config betas must be two numbers in [0, 1), got {self.betas!r}")


def finite_buffers(model: nn.Module) -> list[str]:
    """Names of the floating-point buffers that are all finite now (a causal mask of -inf is not one of them)."""
    return [n for n, b in model.named_buffers() if b.is_floating_point() and bool(torch.isfinite(b).all())]


def buffers_finite(model: nn.Module, names: list[str]) -> bool:
    """Whether the buffers `names` (batch-statistic norms' running moments, ...) are still all finite."""
    bufs = dict(model.named_buffers())
    return all(bool(torch.isfinite(bufs[n]).all()) for n in names if n in bufs)


@dataclass
class TrainResult:
    status: str                       # "done", "nan" (non-finite loss/gradient), "stopped" (until= reached)
    step: int                         # updates completed
    message: str
    steps: pd.DataFrame
    layers: pd.DataFrame
    final_val_loss: float | None
    wall_s: float
    run_dir: Path | None = None
    evals: list = field(default_factory=list)


def lm_loss(model: nn.Module, batch: Batch, use_cond: bool) -> torch.Tensor:
    """Mean next-token cross-entropy of `batch` (nats/token)."""
    logits = model(batch.x, cond=batch.cond) if use_cond else model(batch.x)
    return F.cross_entropy(logits.flatten(0, 1).float(), batch.y.flatten())


class Trainer:
    """Train `model` on `train` batches; resumes from `run_dir` when it holds a checkpoint (and `resume`)."""

    def __init__(self, model: nn.Module, train: TokenBatches, cfg: TrainConfig, val: TokenBatches | None = None,
                 run_dir: str | Path | None = None, resume: bool = True, meta: dict | None = None,
                 callbacks: Sequence[Callable[["Trainer"], None]] = (), progress: bool = True,
                 loss_fn: Callable[[nn.Module, Batch, bool], torch.Tensor] = lm_loss, desc: str = "train",
                 snapshots: Sequence[int] = (), fused: bool = True, compile: bool = False):
        """`fused`: the fused AdamW kernel (same update as the for-loop one, rounded differently); `compile`:
        the training loss forward and backward compiled with torch.compile where valid (interp.train.fast;
        elsewhere, and without a C++ compiler, eager with a one-line note). Neither is part of the config: a
        run may resume with either."""
        cfg.check()
        self.model, self.train, self.cfg, self.val = model, train, cfg, val
        self.snapshots = sorted(set(snapshots))  # steps whose weights are kept in run_dir/snapshots/
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.meta, self.callbacks, self.progress, self.loss_fn, self.desc = meta or {}, callbacks, progress, loss_fn, desc
        self.use_cond = bool(getattr(getattr(model, "cfg", None), "conditioned", False))
        torch.manual_seed(cfg.seed)
        decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
        other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
        self.opt = adamw([{"params": decay, "weight_decay": cfg.weight_decay},
                          {"params": other, "weight_decay": 0.0}], fused, lr=cfg.lr, betas=cfg.betas)
        self.train_loss = CompiledLoss(loss_fn, model, enabled=compile)
        self.tel = Telemetry(model)
        self.step, self.rows, self.layer_rows, self.evals = 0, [], [], []
        self.last_ckpt: int | None = None
        self.wall_s = 0.0
        if self.run_dir is not None:
            check_run_dir(self.run_dir)  # a folder of other files is refused before any work
        # what a resume must match (initial weights, data): hashed before any checkpoint is loaded
        self.fingerprint = run_fingerprint(model, train.tokens, val.tokens if val is not None else None)
        self._finite_buffers = finite_buffers(model)
        ck = latest(self.run_dir) if (self.run_dir is not None and resume) else None
        if ck is not None:
            self._resume(ck)

    # ---- checkpoints -------------------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"step": self.step, "config": self.cfg.to_dict(), "evals": self.evals, "wall_s": self.wall_s,
                "data_position": {"next_batch": self.step, "epoch": self.train.epoch_of(self.step),
                                  **self._data_order()},
                "meta": self.meta, "fingerprint": self.fingerprint}

    def save(self) -> Path:
        extra = {"rng.torch": torch.get_rng_state()}
        for kind, prev in self._tel_prev().items():  # what the next step's relative changes compare with
            extra.update({f"{kind}.{k}": v for k, v in prev.items()})
        ck = save_checkpoint(self.run_dir, self.step, self.model, self.opt, self._state(), extra,
                             {"steps.parquet": self.steps_frame(), "layers.parquet": self.layers_frame()})
        self.last_ckpt = self.step
        return ck

    def _data_order(self) -> dict:
        """What fixes which batch comes at each step, and which validation batches, besides the tokens (a resume
        must match it)."""
        t, v = self.train, self.val
        val = {} if v is None else {"val_batch_size": v.batch_size, "val_seq_len": v.seq_len, "val_bos_id": v.bos_id}
        return {"shuffle_seed": t.seed, "windows": t.n_windows, "shuffle": t.shuffle, "batch_size": t.batch_size,
                "seq_len": t.seq_len, "bos_id": t.bos_id, **val}

    def _tel_prev(self) -> dict[str, dict[str, torch.Tensor]]:
        """The telemetry's previous batch, running and divisor statistics, by their checkpoint key prefix."""
        return {"prev_x2": self.tel.prev_x2, "prev_running": self.tel.prev_running,
                "prev_divisor": self.tel.prev_divisor}

    def _resume(self, ck: Path) -> None:
        state, extra = load_checkpoint(ck, self.model, self.opt)
        check_fingerprint(ck, state.get("fingerprint"), self.fingerprint)
        saved = {k: (tuple(v) if isinstance(v, list) else v) for k, v in state["config"].items()}
        if saved != self.cfg.to_dict():
            diff = {k: (saved.get(k), v) for k, v in self.cfg.to_dict().items() if saved.get(k) != v}
            raise ValueError(f"{ck} was trained with another config {diff} (saved, now); "
                             "use the same config or a fresh run directory")
        pos, now = state.get("data_position", {}), self._data_order()  # older checkpoints: seed and windows only
        diff = {k: (pos[k], v) for k, v in now.items() if k in pos and pos[k] != v}
        if diff:
            raise ValueError(f"{ck} was trained on another data order {diff} (saved, now); batch the same tokens "
                             "the same way or use a fresh run directory")
        self.step, self.evals, self.wall_s = state["step"], state["evals"], state["wall_s"]
        torch.set_rng_state(extra.pop("rng.torch"))
        for kind, prev in self._tel_prev().items():  # checkpoints from before rstat / dstat carry prev_x2 only
            prev.update({k[len(kind) + 1:]: v for k, v in extra.items() if k.startswith(f"{kind}.")})
        self.rows = pd.read_parquet(ck / "steps.parquet").to_dict("records")
        self.layer_rows = pd.read_parquet(ck / "layers.parquet").to_dict("records")
        self.last_ckpt = self.step

    def snapshot_path(self, step: int) -> Path:
        """Where the weights after `step` updates are kept (`snapshots`; needs a run_dir)."""
        return self.run_dir / "snapshots" / f"step-{step:06d}.safetensors"

    def _snapshot(self) -> None:
        if self.run_dir is None or self.step not in self.snapshots:
            return
        from safetensors.torch import save_model

        from interp.outputs import atomic_write
        atomic_write(self.snapshot_path(self.step), lambda tmp: save_model(self.model, str(tmp)))  # umask modes

    # ---- logs --------------------------------------------------------------------------------------------
    def steps_frame(self) -> pd.DataFrame:
        cols = ["step", "tokens", "lr", "loss", "grad_norm", "clipped", "update_ratio", "spike", "val_loss",
                "tokens_per_s", "epoch"]
        return pd.DataFrame(self.rows, columns=cols)

    def layers_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.layer_rows, columns=["step", "group", "site", "metric", "value"])

    # ---- evaluation --------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean validation loss over the first `eval_batches` validation batches (model in eval mode)."""
        if self.val is None:
            return float("nan")
        was = self.model.training
        self.model.eval()
        losses = [float(self.loss_fn(self.model, b, self.use_cond)) for b in self.val.first(self.cfg.eval_batches)]
        self.model.train(was)
        return sum(losses) / len(losses)

    # ---- the loop ----------------------------------------------------------------------------------------
    def _spike(self, loss: float) -> bool:
        w = [r["loss"] for r in self.rows[-self.cfg.spike_window:]]
        if len(w) < self.cfg.spike_window:
            return False
        t = torch.tensor(w, dtype=torch.float64)
        mean, std = float(t.mean()), float(t.std())
        return loss > mean + self.cfg.spike_sigma * std and loss > 1.1 * mean

    def _stop(self, what: str, value: float, after: bool = False) -> str:
        where = (f"the last good checkpoint (step {self.last_ckpt}) is kept in {self.run_dir}"
                 if self.last_ckpt is not None else "no checkpoint was written")
        when = "after the update; nothing after the last checkpoint is saved" if after else "before the update"
        return f"step {self.step}: {what} is {value} — training stopped {when}; {where}"

    def run(self, until: int | None = None) -> TrainResult:
        """Train to `cfg.steps` (or stop after update `until`, as if killed there); return logs and status."""
        from tqdm.auto import tqdm
        cfg, model = self.cfg, self.model
        end = min(cfg.steps, until) if until is not None else cfg.steps
        model.train()
        status, msg = "done", ""
        bar = tqdm(total=end, initial=self.step, desc=self.desc, disable=not self.progress, unit="step",
                   dynamic_ncols=True, leave=False)
        ntok = self.train.batch_size * self.train.seq_len  # what a batch holds (the config only records it)
        while self.step < end:
            self._snapshot()
            for cb in self.callbacks:
                cb(self)
            val = self.evaluate() if (self.val is not None and self.step % cfg.eval_every == 0) else float("nan")
            if not math.isnan(val):
                self.evals.append([self.step, val])
            lr = lr_at(self.step, cfg.lr, cfg.warmup, cfg.steps, cfg.min_lr_ratio)
            for g in self.opt.param_groups:
                g["lr"] = lr
            t0 = time.perf_counter()
            batch = self.train.batch(self.step)
            loss_t = self.train_loss(model, batch, self.use_cond)
            loss = float(loss_t.detach())
            if not math.isfinite(loss):
                status, msg = "nan", self._stop("the training loss", loss)
                break
            self.opt.zero_grad(set_to_none=True)
            loss_t.backward()
            gn, gn_layers = self.tel.grad_norms()
            if not math.isfinite(gn):
                status, msg = "nan", self._stop("the gradient norm", gn)
                break
            clipped = cfg.clip is not None and gn > cfg.clip
            if clipped:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            self.tel.before_update()
            self.opt.step()
            ur, ur_layers = self.tel.update_ratios()
            if not math.isfinite(ur) or not buffers_finite(model, self._finite_buffers):  # ur NaN/Inf iff a weight is
                status, msg = "nan", self._stop("the weights after the update", ur, after=True)
                break
            dt = time.perf_counter() - t0
            self.wall_s += dt
            row = dict(step=self.step, tokens=self.step * ntok, lr=lr, loss=loss, grad_norm=gn, clipped=clipped,
                       update_ratio=ur, spike=self._spike(loss), val_loss=val, tokens_per_s=ntok / dt,
                       epoch=self.train.epoch_of(self.step))
            self.rows.append(row)
            if cfg.log_layers:
                for g, v in gn_layers.items():
                    self.layer_rows.append(dict(step=self.step, group=g, site="params", metric="grad_norm", value=v))
                for g, v in ur_layers.items():
                    self.layer_rows.append(dict(step=self.step, group=g, site="params", metric="update_ratio",
                                                value=v))
                for kind, stats in (("bstat", self.tel.batch_stats()), ("rstat", self.tel.running_stats()),
                                    ("dstat", self.tel.divisor_stats())):
                    for name, g, m, rel in stats:
                        self.layer_rows.append(dict(step=self.step, group=g, site=name, metric=f"{kind}_x2_mean",
                                                    value=m))
                        self.layer_rows.append(dict(step=self.step, group=g, site=name, metric=f"{kind}_x2_rel_change",
                                                    value=rel))
            self.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{ntok / dt:,.0f}")
            if self.run_dir is not None and (self.step % cfg.ckpt_every == 0 or self.step == cfg.steps):
                self.save()
        bar.close()
        final = None
        if status == "done" and self.step >= cfg.steps:
            final = self.evaluate() if self.val is not None else None
            if final is not None and not (self.evals and self.evals[-1][0] == self.step):
                self.evals.append([self.step, final])
                if self.run_dir is not None:
                    self.save()
            self._snapshot()
            msg = f"trained {self.step} steps; final validation loss {final}"
        elif status == "done":
            status, msg = "stopped", f"stopped after step {self.step} of {cfg.steps}"
        if status == "nan":
            print(f"interp train: {msg}", file=sys.stderr)
        if self.run_dir is not None:   # the full log up to the stop, next to the checkpoints
            from interp.outputs import atomic_write_bytes
            for name, df in (("steps.parquet", self.steps_frame()), ("layers.parquet", self.layers_frame())):
                tmp = self.run_dir / f".{name}.tmp"
                df.to_parquet(tmp, index=False)
                tmp.replace(self.run_dir / name)
            atomic_write_bytes(self.run_dir / "result.json", json.dumps(
                {"status": status, "step": self.step, "message": msg, "final_val_loss": final,
                 "wall_s": self.wall_s, "evals": self.evals}, indent=1).encode())
        return TrainResult(status, self.step, msg, self.steps_frame(), self.layers_frame(), final, self.wall_s,
                           self.run_dir, list(self.evals))
