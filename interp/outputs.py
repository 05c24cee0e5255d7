"""The writing rule for every output: atomic writes, marker files, and what a run may replace.

An output (a results directory, a checkpoint, a report, ...) is written to a temporary sibling and renamed into
place, so a crash never leaves half of it. A directory output carries a marker file `.interp-output` whose JSON
names its kind; a single-file output (an HTML report) carries its marker inside. A run replaces an existing path
only when it is a previous output of the same kind *and* the caller asked for it (`force=True`, CLI `--force`);
anything else (a folder of the user's files, a file, another kind of output) is refused with one line naming the
path, and nothing is touched. Written files and folders honour the umask (0666 / 0777 & ~umask), like `open`.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

MARKER = ".interp-output"


class OutputRefused(ValueError):
    """Raised instead of replacing a path that the writing rule protects."""


def umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    m = os.umask(0o022)
    os.umask(m)
    return m


def _file_mode() -> int:
    return 0o666 & ~umask()


def _dir_mode() -> int:
    return 0o777 & ~umask()


def check_parent(path: str | Path) -> None:
    """The folders above `path` are folders or absent (created when written): an existing file among them raises
    OutputRefused, one line naming it (not the errno message mkdir would give, after the work)."""
    p = Path(path)
    for up in p.parents:
        if os.path.lexists(up):
            if not up.is_dir():
                raise OutputRefused(f"{up} is a file, not a folder, so {p} cannot be written inside it; "
                                    "choose another output path")
            return


def check_named(path: str | Path) -> None:
    """An output path must end in a name: '.', '..' or '' raise OutputRefused (an output is renamed into place,
    and no folder can be renamed by those; its temp sibling would land inside it)."""
    if Path(path).name in ("", ".", ".."):
        raise OutputRefused(f"output path {str(path)!r} names the current folder or one above it, which cannot be "
                            "replaced in place; give the folder by its name (e.g. ../results)")


def temp_file(path: str | Path) -> Path:
    """A new empty temp file beside `path` (same folder, so the final rename is atomic), mode per umask."""
    p = Path(path)
    check_named(p)
    check_parent(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.fchmod(fd, _file_mode())
    os.close(fd)
    return Path(tmp)


def temp_dir(path: str | Path) -> Path:
    """A new empty temp folder beside `path`, mode per umask."""
    p = Path(path)
    check_named(p)
    check_parent(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp"))
    os.chmod(tmp, _dir_mode())
    return tmp


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temp file beside `path`, then rename it to `path`; on failure remove the temp."""
    p = Path(path)
    tmp = temp_file(p)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())  # some writers recreate the file
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temp file in the same folder, then rename."""
    return atomic_write(path, lambda t: t.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | Path, damaged: Callable[[str], Exception]):
    """The JSON value in file `path`; text that is not UTF-8 or not JSON raises `damaged(why)` (the caller's one
    line naming the file and what to do)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise damaged("not UTF-8 text") from None
    except ValueError as e:
        raise damaged(f"not JSON: {e}") from None


def write_marker(directory: str | Path, kind: str, **info) -> None:
    """Mark `directory` as an interp output of `kind` (what a later run may replace)."""
    atomic_write_text(Path(directory) / MARKER, json.dumps({"kind": kind, **info}, default=str) + "\n")


