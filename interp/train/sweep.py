"""Learning-rate stability sweep: short runs of every strategy over a ladder of peak learning rates.

The Peri-LN paper's stability claim made measurable: which placements survive which learning rates.
Each run is a fresh model (same seed, same data order) trained `steps` updates with the zoo recipe (and the zoo's
objective: next-token cross-entropy, or the MDLM bound for the masked-diffusion presets) but
*without gradient clipping* by default (clipping hides the instability being measured). A strategy with a
zoo exception (ZOO_EXCEPTIONS) is built as the zoo builds it (DyT: b_U initialised to the log unigram
frequencies); an exception's lr or warm-up would not apply (the sweep sets the lr, and warms up over 10 % of
its own steps, as the zoo recipe does over its). The ladder climbs
until runs diverge (SWEEP_LRS); several seeds give the spread of each strategy's largest stable rate.

Result (tidy, one row per strategy × seed × lr): strategy, seed, lr, steps (updates completed), diverged (the
loss or gradient became non-finite, or the mean loss of the last 10 % of steps is no better than the first
step's loss), loss_spikes (count, see interp.train.trainer), first_loss, final_loss (mean training loss over
the last 10 % of steps; NaN when it stopped on a non-finite value), max_grad_norm, max_attn_logit (the
largest |q·k|/√d_head of the trained model on the first validation batch, over layers and heads, as
interp.collectors.attn_logits measures it, on the input the strategy's loss gives the model: MDLM presets on
the batch masked at the eval loss's noise levels with cond = t, see `loss_input`; NaN when the weights are not
finite), wall_s.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import pandas as pd
import torch

from interp.data import TokenBatches, prepare
from interp.train.trainer import TrainConfig, Trainer
from interp.train.zoo import ZOO_EXCEPTIONS, _loss_fn, build_zoo_model, zoo_norm_kwargs
from interp.zoo import STRATEGIES

SWEEP_SIZE = dict(n_layers=6, d_model=64, n_heads=4, d_mlp=256, n_ctx=64)
SWEEP_LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0)


@torch.no_grad()
def max_attn_logit(model, tokens: torch.Tensor, cond: torch.Tensor | None = None) -> float:
    """max |q·k|/√d_head over layers, heads and attended pairs of `tokens` [b, t] run with `cond` (NaN for
    non-finite weights)."""
    from interp.collectors.attn_logits import AttnLogits
    from interp.collectors.base import Batch
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return float("nan")
    from interp.collectors.driver import states_to
    from interp.device import model_device
    c = AttnLogits().bind(model)
    states_to([c], model_device(model))  # its maxima are taken where the model runs
    mask = torch.ones_like(tokens, dtype=torch.bool)
    c.begin_batch(Batch(tokens, mask, mask))
    was = model.training
    model.eval()
    model.run_with_hooks(tokens, fwd_hooks=c.hooks(model), **({"cond": cond} if cond is not None else {}))
    model.train(was)
    return float(c.state["max"].max())


def loss_input(model, x: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(tokens, cond) that `model` reads in its zoo loss on the batch (`x`, `cond`) in eval mode, so that the
    logits are measured in a state it is trained in: next-token presets read `x` (with the batch's cond when
    conditioned, as lm_loss); MDLM presets read `x` masked as mdlm_loss masks it (t_i = (i + ½)/b, masks from
    EVAL_SEED) with cond = t when conditioned, not the clean t = 0 input no training step sees."""
    conditioned = bool(getattr(model.cfg, "conditioned", False))
    if getattr(model.cfg, "objective", "causal_lm") != "mdlm":
        return x, cond if conditioned else None
    from interp.train.mdlm import EVAL_SEED, _t_batch, sample_masks
    t = _t_batch(x.shape[0], training=False)
    z, _ = sample_masks(x, t, model.cfg.mask_id, torch.Generator().manual_seed(EVAL_SEED))
    return z, t.to(x.device) if conditioned else None


