"""Render the docs' numbers from their JSON sources, so that no measured number in the docs is typed by hand.

    .venv/bin/python docs/numbers_from_json.py           # rewrite every generated block in docs/*.md and README.md
    .venv/bin/python docs/numbers_from_json.py --check   # exit 1, naming the page, if a page differs from its sources

Sources: `benchmarks/results/<name>.json` (written by the benchmark scripts through benchmarks/record.py) and
`data/zoo/manifest.json` (written by the zoo training), `data/sweep/sweep.csv` (written by `interp sweep`).
Markers in a page:

    <!-- numbers: benchmarks -->  ...  <!-- /numbers -->     every benchmark, one section each
    <!-- numbers: zoo -->  ...  <!-- /numbers -->            the zoo's models from the manifest
    <!-- numbers: strategies -->  ...  <!-- /numbers -->     the zoo's presets from interp.zoo.STRATEGIES
    <!-- numbers: models -->  ...  <!-- /numbers -->         the named real models from interp.models.REGISTRY
    <!-- numbers: claims -->  ...  <!-- /numbers -->         the claims' rules from interp.report.claims.CLAIMS
    <!-- numbers: sweep -->  ...  <!-- /numbers -->          the LR sweep per strategy from data/sweep/sweep.csv
    <!-- n: train_step results/ratio -->1.097<!-- /n -->     one number: source (a benchmark name or `zoo`),
                                                             then its path of keys, separated by "/" (spaces
                                                             in a key spelled "_"; a key may hold "/")
    <!-- n: zoo models/pre-ln/final_val_loss .2f -->4.88<!-- /n -->   an optional format spec after the path

Everything between a pair of markers is replaced; the rest of the page is left alone.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MANIFEST = ROOT / "data" / "zoo" / "manifest.json"
SWEEP = ROOT / "data" / "sweep" / "sweep.csv"
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]

BLOCK = re.compile(r"(<!-- numbers: (\w+) -->\n)(.*?)(<!-- /numbers -->)", re.S)
INLINE = re.compile(r"(<!-- n: (\S+) (\S+)(?: (\S+))? -->)(.*?)(<!-- /n -->)")


def fmt(v: Any, spec: str | None = None) -> str:
    """A number as the docs show it: 4 significant digits unless `spec` says otherwise; text escaped for tables."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)) and spec:
        return format(v, spec)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "—" if v != v else f"{v:.4g}"
    if v is None:
        return "—"
    if isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v):
        return ", ".join(fmt(x, spec) for x in v)  # an interval [lo, hi]: the spec applies to each end
    return html.escape(str(v)).replace("|", "\\|").replace("\n", " ")


def source(name: str) -> dict:
    path = MANIFEST if name == "zoo" else RESULTS / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"docs quote {name!r} but {path.relative_to(ROOT)} does not exist")
    return json.loads(path.read_text())


def lookup(doc: Any, path: str, name: str) -> Any:
    """The value at `path` ("/"-separated keys) in `doc`; a key with spaces (a row named by its CPU, "zoo on AMD
    EPYC (AVX2)") is spelled with "_" in their place, since a quote's path holds no spaces. A key that holds "/"
    itself ("collect/plain (cpu, median)") is matched over as many segments as it spans, longest first."""
    parts = path.split("/")
    while parts:
        key, n = parts[0], 1
        if isinstance(doc, dict):
            spelled = {k.replace(" ", "_"): k for k in doc}
            n = next((n for n in range(len(parts), 0, -1) if "/".join(parts[:n]) in doc
                      or "/".join(parts[:n]) in spelled), 1)
            key = "/".join(parts[:n])
            key = key if key in doc else spelled.get(key, key)
        try:
            doc = doc[int(key)] if isinstance(doc, list) else doc[key]
        except (KeyError, IndexError, ValueError):
            raise SystemExit(f"docs quote {name} {path!r}, which is not in its JSON (no {key!r})") from None
        parts = parts[n:]
    return doc


# --- tables ---------------------------------------------------------------------------------------------
DETAIL = ("timing", "load_before", "load_after")  # raw repeats and machine load: kept in the JSON, not on the page
RUN_LOG = ("steps", "task_cpu_s", "log_tail")  # a main-job run's every logged step and task: likewise (its
# step_seconds is the page's per-step breakdown)


