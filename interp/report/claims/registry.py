"""The claims registry: one declarative `Claim` per seed-paper statement, judged by a named metric and a rule.

A claim says which paper and section it comes from, what it states, which metric measures it (a name in
`interp.analysis.registry.METRICS`), the rule with its threshold and a one-line reason, the paper's own number
(free text, or None when the paper gives none), and on which subjects it is evaluated: zoo strategies
(`zoo`, each compared with `reference` when one is given) and, when `real` is set, every real model of those
placements (their own rows, "not controlled: different data and size"; measured on their own, without the
reference, which is a zoo strategy).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from interp.report.claims.rules import Rule


@dataclass(frozen=True)
class Claim:
    """One seed claim. `params` are passed to the metric (e.g. when="init")."""

    key: str
    paper: str
    section: str
    statement: str
    metric: str
    rule: Rule
    paper_value: str | None
    zoo: tuple[str, ...] = ()
    reference: str | None = None
    real: tuple[str, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""


CLAIMS: dict[str, Claim] = {}


def register(*claims: Claim) -> None:
    """Add claims to the registry (a key registered twice is an error: keys are the claims' identities)."""
    for c in claims:
        if c.key in CLAIMS and CLAIMS[c.key] != c:
            raise ValueError(f"claim {c.key!r} is already registered")
        if not c.zoo and c.real is None:
            raise ValueError(f"claim {c.key!r} names no subject: give zoo strategies or real placements")
        CLAIMS[c.key] = c
