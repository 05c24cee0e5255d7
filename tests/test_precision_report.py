"""The precision claim (fp16 headroom, Welch over seeds vs pre-ln; real models on their own) against the
activations themselves, and the report section: figures, the Δloss table, an overflowing model shown as inf."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import interp
from interp.analysis.intervals import welch_interval
from interp.collectors import Precision, collect
from interp.collectors.residual import residual_sites
from interp.precision import precision_runs
from interp.report.claims import CLAIMS, INCONCLUSIVE, evaluate_claim

KW = {"n_layers": 3, "d_model": 32, "n_heads": 4, "d_mlp": 64, "n_ctx": 16, "d_vocab": 256}
DATA = [[5, 17, 33, 2, 90, 41, 7], [8, 3, 250, 11, 12], [60, 61, 62, 63, 64, 65]]


def measured(strategy: str, seed: int, name: str, boost: float = 1.0):
    """(Results tables renamed to `name`, the largest |x| over every residual site, brute force)."""
    m = interp.zoo.build(strategy, seed=seed, **KW).eval()
    with torch.no_grad():
        m.embed.weight.mul_(boost)
    res = collect(m, DATA, [Precision()], batch_size=3, progress=False)
    sites = [s[3] for s in residual_sites(m.sites)]
    with torch.no_grad():
        from interp.collectors.batches import batches
        tokens, mask = next(batches(DATA, 3, 0, "right"))
        _, cache = m.run_with_cache(tokens, attention_mask=mask, names_filter=sites)
    peak = max(cache[h][mask].abs().max().item() for h in sites)
    tables = {k: v.assign(model=name) for k, v in res.tables.items()}
    card = {"model": name, "family": "zoo", "strategy": strategy, "placement": m.card.placement, "objective": "causal_lm"}
    return m, tables, card, peak


@pytest.fixture(scope="module")
def zoo():
    out = {}
    for strategy, boost in (("pre-ln", 3000.0), ("peri-ln", 1.0)):
        for seed in range(3):
            name = strategy + ("" if seed == 0 else f".seed{seed}")
            out[name] = measured(strategy, seed, name, boost)
    return out


def tables_of(zoo, real=None):
    parts = list(zoo.values()) + ([real] if real else [])
    t = {k: pd.concat([p[1][k] for p in parts], ignore_index=True) for k in ("precision", "precision_outliers")}
    t["cards"] = pd.DataFrame([p[2] for p in parts])
    return t


def test_headroom_claim_matches_the_activations(zoo):
    c = CLAIMS["fp16_headroom"]
    rows = {r["model"]: r for r in evaluate_claim(c, tables_of(zoo))}
    h = lambda names: [math.log10(65504 / zoo[n][3]) for n in names]
    peri = h(["peri-ln", "peri-ln.seed1", "peri-ln.seed2"])
    pre = h(["pre-ln", "pre-ln.seed1", "pre-ln.seed2"])
    d, lo, hi = welch_interval(peri, pre)
    r = rows["peri-ln"]
    assert r["value"] == pytest.approx(d, rel=1e-4) and r["lo"] == pytest.approx(lo, rel=1e-3)
    assert r["interval"] == "Welch t, 3 vs 3 seeds" and r["reference"] == "pre-ln"
    assert r["verdict"] == ("reproduced" if lo > 0 else "not reproduced" if hi < 0 else INCONCLUSIVE)
    assert rows["lns"]["verdict"] == "not testable here"  # no lns measured


def test_real_models_are_uncontrolled_evidence_on_their_own(zoo):
    m = interp.zoo.build("pre-ln", **KW).eval()
    res = collect(m, DATA, [Precision()], progress=False)
    tabs = {k: v.assign(model="some-llm") for k, v in res.tables.items()}
    card = {"model": "some-llm", "family": "llama", "strategy": "pre-rmsnorm", "placement": "pre", "objective": "causal_lm"}
    rows = {r["model"]: r for r in evaluate_claim(CLAIMS["fp16_headroom"], tables_of(zoo, (m, tabs, card, 0)))}
    r = rows["some-llm"]
    peak = res["precision"]["abs_max"].max()
    assert r["value"] == pytest.approx(math.log10(65504 / peak)) and r["reference"] == ""
    assert r["control"].startswith("not controlled") and r["verdict"] == INCONCLUSIVE  # no interval: evidence only


def test_report_section_shows_figures_and_an_overflow_as_inf(zoo):
    from interp.report.render import render
    t = tables_of(zoo)
    runs = []
    for name in ("pre-ln", "peri-ln"):
        m = interp.zoo.build(name, **KW).eval()
        if name == "pre-ln":
            with torch.no_grad():
                m.embed.weight[5, 0] = 1e5  # beyond fp16: the fp16 run overflows at the embedding
        runs.append(precision_runs(m, DATA, ("bf16", "fp16", "int8"), progress=False).assign(model=name))
    t["precision_runs"] = pd.concat(runs, ignore_index=True)
    html = render(t, sources=["test"])
    sec = html[html.index('id="precision"'):]
    sec = sec[:sec.index("<section", 10)] if "<section" in sec[10:] else sec
    assert sec.count("Plotly.newPlot") == 3
    assert "inf" in sec and "hook_embed, position 0" in sec
    from interp.precision.report import delta_table
    d = delta_table(t).set_index("model")
    assert d.loc["pre-ln", "delta_fp16"] == math.inf and not d.loc["pre-ln", "fp16_safe"]
    assert d.loc["peri-ln", "fp16_safe"] and np.isfinite(d.loc["peri-ln", "delta_fp16"])


def test_int8_figure_names_the_massive_and_outlier_dims():
    from interp.precision.report import int8_profile
    p = pd.DataFrame({"model": "m", "layer": [0, 1, 2], "site": "resid_post", "abs_max": [1.0, 500.0, 9.0],
                      "int8_tensor_token_error": [0.01, 0.3, 0.02], "int8_token_token_error": [0.01, 0.01, 0.01],
                      "n_outlier_features": [0.0, 0.0, 1.0]})
    t = {"precision": p,
         "massive": pd.DataFrame({"model": "m", "depth": [1, 2, 3], "n_massive": [0, 2, 0]}),
         "massive_dims": pd.DataFrame({"model": "m", "depth": [2, 2], "dim": [447, 138], "count": [1, 1]}),
         "precision_outliers": pd.DataFrame({"model": "m", "site": ["resid_post", "norm_in:ln1"], "dim": [12, 99]})}
    fig = int8_profile(t, {})
    tr = fig.data[0]
    assert list(tr.marker.symbol) == ["circle", "star", "diamond"]
    assert "massive activations in dims 138, 447" in tr.text[1] and "dims" not in tr.text[0]
    assert "1 LLM.int8() outlier feature(s) of dims 12" in tr.text[2] and "99" not in tr.text[2]


def test_the_documented_route_to_the_massive_marks_works(tmp_path, capsys):
    """docs/precision.md said to add `interp collect` results of the same model to an `interp precision -o` folder
    for the massive-activation marks; `interp report` refuses two folders of one model. The route it now gives (one
    `interp collect --collectors precision,massive` folder) gives a report with the precision section."""
    import re
    from pathlib import Path

    from interp.cli import main
    doc = (Path(__file__).parents[1] / "docs" / "precision.md").read_text()
    cmd = re.search(r"`interp collect MODEL --data FILE (--collectors [a-z,]+) -o DIR`", doc)
    assert cmd, "docs/precision.md names no single-folder route to the massive-activation marks"
    m = interp.zoo.build("pre-ln", **KW)
    m.save(tmp_path / "m")
    np.save(tmp_path / "t.npy", np.array([t for s in DATA for t in s], dtype=np.uint16))  # the model has no tokenizer
    args = ["collect", str(tmp_path / "m"), "--data", str(tmp_path / "t.npy"), *cmd.group(1).split(), "-o",
            str(tmp_path / "c"), "--quiet"]
    assert main(args) == 0
    from interp.collectors.results import Results
    assert {"precision", "massive"} <= set(Results.load(tmp_path / "c").tables)
    assert main(["report", str(tmp_path / "c"), "-o", str(tmp_path / "r.html")]) == 0
    assert 'id="precision"' in (tmp_path / "r.html").read_text()


def test_safety_bars_count_the_runs_that_overflowed():
    """The bar text said 'fp16 run: overflow (3/3)' when one of three seeds' runs overflowed (the count was of runs,
    read as of overflows). It now says how many runs had the status it names."""
    from interp.precision.report import safety_bars
    models = ["pre-ln", "pre-ln.seed1", "pre-ln.seed2", "peri-ln"]
    p = pd.DataFrame({"model": models, "abs_max": [7e4, 10.0, 12.0, 5.0]})
    runs = pd.DataFrame({"model": models, "format": "fp16", "status": ["overflow", "ok", "ok", "ok"]})
    fig = safety_bars({"precision": p, "precision_runs": runs}, {})
    assert sorted(fig.data[0].text) == ["fp16 run: ok in 1 of 1 run(s)", "fp16 run: overflow in 1 of 3 run(s)"]
