"""Learning-rate stability sweep: short runs of every strategy over a ladder of peak learning rates.

The Peri-LN paper's stability claim made measurable: which placements survive which learning rates.
Each run is a fresh model (same seed, same data order) trained `steps` updates with the zoo recipe but
*without gradient clipping* by default (clipping hides the instability being measured).

Result (tidy, one row per strategy × lr): strategy, lr, steps (updates completed), diverged (the loss or
gradient became non-finite, or the mean loss of the last 10 % of steps is no better than the first step's
loss), loss_spikes (count, see interp.train.trainer), first_loss, final_loss (mean training loss over the
last 10 % of steps; NaN when it stopped on a non-finite value), max_grad_norm, wall_s.
"""
from __future__ import annotations

import time

import pandas as pd

from interp.data import TokenBatches, prepare
from interp.train.trainer import TrainConfig, Trainer
from interp.train.zoo import zoo_norm_kwargs
from interp.zoo import STRATEGIES, build

SWEEP_SIZE = dict(n_layers=6, d_model=64, n_heads=4, d_mlp=256, n_ctx=64)
SWEEP_LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def lr_sweep(strategies: list[str] | None = None, lrs: tuple[float, ...] = SWEEP_LRS, steps: int = 60,
             batch_size: int = 8, size: dict | None = None, clip: float | None = None, corpus: str = "kjv",
             seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Train every strategy at every peak lr for `steps` updates; return the tidy stability table."""
    from tqdm.auto import tqdm
    names = list(STRATEGIES) if strategies is None else strategies
    for s in names:
        if s not in STRATEGIES:
            raise ValueError(f"unknown strategy {s!r}; choose from: {', '.join(STRATEGIES)}")
    if not lrs or any(lr <= 0 for lr in lrs):
        raise ValueError(f"learning rates must be positive, got {lrs}")
    size = {**SWEEP_SIZE, **(size or {})}
    data = prepare(corpus)
    size["d_vocab"] = data.tokenizer.vocab_size
    rows = []
    bar = tqdm(total=len(names) * len(lrs), desc="sweep", disable=not progress)
    for s in names:
        for lr in lrs:
            cfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=size["n_ctx"], lr=lr,
                              warmup=max(1, steps // 10), clip=clip, seed=seed, eval_every=10 ** 9,
                              ckpt_every=10 ** 9, log_layers=False, spike_window=max(5, steps // 10))
            nk = zoo_norm_kwargs(s, steps)
            model = build(s, seed=seed, **size, **({"norm_kwargs": nk} if nk else {}))
            batches = TokenBatches(data.train_tokens, cfg.seq_len, batch_size, data.tokenizer.bos_id, seed=seed)
            t0 = time.time()
            res = Trainer(model, batches, cfg, progress=False).run()
            loss = res.steps.loss
            tail = loss.tail(max(1, steps // 10)).mean() if res.status == "done" else float("nan")
            first = float(loss.iloc[0]) if len(loss) else float("nan")
            rows.append(dict(strategy=s, lr=lr, steps=res.step,
                             diverged=bool(res.status != "done" or not tail < first),
                             loss_spikes=int(res.steps.spike.sum()), first_loss=first, final_loss=float(tail),
                             max_grad_norm=float(res.steps.grad_norm.max()) if len(loss) else float("nan"),
                             wall_s=round(time.time() - t0, 2)))
            bar.update(1)
            bar.set_postfix(strategy=s, lr=lr)
    bar.close()
    return pd.DataFrame(rows)
