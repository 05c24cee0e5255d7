"""Resumable collection: one state file per rank, `<state_dir>/rank<r>-of-<w>.safetensors`, holding every
collector's state (tensors `<collector>/<key>`) and, in the safetensors header, the JSON position (next batch,
tokens and sequences so far, and for a stream the SHA-256 of the sequences read so far) and a fingerprint of
the run (interp.fingerprint: the model's weights, the token file's bytes, the collectors and their options).
Written atomically (temp file + rename) every N batches, so an interrupted run continues from its last
checkpoint and gives the same result; a state file of another model, seed, data or set-up is refused.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from interp.collectors.base import Collector
from interp.outputs import atomic_write

# fingerprint keys in words, for the one-line refusal
WHAT = {"weights_sha256": "the model's weights", "token_file_sha256": "the token file's content",
        "model": "the model's name", "collectors": "the collectors or their options", "data": "the kind of data",
        "n_tokens": "the number of tokens", "dtype": "the token dtype",
        "window": "the token file's window length (seq_len)", "world": "the number of processes"}


def check_checkpoint_every(every) -> None:
    """Refuse a checkpoint interval that is not a whole number of batches of at least 1 (1.5, 0, True, "5")."""
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"checkpoint_every must be a positive integer (batches between state files), got {every!r}")


class Checkpoint:
    """The state file of one rank. `fingerprint` (JSON-able) must match for a file to be resumed from."""

    def __init__(self, state_dir: str | Path, rank: int, world: int, fingerprint: dict[str, Any], every: int = 50):
        check_checkpoint_every(every)
        self.dir, self.rank, self.world, self.every = Path(state_dir), rank, world, every
        self.path = self.dir / f"rank{rank:03d}-of-{world:03d}.safetensors"
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))

    def load(self, collectors: Sequence[Collector]) -> dict[str, Any] | None:
        """Load the collectors' states and return the saved position, or None when there is no state file."""
        if not self.path.is_file():
            other = sorted(p.name for p in self.dir.glob("rank*-of-*.safetensors")
                           if not p.name.endswith(f"-of-{self.world:03d}.safetensors"))
            if other:
                raise ValueError(f"{self.dir} holds the state of a run on another number of processes ({other[0]}); "
                                 "resume it with that many, or use another state_dir or delete it to start over")
            return None
        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            fp, pos = json.loads(meta["fingerprint"]), json.loads(meta["position"])
        except (SafetensorError, OSError, KeyError, ValueError, TypeError) as e:
            raise ValueError(f"state file {self.path} is corrupt or not interp's ({e}); delete it to start over") from None
        if not isinstance(fp, dict) or fp != self.fingerprint:
            fp = fp if isinstance(fp, dict) else {}
            diff = sorted(k for k in set(fp) | set(self.fingerprint) if fp.get(k) != self.fingerprint.get(k))
            raise ValueError(f"state file {self.path} belongs to a different collection (differs in: "
                             f"{', '.join(WHAT.get(k, k) for k in diff)}); use another state_dir or delete the "
                             "file to start over")
        for c in collectors:
            prefix = f"{c.name}/"
            c.load_state_dict({k[len(prefix):]: v.to(next(iter(c.state.values())).device)
                               for k, v in tensors.items() if k.startswith(prefix)})
        return pos

    def due(self, batches_done: int) -> bool:
        return batches_done % self.every == 0

    def save(self, collectors: Sequence[Collector], position: dict[str, Any]) -> None:
        """Write every collector's state and `position` atomically."""
        tensors = {f"{c.name}/{k}": v.detach().cpu().contiguous() for c in collectors for k, v in c.state.items()}
        meta = {"fingerprint": json.dumps(self.fingerprint), "position": json.dumps(position)}
        atomic_write(self.path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
