"""The report's masked-diffusion section and the TD-LN claims on tiny MDLM models (2 seeds per strategy)."""
import math

import pandas as pd
import pytest
import torch

from interp.report.inputs import card_row, merge_tables
from interp.report.mdlm import mdlm_tables
from interp.zoo import build
from interp.zoo.conditioning import conditioning_parameters

TINY = {"n_layers": 2, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_ctx": 12, "d_vocab": 29}
STRATS = ("mdlm-tdln", "mdlm-adaln", "mdlm-ln")


@pytest.fixture(scope="module")
def tables():
    tokens = torch.randint(1, 29, (16, 12), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = 0
    parts, cards = [], []
    for s in STRATS:
        for seed in (0, 1):
            m = build(s, seed=seed, **TINY).eval()
            m.name = s if seed == 0 else f"{s}.seed{seed}"
            parts.append(mdlm_tables(m, tokens, log=lambda msg: None, fixed_t=seed == 0))
            cards.append(card_row(m.card))
    return merge_tables(*parts, {"cards": pd.DataFrame(cards)})


def test_tables_are_consistent_with_each_other(tables):
    b, c, s = tables["mdlm_bound"], tables["mdlm_cond_params"].set_index("model"), tables["mdlm_seq"]
    for model, g in b[b["in_nelbo"]].groupby("model"):
        assert g["bound"].mean() == pytest.approx(c.loc[model, "nelbo"], rel=1e-9)  # midpoint rule = grid mean
        assert s[s["model"] == model]["nelbo"].mean() == pytest.approx(c.loc[model, "nelbo"], rel=1e-9)
    assert set(tables["mdlm_norm_t"]["model"].str.split(".").str[0]) == {"mdlm-tdln", "mdlm-adaln"}
    assert sorted(tables["mdlm_stream_t"]["t"].unique()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert set(tables["mdlm_stream_t"]["model"]) == set(STRATS)  # fixed-t collectors on seed 0 only
    for s_ in STRATS:
        assert c.loc[s_, "cond_params"] == conditioning_parameters(build(s_, **TINY))["total"]


def test_claims_rows_for_tdln_are_judged_with_intervals(tables):
    from interp.report.claims import evaluate
    claims = evaluate(tables)
    rows = claims[claims["claim"].isin(["tdln_params", "tdln_matches_adaln"])].set_index("claim")
    p = rows.loc["tdln_params"]
    ratio = (conditioning_parameters(build("mdlm-tdln", **TINY))["total"]
             / conditioning_parameters(build("mdlm-adaln", **TINY))["total"])
    assert p["value"] == pytest.approx(math.log(ratio)) and p["verdict"] == "reproduced"
    m = rows.loc["tdln_matches_adaln"]
    c = tables["mdlm_cond_params"].set_index("model")
    want = (c.loc[["mdlm-tdln", "mdlm-tdln.seed1"], "nelbo"].mean()
            - c.loc[["mdlm-adaln", "mdlm-adaln.seed1"], "nelbo"].mean())
    assert m["value"] == pytest.approx(want) and m["lo"] < m["value"] < m["hi"]
    assert "Welch" in m["interval"] and m["verdict"] != "not testable here"


def test_section_renders_with_its_figures(tables):
    from interp.report.render import render
    html = render(tables, sources=["test"])
    assert 'id="mdlm"' in html and "Held-out MDLM bound at fixed t" in html
    assert "How much each norm" in html and "Residual variance by depth at fixed t" in html


def test_section_says_what_is_missing_without_mdlm_models():
    from interp.report.mdlm import mdlm_section
    sec = mdlm_section({"cards": pd.DataFrame({"model": ["pre-ln"]})}, {})
    assert sec["missing"] and "mdlm-tdln" in sec["missing"][0] and not sec["figures"]


def test_motion_figure_orders_norms_by_layer_whatever_the_row_order():
    """The x axis is depth: a shuffled motion table still gives ln1, ln2 of block 0, 1, ..., 10 (numeric), then
    ln_final (stored as layer n_layers), each point with its own value."""
    from interp.report.mdlm import motion_figure
    names = [f"blocks.{i}.ln{j}" for i in range(11) for j in (1, 2)] + ["ln_final"]
    layers = [i for i in range(11) for _ in (1, 2)] + [11]
    m = pd.DataFrame({"model": "mdlm-tdln", "norm": names, "layer": layers, "gamma_range": range(23),
                      "beta_range": range(23)}).sample(frac=1, random_state=1)
    fig = motion_figure({"mdlm_norm_motion": m}, {})
    for tr in fig.data:
        assert list(tr.text) == names and list(tr.y) == list(range(23))


def test_model_names_reach_the_mdlm_figures_escaped():
    """plotly renders HTML in trace names, subplot titles and hover text: a model name with markup is shown as text
    in every MDLM figure (legend, subplot titles), never as markup."""
    from interp.report.mdlm import bound_figure, gamma_heatmaps, motion_figure, over_t_figure
    n = 'zoo<b>X</b><a href="https://evil.example/">y</a>'
    two = {"model": [n] * 2}
    t = {"mdlm_bound": pd.DataFrame({**two, "t": [0.25, 0.75], "bound": [3.0, 3.5], "bound_sem": [0.1] * 2}),
         "mdlm_norm_motion": pd.DataFrame({**two, "norm": ["<i>ln1</i>", "ln2"], "layer": [0, 0],
                                           "gamma_range": [0.1, 0.2],
                                           "beta_range": [0.1, 0.2]}),
         "mdlm_norm_t": pd.DataFrame({**two, "layer": [0, 0], "norm": ["ln1", "ln1"], "channel": [0, 0],
                                      "t": [0.0, 1.0], "gamma": [1.0, 1.5]}),
         "mdlm_stream_t": pd.DataFrame({**two, "t": [0.5] * 2, "depth": [0, 1], "variance": [1.0, 2.0]})}
    figs = [bound_figure(t, {}), motion_figure(t, {}), gamma_heatmaps(t),
            over_t_figure(t, "mdlm_stream_t", "variance", "v", "v")]
    for fig in figs:
        js = fig.to_json()
        assert "<b>" not in js and "\\u003cb\\u003e" not in js and "<i>" not in js and "\\u003ci\\u003e" not in js
        assert "&lt;b&gt;" in js
