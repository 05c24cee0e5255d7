"""Reading a GGUF's metadata: gguf's own reader against the one a first load uses (`cache.plain_reader`).

    .venv/bin/python benchmarks/gguf_read.py [--repeats 5] [--models smollm2-135m,gemma-3-270m,qwen2.5-0.5b]
    # -> benchmarks/results/gguf_read.json

What the first load of a GGUF-packaged model pays before it dequantizes a weight: the reader's parse of every
metadata field (the vocabulary: 262,144 strings and their scores on Gemma-3) and transformers' parse of those fields
into a config and a tokenizer (`load_gguf_checkpoint` without tensors; a first load makes three such parses, all on
the one shared reader of `cache.one_gguf_parse`). Per model, in one process, one thread: `gguf` (gguf.GGUFReader)
and `plain` (the same class reading a plain ndarray view of the file's map) in interleaved rounds; per round the
ratio plain / gguf of CPU seconds, its median with a 95 % bootstrap interval. Both must give the same config and
tokenizer (checked; the script stops otherwise). A split GGUF is joined into a temporary file first.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MODELS = ("smollm2-135m", "gemma-3-270m", "qwen2.5-0.5b")


def gguf_file(name: str, tmp: Path) -> Path:
    """The model's GGUF as one file (split packages joined into `tmp`); MissingWeights when not installed."""
    from interp.models import cache, registry
    parts = registry.gguf_parts(name)
    return parts[0] if len(parts) == 1 else cache.concatenate(parts, tmp / f"{name}.gguf")


def read_with(cls: type, path: Path) -> dict:
    """gguf.GGUFReader = one `cls` reader of `path` while transformers parses its metadata; the parsed fields."""
    import gguf
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    original = gguf.GGUFReader
    reader = cls(str(path))
    gguf.GGUFReader = lambda p, mode="r": reader
    try:
        return load_gguf_checkpoint(str(path))
    finally:
        gguf.GGUFReader = original


def bench(name: str, path: Path, repeats: int) -> dict:
    import gguf
    from timing import interleaved

    from interp.models.cache import plain_reader
    plain = plain_reader(gguf.GGUFReader)
    a, b = read_with(gguf.GGUFReader, path), read_with(plain, path)
    if any(a[k] != b[k] for k in ("config", "tokenizer", "tokenizer_config")):
        raise SystemExit(f"{name}: the two readers parse different metadata; nothing written")
    t = interleaved({"gguf": lambda: read_with(gguf.GGUFReader, path), "plain": lambda: read_with(plain, path)},
                    repeats, baseline="gguf", warmup=0)
    r = t["ratio_cpu"]["plain"]
    return {"model": name, "gguf_mb": round(path.stat().st_size / 1e6, 1),
            "vocab": len(a["tokenizer"].get("tokens", [])), "repeats": repeats,
            "gguf_cpu_s (median)": t["cpu_s"]["gguf"]["median"], "plain_cpu_s (median)": t["cpu_s"]["plain"]["median"],
            "plain/gguf (cpu, median)": r["median"], "plain/gguf (cpu, 95% CI)": r["ci95"],
            "same config and tokenizer": True, "timing": t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    a = ap.parse_args()
    unknown = [m for m in a.models.split(",") if m not in MODELS]
    if unknown:
        raise SystemExit(f"--models: unknown {', '.join(unknown)}; the GGUF-packaged models are {', '.join(MODELS)}")
    torch.set_num_threads(1)
    from record import command_line, machine_name, recorded_rows, row_key, utc_now, write_result

    from interp.models.locate import MissingWeights
    rows = {}
    with tempfile.TemporaryDirectory(prefix="interp-gguf-read-") as tmp:
        for name in a.models.split(","):
            try:
                path = gguf_file(name, Path(tmp))
            except MissingWeights as e:
                print(f"{name}: skipped ({str(e).splitlines()[0]})", flush=True)
                continue
            row = bench(name, path, a.repeats)
            print({k: v for k, v in row.items() if k != "timing"}, flush=True)
            here = machine_name()
            rows[row_key(name, here)] = {"machine": here, "command": command_line(), "date": utc_now(), **row}
            if path.parent == Path(tmp):
                path.unlink()  # a joined copy: hundreds of MB
    if rows and not a.no_write:
        print(write_result("gguf_read", {**recorded_rows("gguf_read"), **rows}, threads=1,
                           description=__doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