def sweep_run(strategy: str, lr: float, seed: int, data, size: dict, steps: int, batch_size: int,
              clip: float | None) -> dict:
    """One run of the sweep: a fresh `strategy` model trained `steps` updates at peak `lr`; its table row."""
    cfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=size["n_ctx"], lr=lr,
                      warmup=max(1, steps // 10), clip=clip, seed=seed, eval_every=10 ** 9,
                      ckpt_every=10 ** 9, log_layers=False, spike_window=max(5, steps // 10))
    model = build_zoo_model(strategy, seed, size, data.train_tokens, zoo_norm_kwargs(strategy, steps),
                            ZOO_EXCEPTIONS.get(strategy))  # the zoo's per-model exceptions too (DyT's b_U init)
    batches = TokenBatches(data.train_tokens, cfg.seq_len, batch_size, data.tokenizer.bos_id, seed=seed)
    t0 = time.time()
    res = Trainer(model, batches, cfg, progress=False, loss_fn=_loss_fn(model)).run()  # MDLM presets: their bound
    loss = res.steps.loss
    tail = loss.tail(max(1, steps // 10)).mean() if res.status == "done" else float("nan")
    first = float(loss.iloc[0]) if len(loss) else float("nan")
    held = TokenBatches(data.val_tokens, cfg.seq_len, batch_size, data.tokenizer.bos_id, shuffle=False).first(1)[0]
    logit = max_attn_logit(model, *loss_input(model, held.x, held.cond))
    return dict(strategy=strategy, seed=seed, lr=lr, steps=res.step,
                diverged=bool(res.status != "done" or not tail < first),
                loss_spikes=int(res.steps.spike.sum()), first_loss=first, final_loss=float(tail),
                max_grad_norm=float(res.steps.grad_norm.max()) if len(loss) else float("nan"),
                max_attn_logit=logit, wall_s=round(time.time() - t0, 2))


_DATA: dict = {}  # corpus name -> its tokenized data, once per process (this one, or a --jobs worker)


def _data(corpus: str):
    if corpus not in _DATA:
        _DATA[corpus] = prepare(corpus)
    return _DATA[corpus]


def _run(corpus: str, strategy: str, lr: float, seed: int, *rest) -> dict:
    """`sweep_run` on `corpus` (tokenized once per process): a task for job_pool.run_tasks."""
    return sweep_run(strategy, lr, seed, _data(corpus), *rest)


def lr_sweep(strategies: list[str] | None = None, lrs: tuple[float, ...] = SWEEP_LRS, steps: int = 60,
             batch_size: int = 8, size: dict | None = None, clip: float | None = None, corpus: str = "kjv",
             seed: int = 0, progress: bool = True, seeds: tuple[int, ...] | None = None,
             done: pd.DataFrame | None = None, on_row: Callable[[pd.DataFrame], None] | None = None,
             jobs: int = 1, threads: int = 1) -> pd.DataFrame:
    """Train every strategy at every peak lr (for every seed of `seeds`, default (seed,)) for `steps` updates;
    return the tidy stability table. Rows of `done` (an earlier partial table) are kept, not re-run;
    `on_row(table so far)` is called after every run (e.g. to save progress). `jobs` > 1 runs that many runs at
    once in worker processes of `threads` torch threads each; every run is seeded on its own, so the rows equal a
    serial sweep's (the table keeps the serial order)."""
    from tqdm.auto import tqdm
    names = list(STRATEGIES) if strategies is None else strategies
    for s in names:
        if s not in STRATEGIES:
            raise ValueError(f"unknown strategy {s!r}; choose from: {', '.join(STRATEGIES)}")
    if not lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in lrs):
        raise ValueError(f"learning rates must be positive, got {lrs}")
    if steps < 2:  # `diverged` compares the last 10 % of the steps with the first: one step is compared with itself
        raise ValueError(f"a sweep run needs at least 2 steps (its divergence test compares the last steps' loss with "
                         f"the first step's), got {steps}")
    if jobs < 1 or threads < 1:
        raise ValueError(f"jobs and threads must be at least 1, got {jobs} / {threads}")
    seeds = (seed,) if seeds is None else tuple(seeds)
    size = {**SWEEP_SIZE, **(size or {})}
    size["d_vocab"] = _data(corpus).tokenizer.vocab_size
    rows = [] if done is None else done.to_dict("records")
    have = {(r["strategy"], int(r.get("seed", 0)), float(r["lr"])) for r in rows}
    todo = [(s, k, lr) for s in names for k in seeds for lr in lrs if (s, k, float(lr)) not in have]
    bar = tqdm(total=len(todo), desc="sweep", disable=not progress)

    def took(row: dict) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(pd.DataFrame(rows))
        bar.update(1)
        bar.set_postfix(strategy=row["strategy"], seed=row["seed"], lr=row["lr"])
    from interp.report.job_pool import run_tasks  # one job: in this process, in order; else worker processes (job_pool.start_method)
    tasks = [(_run, (corpus, s, lr, k, size, steps, batch_size, clip)) for s, k, lr in todo]
    run_tasks(tasks, jobs, on_done=lambda i, row, cpu: took(row), threads=threads,  # saved as each finishes
              fewer="jobs=1, `interp sweep --jobs 1`, uses the least memory; `--resume` keeps the runs already saved")
    bar.close()
    order = {key: i for i, key in enumerate((s, k, float(lr)) for s in names for k in seeds for lr in lrs)}
    rows.sort(key=lambda r: order.get((r["strategy"], int(r.get("seed", 0)), float(r["lr"])), -1))
    return pd.DataFrame(rows)
