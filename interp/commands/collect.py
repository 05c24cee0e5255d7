"""`interp collect`: run collectors over a corpus and save the Results directory (what `interp report` reads).

    interp collect smollm2-135m --data kjv --max-tokens 100000 -o runs/smollm2
    interp collect data/zoo/pre-ln --data tokens.npy -o runs/pre-ln --nproc 4      # 4 processes (torchrun)
    torchrun --nnodes 2 --nproc-per-node 8 ... -m interp.cli collect ...          # several machines

With --nproc N the command launches torch.distributed.run itself (gloo on cpu, nccl on cuda, 127.0.0.1 and a
free port); each process reads its own shard and only collector states are exchanged. Under any torchrun
(WORLD_SIZE > 1 in the environment) it runs as one rank.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path

ERROR_DIR_ENV = "INTERP_ERROR_DIR"


def collector_classes() -> dict:
    """Collector name -> class, for every collector `interp.collect` exports."""
    import interp.collectors as C
    out = {}
    for n in C.__all__:
        obj = getattr(C, n)
        if isinstance(obj, type) and issubclass(obj, C.Collector) and obj is not C.Collector:
            out[obj.name] = obj
    return out


def make_collectors(spec: str | None) -> list | None:
    """--collectors: None is every forward collector; names are stripped, an empty one is refused."""
    if spec is None:
        return None
    classes = collector_classes()
    names = [n.strip() for n in spec.split(",")]
    if not all(names):
        raise ValueError(f"--collectors names no collector in {spec!r} (an empty name); give comma-separated "
                         f"names from: {', '.join(classes)}, or leave it out for every forward collector")
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise ValueError(f"unknown collector(s) {', '.join(unknown)}; choose from: {', '.join(classes)}")
    return [classes[n]() for n in names]


def _lines(path: Path):
    """The non-empty lines of a UTF-8 text file, one at a time (a bad byte is named with the file and line)."""
    n = 0
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):  # noqa: B007 - n names the line in the error below
                if line.strip():
                    yield line.rstrip("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (line {n + 1}: byte 0x{e.object[e.start]:02x} at offset "
                         f"{e.start} of the chunk read); convert it to UTF-8, or pass a .npy token file") from None


def open_data(spec: str, token_dtype: str | None = None):
    """A token file (.npy / .bin) or text file (one text per non-empty line) as a stream; else a corpus name
    for interp.data.load_corpus ('kjv', 'austen', a folder, 'hf:NAME'), one text per book."""
    from interp.collectors.stream import TokenFile
    p = Path(spec)
    if p.suffix in (".npy", ".bin"):
        return TokenFile(p, dtype=token_dtype)
    if p.is_file():
        return _lines(p)
    from interp.data import load_corpus
    return [b.text for b in load_corpus(spec).books]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_argv(a: argparse.Namespace) -> list[str]:
    argv = [a.model, "--data", a.data, "--out", a.out, "--batch-size", str(a.batch_size), "--device", a.device,
            "--dtype", a.dtype, "--threads", str(a.threads),
            "--checkpoint-every", str(a.checkpoint_every)] + (["--force"] if a.force else [])
    for flag, v in (("--collectors", a.collectors), ("--max-tokens", a.max_tokens), ("--state-dir", a.state_dir),
                    ("--token-dtype", a.token_dtype), ("--tokenizer", a.tokenizer)):
        if v is not None:
            argv += [flag, str(v)]
    return argv + (["--exclude-first"] if a.exclude_first else []) + (["--quiet"] if a.quiet else [])


def launch(a: argparse.Namespace, timeout: float | None = None) -> None:
    """Run this command as `a.nproc` ranks under torch.distributed.run; on failure raise naming the rank."""
    with tempfile.TemporaryDirectory(prefix="interp-collect-") as errs:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(a.nproc),
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "interp.cli", "collect",
               *worker_argv(a)]
        env = {**os.environ, ERROR_DIR_ENV: errs, "OMP_NUM_THREADS": str(a.threads)}
        tail: deque[str] = deque(maxlen=60)
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, errors="replace")
        for line in proc.stderr:  # type: ignore[union-attr]
            tail.append(line)
            if not a.quiet:
                sys.stderr.write(line)
        rc = proc.wait(timeout)
        if rc == 0:
            return
        failed = Path(errs, "failed.err")  # every rank heard which rank failed, and why
        if failed.is_file():
            raise RuntimeError(f"collection failed: {failed.read_text().strip()}")
        text = "".join(tail)  # a rank died without telling the others: torchrun names it
        root = re.search(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", text, re.S)
        if root is None:
            raise RuntimeError(f"collection failed: torchrun exited with code {rc} (no results written)")
        r, code = root.groups()
        own = Path(errs, f"rank{r}.err")
        why = f": {own.read_text().strip()}" if own.is_file() else ""
        raise RuntimeError(f"collection failed: rank {r} exited with code {code}{why} "
                           "(the other ranks were stopped; no results written)")


def check_args(a: argparse.Namespace) -> None:
    """Every argument checked before any work: one line naming the argument and what is wrong. The checks that
    need no torch come first, so a mistyped option or path fails before torch is imported."""
    from interp.commands._check import at_least, dir_target, exists_or_corpus
    at_least(a, batch_size=1, nproc=1, threads=1, checkpoint_every=1, max_tokens=1)
    exists_or_corpus(a.data, "--data")
    p = Path(a.data)
    if p.suffix == ".bin" and a.token_dtype is None:
        raise ValueError(f"--data {p} is a raw token file without a dtype; pass --token-dtype "
                         "(uint16, int32, uint32 or int64: how it was written) or save a .npy instead")
    if a.token_dtype is not None and p.suffix != ".bin":
        raise ValueError(f"--token-dtype applies to raw .bin token files only; {p.name} is not one")
    dir_target(a.out, "results", a.force)  # refuse a protected -o before any work (interp/outputs.py)
    if a.state_dir is not None and Path(a.state_dir).exists() and not Path(a.state_dir).is_dir():
        raise ValueError(f"--state-dir {a.state_dir} exists and is not a folder; choose another path")
    make_collectors(a.collectors)  # these import torch
    if a.tokenizer is not None:
        from interp.models.locate import tokenizer_dir
        tokenizer_dir(a.tokenizer)  # a folder with tokenizer files, before any rank starts
    from interp.device import resolve_dtype
    resolve_dtype(a.dtype)


def run(a: argparse.Namespace) -> None:
    worker = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if a.quiet:
        from interp.commands._model import quiet_loading
        quiet_loading()
    if not worker:
        check_args(a)
    import torch
    torch.set_num_threads(a.threads)
    if a.nproc > 1 and not worker:
        launch(a)
        return
    import interp
    from interp.collectors.sharded import collect_sharded
    rank = int(os.environ.get("RANK", "0"))
    try:
        model = interp.load_model(a.model, dtype=a.dtype, device="cpu",  # placed on its rank's device below
                                  tokenizer=a.tokenizer)
        if getattr(model, "tokenizer", None) is None and Path(a.data).suffix not in (".npy", ".bin"):
            raise ValueError(f"{a.model} has no tokenizer, so --data {a.data} cannot be encoded; pass a .npy or "
                             ".bin token file")
        res = collect_sharded(model, open_data(a.data, a.token_dtype), make_collectors(a.collectors),
                              batch_size=a.batch_size, max_tokens=a.max_tokens, exclude_first=a.exclude_first,
                              progress=not a.quiet, distributed=worker, device=a.device, dtype=a.dtype,
                              state_dir=a.state_dir, checkpoint_every=a.checkpoint_every, out=a.out,
                              force=a.force)
    except BaseException as e:
        from interp.collectors.distributed import RankFailed
        errs = os.environ.get(ERROR_DIR_ENV)
        if errs and worker:
            line = str(e).splitlines()[0] if str(e) else type(e).__name__
            Path(errs, "failed.err" if isinstance(e, RankFailed) else f"rank{rank}.err").write_text(line)
        raise
    if rank == 0 and not a.quiet:
        m = res.meta
        print(f"{m['n_tokens']} tokens, {m['n_batches']} batches on {m['world_size']} process(es) in "
              f"{m['seconds']:.1f} s -> {a.out}")


def register(sub) -> None:
    from interp.commands._model import add_tokenizer_option
    p = sub.add_parser("collect", help="run collectors over a corpus (optionally on N processes) and save results")
    p.add_argument("model", help="registry name (interp models), zoo checkpoint or transformers checkpoint path")
    p.add_argument("--data", required=True, help="token file (.npy/.bin), text file (one text per line), or corpus "
                                                 "name ('kjv', 'austen', a folder, hf:NAME)")
    p.add_argument("-o", "--out", required=True, help="results directory (written atomically; must not exist, "
                                                         "be empty, or be an earlier result with --force)")
    p.add_argument("--force", action="store_true", help="replace an earlier results directory at --out")
    p.add_argument("--collectors", default=None, help="comma-separated names (default: every forward collector)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=None, help="stop after this many tokens")
    p.add_argument("--exclude-first", action="store_true", help="leave position 0 (BOS) out of every statistic")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", default="fp32", help="model precision: fp32 (default) or bf16; statistics are float64")
    p.add_argument("--token-dtype", default=None, help="dtype of a raw .bin token file (uint16, int32, uint32, "
                                                       "int64); required for .bin, which does not record it")
    p.add_argument("--nproc", type=int, default=1, help="processes on this machine (launches torchrun)")
    p.add_argument("--state-dir", default=None, help="write resumable per-rank state here; rerun to resume")
    p.add_argument("--checkpoint-every", type=int, default=50, help="batches between state files (default 50)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_tokenizer_option(p)
    p.set_defaults(func=run)