def read_marker(directory: str | Path) -> dict | None:
    """`directory`'s marker (its kind and the info it was written with), or None (no marker, unreadable, not a
    folder, not a JSON object)."""
    try:
        d = json.loads((Path(directory) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def marker_kind(directory: str | Path) -> str | None:
    """The kind named by `directory`'s marker file, or None (no marker, unreadable, not a folder)."""
    d = read_marker(directory)
    return d.get("kind") if d is not None and isinstance(d.get("kind"), str) else None


LEGACY: dict[str, Callable[[Path], bool]] = {}  # kind -> recogniser of its outputs written before markers existed


def check_dir_target(path: str | Path, kind: str, force: bool = False, what: str | None = None) -> bool:
    """May a `kind` folder be written at `path`? True when it will replace a previous one, False when `path` is
    absent or an empty folder; otherwise raise OutputRefused (one line naming the path) and touch nothing."""
    p, what = Path(path), what or f"interp {kind}"
    check_parent(p)
    if not os.path.lexists(p):
        check_named(p)
        return False
    if p.is_symlink() or not p.is_dir():
        raise OutputRefused(f"{p} exists and is not a folder; refusing to replace it: choose another output path")
    if not any(p.iterdir()):
        check_named(p)
        return False
    found = marker_kind(p)
    if found is None and kind in LEGACY and LEGACY[kind](p):
        found = kind
    if found != kind:
        which = f"an interp {found}, not an {what}" if found else f"not an {what} (no {MARKER} marker)"
        raise OutputRefused(f"{p} is not empty and is {which}; refusing to touch it: choose another output path")
    check_named(p)  # '.' that is an earlier output: it cannot be renamed (a user's folder is named as such above)
    if not force:
        raise OutputRefused(f"{p} already holds an {what}; pass --force (force=True) to replace it")
    return True


def check_file_target(path: str | Path, is_same_kind: Callable[[Path], bool], what: str,
                      force: bool = False) -> bool:
    """May a single-file output be written at `path`? Like `check_dir_target`, with `is_same_kind(path)`
    recognising a previous output by the marker inside it."""
    p = Path(path)
    check_parent(p)
    if not os.path.lexists(p):
        return False
    if p.is_symlink() or not p.is_file():
        raise OutputRefused(f"{p} exists and is not a regular file; refusing to replace it: choose another path")
    try:
        same = is_same_kind(p)
    except OSError:
        same = False
    if not same:
        raise OutputRefused(f"{p} exists and is not an {what}; refusing to overwrite it: choose another path")
    if not force:
        raise OutputRefused(f"{p} already holds an {what}; pass --force (force=True) to replace it")
    return True


def file_has_marker(path: Path, marker: bytes, head: int = 4096) -> bool:
    """Whether the first `head` bytes of `path` contain `marker` (how a single-file output is recognised)."""
    with open(path, "rb") as f:
        return marker in f.read(head)


def apply_umask(root: Path) -> None:
    """Give a freshly written tree the modes `open`/`mkdir` would (some writers, e.g. safetensors, use 0600)."""
    fm, dm = _file_mode(), _dir_mode()
    os.chmod(root, dm)
    for base, dirs, files in os.walk(root):
        for n in dirs:
            os.chmod(os.path.join(base, n), dm)
        for n in files:
            os.chmod(os.path.join(base, n), fm)


def install_dir(tmp: Path, dest: str | Path, kind: str, force: bool = False, **info) -> Path:
    """Mark the finished folder `tmp` as `kind` and rename it to `dest`, replacing `dest` only as
    `check_dir_target` allows (checked again here, just before the swap)."""
    d = Path(dest)
    write_marker(tmp, kind, **info)
    apply_umask(tmp)
    replacing = check_dir_target(d, kind, force)
    if not replacing:  # absent or empty: rename() onto an empty folder is atomic and fails if a file appeared since
        try:
            os.replace(tmp, d)
        except OSError:
            if not os.path.isdir(d) or not any(d.iterdir()):
                raise
            raise OutputRefused(f"{d} was written to while the {kind} was being made; it is left as it is (the "
                                f"{kind} is not installed): choose another output path") from None
        return d
    aside = Path(tempfile.mkdtemp(dir=d.parent, prefix=f".{d.name}.", suffix=".old"))
    old = aside / "old"
    os.replace(d, old)  # a previous output of this kind (checked above)
    try:
        os.replace(tmp, d)
    except BaseException:
        os.replace(old, d)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)  # the previous output of this kind, replaced as force allowed
    return d


def json_safe(v):
    """`v` with every non-finite float as None, for `json.dumps(..., allow_nan=False)`: JSON has no NaN."""
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return None if isinstance(v, float) and not math.isfinite(v) else v
