"""docs/results.md documents every column of every collector table, and every state key's merge rule."""
import re
from pathlib import Path

import torch

import interp.zoo as zoo
from interp.analysis.sequences import SequenceStats
from interp.collectors import GradNorms, LayerEffect, MassiveActivations, NormScales, ResidualStats, collect

DOC = (Path(__file__).parent.parent / "docs" / "results.md").read_text()


def documented_columns() -> set[str]:
    cols = set()
    for line in DOC.split("## Merge rules")[0].splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            cols |= set(re.findall(r"`([^`]+)`", first))
            if "…" in first:
                cols |= {"q01", "q05", "q25", "q50", "q75", "q95", "q99"}
    return cols


def collector_tables() -> dict:
    """Every collector table (and the ablation's) of a tiny peri-ln with one massive activation."""
    model = zoo.build("peri-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=256)
    with torch.no_grad():
        model.embed.weight[0, 3] = 5000.0
    cols = [ResidualStats(), MassiveActivations(), LayerEffect(), NormScales(), GradNorms()]
    res = collect(model, [[0, 5, 6, 7], [0, 9, 8]], cols, progress=False)
    tables = dict(res.tables, massive_ablation=cols[1].ablation(model, [[0, 5, 6, 7]]))
    return tables


def test_every_column_is_documented():
    tables = collector_tables()
    documented = documented_columns()
    missing = {f"{t}.{c}" for t, df in tables.items() for c in df.columns if c not in documented}
    assert not missing, f"columns missing from docs/results.md: {sorted(missing)}"


def test_every_documented_column_is_in_its_tables():
    """The reverse: a row of the Columns table names tables its columns are in; each collector table among them
    must have every column of the row (the docs said grad_norms has `min`; it has max only)."""
    tables = collector_tables()
    wrong = []
    for line in DOC.split("## Columns")[1].split("\n## ")[0].splitlines():
        if line.startswith("| `"):
            first, where = line.split("|")[1:3]
            names = re.findall(r"`([^`]+)`", first)
            wrong += [f"{t}.{c}" for t in (w.strip() for w in where.split(",")) if t in tables
                      for c in names if c not in tables[t].columns]
    assert not wrong, f"docs/results.md names columns these tables do not have: {sorted(wrong)}"


def test_every_state_key_has_its_documented_rule():
    model = zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=256)
    table = DOC.split("## Merge rules")[1]
    for c in (ResidualStats(), MassiveActivations(), LayerEffect(), NormScales(), GradNorms(), SequenceStats()):
        c.bind(model)
        row = next(line for line in table.splitlines() if line.startswith(f"| {c.name} |"))
        cells = [set(x.replace("(order)", "").replace("+", ",").replace(" ", "").split(",")) - {""}
                 for x in row.split("|")[2:6]]
        for key, rule in c.rules.items():
            col = {"sum": 0, "max": 1, "min": 2}.get(rule, 3)
            assert key in cells[col], f"{c.name}.{key} ({rule}) not documented in that column"
