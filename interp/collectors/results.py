"""`Results`: the tables of one collection run plus the model card, saved as parquet + JSON.

A saved directory holds `results.json` ({schema_version, card, meta, tables: [...], states: [...], sha256:
{file: SHA-256}}), one `<table>.parquet` per table and `state/<collector>.safetensors` (the raw mergeable
state, so shards can be merged later). `load` checks every file against its recorded SHA-256.
It is written to a temporary sibling directory and renamed into place, so a crash never leaves half a result;
it carries the `.interp-output` marker (kind "results") and replaces only an earlier result, and only with
`force=True` (the writing rule in interp/outputs.py).
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from interp.card import ModelCard
from interp.fingerprint import sha256_file
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
        for n in [*self.tables, *self.states]:
            check_name(n, "table or state")
        check_dir_target(d, KIND, force)  # before any work: refuse early, touch nothing
        tmp = temp_dir(d)
        try:
            files = {}
            for name, df in self.tables.items():
                df.to_parquet(tmp / f"{name}.parquet", index=False)
                files[f"{name}.parquet"] = sha256_file(tmp / f"{name}.parquet")
            if self.states:
                (tmp / "state").mkdir()
                for name, st in self.states.items():
                    save_file({k: v.contiguous() for k, v in st.items()}, str(tmp / "state" / f"{name}.safetensors"))
                    files[f"state/{name}.safetensors"] = sha256_file(tmp / "state" / f"{name}.safetensors")
            index = {"schema_version": SCHEMA_VERSION, "card": self.card.to_dict(), "meta": self.meta,
                     "tables": list(self.tables), "states": list(self.states), "sha256": files}
            (tmp / INDEX).write_text(json.dumps(index, indent=1, default=str))
            install_dir(tmp, d, KIND, force)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "Results":
        """Read a directory written by `save`. A missing, foreign, incomplete or altered directory (a file
        changed, swapped or missing, a table name pointing outside it) raises one clear ValueError naming it."""
        d = Path(directory)
        ip = d / INDEX
        if not ip.is_file():
            raise FileNotFoundError(f"{d} holds no saved results ({INDEX} missing); pass the directory given to save()")
        try:
            index = json.loads(ip.read_text(encoding="utf-8"))
        except (ValueError, UnicodeError) as e:
            raise ValueError(f"{ip} is not valid JSON ({e}); re-run the collection") from None
        if not isinstance(index, dict):
            raise ValueError(f"{ip} holds a JSON {type(index).__name__}, not a results index (an object); "
                             "re-run the collection")
        v = index.get("schema_version")
        if v != SCHEMA_VERSION:
            raise ValueError(f"{d} was saved with results schema {v!r}, this interp reads schema {SCHEMA_VERSION}; "
                             "re-run the collection")
        names = {k: index.get(k, []) for k in ("tables", "states")}
        for k, lst in names.items():
            if not isinstance(lst, list):
                raise ValueError(f"{ip}: {k!r} must be a list of names, got {type(lst).__name__}")
            for n in lst:
                check_name(n, f"{ip}: {k[:-1]}")
        sums = index.get("sha256", {})
        if not isinstance(sums, dict):
            raise ValueError(f"{ip}: 'sha256' must be an object (file -> hash), got {type(sums).__name__}")
        tables = {n: _read(d, f"{n}.parquet", sums, lambda f: pd.read_parquet(f)) for n in names["tables"]}
        states = {n: _read(d, f"state/{n}.safetensors", sums, lambda f: load_file(str(f))) for n in names["states"]}
        card, meta = index.get("card"), index.get("meta", {})
        if not isinstance(card, dict):
            raise ValueError(f"{ip}: 'card' must be an object (the model card), got {type(card).__name__}")
        if not isinstance(meta, dict):
            raise ValueError(f"{ip}: 'meta' must be an object, got {type(meta).__name__}")
        try:
            card = ModelCard.from_dict(card)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{ip}: invalid model card ({e}); re-run the collection") from None
        return cls(tables=tables, card=card, meta=meta, states=states)


NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def check_name(name: Any, what: str) -> str:
    """A table/state name is a plain file stem (no path separators, no '..'): it can never point outside."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} name {name!r} is not a plain name (letters, digits, _ . -); the results "
                         "directory was altered: re-run the collection")
    return name


def _read(d: Path, rel: str, sums: dict, reader):
    """Read `d/rel` with `reader`, checking it against the SHA-256 recorded at save time (when recorded)."""
    f = d / rel
    if not f.is_file():
        raise ValueError(f"{f} is missing: the results directory {d} is incomplete; re-run the collection")
    want = sums.get(rel)
    if want is not None and sha256_file(f) != want:
        raise ValueError(f"{f} does not match {d / INDEX} (its SHA-256 differs: the file was changed, replaced or "
                         "swapped); re-run the collection")
    try:
        return reader(f)
    except Exception as e:  # noqa: BLE001 — pyarrow / safetensors raise many kinds on a corrupt file
        raise ValueError(f"{f} is not readable ({type(e).__name__}: {str(e)[:160]}); re-run the collection") from None
