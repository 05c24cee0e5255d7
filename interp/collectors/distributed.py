"""torch.distributed plumbing for sharded collection: join the process group torchrun set up, tell every rank
when one failed (naming it), and combine collector states by each key's merge rule:
  sum → all_reduce(SUM)   max → all_reduce(MAX)   min → all_reduce(MIN)
  topk group → all_gather of each field, then the exact top-k re-selection of `TopK.select` (rank order).
Only these fixed-size float64 states cross the wire, never activations.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Sequence

import torch
import torch.distributed as dist

from interp.collectors.base import Collector

ERR_LEN = 400  # bytes of each rank's error message shared with the others


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside it."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init(device: torch.device, timeout_s: float | None = None) -> bool:
    """Join the process group (gloo on cpu, nccl on cuda) unless already joined; True when this call created
    it. Needs torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)."""
    if dist.is_initialized():
        return False
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"distributed=True needs a launcher: {', '.join(missing)} not set; run under "
                           "`torchrun --nproc-per-node N script.py` or use `interp collect --nproc N`")
    timeout = timedelta(seconds=timeout_s or float(os.environ.get("INTERP_DIST_TIMEOUT", 1800)))
    backend = "nccl" if device.type == "cuda" else "gloo"
    kw = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend=backend, timeout=timeout, **kw)
    return True


def comm_device(device: torch.device) -> torch.device:
    """Where tensors must sit for the group's backend (nccl: the GPU; gloo: the CPU)."""
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


class RankFailed(RuntimeError):
    """Raised on every rank when some rank of the job failed; the message names the failed rank(s)."""


def check_all(error: BaseException | None, rank: int, world: int, device: torch.device, where: str) -> None:
    """Collective: every rank says whether it failed (and `where`, e.g. after how many batches); if any did,
    raise RankFailed on every rank naming the failed ranks and their first error line."""
    msg = ""
    if error is not None:
        first = str(error).splitlines()[0] if str(error) else ""
        msg = f"{where}: {type(error).__name__}: {first}"
    buf = torch.zeros(ERR_LEN + 1, dtype=torch.uint8)
    if error is not None:
        raw = msg.encode()[:ERR_LEN]
        buf[0] = 1
        buf[1:1 + len(raw)] = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    dev = comm_device(device)
    out = [torch.zeros_like(buf, device=dev) for _ in range(world)]
    dist.all_gather(out, buf.to(dev))
    failed = [(r, bytes(b[1:].cpu().tolist()).rstrip(b"\0").decode(errors="replace"))
              for r, b in enumerate(out) if int(b[0])]
    if failed:
        lines = "; ".join(f"rank {r} failed {m}" for r, m in failed)
        raise RankFailed(f"{lines} (job of {world} processes stopped; no results written)")


def reduce_states(collectors: Sequence[Collector], device: torch.device) -> int:
    """Combine every collector's state across ranks in place (all ranks end with the merged state).
    Returns the bytes of state this rank contributed."""
    dev, world, sent = comm_device(device), dist.get_world_size(), 0
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    for c in collectors:
        home = {k: v.device for k, v in c.state.items()}
        for k, rule in c.rules.items():
            if rule in ops:
                t = c.state[k].to(dev).contiguous()
                dist.all_reduce(t, op=ops[rule])
                c.state[k] = t.to(home[k])
                sent += t.numel() * t.element_size()
        for buf in c.topk.values():
            rows = {}
            for f in buf.keys():
                t = c.state[f].to(dev).contiguous()
                parts = [torch.empty_like(t) for _ in range(world)]
                dist.all_gather(parts, t)
                rows[f] = torch.cat([p.cpu() for p in parts])
                sent += t.numel() * t.element_size()
            for f, v in buf.select(rows).items():
                c.state[f] = v.to(home[f])
    return sent


def reduce_counts(values: dict[str, float], device: torch.device, op: str = "sum") -> dict[str, float]:
    """All-reduce a few scalars (float64) across ranks."""
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=comm_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return dict(zip(keys, t.cpu().tolist()))


def state_bytes(collectors: Sequence[Collector]) -> int:
    """Bytes of mergeable state the collectors hold (what one rank sends per merge)."""
    return sum(v.numel() * v.element_size() for c in collectors for v in c.state.values())
