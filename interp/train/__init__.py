"""Training: the loop (`Trainer`), its config, the zoo recipe and the learning-rate sweep.

For fine-tuning an existing model (e.g. LN removal) call `fine_tune`:

    res = interp.train.fine_tune(model, tokens, steps=300, lr=1e-4, batch_size=8, seq_len=128,
                                 run_dir="out/ft", val_tokens=val)   # -> TrainResult
    res.steps        # tidy per-step log (loss, grad_norm, lr, ...); res.layers: per-layer telemetry
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from interp.data.batches import Batch, TokenBatches
from interp.train.schedule import lr_at
from interp.train.trainer import TrainConfig, Trainer, TrainResult, lm_loss


def fine_tune(model: nn.Module, tokens: torch.Tensor | TokenBatches, steps: int, lr: float, *,
              batch_size: int = 8, seq_len: int | None = None, warmup: int | None = None,
              min_lr_ratio: float = 0.1, weight_decay: float = 0.0, clip: float | None = 1.0, seed: int = 0,
              val_tokens: torch.Tensor | TokenBatches | None = None, eval_every: int = 50, eval_batches: int = 4,
              run_dir: str | Path | None = None, ckpt_every: int = 50, bos_id: int | None = None,
              callbacks: Sequence[Callable[[Trainer], None]] = (), progress: bool = True,
              loss_fn: Callable[[nn.Module, Batch, bool], torch.Tensor] = lm_loss,
              log_layers: bool = True) -> TrainResult:
    """Train `model` in place for `steps` AdamW updates at peak learning rate `lr`; return a TrainResult.

    tokens: a 1-D LongTensor token stream (cut into [BOS] + `seq_len`-token windows, shuffled with `seed`)
        or a ready `TokenBatches`. seq_len defaults to model.cfg.n_ctx, bos_id to model.tokenizer.bos_id
        (else 0), warmup to 10 % of steps. `callbacks(trainer)` run before every step (e.g. to freeze a
        statistic). `loss_fn(model, batch, use_cond)` replaces next-token cross-entropy if given. With
        `run_dir`, checkpoints are written every `ckpt_every` steps and an existing one is resumed.
    """
    seq_len = seq_len or getattr(getattr(model, "cfg", None), "n_ctx", 128)
    if bos_id is None:
        bos_id = getattr(getattr(model, "tokenizer", None), "bos_id", None)
        bos_id = 0 if bos_id is None else bos_id
    wrap = lambda t: t if isinstance(t, TokenBatches) else TokenBatches(t, seq_len, batch_size, bos_id, seed)
    train = wrap(tokens)
    val = wrap(val_tokens) if val_tokens is not None else None
    cfg = TrainConfig(steps=steps, batch_size=train.batch_size, seq_len=train.seq_len, lr=lr,
                      warmup=max(1, steps // 10) if warmup is None else warmup, min_lr_ratio=min_lr_ratio,
                      weight_decay=weight_decay, clip=clip, seed=seed, eval_every=eval_every,
                      eval_batches=eval_batches, ckpt_every=ckpt_every, log_layers=log_layers)
    return Trainer(model, train, cfg, val=val, run_dir=run_dir, callbacks=callbacks, progress=progress,
                   loss_fn=loss_fn).run()


__all__ = ["TrainConfig", "Trainer", "TrainResult", "fine_tune", "lm_loss", "lr_at"]
