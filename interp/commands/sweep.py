"""`interp sweep`: the learning-rate stability sweep (interp.train.sweep) over the zoo's strategies."""
from __future__ import annotations

import argparse
from pathlib import Path

SWEEP_FILES = ("sweep.csv", "sweep.partial.csv")


def check_out(out: Path, resume: bool, force: bool) -> None:
    """--out: new, empty, or a sweep folder (its marker or sweep files); an earlier sweep needs --resume or
    --force. Only the sweep's own files are ever written there; anything else in the folder is left alone."""
    from interp.outputs import OutputRefused, marker_kind
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputRefused(f"--out {out} exists and is not a folder; choose another path")
    names = {e.name for e in out.iterdir()}
    if not names:
        return
    if marker_kind(out) != "sweep" and not names & set(SWEEP_FILES):
        raise OutputRefused(f"--out {out} is not empty and holds no sweep (no sweep.csv); refusing to write there: "
                            "choose another folder")
    if not (resume or force):
        raise OutputRefused(f"--out {out} already holds a sweep; pass --resume to extend it or --force to replace it")


def _damaged(path: Path, why: str) -> ValueError:
    return ValueError(f"{path} is damaged ({why}), so the sweep in {path.parent} cannot be resumed; pass --force "
                      "instead of --resume to start it over (replacing it), or use another --out")


def read_meta(path: Path) -> dict:
    """A sweep's settings file (sweep.json / sweep.partial.json) for --resume; damaged: one line naming it."""
    from interp.outputs import read_json
    old = read_json(path, lambda why: _damaged(path, why))
    if not isinstance(old, dict):
        raise _damaged(path, f"a JSON {type(old).__name__}, not an object of settings")
    return old


def read_rows(path: Path):
    """A sweep's table (sweep.csv / sweep.partial.csv) for --resume; damaged: one line naming it."""
    import pandas as pd
    try:
        df = pd.read_csv(path)
    except UnicodeDecodeError:
        raise _damaged(path, "not UTF-8 text") from None
    except (ValueError, pd.errors.ParserError) as e:  # EmptyDataError is a ValueError
        raise _damaged(path, f"not a CSV table: {' '.join(str(e).split())}") from None
    missing = [c for c in ("strategy", "lr") if c not in df.columns]
    if missing:
        raise _damaged(path, f"no {' or '.join(missing)} column")
    if not pd.api.types.is_numeric_dtype(df["lr"]):
        raise _damaged(path, "its lr column is not numbers")
    return df


