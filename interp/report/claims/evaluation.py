"""Evaluate every registered claim on the report's tables: one row per claim × subject, never pooled across
models, with the value, its 95 % interval, the paper's number, the metric's definition and the verdict."""
from __future__ import annotations

import math

import pandas as pd

from interp.analysis.intervals import NotTestable
from interp.analysis.registry import METRICS
from interp.analysis.subjects import Subject, real_subjects, zoo_subject
from interp.report.claims.registry import CLAIMS, Claim
from interp.report.claims.rules import INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, verdict

COLUMNS = ["claim", "paper", "section", "statement", "model", "reference", "control", "value", "lo", "hi",
           "interval", "n", "paper_value", "metric", "definition", "rule", "rule_reason", "verdict", "reason"]


def _subjects(c: Claim, cards: pd.DataFrame | None) -> list[tuple[str, Subject | None, Subject | None, str]]:
    """(label, subject, reference, why absent) for every subject the claim names."""
    out = []
    ref = zoo_subject(cards, c.reference) if c.reference else None
    for g in c.zoo:
        s = zoo_subject(cards, g)
        why = "" if s is not None else f"no {g} model was measured in this run"
        if s is not None and c.reference and ref is None:
            why = f"no {c.reference} model (the reference) was measured in this run"
        out.append((g, s, ref, why))
    if c.real is not None:
        out += [(s.label, s, None, "") for s in real_subjects(cards, c.real or None)]
    return out


def pending_seeds(tables: dict[str, pd.DataFrame], *subjects: Subject | None) -> str:
    """'' or why a verdict must wait: a zoo subject has fewer seeds in this run than the manifest plans
    (table seed_plan), e.g. 'pre-ln: 1 of 3 planned seeds measured'."""
    plan = tables.get("seed_plan")
    if plan is None or plan.empty:
        return ""
    want = dict(zip(plan["model"], plan["seeds"]))
    short = [f"{s.label}: {len(s.models)} of {int(want[s.label])} planned seeds measured" for s in subjects
             if s is not None and s.kind == "zoo" and len(s.models) < int(want.get(s.label, 0))]
    return "; ".join(short)


def _waits(est, why: str) -> bool:
    """A verdict waits for seeds when its interval is a bootstrap over held-out sequences standing in for the
    seed spread (timings, exact counts and sweeps over seeds do not depend on the zoo's seeds)."""
    return bool(why) and est is not None and "held-out sequences" in est.method


def evaluate_claim(c: Claim, tables: dict[str, pd.DataFrame]) -> list[dict]:
    """The rows of claim `c`: one per subject."""
    m = METRICS.get(c.metric)
    if m is None:
        raise KeyError(f"claim {c.key!r} names metric {c.metric!r}, which is not registered")
    rows = []
    for label, subj, ref, why in _subjects(c, tables.get("cards")):
        est, reason = None, why
        if subj is not None and (ref is not None or not c.reference or subj.kind == "real"):  # real: on its own
            try:
                est = m.fn(tables, subj, ref, **c.params)
            except NotTestable as e:
                reason = str(e)
            except (KeyError, ValueError, IndexError, ZeroDivisionError) as e:  # a malformed table: say so
                reason = f"could not evaluate: {type(e).__name__}: {e}"
        v, r = verdict(est, c.rule, reason)
        ok = est is not None and v != NOT_TESTABLE
        wait = pending_seeds(tables, subj, ref) if ok and subj is not None and subj.kind == "zoo" else ""
        if ok and _waits(est, wait) and v in (REPRODUCED, NOT_REPRODUCED):
            v, r = INCONCLUSIVE, (f"seeds still missing ({wait}): a bootstrap over held-out sequences leaves out the "
                                  f"seed spread, so the verdict waits for them; it would read '{v}' now ({r})")
        elif ok and wait and v == INCONCLUSIVE and "seeds" not in est.method:  # not when sweep seeds decided
            r += f"; {wait}"
        rows.append({
            "claim": c.key, "paper": c.paper, "section": c.section, "statement": c.statement, "model": label,
            "reference": (c.reference or "") if subj is None or subj.kind == "zoo" else "", "control": (subj.control if subj is not None else ""),
            "value": est.value if ok else math.nan, "lo": est.lo if ok else math.nan, "hi": est.hi if ok else math.nan,
            "interval": est.method if ok else "", "n": est.n if ok else 0, "paper_value": c.paper_value or "—",
            "metric": m.name, "definition": f"{m.definition} ({m.source})", "rule": c.rule.text(),
            "rule_reason": c.rule.reason, "verdict": v,
            "reason": (r + (f"; {est.detail}" if ok and est.detail else "") + (f"; {c.note}" if c.note else ""))})
    return rows


def evaluate(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The claims table (columns COLUMNS): every registered claim on every subject it names."""
    import interp.report.claims.entries  # noqa: F401  (registers the claims)
    from interp.report.summary import complete
    tables = complete(tables)
    rows = [r for c in CLAIMS.values() for r in evaluate_claim(c, tables)]
    return pd.DataFrame(rows, columns=COLUMNS)
