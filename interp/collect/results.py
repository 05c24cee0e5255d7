"""`Results`: the tables of one collection run plus the model card, saved as parquet + JSON.

A saved directory holds `results.json` ({schema_version, card, meta, tables: [...]}), one `<table>.parquet`
per table and `state/<collector>.safetensors` (the raw mergeable state, so shards can be merged later).
It is written to a temporary sibling directory and renamed into place, so a crash never leaves half a result;
it carries the `.interp-output` marker (kind "results") and replaces only an earlier result, and only with
`force=True` (the writing rule in interp/outputs.py).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from interp.card import ModelCard
from interp.outputs import LEGACY, check_dir_target, install_dir, temp_dir

SCHEMA_VERSION = 1
INDEX = "results.json"
KIND = "results"  # the marker kind of a results directory (interp.outputs)


def _legacy_results(d: Path) -> bool:
    """A results directory saved before markers existed: only results.json (with a schema), parquet, state/."""
    try:
        names = [e.name for e in d.iterdir()]
        ok = all(n == INDEX or n.endswith(".parquet") or n == "state" for n in names)
        return ok and INDEX in names and "schema_version" in json.loads((d / INDEX).read_text())
    except (OSError, ValueError, TypeError):
        return False


LEGACY[KIND] = _legacy_results


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

    def save(self, directory: str | Path, force: bool = False) -> Path:
        """Write atomically to `directory`. An existing `directory` is replaced only when it is an earlier
        results directory (its marker file says so) and `force` is set; anything else raises OutputRefused
        (a ValueError) and is left untouched."""
        d = Path(directory)
        check_dir_target(d, KIND, force)  # before any work: refuse early, touch nothing
        tmp = temp_dir(d)
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
            install_dir(tmp, d, KIND, force)
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
