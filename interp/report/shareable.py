"""A report is a file people pass around: no path of the machine that made it goes into it.

`public_text` rewrites every absolute path in a string into the name a reader can use elsewhere: a file inside an
installed package becomes `package <name>: <file>`, a Hugging Face cache snapshot its repo id, interp's weight
cache `interp cache: <entry>`, a path inside this repository its relative path, and any other absolute path its
last component. `shareable` applies it to every text the report embeds (tables, sources, the run log).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

_SEG = r"[^\s/\"'<>|,;()\[\]{}]+"                 # one path component
# an absolute path of two parts or more, not inside a URL or a relative path
_PATH = re.compile(rf"(?<![\w.~:/-])((?:/{_SEG}){{2,}}/?)")
_PKG = re.compile(rf"/(?:site|dist)-packages/({_SEG})((?:/{_SEG})*)")
_HF = re.compile(rf"/models--({_SEG})/snapshots/{_SEG}((?:/{_SEG})*)")


def _roots() -> list[tuple[str, str]]:
    """(absolute prefix, what it becomes), longest first."""
    repo = Path(__file__).resolve().parents[2]
    out = [(str(repo) + "/", ""), (str(repo), ".")]
    try:
        from interp.models.cache import cache_root
        out.append((str(cache_root()) + "/", "interp cache: "))
    except Exception:  # noqa: BLE001 - the models area may be absent; the generic rule still applies
        pass
    home = os.path.expanduser("~")
    if home not in ("/", ""):
        out.append((home + "/", "~/"))
    return sorted(out, key=lambda r: -len(r[0]))


def _public_path(path: str) -> str:
    m = _PKG.search(path)
    if m:
        pkg, rest = m.group(1), m.group(2).strip("/")
        return f"package {pkg}" + (f": {rest.rsplit('/', 1)[-1]}" if rest else "")
    m = _HF.search(path)
    if m:
        repo = m.group(1).replace("--", "/")
        rest = m.group(2).strip("/")
        return f"HF cache: {repo}" + (f": {rest}" if rest else "")
    for prefix, repl in _roots():
        if path == prefix.rstrip("/") or path.startswith(prefix):
            tail = path[len(prefix):]
            if repl == "interp cache: ":
                return repl + tail.split("/", 1)[0]
            return repl + tail if repl or tail else "."
    return path.rstrip("/").rsplit("/", 1)[-1] or path


def public_text(text: str) -> str:
    """`text` with every absolute path replaced by a name that means something on another machine."""
    return _PATH.sub(lambda m: _public_path(m.group(1)), text) if "/" in text else text


def public_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` whose text cells (and text inside dict / list cells) went through `public_text`."""
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if not (s.dtype == object or pd.api.types.is_string_dtype(s)):
            continue
        try:  # each distinct value once (a column of model names repeats a few values thousands of times)
            codes, uniques = pd.factorize(s)
        except TypeError:  # unhashable cells (dicts, lists): one at a time
            out[col] = s.map(_public_value)
            continue
        vals = np.empty(len(uniques), dtype=object)
        for i, u in enumerate(uniques):  # element by element: a tuple cell must stay one cell
            vals[i] = _public_value(u)
        new = s.to_numpy(dtype=object, copy=True)
        real = codes >= 0  # missing cells (None / NaN) stay as they are
        new[real] = vals[codes[real]]
        out[col] = pd.Series(new, index=s.index, name=s.name, dtype=s.dtype)
    return out


def _public_value(v):
    if isinstance(v, str):
        return public_text(v)
    if isinstance(v, dict):
        return {k: _public_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_public_value(x) for x in v)
    return v


def shareable(tables: dict[str, pd.DataFrame], sources: list[str] | None, run_log: list[str] | None,
              ) -> tuple[dict[str, pd.DataFrame], list[str] | None, list[str] | None]:
    """The report's inputs with no absolute path of this machine in any text they carry."""
    tables = {k: public_frame(v) if isinstance(v, pd.DataFrame) else v for k, v in tables.items()}
    sources = None if sources is None else [public_text(str(s)) for s in sources]
    run_log = None if run_log is None else [public_text(str(s)) for s in run_log]
    return tables, sources, run_log
