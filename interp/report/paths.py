"""The report's input folders, found and checked before any work. Needs no pandas or torch, so `interp report`
runs it before importing them (interp.report.inputs.load_dirs runs it too)."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

INDEX = "results.json"  # a saved Results' index file: interp.collectors.results.INDEX (that module imports torch)


def results_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """The saved results folders under each path (the path itself, or its immediate subdirectories); a path that
    does not exist, is a file or holds none raises one line naming it."""
    out, paths = [], [Path(p) for p in paths]
    for p in paths:  # every path checked before any is searched
        if not p.exists():
            raise FileNotFoundError(f"results directory {p} does not exist; run `interp collect` first")
        if not p.is_dir():
            raise NotADirectoryError(f"{p} is a file, not a results directory; pass the folders written by "
                                     "`interp collect` (or a folder of them)")
    for p in paths:
        if (p / INDEX).is_file():
            out.append(p)
            continue
        subs = sorted(d for d in p.iterdir() if (d / INDEX).is_file())
        if not subs:
            raise FileNotFoundError(f"{p} holds no saved results ({INDEX} in it or in a subdirectory)")
        out += subs
    return out
