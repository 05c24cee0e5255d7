"""The claims table as the report and the docs show it: one row per claim × model, readable columns."""
from __future__ import annotations

import html
import math

import pandas as pd


def _num(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def interval_text(value: float, lo: float, hi: float) -> str:
    """'v [lo, hi]' with three significant digits ('v (no interval)' when there is none)."""
    if value is None or not math.isfinite(value):
        return "—"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{_num(value)} (no interval)"
    return f"{_num(value)} [{_num(lo)}, {_num(hi)}]"


# the claims table's columns display_table reads
READS = ("paper", "section", "statement", "model", "reference", "control", "value", "lo", "hi", "interval",
         "paper_value", "definition", "rule", "rule_reason", "verdict", "reason")


def display_table(claims: pd.DataFrame) -> pd.DataFrame:
    """Columns: paper, claim, model (vs reference), control, ours (95 % CI), interval, paper's value, metric,
    rule, verdict, why."""
    rows = []
    for r in claims.itertuples(index=False):
        rows.append({
            "paper": f"{r.paper}, {r.section}", "claim": r.statement,
            "model": r.model + (f" vs {r.reference}" if r.reference else ""), "control": r.control,
            "ours (95 % CI)": interval_text(r.value, r.lo, r.hi), "interval": r.interval,
            "paper's value": r.paper_value, "metric": r.definition, "rule": f"{r.rule} — {r.rule_reason}",
            "verdict": r.verdict, "why": r.reason})
    return pd.DataFrame(rows)


def verdict_counts(claims: pd.DataFrame) -> dict[str, int]:
    """How many rows got each verdict (for the section's summary line)."""
    return {str(k): int(v) for k, v in claims["verdict"].value_counts().items()}


def seeds_text(cards: pd.DataFrame | None) -> str:
    """'pre-ln 3, post-ln 1, ...': how many seeds of each zoo strategy this run measured (what the intervals rest
    on; counted from the models present, never assumed)."""
    from interp.analysis.subjects import group_of
    if cards is None or cards.empty or "family" not in cards:
        return "no zoo models"
    zoo = cards.loc[cards["family"].fillna("zoo") == "zoo", "model"]
    counts = zoo.map(group_of).value_counts()
    return ", ".join(f"{g} {int(counts[g])}" for g in sorted(counts.index)) or "no zoo models"


def markdown_table(claims: pd.DataFrame) -> str:
    """The claims table as Markdown (for README/docs generated from a report run): paper, claim, model, ours,
    paper's value, verdict."""
    d = display_table(claims)
    cols = ["paper", "claim", "model", "ours (95 % CI)", "paper's value", "verdict"]
    esc = lambda s: html.escape(str(s)).replace("|", "\\|").replace("\n", " ")  # Markdown renders raw HTML
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(esc(r[c]) for c in cols) + " |" for _, r in d.iterrows()]
    return "\n".join(lines) + "\n"
