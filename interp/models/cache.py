"""GGUF → fp32 safetensors, once: the dequantized model (+ config + tokenizer, if the GGUF has one) is kept in a
user cache directory.

The cache lives in $INTERP_CACHE (default ~/.cache/interp). An entry is named by the SHA-256 of the GGUF's
content (`content_key`), so another file with the same name and size never gets this one's weights. The hash is
computed once per file and kept in `sha256-index.json` in the cache root, keyed by path, size, inode, mtime and
ctime (any change to the file means hashing it again). Each entry is built in a temporary directory beside it
and renamed into place, so a crash or a bad GGUF never leaves a partial entry; later loads take seconds. Each
entry records its files' sizes and SHA-256 (`MANIFEST`); an entry whose files changed since (truncated, overwritten,
removed) is rebuilt with a warning, never read (see `entry_usable`). A build
that was killed leaves its temporary directory; the next build of the same entry removes it (see `building`)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import torch

from interp.outputs import apply_umask, atomic_write_text, temp_dir

READY = "interp-cache.txt"  # written last inside an entry; its presence marks the entry complete
INDEX = "sha256-index.json"  # content hashes of the GGUF files seen, beside the entries
MANIFEST = "interp-files.json"  # inside an entry: each file's size and SHA-256, recorded when it is published


def cache_root() -> Path:
    """The user cache directory ($INTERP_CACHE, default ~/.cache/interp)."""
    return Path(os.environ.get("INTERP_CACHE") or Path.home() / ".cache" / "interp")


GGUF_TOKENIZER = "tokenizer.ggml.model"  # the GGUF key that states a tokenizer; a file without it ships none


def gguf_header(path: Path, fix: str = "reinstall the package that ships it") -> tuple[str, bool]:
    """`general.architecture` of a GGUF file and whether it holds a tokenizer, after checking that the file is
    complete (one clear error if not, ending with `fix`: what to do; the default is for the packaged models' files)."""
    import gguf
    try:
        r = gguf.GGUFReader(str(path))
        field = r.fields["general.architecture"]
        arch = bytes(field.parts[field.data[0]]).decode()
        end = max(int(t.data_offset) + int(t.n_bytes) for t in r.tensors)
    except Exception as e:  # gguf/numpy raise many kinds of errors on a bad file
        raise ValueError(f"{path} is not a readable GGUF file ({type(e).__name__}: {str(e)[:120]}); "
                         f"it is truncated or corrupt: {fix}") from None
    if end > path.stat().st_size:
        raise ValueError(f"{path} is truncated ({path.stat().st_size} bytes, its tensors need {end}); "
                         f"{fix}")
    return arch, GGUF_TOKENIZER in r.fields


def gguf_architecture(path: Path, fix: str = "reinstall the package that ships it") -> str:
    """`general.architecture` of a GGUF file, after checking that the file is complete (see `gguf_header`)."""
    return gguf_header(path, fix)[0]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stat_key(p: Path) -> str:
    st = p.stat()
    return f"{p.resolve()}|{st.st_size}|{st.st_dev}|{st.st_ino}|{st.st_mtime_ns}|{st.st_ctime_ns}"


def content_sha256(paths: Sequence[Path], compute: bool = True) -> str | None:
    """SHA-256 of the concatenated bytes of `paths` (one GGUF, or its parts in order), from the cache's index
    when the files are unchanged; hashed (and recorded) otherwise, or None when `compute` is False."""
    paths = [Path(p) for p in paths]
    key = "\n".join(_stat_key(p) for p in paths)
    index_path = cache_root() / INDEX
    try:
        index = json.loads(index_path.read_text())
        index = index if isinstance(index, dict) else {}
    except (OSError, ValueError):
        index = {}
    if isinstance(index.get(key), str):
        return index[key]
    if not compute:
        return None
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    digest = h.hexdigest()
    index[key] = digest
    try:
        atomic_write_text(index_path, json.dumps(index, indent=1))
    except OSError:
        pass  # a read-only cache still works: the hash is computed again next time
    return digest


def content_key(label: str, paths: Sequence[Path], compute: bool = True) -> str | None:
    """The cache entry name of a GGUF (or its parts): `<label>-<first 20 hex of its content SHA-256>`."""
    digest = content_sha256(paths, compute)
    return None if digest is None else f"{label}-{digest[:20]}"


def concatenate(parts: Sequence[Path], dest: Path, expected_sha256: str | None = None) -> Path:
    """Join the chunk files `parts` into `dest` (a GGUF split across packages) and check its sha256."""
    with open(dest, "wb") as out:
        for p in parts:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    if expected_sha256 and sha256(dest) != expected_sha256:
        raise ValueError(f"the joined GGUF {dest.name} has the wrong sha256: one of its parts is corrupt; "
                         "reinstall the packages (make models)")
    return dest


def entry_ready(d: Path) -> bool:
    """Whether the cache entry `d` is complete (its READY file is written last)."""
    return (d / READY).is_file()


def _entry_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and p.name not in (READY, MANIFEST, LOCK))


