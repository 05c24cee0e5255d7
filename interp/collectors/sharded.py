"""`interp.collect(model, data, ..., distributed=True / device= / dtype= / state_dir= / out=)`: the same
collection as `driver.collect`, batch for batch, but over a stream, on any device, resumable, and sharded
over the ranks of a torchrun job (batch i runs on rank i % world; states merged by their rules at the end).

Each batch is run by the driver's own `run_batches`, so a batch's statistics are those one process computes;
only the order in which float64 sums are added differs (relative error ~1e-15).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from interp.collectors import distributed as D
from interp.collectors.base import Collector
from interp.collectors.batches import check_batch_size, check_max_tokens, model_context, model_vocab
from interp.collectors.driver import check_collectors, check_measured, run_batches
from interp.collectors.resume import Checkpoint, check_checkpoint_every
from interp.collectors.results import KIND as RESULTS_KIND, Results
from interp.collectors.stream import TokenFile, is_stream, shard_batches
from interp.device import model_device, place, resolve_device
from interp.fingerprint import StreamDigest, sha256_file, sha256_model
from interp.outputs import check_dir_target

SCALE_OPTIONS = frozenset({"distributed", "device", "dtype", "state_dir", "checkpoint_every", "out", "force"})
def _fingerprint(model, data, collectors, batch_size, max_tokens, exclude_first, overflow, world) -> dict:
    """What a state file must match to be resumed: the model's weights (SHA-256), the data (a token file's
    SHA-256 and window length; a stream's content is checked on resume by StreamDigest), the collectors and
    their options."""
    if isinstance(data, TokenFile):
        src = {"data": "token_file", "token_file_sha256": sha256_file(data.path), "n_tokens": len(data),
               "dtype": str(data.tokens.dtype), "window": data.window(model_context(model), max_tokens)[0]}
    else:
        src = {"data": "stream" if is_stream(data) else "sequences"}
    return {"model": model.card.name, "weights_sha256": sha256_model(model), "batch_size": batch_size,
            "max_tokens": max_tokens, "exclude_first": exclude_first, "overflow": overflow, "world": world,
            "collectors": {c.name: {"type": type(c).__name__, **c.config()} for c in collectors}, **src}


def _with_digest(pos: dict, digest: StreamDigest | None) -> dict:
    return pos if digest is None else {**pos, "data_sha256": digest.hexdigest()}


def collect_sharded(model, data, collectors: Sequence[Collector] | None = None, batch_size: int = 8,
                    max_tokens: int | None = None, exclude_first: bool = False, overflow: str = "split",
                    progress: bool = True, *, distributed: bool = False, device: str | None = None,
                    dtype: str | torch.dtype | None = None, state_dir: str | Path | None = None,
                    checkpoint_every: int = 50, out: str | Path | None = None, force: bool = False) -> Results:
    """Collect over `data` (anything `collect` takes, an iterator of texts, or a TokenFile) and return Results.

    distributed: run as one rank of a torchrun job (every rank gets the merged Results; rank 0 saves `out`).
    device / dtype: where and in which precision the model runs ("cpu", "cuda", "auto"; "fp32", "bf16").
    state_dir: write a per-rank state file every `checkpoint_every` batches and resume from it if present;
    it is removed once the results are complete. out: save the Results there (atomically, rank 0 only); an
    existing `out` must be an earlier results directory and `force` set, else OutputRefused before any work.
    """
    collectors = check_collectors(collectors)
    check_max_tokens(max_tokens)
    check_batch_size(batch_size)
    check_checkpoint_every(checkpoint_every)
    if overflow not in ("split", "truncate", "error"):  # a TokenFile's windows never overflow: check it here
        raise ValueError(f"unknown overflow {overflow!r}; choose 'split', 'truncate' or 'error'")
    if out is not None:
        check_dir_target(out, RESULTS_KIND, force)
        if state_dir is not None and Path(out).resolve() in (Path(state_dir).resolve(), *Path(state_dir).resolve().parents):
            raise ValueError(f"state_dir {state_dir} lies inside out {out}, which the results replace; choose a "
                             "state_dir outside it (e.g. beside it)")
    if isinstance(data, TokenFile):  # every id the run would read, before any work
        data.check_ids(model_vocab(model), max_tokens)
    rank, world, local = D.env_world() if distributed else (0, 1, 0)
    dev = resolve_device(device) if device is not None else model_device(model)
    if distributed and dev.type == "cuda" and not (isinstance(device, str) and ":" in device):
        dev = torch.device("cuda", local)  # one GPU per local rank, unless a "cuda:N" was named
    created = D.init(dev) if distributed else False
    try:
        if distributed:
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        return _run(model, data, collectors, batch_size, max_tokens, exclude_first, overflow, progress,
                    distributed, dev, dtype, state_dir, checkpoint_every, out, rank, world, force)
    finally:
        if created:
            torch.distributed.destroy_process_group()


def _run(model, data, collectors, batch_size, max_tokens, exclude_first, overflow, progress, distributed, dev,
         dtype, state_dir, checkpoint_every, out, rank, world, force=False) -> Results:
    place(model, dev, dtype)
    for c in collectors:
        c.bind(model)
        c.state = {k: v.to(dev) for k, v in c.state.items()}  # float64 wherever the model runs
    ckpt = None
    if state_dir is not None:
        ckpt = Checkpoint(state_dir, rank, world, _fingerprint(model, data, collectors, batch_size, max_tokens,
                                                               exclude_first, overflow, world), checkpoint_every)
    pos = {"next_batch": 0, "n_tokens": 0, "n_sequences": 0, "n_batches": 0}
    error: BaseException | None = None
    t0 = time.perf_counter()
    bar = tqdm(unit="tok", desc=f"collect rank {rank}/{world}" if world > 1 else "collect",
               disable=not progress or rank != 0, leave=False)
    digest = None
    try:
        if ckpt is not None:
            pos = ckpt.load(collectors) or pos
            if not isinstance(data, TokenFile):  # re-read up to the saved position and check it is the same data
                digest = StreamDigest(pos["next_batch"], pos.get("data_sha256") if pos["next_batch"] else None,
                                      f"the data of this run ({type(data).__name__})")
        done_here = 0
        for i, seqs in shard_batches(model, data, batch_size, model_context(model), overflow, max_tokens,
                                     rank, world, start=pos["next_batch"], tap=digest):
            meta = run_batches(model, seqs, collectors, batch_size=len(seqs), exclude_first=exclude_first,
                               overflow="error", progress=False, first_seq=i * batch_size, first_batch=i)
            pos = {"next_batch": i + 1, "n_tokens": pos["n_tokens"] + meta["n_tokens"],
                   "n_sequences": pos["n_sequences"] + len(seqs), "n_batches": pos["n_batches"] + 1}
            bar.update(meta["n_tokens"])
            done_here += 1
            if ckpt is not None and ckpt.due(done_here):
                ckpt.save(collectors, _with_digest(pos, digest))
        if digest is not None:
            digest.finish()
        if ckpt is not None:
            ckpt.save(collectors, _with_digest({**pos, "next_batch": 1 << 62, "complete": True}, digest))
    except BaseException as e:  # noqa: BLE001 — every rank must hear about it before anyone waits on a merge
        if not distributed:
            raise
        error = e
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    sent = D.state_bytes(collectors)
    counts = {k: pos[k] for k in ("n_tokens", "n_sequences", "n_batches")}
    if distributed:
        D.check_all(error, rank, world, dev, f"after {pos['n_batches']} of its batches (global batch "
                                             f"{pos['next_batch'] - 1 if pos['n_batches'] else 'none'} done)")
        sent = D.reduce_states(collectors, dev)
        counts = D.reduce_counts(counts, dev)
        seconds = D.reduce_counts({"s": seconds}, dev, op="max")["s"]
    check_measured(int(counts["n_tokens"]), int(counts["n_sequences"]), exclude_first)  # every rank, same counts
    for c in collectors:
        c.state = {k: v.cpu() for k, v in c.state.items()}
    res = _results(model, collectors, counts, batch_size, exclude_first, overflow, seconds, world, sent, dev)
    save_error = None
    if out is not None and rank == 0:
        try:
            res.save(out, force=force)
        except BaseException as e:  # noqa: BLE001
            if not distributed:
                raise
            save_error = e
    if distributed:
        D.check_all(save_error, rank, world, dev, "while saving the results")
    if ckpt is not None:
        ckpt.remove()
    return res


def _results(model, collectors, counts, batch_size, exclude_first, overflow, seconds, world, sent, dev) -> Results:
    meta = {"n_tokens": int(counts["n_tokens"]), "n_sequences": int(counts["n_sequences"]),
            "n_batches": int(counts["n_batches"]), "batch_size": batch_size, "exclude_first": exclude_first,
            "overflow": overflow, "seconds": seconds, "world_size": world, "device": str(dev),
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "state_bytes_per_rank": sent,
            "collectors": {c.name: {"type": type(c).__name__, **c.config()} for c in collectors}}
    tables: dict = {}
    for c in collectors:
        tables.update(c.tables())
    return Results(tables=tables, card=model.card, meta=meta, states={c.name: c.state_dict() for c in collectors})
