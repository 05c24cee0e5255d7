"""What a claim is evaluated on: a *subject* is one zoo strategy with all its seeds, or one real model.

Zoo models are named `<strategy>` (seed 0) and `<strategy>.seed<k>` (seed k); a subject groups them so that
intervals run across seeds. Real models (any family but the zoo) are subjects of their own, labelled
"not controlled: different data and size" — evidence, but not a controlled comparison.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from interp.analysis.intervals import NotTestable

UNCONTROLLED = "not controlled: different data and size"
CONTROLLED = "zoo: same data, size and recipe"
_SEED = re.compile(r"\.seed(\d+)$")


@dataclass(frozen=True)
class Subject:
    """label: strategy (zoo) or model name (real); models: the model names it pools (seeds), seed order."""

    label: str
    models: tuple[str, ...]
    kind: str = "zoo"  # "zoo" or "real"

    @property
    def control(self) -> str:
        return CONTROLLED if self.kind == "zoo" else UNCONTROLLED


def group_of(model: str) -> str:
    """The zoo strategy a model name belongs to: the name without its `.seed<k>` suffix."""
    return _SEED.sub("", model)


def seed_of(model: str) -> int:
    """The seed in a zoo model name (`<strategy>` is seed 0)."""
    m = _SEED.search(model)
    return int(m.group(1)) if m else 0


def first_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of seed-0 zoo models and of real models (names without a `.seed<k>` suffix): what a per-model view
    shows, since a strategy's other seeds feed the claims' intervals."""
    return df[df["model"].map(lambda m: _SEED.search(m) is None)]


def zoo_subject(cards: pd.DataFrame | None, group: str) -> Subject | None:
    """The subject pooling every zoo model of `group` in `cards` (None when there is none)."""
    if cards is None or cards.empty:
        return None
    zoo = cards[cards.get("family", pd.Series("zoo", index=cards.index)).fillna("zoo") == "zoo"]
    names = sorted((m for m in zoo["model"] if group_of(m) == group), key=seed_of)
    return Subject(group, tuple(names), "zoo") if names else None


def real_subjects(cards: pd.DataFrame | None, placements: tuple[str, ...] | None = None,
                  causal_only: bool = True) -> list[Subject]:
    """One subject per real (non-zoo) model, optionally only those whose card placement is in `placements`."""
    if cards is None or cards.empty or "family" not in cards:
        return []
    real = cards[cards["family"].fillna("zoo") != "zoo"]
    if causal_only and "objective" in real:
        real = real[real["objective"].fillna("causal_lm") != "encoder"]
    if placements is not None and "placement" in real:
        real = real[real["placement"].isin(placements)]
    return [Subject(m, (m,), "real") for m in real["model"]]


def need(t: dict[str, pd.DataFrame], name: str, models: tuple[str, ...] | list[str], what: str) -> pd.DataFrame:
    """Rows of table `name` for `models`; NotTestable naming `what` when the table or the rows are absent."""
    df = t.get(name)
    if df is None or df.empty:
        raise NotTestable(f"no {what} in this run")
    rows = df[df["model"].isin(models)]
    if rows.empty:
        raise NotTestable(f"no {what} for {', '.join(models)}")
    return rows