UNHASHED = "was modified on disk since it was hashed"  # what `_damage(compute=False)` says of a file it cannot check


def _damage(d: Path, compute: bool = True) -> str | None:
    """What is wrong with the files of the complete entry `d` (None: intact). With a MANIFEST, every file must have
    its recorded size and SHA-256 (hashed again only when its stat changed, through the hash index; with `compute`
    False such a file is reported as UNHASHED instead); without one (an entry built before manifests), its
    safetensors must open and its JSON parse, and the manifest is recorded (only when `compute`)."""
    try:
        listed = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        listed = None
    except (OSError, ValueError, UnicodeError):
        return f"its {MANIFEST} is unreadable"
    if listed is not None:
        if not isinstance(listed, dict):
            return f"its {MANIFEST} is not a file list"
        for rel, rec in listed.items():
            p = d / rel
            if not p.is_file():
                return f"{rel} is missing"
            if not isinstance(rec, dict) or p.stat().st_size != rec.get("size"):
                return f"{rel} changed since the entry was built"
            digest = content_sha256([p], compute)
            if digest is None:
                return f"{rel} {UNHASHED}"
            if digest != rec.get("sha256"):
                return f"{rel} changed since the entry was built"
        return None
    from safetensors import safe_open
    for p in _entry_files(d):
        try:
            if p.suffix == ".safetensors":
                with safe_open(str(p), "pt"):
                    pass
            elif p.suffix == ".json":
                json.loads(p.read_text(encoding="utf-8"))
        except Exception as e:  # safetensors raises its own error type on a truncated or corrupt header
            return f"{p.relative_to(d)} is unreadable ({str(e)[:80]})"
    if compute:
        record_manifest(d)
    return None


def record_manifest(d: Path) -> None:
    """Write entry `d`'s MANIFEST: each file's size and SHA-256 (recorded in the hash index too, so checking an
    unchanged entry later hashes nothing). A read-only cache is left without one."""
    files = {p.relative_to(d).as_posix(): {"size": p.stat().st_size, "sha256": content_sha256([p])}
             for p in _entry_files(d)}
    try:
        atomic_write_text(d / MANIFEST, json.dumps(files, indent=1))
    except OSError:
        pass


def entry_state(d: Path) -> str:
    """The state of cache entry `d` as listed, hashing nothing: "ready", "not built", "damaged (why): rebuilt when
    loaded", or "unverified (why): hashed when loaded, rebuilt if it changed" (a file's stat changed since it was
    hashed, e.g. the cache was moved)."""
    if not entry_ready(d):
        return "not built"
    why = _damage(d, compute=False)
    if why is None:
        return "ready"
    if why.endswith(UNHASHED):
        return f"unverified ({why}): hashed when loaded, rebuilt if it changed"
    return f"damaged ({why}): rebuilt when loaded"


