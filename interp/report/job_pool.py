"""The main job's tasks on worker processes: one task per model (or per independent step), biggest first.

Tasks are top-level functions `fn(*args) -> (value, log lines)`, so a spawned worker can import and run them.
With one worker they run in this process, in order (no process start-up, what a small run or a test wants).
Each worker runs torch on one thread: on two cores, two single-threaded processes do more work than one process
on two threads, and models are independent. Results come back in submission order
whatever order the workers finish in, so the report does not depend on scheduling.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing import get_all_start_methods, get_context
from typing import Any

Task = tuple[Callable[..., Any], tuple]  # (top-level function, its arguments)


def env_count(name: str, default: int) -> int:
    """The whole number ≥ 1 in environment variable `name` (`default` when unset or empty); anything else is one
    ValueError naming the variable, its value and what to set."""
    env = os.environ.get(name, "").strip()
    if not env:
        return default
    try:
        n = int(env)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"environment variable {name}={os.environ[name]!r} must be a whole number, at least 1 "
                         f"(e.g. {name}={default}); set it so or unset it")
    return n


def default_workers() -> int:
    """INTERP_JOB_WORKERS, else 2 where there are at least 2 cores (1 otherwise)."""
    return env_count("INTERP_JOB_WORKERS", 2 if (os.cpu_count() or 1) >= 2 else 1)


def _init_worker(threads: int) -> None:
    """One worker's set-up: `threads` torch threads, and no Hugging Face progress bars (two workers loading models
    at once draw them over each other and over the job's own log lines; a load from the cache takes seconds)."""
    import torch
    torch.set_num_threads(threads)
    if "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ:  # a user's own setting stands
        from huggingface_hub.utils import disable_progress_bars
        from transformers.utils import logging
        disable_progress_bars()
        logging.disable_progress_bar()  # transformers keeps its own flag, read from the variable at its import


def _timed(fn: Callable, args: tuple) -> tuple[Any, float]:
    t = time.process_time()
    return fn(*args), time.process_time() - t


def start_method(threads: int) -> str:
    """How workers start: forked where the platform can, each runs torch on one thread and this process runs no
    other Python thread, so a worker begins with the modules this process has imported (a spawned one imports
    torch, transformers and interp again, ~4 CPU-s each); spawned otherwise: a forked child that runs torch on
    several threads may inherit a stale OpenMP thread pool, and one forked beside another thread (a notebook
    kernel's, a test runner's) may inherit a lock that thread held, either way to hang.
    INTERP_JOB_START=spawn spawns them always."""
    how = os.environ.get("INTERP_JOB_START", "").strip()
    if how not in ("", "spawn"):
        raise ValueError(f"environment variable INTERP_JOB_START={how!r} must be 'spawn' (workers started afresh) "
                         "or unset; set it so or unset it")
    if how == "spawn":
        return "spawn"
    alone = threading.active_count() == 1
    return "fork" if threads == 1 and alone and "fork" in get_all_start_methods() else "spawn"


@contextmanager
def task_pool(workers: int, threads: int = 1) -> Iterator[ProcessPoolExecutor | None]:
    """`workers` worker processes (`threads` torch threads each, started as `start_method` says) for
    `run_tasks(..., pool=)` and for work submitted after it (`pool.submit`); None with one worker (then everything
    runs in this process)."""
    if workers <= 1:
        yield None
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context(start_method(threads)),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        yield pool


def run_tasks(tasks: Sequence[Task], workers: int, on_done: Callable[[int, Any, float], None] | None = None,
              threads: int = 1, pool: ProcessPoolExecutor | None = None,
              fewer: str = "INTERP_JOB_WORKERS=1 uses the least memory") -> list[Any]:
    """Run `tasks` (submitted in the order given: put the biggest first) on `workers` processes (or on `pool`,
    from `task_pool`, which stays up for later work); returns their values in the same order.
    `on_done(i, value, cpu_seconds)` is called as each finishes (in this process); `fewer` says how the caller's
    user asks for fewer workers (named when a worker is killed)."""
    out: list[Any] = [None] * len(tasks)
    if pool is None and (workers <= 1 or len(tasks) <= 1):
        for i, (fn, args) in enumerate(tasks):
            out[i], cpu = _timed(fn, args)
            if on_done:
                on_done(i, out[i], cpu)
        return out
    if pool is None:
        with task_pool(min(workers, len(tasks)), threads) as own:
            return run_tasks(tasks, workers, on_done, threads, own, fewer)
    futures = {pool.submit(_timed, fn, args): i for i, (fn, args) in enumerate(tasks)}
    finished = 0
    for f in as_completed(futures):
        i = futures[f]
        try:
            out[i], cpu = f.result()  # a task's exception is raised here, with its traceback
        except BrokenExecutor as e:
            raise RuntimeError(f"a worker process died abruptly (killed: out of memory?) with {len(tasks) - finished} "
                               f"of {len(tasks)} tasks unfinished; run again with fewer workers "
                               f"({fewer})") from e
        except BaseException:
            for g in futures:  # the queued tasks are not started: the error surfaces now, not after all of them
                g.cancel()
            raise
        finished += 1
        if on_done:
            on_done(i, out[i], cpu)
    return out
