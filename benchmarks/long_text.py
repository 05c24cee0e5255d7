"""Memory and time of tokenizing one very long line (a text file with no line breaks), as `interp collect` reads it:
the whole line in one `encode` call (how texts were read before) vs piece by piece (`text_windows`), in full and
stopped at --max-tokens 1000. Each variant runs in its own process (peak RSS is per process), side by side.

    .venv/bin/python benchmarks/long_text.py [--mb 20]     # benchmarks/results/long_text.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANT = r"""
import json, resource, sys, time
from interp.tokenize import load_tokenizer
from interp.data import TOKENIZER_PATH
from interp.collectors.stream import text_windows
tok = load_tokenizer(TOKENIZER_PATH)
text = open(sys.argv[2], encoding="utf-8").read()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if sys.argv[1] == "whole":
    n = len(tok.encode(text))
else:
    limit = None if sys.argv[1] == "pieces" else 1000
    n = 0
    for w in text_windows(tok, text, tok.bos_id, 128, limit):
        n += len(w)
        if limit is not None and n >= limit:
            break
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "peak_rss_mb": peak / 1024, "rss_growth_mb": (peak - base) / 1024, "tokens": n}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=20.0, help="size of the one-line text (MB)")
    a = ap.parse_args()
    from interp.data import load_corpus
    seed = " ".join(b.text.replace("\n", " ") for b in load_corpus("kjv").books)
    n = int(a.mb * 1e6)
    text = (seed * (n // len(seed) + 1))[:n]
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "one_line.txt"
        f.write_text(text, encoding="utf-8")
        for v in ("whole", "pieces", "max_tokens_1000"):
            p = subprocess.run([sys.executable, "-c", VARIANT, v, str(f)], cwd=ROOT, capture_output=True, text=True, check=False,
                               env={"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PATH": "/usr/bin:/bin",
                                    "HF_HUB_OFFLINE": "1"})
            if p.returncode:
                raise SystemExit(f"{v} failed: {p.stderr.strip().splitlines()[-1]}")
            rows[v] = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"{v:<16} {rows[v]['seconds']:7.2f} s  RSS growth {rows[v]['rss_growth_mb']:8.0f} MB  "
                  f"({rows[v]['tokens']} tokens)", flush=True)
    w = rows["whole"]
    ratios = {"time_pieces_vs_whole": rows["pieces"]["seconds"] / w["seconds"],
              "rss_growth_pieces_vs_whole": rows["pieces"]["rss_growth_mb"] / w["rss_growth_mb"],
              "time_max_tokens_vs_whole": rows["max_tokens_1000"]["seconds"] / w["seconds"]}
    print(json.dumps(ratios, indent=1))
    from record import write_result
    write_result("long_text", {"text_mb": a.mb, **{f"{k}_{m}": v[m] for k, v in rows.items()
                                                   for m in ("seconds", "rss_growth_mb", "tokens")}, **ratios},
                 threads=1, description="one-line text tokenized whole vs in pieces (interp.collectors.stream."
                                        "text_windows), each in its own process")


if __name__ == "__main__":
    main()
