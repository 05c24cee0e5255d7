"""The one verdict function every claim shares, and the rule it applies.

Four verdicts:
  reproduced         every value of the 95 % interval satisfies the rule (the whole interval lies strictly on the
                     claim's side of the boundary)
  not reproduced     no value of the interval satisfies it (the whole interval lies on the other side, the
                     boundary included: the rules are strict inequalities, so an interval [0, 0] under "value > 0",
                     e.g. no seed gained a rung of the LR ladder, is not reproduced)
  inconclusive       some values of the interval satisfy the rule and some do not (it straddles the boundary, or
                     touches it from the claim's side), there is no interval, or two controls that should agree
                     differ by enough to change the verdict: measured against the other control the value could
                     move by their gap, so the interval widened by the gap on both sides must still decide
  not testable here  the numbers are absent, or the model cannot show the effect (the reason is said in words)
A point estimate alone never decides: without an interval the verdict is "inconclusive".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from interp.analysis.intervals import Estimate

REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
INCONCLUSIVE, NOT_TESTABLE = "inconclusive", "not testable here"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE)

OPS = {">": "greater than", "<": "less than", "within": "within ±"}


@dataclass(frozen=True)
class Rule:
    """What the claim predicts for the metric: value `op` threshold (`within`: |value| < threshold).

    reason: one line saying why this boundary, taken from the paper (or saying that the paper gives none)."""

    op: str
    threshold: float
    reason: str

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown rule op {self.op!r}; choose one of {', '.join(OPS)}")
        if self.op == "within" and not self.threshold > 0:
            raise ValueError(f"a 'within' rule needs a positive half-width, got {self.threshold}")

    def text(self) -> str:
        return f"|value| < {self.threshold:g}" if self.op == "within" else f"value {self.op} {self.threshold:g}"


def verdict(est: Estimate | None, rule: Rule, why_absent: str = "") -> tuple[str, str]:
    """(verdict, reason) of `est` under `rule`; see the module docstring for the four outcomes."""
    if est is None or not math.isfinite(est.value):
        return NOT_TESTABLE, why_absent or "the metric could not be computed from this run's numbers"
    if not est.has_interval:
        return INCONCLUSIVE, f"no interval ({est.method})"
    side = _side(est.lo, est.hi, rule)
    gap = est.control_gap
    if gap is not None and math.isfinite(gap) and side != INCONCLUSIVE:
        wide = (est.lo - abs(gap), est.hi + abs(gap))
        if _side(*wide, rule) == INCONCLUSIVE:
            return INCONCLUSIVE, (f"the controls differ by {abs(gap):.3g}: against the other control the interval "
                                  f"could be [{wide[0]:.3g}, {wide[1]:.3g}], which straddles the boundary "
                                  f"{rule.threshold:g} ({est.method})")
    lo, hi, t = est.lo, est.hi, rule.threshold
    where = {REPRODUCED: "the interval lies on the claim's side of", NOT_REPRODUCED: "the interval lies at or beyond",
             INCONCLUSIVE: "the interval straddles"}[side]
    return side, f"{where} the boundary {t:g} ([{lo:.3g}, {hi:.3g}], {est.method})"


def _side(lo: float, hi: float, rule: Rule) -> str:
    """The verdict of the interval [lo, hi] under `rule` (strict inequalities; touching the boundary from the
    claim's side is inconclusive)."""
    t = rule.threshold
    if rule.op == ">":
        return REPRODUCED if lo > t else NOT_REPRODUCED if hi <= t else INCONCLUSIVE
    if rule.op == "<":
        return REPRODUCED if hi < t else NOT_REPRODUCED if lo >= t else INCONCLUSIVE
    return REPRODUCED if (lo > -t and hi < t) else NOT_REPRODUCED if (hi <= -t or lo >= t) else INCONCLUSIVE