def entry_usable(d: Path) -> bool:
    """Whether the cache entry `d` is complete and its files are those it was built with. A damaged entry (a file
    truncated, overwritten or removed) is removed with a warning, so the caller builds it again."""
    if not entry_ready(d):
        return False
    why = _damage(d)
    if why is None:
        return True
    import warnings
    warnings.warn(f"the cache entry {d} is damaged ({why}): rebuilding it", stacklevel=3)
    aside = temp_dir(d)
    try:
        os.replace(d, aside / "damaged")  # out of the way at once, so no reader picks it up while it is removed
    except FileNotFoundError:
        pass  # another process moved it first
    shutil.rmtree(aside, ignore_errors=True)
    return False


STALE_S = 3600  # a temp folder whose builder cannot be checked through its lock counts as abandoned after this


@contextmanager
def building(dest: Path):
    """A new temp folder beside the cache entry `dest` to build it in (publish it with `publish_entry`); removed on
    exit. Its builder holds an exclusive flock on the folder's LOCK file as long as it runs; the kernel releases it
    when the process dies, killed with SIGKILL included. Before building, temp folders of the same entry that a
    killed build left are removed (`remove_abandoned`)."""
    remove_abandoned(dest)
    tmp = temp_dir(dest)
    fd = _hold_lock(tmp)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if fd is not None:
            os.close(fd)


LOCK = ".interp-building"  # inside a temp folder while its build runs: "<host> <pid>", flock'ed by the builder


def _hold_lock(tmp: Path) -> int | None:
    try:
        import fcntl
    except ImportError:  # no flock (not Linux / macOS): abandoned folders are then only found by age
        return None
    fd = os.open(tmp / LOCK, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a file system without locks: no lock file, so the folder is judged by age only
        os.close(fd)
        (tmp / LOCK).unlink(missing_ok=True)
        return None
    os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
    return fd


def _newest_mtime(d: Path) -> float:
    times = [d.stat().st_mtime]
    for c in d.iterdir():
        try:
            times.append(c.lstat().st_mtime)
        except OSError:
            pass
    return max(times)


def _abandoned(tmp: Path) -> bool:
    """Whether the build in temp folder `tmp` is dead: its lock file was written on this host and nobody holds the
    lock; or (no lock file, one from another host, no flock here) nothing in it changed for STALE_S."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    try:
        fd = os.open(tmp / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        fd = None
    except OSError:
        return False
    try:
        if fd is not None and fcntl is not None and os.read(fd, 4096).decode(errors="replace").split(" ")[0] == \
                socket.gethostname():  # flock only speaks for this host's processes (NFS may keep locks local)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False  # held: the build is running
            return True
        return time.time() - _newest_mtime(tmp) > STALE_S
    except OSError:
        return False
    finally:
        if fd is not None:
            os.close(fd)


def remove_abandoned(dest: Path) -> list[Path]:
    """Remove the temp folders of cache entry `dest` (".<name>.<8 random characters>.tmp" beside it, what
    `temp_dir` makes) whose build is dead (`_abandoned`): what a killed first build leaves. Nothing else is
    touched: not other entries' temp folders, not entries, not files, not links. Returns what was removed."""
    pattern = re.compile(r"\." + re.escape(dest.name) + r"\.[a-z0-9_]{8}\.tmp")
    try:
        names = os.listdir(dest.parent)
    except OSError:
        return []
    removed = []
    for n in names:
        p = dest.parent / n
        if pattern.fullmatch(n) and not p.is_symlink() and p.is_dir() and _abandoned(p):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def publish_entry(tmp: Path, dest: Path) -> None:
    """Rename the finished entry `tmp` (READY written) to `dest`, modes per umask; when another process published
    the same entry first, keep theirs (`tmp` is left for the caller to remove); an incomplete `dest` is replaced.
    The build's lock file is dropped first (the builder keeps holding the lock until `building` exits)."""
    (tmp / LOCK).unlink(missing_ok=True)
    apply_umask(tmp)
    try:
        os.replace(tmp, dest)
    except OSError:  # dest exists and is not empty
        if not entry_ready(dest):
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)


