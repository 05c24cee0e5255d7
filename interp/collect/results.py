"""`Results`: the tables of one collection run plus the model card, saved as parquet + JSON.

A saved directory holds `results.json` ({schema_version, card, meta, tables: [...]}), one `<table>.parquet`
per table and `state/<collector>.safetensors` (the raw mergeable state, so shards can be merged later).
It is written to a temporary sibling directory and renamed into place, so a crash never leaves half a result.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from interp.card import ModelCard

SCHEMA_VERSION = 1
INDEX = "results.json"


@dataclass
class Results:
    """tables: name -> tidy DataFrame (columns documented in docs/results.md); card: the model's card;
    meta: how the run was made (tokens, batches, options); states: collector name -> raw state."""

    tables: dict[str, pd.DataFrame]
    card: ModelCard
    meta: dict[str, Any] = field(default_factory=dict)
    states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self.tables:
            raise KeyError(f"no table {name!r}; this result has: {', '.join(self.tables)}")
        return self.tables[name]

    def __repr__(self) -> str:
        rows = ", ".join(f"{k}[{len(v)}]" for k, v in self.tables.items())
        return f"Results({self.card.name}: {rows})"

    def save(self, directory: str | Path) -> Path:
        """Write atomically to `directory` (replacing an earlier result there)."""
        d = Path(directory)
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=d.parent, prefix=f".{d.name}.", suffix=".tmp"))
        try:
            for name, df in self.tables.items():
                df.to_parquet(tmp / f"{name}.parquet", index=False)
            if self.states:
                (tmp / "state").mkdir()
                for name, st in self.states.items():
                    save_file({k: v.contiguous() for k, v in st.items()}, str(tmp / "state" / f"{name}.safetensors"))
            index = {"schema_version": SCHEMA_VERSION, "card": self.card.to_dict(), "meta": self.meta,
                     "tables": list(self.tables), "states": list(self.states)}
            (tmp / INDEX).write_text(json.dumps(index, indent=1, default=str))
            if d.exists():
                old = d.with_name(f".{d.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(d, old)
                os.replace(tmp, d)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, d)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "Results":
        """Read a directory written by `save`; a missing or foreign directory raises one clear error."""
        d = Path(directory)
        if not (d / INDEX).is_file():
            raise FileNotFoundError(f"{d} holds no saved results ({INDEX} missing); pass the directory given to save()")
        index = json.loads((d / INDEX).read_text())
        v = index.get("schema_version")
        if v != SCHEMA_VERSION:
            raise ValueError(f"{d} was saved with results schema {v}, this interp reads schema {SCHEMA_VERSION}; "
                             "re-run the collection")
        tables = {n: pd.read_parquet(d / f"{n}.parquet") for n in index["tables"]}
        states = {n: load_file(str(d / "state" / f"{n}.safetensors")) for n in index.get("states", [])}
        return cls(tables=tables, card=ModelCard.from_dict(index["card"]), meta=index.get("meta", {}),
                   states=states)
