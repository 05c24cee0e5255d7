"""The seed papers' claims, each judged by that paper's own metric, per model, with a 95 % interval.

    interp.report.claims.evaluate(tables)   # -> one row per claim × subject (columns: claims.COLUMNS)

How a claim is judged (one shared path for every claim):
  1. its metric (`interp.analysis.registry.METRICS[claim.metric]`) returns an `Estimate` for each subject:
     value, 95 % interval (t over seeds; Welch for a difference; a percentile bootstrap over held-out
     sequences for a single model; exact for counts), or raises `NotTestable` with a reason in words;
  2. `verdict(estimate, claim.rule)` (interp.report.claims.rules) gives reproduced / not reproduced / inconclusive / not testable
     here (see `interp.report.claims.rules`): an interval that straddles the boundary is inconclusive.
Zoo strategies are subjects with all their seeds pooled; each real model is a subject of its own, labelled
"not controlled: different data and size". Nothing is ever pooled across subjects.

Adding a claim = one registry entry + (if no existing metric fits) one metric function:
  - the metric, in a module of `interp/analysis/` (one concept per file), imported in
    `interp/analysis/__init__.py`:

        @metric("my_metric", "one-line definition shown in the report", "Paper §N (what it follows)", "unit")
        def my_metric(t, subject, ref=None, **params) -> Estimate:
            rows = need(t, "my_table", subject.models, "what is missing, in words")   # NotTestable if absent
            return estimate(lambda model, idx: <value of model on sequences idx>, subject, ref, n_seqs)

    `t` holds the report's canonical tables (interp.report.tables.TABLES); `estimate` picks the interval.
  - the entry, in `interp/report/claims/entries/<paper>.py` (imported in `entries/__init__.py`):

        register(Claim(key="my_claim", paper="Author et al. 2025", section="§3, Fig. 2",
    statement="What the paper says.", metric="my_metric",
    rule=Rule(">", 0.0, "why this boundary, from the paper"), paper_value="+0.07 nats",
    zoo=("my-strategy",), reference="pre-ln", real=None, params={}))

    `zoo`: strategies evaluated (each against `reference` when given); `real`: placements of real models to
    evaluate as well (() for every real causal LM, None for none). Thresholds are fixed here, before data.
  - a test that the rule flips on synthetic data on both sides of its boundary (tests/test_claims_rules.py).
"""
from __future__ import annotations

import interp.analysis  # noqa: F401  (registers the metrics)
from interp.report.claims import entries  # noqa: F401  (registers the claims)
from interp.report.claims.evaluation import COLUMNS, evaluate, evaluate_claim
from interp.report.claims.registry import CLAIMS, Claim, register
from interp.report.claims.rules import INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, VERDICTS, Rule, verdict

THRESHOLDS = {k: c.rule.threshold for k, c in CLAIMS.items()}  # claim key -> its rule's boundary

__all__ = [
    "CLAIMS",
    "COLUMNS",
    "INCONCLUSIVE",
    "NOT_REPRODUCED",
    "NOT_TESTABLE",
    "REPRODUCED",
    "THRESHOLDS",
    "VERDICTS",
    "Claim",
    "Rule",
    "evaluate",
    "evaluate_claim",
    "register",
    "verdict",
]

INTRO = ("One row per claim and model (zoo strategies pool their seeds; real models are not controlled: different "
         "data and size). Each value comes with its 95 % interval: a t interval over seeds (Welch for a difference "
         "between strategies), a percentile bootstrap over held-out sequences for a single model, or exact for "
         "counts; where the zoo's manifest plans more seeds than this run found, a verdict resting on the one-seed "
         "bootstrap waits for them (inconclusive). Reproduced: every value of the interval satisfies the rule (its boundary fixed in code before the "
         "data); not reproduced: no value does; inconclusive: the interval straddles the boundary, there is no "
         "interval, or two controls differ by enough to move the interval across the boundary; not testable here: the numbers are absent or "
         "the model cannot show it.")