def flat(row: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in row.items():
        if k in DETAIL or (isinstance(v, list) and len(v) > 8):
            continue
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def depth(v: Any) -> int:
    """How deeply dicts nest in `v` (0: not a dict; the DETAIL keys left out)."""
    if not isinstance(v, dict):
        return 0
    return 1 + max((depth(x) for k, x in v.items() if k not in DETAIL), default=0)


def table(rows: list[dict]) -> list[str]:
    rows = [flat(r) for r in rows]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(c.replace("_", " ") for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return lines


def render_value(v: Any, title: str | None, level: int) -> list[str]:
    """Any JSON value as markdown: flat dicts as key/value tables, lists / dicts of dicts as row tables."""
    head = [f"{'#' * level} {title}", ""] if title else []
    if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
        return head + table(v) + [""]
    if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()) and \
            max(depth(x) for x in v.values()) <= 2:  # rows of a table; deeper nesting gets a section per key
        return head + table([{"name": k, **x} for k, x in v.items()]) + [""]
    if isinstance(v, dict):
        v = {k: x for k, x in v.items() if k not in DETAIL + RUN_LOG}
        scalars = {k: x for k, x in v.items() if not isinstance(x, (dict, list)) or
                   (isinstance(x, list) and all(not isinstance(y, (dict, list)) for y in x))}
        out = head
        if scalars:
            out += ["| | |", "|---|---|"] + [f"| {k.replace('_', ' ')} | {fmt(x)} |" for k, x in scalars.items()] + [""]
        for k, x in v.items():
            if k not in scalars:
                out += render_value(x, k.replace("_", " "), min(level + 1, 6))
        return out
    return head + [fmt(v), ""]


def benchmarks_block() -> list[str]:
    files = sorted(RESULTS.glob("*.json"))
    if not files:
        raise SystemExit("no benchmark results in benchmarks/results")
    out = []
    for f in files:
        d = json.loads(f.read_text())
        m = d.get("machine") or {}
        spec = ", ".join(x for x in (m.get("isa"), m.get("generation")) if x)  # as benchmarks/record.machine_label
        where = (f"{m.get('cpu', '?')}{' (' + spec + ')' if spec else ''}, {m.get('cores', '?')} cores"
                 if m else "machine not recorded")
        out += [f"### {d['benchmark']}", "", d.get("description", ""), "",
                f"`{d.get('command', '?')}` · {d.get('date', 'date not recorded')} · torch {d.get('torch', '?')} · "
                f"{d.get('threads', '?')} thread(s) · {where} · source `benchmarks/results/{f.name}` (with every "
                "repeat's time and the machine's load)", ""]
        out += render_value(d["results"], None, 3)
    return out


def zoo_block() -> list[str]:
    """The zoo's models (`interp.train.zoo.zoo_table`, one row per model) with the shared size and recipe."""
    sys.path.insert(0, str(ROOT))
    from interp.train.zoo import zoo_table
    man = source("zoo")
    recipe, size = man.get("train_config", {}), man.get("size", {})
    out = ["Size: " + ", ".join(f"{k} {fmt(v)}" for k, v in size.items()) + ". Shared recipe: " +
           ", ".join(f"{k} {fmt(recipe[k])}" for k in ("steps", "batch_size", "seq_len", "lr", "warmup")
                     if k in recipe) + ".", ""]
    base = man.get("baselines_nats_per_token", {})
    if base:
        out += ["Baselines (nats per token): " + ", ".join(f"{k.replace('_', ' ')} {fmt(v)}" for k, v in base.items())
                + ".", ""]
    cols = ["model", "strategy", "seed", "objective", "val_loss", "below_unigram", "loss_spikes", "steps", "tokens",
            "job_cpu_s", "lr", "warmup", "recipe"]
    df = zoo_table(man)
    out += table([{c: _py(r[c]) for c in cols if c in df.columns} for r in df.to_dict("records")]) + [""]
    for name, why in (man.get("exceptions") or {}).items():
        out += [f"Exception, `{name}`: {fmt(why)}", ""]
    if man.get("zoo_cost"):
        out += render_value(man["zoo_cost"], "What training the zoo took", 4)
    return out


def _py(v: Any) -> Any:
    """numpy / pandas scalars as plain Python (NaN and None both shown as a dash)."""
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    return None if isinstance(v, float) and v != v else v


def strategies_block() -> list[str]:
    """The zoo's presets as `interp.zoo.STRATEGIES` defines them (placement, norm, the other overrides)."""
    sys.path.insert(0, str(ROOT))
    from interp.zoo import STRATEGIES
    rows = [{"strategy": f"`{name}`", "placement": p.get("placement"), "norm": p.get("norm"),
             "other settings": ", ".join(f"{k}={v}" for k, v in p.items() if k not in ("placement", "norm")) or "—"}
            for name, p in STRATEGIES.items()]
    return table(rows) + [""]


def models_block() -> list[str]:
    """The named real models as `interp.models.REGISTRY` defines them."""
    sys.path.insert(0, str(ROOT))
    from interp.models import REGISTRY
    rows = [{"name": f"`{e.name}`", "family": e.family, "placement": e.placement, "norm": e.norm_kind,
             "weights": e.source} for e in REGISTRY.values()]
    return table(rows) + [""]


def claims_block() -> list[str]:
    """The claims registry (`interp.report.claims.CLAIMS`): every claim's source, metric, rule and reason, and the
    subjects it is judged on; the verdicts are the report's (report/claims.json), not the docs'."""
    sys.path.insert(0, str(ROOT))
    from interp.analysis.registry import METRICS
    from interp.report.claims import CLAIMS
    rows = []
    for c in CLAIMS.values():
        m = METRICS[c.metric]
        on = ", ".join(c.zoo) + (f" (each vs {c.reference})" if c.reference else "")
        if c.real is not None:
            on += ("; " if on else "") + ("every real causal LM" if not c.real else
                                          "real models of placement " + "/".join(c.real))
        rows.append({"claim": f"`{c.key}`", "paper": f"{c.paper}, {c.section}", "statement": c.statement,
                     "metric": f"`{m.name}`: {m.definition}", "rule": f"{c.rule.text()}: {c.rule.reason}",
                     "paper's value": c.paper_value, "judged on": on})
    return table(rows) + [""]


def sweep_block() -> list[str]:
    """The LR sweep (data/sweep/sweep.csv) per strategy: its seeds, each seed's first diverging rung, the LR
    sensitivity (mean and range over seeds) and the largest attention logit at lr 0.1, as interp.analysis.stability
    reads them."""
    sys.path.insert(0, str(ROOT))
    import pandas as pd

    from interp.analysis.stability import lr_sensitivity_of, stable_rung
    df = pd.read_csv(SWEEP)
    steps = json.loads(SWEEP.with_suffix(".json").read_text())["steps"]  # the run's --steps (sweep.json)
    out = [f"Source `data/sweep/sweep.csv`: {len(df)} runs, {df.strategy.nunique()} strategies, "
           f"{steps} steps a run (`--steps {steps}`).", ""]
    rows = []
    for name, runs in df.groupby("strategy", sort=False):
        ladder = sorted(set(runs.lr.astype(float)))
        seeds = sorted(set(runs.seed))
        full = [k for k in seeds if set(runs[runs.seed == k].lr.astype(float)) == set(ladder)]
        first = []
        for k in full:
            i, never = stable_rung(runs[runs.seed == k], ladder)
            first.append("none" if never else fmt(ladder[i + 1]))
        sens = [lr_sensitivity_of(runs[runs.seed == k]) for k in full]
        top = runs[runs.lr.astype(float) == 0.1].sort_values("seed").max_attn_logit
        rows.append({"strategy": f"`{name}`", "seeds": ", ".join(map(str, seeds)),
                     "ladder": f"{fmt(ladder[0])} … {fmt(ladder[-1])} ({len(ladder)} rungs)",
                     "first diverging rung, per seed": ", ".join(first) if first else None,
                     "LR sensitivity (nats): mean [min, max] over seeds":
                         f"{sum(sens) / len(sens):.3f} [{min(sens):.3f}, {max(sens):.3f}]" if sens else None,
                     "max attention logit at lr 0.1: median [min, max]":
                         f"{top.median():.3g} [{top.min():.3g}, {top.max():.3g}]" if len(top) else None})
    return out + table(rows) + [""]


BLOCKS = {"benchmarks": benchmarks_block, "zoo": zoo_block, "strategies": strategies_block, "models": models_block,
          "claims": claims_block, "sweep": sweep_block}


def render_page(text: str, page: str) -> str:
    def block(m: re.Match) -> str:
        if m.group(2) not in BLOCKS:
            raise SystemExit(f"{page}: unknown numbers block {m.group(2)!r}; known: {', '.join(BLOCKS)}")
        return m.group(1) + "\n".join(BLOCKS[m.group(2)]()) + "\n" + m.group(4)

    def inline(m: re.Match) -> str:
        name, path, spec = m.group(2), m.group(3), m.group(4)
        return m.group(1) + fmt(lookup(source(name), path, name), spec) + m.group(6)

    for line_no, line in enumerate(text.splitlines(), 1):  # a marker the pattern misses would go unchecked
        if line.count("<!-- n:") != len(INLINE.findall(line)):
            bad = next(m for m in re.finditer(r"<!-- n:.*?-->", line) if not INLINE.match(line, m.start()))
            raise SystemExit(f"{page}:{line_no}: malformed quote {bad.group(0)!r}: write `<!-- n: source path [spec] "
                             "-->value<!-- /n -->` on one line, with spaces in the path's keys spelled \"_\"")
    return INLINE.sub(inline, BLOCK.sub(block, text))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a page differs from its sources")
    a = ap.parse_args()
    stale = []
    for p in PAGES:
        text = p.read_text()
        new = render_page(text, p.name)
        if new != text:
            stale.append(p.relative_to(ROOT).as_posix())
            if not a.check:
                p.write_text(new)
    if a.check and stale:
        print(f"numbers differ from their JSON in: {', '.join(stale)}; run `python docs/numbers_from_json.py`",
              file=sys.stderr)
        return 1
    print(("stale: " if a.check else "rewrote: ") + (", ".join(stale) or "nothing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
