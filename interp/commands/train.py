"""`interp train`: train the zoo (`--zoo`) or some strategies with the shared recipe (interp.train.zoo)."""
from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> None:
    import torch
    from interp.train.zoo import ZOO_DIR, train_zoo
    from interp.zoo import STRATEGIES
    torch.set_num_threads(args.threads)
    if not args.zoo and not args.strategies:
        raise ValueError("say what to train: --zoo (all strategies) or one or more strategy names")
    for s in args.strategies:
        if s not in STRATEGIES:
            raise ValueError(f"unknown strategy {s!r}; choose from: {', '.join(STRATEGIES)}")
    train_zoo(out=args.out or ZOO_DIR, runs=args.runs, strategies=None if args.zoo else args.strategies,
              steps=args.steps, lr=args.lr, corpus=args.corpus, seed=args.seed, warmup=args.warmup,
              exceptions=not args.no_exceptions, progress=not args.quiet)


def register(sub) -> None:
    from interp.train.zoo import ZOO_STEPS
    p = sub.add_parser("train", help="train the zoo (every strategy, one recipe) on the KJV; resumable")
    p.add_argument("strategies", nargs="*", help="strategy names (default with --zoo: all)")
    p.add_argument("--zoo", action="store_true", help="train every strategy in interp.STRATEGIES")
    p.add_argument("--steps", type=int, default=ZOO_STEPS, help=f"updates per model (default {ZOO_STEPS})")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 10 %% of --steps)")
    p.add_argument("--no-exceptions", action="store_true",
                   help="train every strategy with the shared recipe (no per-strategy lr or b_U init, see ZOO_EXCEPTIONS)")
    p.add_argument("--corpus", default="kjv", help="'kjv', 'austen', a text file or folder, or hf:NAME")
    p.add_argument("--out", default=None, help="where the checkpoints go (default data/zoo)")
    p.add_argument("--runs", default="out/zoo-runs", help="resumable training state (default out/zoo-runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
