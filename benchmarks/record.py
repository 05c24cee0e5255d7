"""Write a benchmark's result to `benchmarks/results/<name>.json`, with the machine, threads, torch and date.

    from record import write_result            # a script in benchmarks/ has this folder on sys.path
    write_result("train_step", results, threads=1, description="...")

The file holds {"benchmark", "description", "machine": {"cpu", "isa", "cores", "platform"}, "threads", "torch",
"python", "date" (UTC, ISO 8601), "command", "results"}. `results` is any JSON: a flat dict, a list of flat dicts
(one table row each) or a dict of flat dicts (one row per key). `docs/numbers_from_json.py` renders every file into
docs/benchmarks.md (write_result re-renders the pages), and the docs quote numbers only through it, so the JSON is
the one source of each number.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parents[1]


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa() -> str:
    """The widest vector instructions the CPU offers, from /proc/cpuinfo's flags ("AVX-512 + AMX", "AVX-512",
    "AVX2", ...; "" where unknown): two CPUs of one model name can differ in them, and kernel speeds follow them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                f = set(line.split(":", 1)[1].split())
                wide = "AVX-512" if "avx512f" in f else "AVX2" if "avx2" in f else "AVX" if "avx" in f else "SSE"
                return wide + (" + AMX" if "amx_tile" in f else "")
    except OSError:
        pass
    return ""


def cpu_generation(cpuinfo: str | None = None) -> str:
    """x86 "family F model M" from /proc/cpuinfo ("" where unknown): a virtual machine may name only "AMD EPYC" or
    "Intel(R) Xeon(R) Processor", the same for CPUs generations apart (AMD family 23 is Zen 1/2, 25 Zen 3/4)."""
    try:
        text = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
    except OSError:
        return ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor's block
        k, _, v = line.partition(":")
        fields.setdefault(k.strip(), v.strip())
    fam, mod = fields.get("cpu family"), fields.get("model")
    return f"family {fam} model {mod}" if fam and mod and fam.isdigit() and mod.isdigit() else ""


def machine_label(machine: dict) -> str:
    """One line naming the CPU of a machine record ({"cpu", "isa", "generation"}): model name, vector
    instructions and, where recorded, the x86 family / model (records made before it was kept have none)."""
    cpu = machine.get("cpu", "?")
    extra = ", ".join(x for x in (machine.get("isa"), machine.get("generation")) if x)
    return f"{cpu} ({extra})" if extra else cpu


def machine_name() -> str:
    """`machine_label` of the CPU this process runs on."""
    return machine_label({"cpu": cpu_model(), "isa": cpu_isa(), "generation": cpu_generation()})


def row_key(model: str, machine: str) -> str:
    """A results row's name: one row per model and CPU, so a merge keeps what other CPUs measured (a ratio belongs
    to the CPU it ran on: the plain forward and the collectors' passes speed up differently on different ones)."""
    return f"{model} on {machine}"


def kept_rows(old: dict) -> dict:
    """The rows of a results file read back for `--merge`, keyed by `row_key`. A row written before rows named
    their CPU, model, date and command takes them from the file (the key was the model's name alone)."""
    was = machine_label(old.get("machine") or {})
    rows = {}
    for k, v in old["results"].items():
        v = {"model": k.split(" on ")[0], "machine": was, "command": old.get("command"), "date": old.get("date"), **v}
        rows[row_key(v["model"], v["machine"])] = v
    return rows


def recorded_rows(name: str) -> dict:
    """`kept_rows` of benchmarks/results/<name>.json, what a `--merge` run keeps; {} when there is no such file."""
    path = RESULTS / f"{name}.json"
    return kept_rows(json.loads(path.read_text())) if path.is_file() else {}


def utc_now() -> str:
    """The current UTC time to the second, ISO 8601: how every results file and row dates itself."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def command_line() -> str:
    """The command this process runs, as a user would type it from the repository root ("python
    benchmarks/x.py --flag"): how results files and rows name what measured them."""
    script = Path(sys.argv[0]).resolve()
    argv = [script.relative_to(ROOT).as_posix() if sys.argv[0].endswith(".py") and script.is_relative_to(ROOT)
            else Path(sys.argv[0]).name] + sys.argv[1:]
    return " ".join(["python", *argv])


def provenance(threads: int) -> dict[str, Any]:
    """Where, when and with what a number was measured."""
    import torch
    return {"machine": {"cpu": cpu_model(), "isa": cpu_isa(), "generation": cpu_generation(), "cores": os.cpu_count(),
                        "platform": platform.platform(terse=True)},
            "threads": threads, "torch": torch.__version__, "python": platform.python_version(),
            "date": utc_now(),
            "command": command_line()}


def write_result(name: str, results: Any, threads: int, description: str) -> Path:
    """Write `results` with its provenance to benchmarks/results/<name>.json (atomically); return the path."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"benchmark name {name!r}: use letters, digits and underscores")
    sys.path.insert(0, str(ROOT))
    from interp.outputs import atomic_write_text
    doc = {"benchmark": name, "description": description, **provenance(threads), "results": results}
    path = atomic_write_text(RESULTS / f"{name}.json", json.dumps(doc, indent=1) + "\n")
    render_docs()
    return path


def render_docs() -> None:
    """Re-render the docs pages that quote benchmark numbers (docs/numbers_from_json.py), so they stay in step."""
    import importlib.util
    sys.path.insert(0, str(ROOT))
    from interp.outputs import atomic_write_text
    spec = importlib.util.spec_from_file_location("numbers_from_json", ROOT / "docs" / "numbers_from_json.py")
    gen = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(gen)
        for page in gen.PAGES:
            text = page.read_text()
            new = gen.render_page(text, page.name)
            if new != text:
                atomic_write_text(page, new)
                print(f"updated {page.relative_to(ROOT)}")
    except (SystemExit, Exception) as e:  # noqa: BLE001 - the result is written; the docs can be rendered later
        print(f"docs not re-rendered ({e}); run python docs/numbers_from_json.py", file=sys.stderr)
