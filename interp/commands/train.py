"""`interp train`: train the whole zoo (`--zoo`: every strategy × seed of the plan, in parallel workers,
resumable) or named strategies with the shared recipe (interp.train.zoo)."""
from __future__ import annotations

import argparse


def _folder(flag: str, d, what: str) -> None:
    """--out / --runs: a folder or absent, with no file among the folders above it."""
    from interp.outputs import OutputRefused, check_parent
    if d.exists() and not d.is_dir():
        raise ValueError(f"{flag} {d} exists and is not a folder; give the folder {what} should go to")
    try:
        check_parent(d)
    except OutputRefused as e:
        raise OutputRefused(f"{flag}: {e}") from None


def run(args: argparse.Namespace) -> None:
    from pathlib import Path
    from interp.commands._check import at_least
    at_least(args, threads=1)
    if not args.zoo and not args.strategies:
        raise ValueError("say what to train: --zoo (every strategy and seed of the plan) or one or more strategy names")
    if args.steps is not None and args.steps < 1:  # the default (the zoo recipe's) is valid
        raise ValueError(f"--steps must be ≥ 1 (got {args.steps})")
    if args.workers < 1:
        raise ValueError(f"--workers must be ≥ 1 (got {args.workers})")
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be ≥ 1 (got {args.seeds})")
    out, runs = Path(args.out) if args.out else None, Path(args.runs)
    if out is not None:
        _folder("--out", out, "the checkpoints")
    _folder("--runs", runs, "the training state")
    import torch  # the checks above need none of these (a mistyped option fails in a moment)

    from interp.train import zoo_runner
    from interp.train.zoo import ZOO_DIR, ZOO_STEPS
    from interp.zoo import STRATEGIES
    for s in args.strategies:
        if s not in STRATEGIES:
            raise ValueError(f"unknown strategy {s!r}; choose from: {', '.join(STRATEGIES)}")
    if out is None:
        out = ZOO_DIR
        _folder("--out", out, "the checkpoints")
    torch.set_num_threads(args.threads)
    if args.steps is None:
        args.steps = ZOO_STEPS
    zoo_runner.check_manifest(out)  # a manifest.json there that the zoo did not write is refused before any work
    names = args.strategies or None
    seeds = {s: args.seeds for s in (names or zoo_runner.ZOO_SEEDS)} if args.seeds is not None else None
    zoo_runner.check_out(out, args.steps, names, seeds)  # a damaged <out>/<model>/config.json, before any work
    if not args.force:  # a finished model of another step count (the shipped zoo) is not replaced unasked
        zoo_runner.check_replace(out, args.steps, names, seeds)
    if args.workers == 1:
        while zoo_runner.run_next(out, runs, args.steps, names, seeds=seeds, progress=not args.quiet):
            pass
        zoo_runner.check_failed(out, runs, args.steps, names, seeds)
    else:
        zoo_runner.work(args.workers, out, runs, args.steps, names, n_seeds=args.seeds)


def register(sub) -> None:  # no interp.train import here: every `interp` command builds this parser (torch: ~4 s)
    p = sub.add_parser("train", help="train the zoo (every strategy × seed, one recipe) on the KJV; resumable")
    p.add_argument("strategies", nargs="*", help="strategy names (default with --zoo: the whole plan)")
    p.add_argument("--zoo", action="store_true", help="train every strategy and seed of the plan "
                                                      "(interp.train.zoo_runner.ZOO_SEEDS)")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 of each named strategy (default: the plan's)")
    p.add_argument("--workers", type=int, default=1, help="parallel training processes, one thread each (default 1)")
    p.add_argument("--steps", type=int, default=None,
                   help="updates per model (default: the zoo recipe's, interp.train.zoo.ZOO_STEPS)")
    p.add_argument("--out", default=None, help="where the checkpoints go (default data/zoo)")
    p.add_argument("--runs", default="out/zoo-runs", help="resumable training state (default out/zoo-runs)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--force", action="store_true",
                   help="replace finished models in --out trained for another number of steps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