def run(args: argparse.Namespace) -> None:
    import json

    from interp.commands._check import at_least, positive_finite
    from interp.outputs import atomic_write_bytes, write_marker
    at_least(args, steps=2, batch=1, layers=1, threads=1, jobs=1, seed=0)
    positive_finite(args, "clip")
    try:
        lrs = tuple(float(x) for x in args.lrs.split(","))
        seeds = tuple(int(x) for x in args.seeds.split(",")) if args.seeds else (args.seed,)
    except ValueError:
        raise ValueError(f"--lrs must be comma-separated numbers and --seeds integers, got {args.lrs!r} / "
                         f"{args.seeds!r}") from None
    if not all(0 < x < float("inf") for x in lrs) or min(seeds) < 0:
        raise ValueError(f"--lrs must be finite numbers above 0 and --seeds whole numbers ≥ 0, got {args.lrs!r} / "
                         f"{seeds}")
    if args.out is None:  # the repository's data/sweep, where the report reads it (beside data/zoo), from any folder
        from interp.data import DATA_DIR
        args.out = str(DATA_DIR / "sweep")
    check_out(Path(args.out), args.resume, args.force)
    import torch  # the checks above need none of these (a mistyped option fails in a moment)

    from interp.train.sweep import SWEEP_SIZE, lr_sweep
    from interp.zoo import STRATEGIES
    strategies = [s.strip() for s in args.strategies.split(",")] if args.strategies else None
    if strategies is not None and not all(strategies):
        raise ValueError(f"--strategies names an empty strategy in {args.strategies!r}; give comma-separated names "
                         "(see interp strategies), or leave it out for all")
    unknown = [s for s in strategies or [] if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {', '.join(unknown)} in --strategies; choose from: {', '.join(STRATEGIES)}")
    torch.set_num_threads(args.threads)
    size = {"n_layers": args.layers} if args.layers else {}
    out = Path(args.out)
    meta = {"size": {**SWEEP_SIZE, **size}, "lrs": lrs, "steps": args.steps, "batch_size": args.batch,
            "clip": args.clip, "corpus": args.corpus, "seeds": seeds, "threads": args.threads,
            "columns": "see interp/train/sweep.py"}
    partial, pmeta = out / "sweep.partial.csv", out / "sweep.partial.json"
    done = None
    src, smeta = (partial, pmeta) if partial.is_file() else (out / "sweep.csv", out / "sweep.json")
    if args.resume and src.is_file():  # an interrupted sweep, or a finished one to extend (more lrs / seeds)
        old = read_meta(smeta) if smeta.is_file() else {}
        same = {k: v for k, v in meta.items() if k not in ("lrs", "seeds", "threads")}
        if {k: old.get(k) for k in same} != json.loads(json.dumps(same)) or "seeds" not in old:
            raise ValueError(f"{src} was written with other settings ({old}); drop --resume or use another --out")
        done = read_rows(src)
        meta["lrs"] = tuple(sorted(set(meta["lrs"]) | set(old.get("lrs", ()))))
        meta["seeds"] = tuple(sorted(set(meta["seeds"]) | set(old.get("seeds", ()))))
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "sweep")
    atomic_write_bytes(pmeta, json.dumps(meta, indent=1).encode())
    save = lambda df: atomic_write_bytes(partial, df.to_csv(index=False).encode())
    df = lr_sweep(strategies, lrs, steps=args.steps, batch_size=args.batch, size=size, clip=args.clip,
                  corpus=args.corpus, seeds=seeds, progress=not args.quiet, done=done, on_row=save,
                  jobs=args.jobs, threads=args.threads)
    atomic_write_bytes(out / "sweep.csv", df.to_csv(index=False).encode())
    atomic_write_bytes(out / "sweep.json", json.dumps(meta, indent=1).encode())
    partial.unlink(missing_ok=True)
    pmeta.unlink(missing_ok=True)
    table = df.groupby(["strategy", "lr"]).final_loss.mean().unstack().round(2)
    div = df.groupby(["strategy", "lr"]).diverged.mean().unstack()
    print(table.astype(object).where(div == 0, div.map(lambda f: f"div {f:.0%}")).to_string())
    print(f"wrote {out / 'sweep.csv'}")


def register(sub) -> None:
    p = sub.add_parser("sweep", help="learning-rate stability sweep: every strategy over a ladder of peak lrs")
    p.add_argument("--strategies", default=None, help="comma-separated (default: all)")
    p.add_argument("--lrs", default="1e-3,3e-3,1e-2,3e-2,1e-1,3e-1,1,3,10", help="comma-separated peak learning rates")
    p.add_argument("--steps", type=int, default=60, help="updates per run (default 60)")
    p.add_argument("--batch", type=int, default=8, help="sequences per batch (default 8)")
    p.add_argument("--layers", type=int, default=None, help="override the sweep depth (default 6)")
    p.add_argument("--clip", type=float, default=None, help="gradient clipping (default: off)")
    p.add_argument("--corpus", default="kjv")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: --seed)")
    p.add_argument("--resume", action="store_true", help="keep the runs of an interrupted sweep in --out")
    p.add_argument("--out", default=None, help="output folder (default: the repository's data/sweep, where the "
                   "report reads it): new, empty, or a sweep folder with --resume / --force")
    p.add_argument("--force", action="store_true", help="replace the sweep already in --out")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process (default 1); the "
                                                       "rows equal a serial sweep's")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
