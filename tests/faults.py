"""Fault injection for the tests, kept out of library code: make a collection fail after N of a rank's batches,
or a low-precision format's forward raise (`broken_format`).

In this process: `with fail_after(2): interp.collect(...)` raises RuntimeError("injected failure ...") when the
third batch would start (two batches done, their state saved). In the processes a command starts (torchrun
ranks): `env(rank=1, after=1, mode="exit")` is the environment that loads tests/faults_site/sitecustomize.py,
which installs the same fault in the rank named, or exits that process with code 3 (a hard crash).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

ENV = "INTERP_TEST_FAIL"  # "<rank>:<after batches>[:raise|exit]"
SITE = Path(__file__).resolve().parent / "faults_site"


def _failing(run_batches, after: int, mode: str):
    done = {"n": 0}

    def run(*args, **kwargs):
        if done["n"] >= after:
            if mode == "exit":
                os._exit(3)  # no exception, no clean-up
            raise RuntimeError(f"injected failure after {done['n']} batches")
        out = run_batches(*args, **kwargs)
        done["n"] += 1
        return out
    return run


@contextlib.contextmanager
def fail_after(after: int, mode: str = "raise"):
    """Within the block, collections in this process fail once `after` batches are done."""
    import interp.collectors.sharded as sharded
    real = sharded.run_batches
    sharded.run_batches = _failing(real, after, mode)
    try:
        yield
    finally:
        sharded.run_batches = real


def install(spec: str) -> None:
    """Install the fault `spec` ("<rank>:<after>[:mode]") in this process if it is that rank (RANK, default 0)."""
    rank, after, *mode = spec.split(":")
    if int(rank) == int(os.environ.get("RANK", "0")):
        import interp.collectors.sharded as sharded
        sharded.run_batches = _failing(sharded.run_batches, int(after), mode[0] if mode else "raise")


def env(rank: int, after: int, mode: str = "raise") -> dict[str, str]:
    """Environment for a subprocess (and the ranks it starts) in which `rank` fails after `after` batches."""
    path = os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p)
    return {ENV: f"{rank}:{after}:{mode}", "PYTHONPATH": path}


def broken_format(monkeypatch, fmt: str, message: str) -> None:
    """Every low-precision twin in format `fmt` (interp.precision.runs) raises RuntimeError(message) when run."""
    import interp.precision.runs as R
    real = R.low_precision

    def broken(m, f, linear):
        twin, notes = real(m, f, linear)
        if f == fmt:
            def fail(*a, **k):
                raise RuntimeError(message)
            twin.forward = fail
        return twin, notes
    monkeypatch.setattr(R, "low_precision", broken)
