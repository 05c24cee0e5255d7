"""`interp sweep`: the learning-rate stability sweep (interp.train.sweep) over the zoo's strategies."""
from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    import torch

    from interp.train.sweep import SWEEP_SIZE, lr_sweep
    torch.set_num_threads(args.threads)
    try:
        lrs = tuple(float(x) for x in args.lrs.split(","))
    except ValueError:
        raise ValueError(f"--lrs must be comma-separated numbers, got {args.lrs!r}") from None
    strategies = args.strategies.split(",") if args.strategies else None
    size = {"n_layers": args.layers} if args.layers else {}
    df = lr_sweep(strategies, lrs, steps=args.steps, batch_size=args.batch, size=size,
                  clip=args.clip, corpus=args.corpus, seed=args.seed, progress=not args.quiet)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from interp.zoo.io import atomic_write_bytes
    atomic_write_bytes(out / "sweep.csv", df.to_csv(index=False).encode())
    meta = {"size": {**SWEEP_SIZE, **size}, "lrs": lrs, "steps": args.steps, "batch_size": args.batch,
            "clip": args.clip, "corpus": args.corpus, "seed": args.seed, "threads": args.threads,
            "columns": "see interp/train/sweep.py"}
    atomic_write_bytes(out / "sweep.json", json.dumps(meta, indent=1).encode())
    table = df.pivot(index="strategy", columns="lr", values="final_loss").round(2)
    div = df.pivot(index="strategy", columns="lr", values="diverged")
    print(table.where(~div, "div").to_string())
    print(f"wrote {out / 'sweep.csv'}")


def register(sub) -> None:
    p = sub.add_parser("sweep", help="learning-rate stability sweep: every strategy over a ladder of peak lrs")
    p.add_argument("--strategies", default=None, help="comma-separated (default: all)")
    p.add_argument("--lrs", default="1e-3,3e-3,1e-2,3e-2,1e-1", help="comma-separated peak learning rates")
    p.add_argument("--steps", type=int, default=60, help="updates per run (default 60)")
    p.add_argument("--batch", type=int, default=8, help="sequences per batch (default 8)")
    p.add_argument("--layers", type=int, default=None, help="override the sweep depth (default 6)")
    p.add_argument("--clip", type=float, default=None, help="gradient clipping (default: off)")
    p.add_argument("--corpus", default="kjv")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="data/sweep", help="output folder (default data/sweep)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