def dequantized(key: str, gguf_path: Path | None = None, parts: Sequence[Path] = (),
                expected_sha256: str | None = None) -> Path:
    """The cache entry `key` (a transformers checkpoint directory), built from `gguf_path` (or `parts`) if absent."""
    root = cache_root()
    dest = root / key
    if entry_usable(dest):
        return dest
    with building(dest) as tmp:
        src = gguf_path if gguf_path is not None else concatenate(parts, tmp / "joined.gguf", expected_sha256)
        with one_gguf_parse():
            gguf_architecture(src)
            _dequantize(src, tmp)
        (tmp / "joined.gguf").unlink(missing_ok=True)
        (tmp / READY).write_text(f"dequantized to float32 from {gguf_path or [str(p) for p in parts]}\n"
                                 f"at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        publish_entry(tmp, dest)
    record_manifest(dest)
    return dest


@contextmanager
def one_gguf_parse():
    """Within the block, `gguf.GGUFReader(path)` parses each file once and hands the same reader out again.
    transformers parses a GGUF afresh for its config, its tokenizer and its weights, and the completeness check
    once more: four parses of the metadata, which for Gemma-3's 262k-token vocabulary is ~25 s of Python each.
    The one parse reads the file through a plain ndarray (`plain_reader`). The readers only read (mode "r");
    they are dropped when the block ends."""
    import gguf
    original, readers = gguf.GGUFReader, {}
    fast = plain_reader(original)

    def reader(path, mode="r"):
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = fast(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original
        readers.clear()


def plain_reader(base: type) -> type:
    """`base` (gguf.GGUFReader) reading its file through a plain ndarray view of the memory map instead of the
    np.memmap itself. The same bytes, still mapped, not copied; but each of the reader's million small slices of a
    large vocabulary (and each of transformers' reads of them) skips np.memmap's Python-level __getitem__ and
    __array_finalize__, which made Gemma-3's metadata ~2-3x slower to read. Its fields hold plain ndarrays."""
    import numpy as np

    class PlainDataReader(base):
        @property
        def data(self):
            return self._plain_data

        @data.setter
        def data(self, v):
            self._plain_data = v.view(np.ndarray) if isinstance(v, np.memmap) else v

    return PlainDataReader


def _gguf_tokenizer(src: Path):
    """The tokenizer GGUF `src` holds (transformers builds it), or None when it holds none."""
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    except Exception:  # transformers refuses a GGUF without tokenizer metadata: that one loads without a tokenizer
        if gguf_header(src)[1]:
            raise
        return None


def _dequantize(src: Path, out: Path) -> None:
    """Load GGUF `src` through transformers (which dequantizes to float32) and save it as safetensors in `out`, with
    its tokenizer when it holds one (a GGUF without one is loaded with the tokenizer= the user passes)."""
    from transformers import AutoModelForCausalLM
    try:
        tok = _gguf_tokenizer(src)
        model, info = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32,
                                                           output_loading_info=True)
    except Exception as e:
        raise ValueError(f"transformers could not load {src} ({type(e).__name__}: {str(e)[:160]})") from None
    missing = sorted(info.get("missing_keys", ()))
    if missing:  # transformers fills them at random; cached, they would pass for the model's weights
        raise ValueError(f"{src}: transformers found no weights for {len(missing)} tensor(s) of the model (e.g. "
                         f"{missing[0]}) and would initialize them at random; convert the model to a transformers "
                         "checkpoint directory and load that")
    model.hf_quantizer = None  # already float32: transformers refuses to save a "gguf-quantized" model otherwise
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(str(out), safe_serialization=True)
    if tok is not None:
        tok.save_pretrained(str(out))
