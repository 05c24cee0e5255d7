"""The report's figures show what their titles and axes say (checked on hand-made tables)."""
import numpy as np
import pandas as pd
import pytest

from interp.report import figures as F
from report_fixtures import tables


def test_lr_sweep_marks_diverged_runs_just_above_the_finished_ones():
    """A blow-up's final loss (100 nats) must not set the height of the × markers: they sit at 1.05 × the largest
    finished run's loss (mean over seeds 4.0 and 4.1 → 4.05, × at 4.2525), so the curves keep their scale."""
    d = pd.DataFrame([dict(model=m, lr=lr, seed=s, diverged=lr > 1, final_loss=100.0 if lr > 1 else 4.0 + 0.1 * s)
                      for m in ("pre-ln", "post-ln") for lr in (0.1, 1.0, 3.0) for s in (0, 1)])
    fig = F.lr_sweep({"sweep": d}, {})
    marks = [tr for tr in fig.data if tr.name.endswith("diverged")]
    assert len(marks) == 2 and all(list(tr.x) == [3.0] for tr in marks)
    assert all(abs(tr.y[0] - 4.05 * 1.05) < 1e-12 for tr in marks)
    assert "mean over 2 seeds; × = at least one seed diverged" in fig.layout.title.text  # × pools the seeds
    one = F.lr_sweep({"sweep": d[d.seed == 0]}, {})
    assert "(× = diverged run)" in one.layout.title.text


def test_logit_lens_section_says_what_its_probability_is_of():
    """The main job's lens probability is that of the model's own final top-1 token (target=None): at the last layer
    it equals the mean over positions of max softmax of the model's logits (float64 reference). The section says so
    (docs/report.md promised rank and KL, which the figure does not show)."""
    from pathlib import Path

    import torch

    import interp
    from interp.report.main_job import attribution_tables
    from interp.report.render import render_html
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=16, d_vocab=50).eval()
    toks = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(0))
    lens = attribution_tables(m, toks, lambda s: None)["logit_lens"]
    with torch.no_grad():
        ref = m(toks).double().softmax(-1).amax(-1).mean().item()
    assert abs(lens.loc[lens["layer"] == lens["layer"].max(), "prob"].item() - ref) < 1e-5
    html = render_html(tables(), sources=["x"])
    lens_section = html[html.index('<section id="lens">'):].split("</section>")[0]
    assert "the model&#39;s own final top-1 prediction" in lens_section and "mean over positions" in lens_section
    docs = (Path(__file__).parents[1] / "docs" / "report.md").read_text()
    assert "| Logit lens | per layer, the probability of the model's own final top-1 prediction" in docs


def test_missing_sections_point_to_what_fills_them():
    """A report built from `interp collect` folders has no DLA, lens, LN removal, conversion or training logs; its
    notes said 'run interp attribute / remove-ln / convert', whose outputs `interp report` cannot read. They now
    name the main job, which measures (or reads) every one of them."""
    from interp.report.render import render_html
    t = {k: v for k, v in tables().items() if k in ("cards", "stream")}
    html = render_html(t, sources=["x"])
    missing = [ln for ln in html.splitlines() if 'class="missing"' in ln]
    for what in ("dla_error", "logit_lens", "ln_removal", "equivalence", "training", "sweep", "ablation"):
        note = next(ln for ln in missing if f"no {what} in these results" in ln)
        assert "interp report --default" in note, note
    assert not any(w in html for w in ("run interp attribute", "run interp remove-ln", "run interp convert"))


def test_docs_list_every_section_the_report_renders():
    """docs/report.md's section table lacked Precision, Training dynamics, Newer norms and the MDLM section."""
    import re
    from pathlib import Path

    from interp.report.render import render_html
    html = render_html(tables(), sources=["x"], run_log=["[   0.0 s] a step"])
    titles = re.findall(r"<h2>(.*?)</h2>", html)
    docs = (Path(__file__).parents[1] / "docs" / "report.md").read_text()
    rows = re.findall(r"^\| ([^|]+?) \|", docs.split("## Sections")[1].split("##")[0], flags=re.M)
    assert len(titles) >= 16
    for title in titles:
        assert any(title.startswith(r) for r in rows if r not in ("section", "---")), title


def test_a_zoo_seed_takes_its_strategys_colour():
    """The zoo names seeds '<strategy>.seed<k>': pre-ln.seed1 got a hash colour and pre-rmsnorm-qk.seed1 the colour
    of pre-rmsnorm (the first prefix in the table, not the longest)."""
    from interp.report.colors import STRATEGY_COLORS, color_for
    assert color_for("pre-ln.seed1") == STRATEGY_COLORS["pre-ln"]
    assert color_for("pre-rmsnorm-qk.seed2") == STRATEGY_COLORS["pre-rmsnorm-qk"] != STRATEGY_COLORS["pre-rmsnorm"]
    assert color_for("zoo/pre-rmsnorm-qk") == STRATEGY_COLORS["pre-rmsnorm-qk"]
    assert color_for("pre-ln-vanilla") == STRATEGY_COLORS["pre-ln"]  # a derived model keeps its source's colour


def test_training_curves_name_the_loss_each_objective_trains(tmp_path):
    """The y-axis said "CE (nats)" for masked-diffusion models too, whose loss is the MDLM bound."""
    import json

    from interp.report.inputs import from_zoo_dir
    for name, objective in (("pre-ln", "causal_lm"), ("mdlm-ln", "mdlm")):
        (tmp_path / name).mkdir()
        pd.DataFrame({"step": [1, 2], "loss": [8.0, 7.5]}).to_parquet(tmp_path / name / "steps.parquet")
        (tmp_path / name / "config.json").write_text(json.dumps({"config": {"objective": objective}}))
    t = from_zoo_dir(tmp_path)
    assert dict(zip(t["training"].model, t["training"].objective)) == {"pre-ln": "causal_lm", "mdlm-ln": "mdlm"}
    axis = lambda d: F.training_curves({"training": d}, {}).layout.yaxis.title.text  # noqa: E731
    assert axis(t["training"]) == "nats/token: CE; the MDLM bound for masked diffusion"
    assert axis(t["training"][t["training"].model == "pre-ln"]) == "CE (nats/token)"
    assert axis(t["training"][t["training"].model == "mdlm-ln"]) == "MDLM bound (nats/token)"


def test_gradient_title_names_the_kinds_it_draws():
    """The title promised 'dotted: residual stream' also when only one kind of gradient was in the table."""
    both = pd.DataFrame([dict(model="pre-ln", layer=l, target=k, grad_norm=1.0 + l) for l in range(3)
                         for k in ("params", "resid")])
    title = lambda d: F.gradient_profiles({"gradients": d}, {}).layout.title.text  # noqa: E731
    assert "solid: block parameters, dotted: residual stream" in title(both)
    assert title(both[both.target == "resid"]).endswith("(residual stream)")
    assert title(both[both.target == "params"]).endswith("(block parameters)")


def test_massive_heatmaps_show_each_real_model_and_one_pre_ln_seed():
    """The zoo's pre-ln stands for the zoo in these heatmaps: seed 0 only (every seed was drawn), or the seed there is."""
    cards = pd.DataFrame([dict(model="smol", family="llama", strategy=None),
                          *(dict(model=m, family="zoo", strategy="pre-ln") for m in ("pre-ln", "pre-ln.seed1")),
                          dict(model="post-ln", family="zoo", strategy="post-ln")])
    rms = pd.DataFrame([dict(model=m, layer=l, dim=i, value=1.0) for m in cards.model for l in range(2)
                        for i in range(3)])
    shown = lambda c: [f.layout.title.text.split(":")[0] for f in F.massive_heatmaps(  # noqa: E731
        {"dims_rms": rms[rms.model.isin(c.model)], "cards": c}, {})]
    assert shown(cards) == ["smol", "pre-ln"]
    assert shown(cards[cards.model != "pre-ln"]) == ["smol", "pre-ln.seed1"]


def test_depth_axes_say_depth_l_is_the_output_of_block_l_minus_1():
    """The variance, massive-activation and angular figures labelled depth ℓ 'after block ℓ', while the report counts
    blocks from 0 (the heatmaps' 'stream leaving block ℓ', the skip bars' 'skipped block ℓ'): depth ℓ is the output
    of block ℓ−1. Reference: run_with_cache's blocks.{ℓ-1}.hook_resid_post (and the embeddings at depth 0)."""
    import numpy as np
    import torch

    import interp
    import interp.collectors as C
    from interp.report.inputs import tables_from_results
    m = interp.zoo.build("pre-ln", n_layers=3, d_model=32, n_heads=2, d_mlp=64, n_ctx=16, d_vocab=50).eval()
    toks = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    t = tables_from_results([C.collect(m, toks, collectors=[C.ResidualStats(), C.MassiveActivations(),
                                                             C.LayerEffect(ns=(1,), skip=False)], progress=False)])
    _, cache = m.run_with_cache(toks)
    h = [cache["blocks.0.hook_resid_pre"].double()] + [cache[f"blocks.{i}.hook_resid_post"].double() for i in range(3)]
    for fig in (F.stream_growth(t, {}), F.massive_census(t, {}), F.angular_heatmap(t, {})[0]):
        assert fig.layout.xaxis.title.text == "depth ℓ (0 = embeddings, ℓ = after ℓ blocks: the output of block ℓ−1)"
    var = F.stream_growth(t, {}).data[0]
    assert [var.y[list(var.x).index(d)] for d in range(4)] == pytest.approx([x.var(unbiased=False).item() for x in h])
    top1 = F.massive_census(t, {}).data[0]
    assert top1.y[list(top1.x).index(2)] == pytest.approx(h[2].abs().amax(dim=(1, 2)).mean().item(), rel=1e-5)
    ang = F.angular_heatmap(t, {})[0].data[0]
    cos = torch.nn.functional.cosine_similarity(h[1][:, -1], h[2][:, -1], dim=-1).clamp(-1, 1)
    assert ang.z[0][list(ang.x).index(1)] == pytest.approx((torch.arccos(cos) / np.pi).mean().item(), rel=1e-5)


def test_lr_sweep_axis_names_the_mdlm_bound_for_masked_diffusion_strategies(tmp_path):
    """`interp sweep` sweeps every strategy by default, the MDLM presets on their MDLM bound (interp.train.sweep),
    but the figure's y-axis said 'final CE (nats)' for every row. The sweep table now carries each strategy's
    objective (zoo config: mdlm-ln is 'mdlm') and the axis names the loss, also over several seeds."""
    from interp.report.main_job import sweep_table
    from interp.zoo.config import STRATEGIES
    assert STRATEGIES["mdlm-ln"]["objective"] == "mdlm" and "objective" not in STRATEGIES["pre-ln"]
    pd.DataFrame([dict(strategy=s, seed=k, lr=lr, steps=4, diverged=False, loss_spikes=0, first_loss=9.0,
                       final_loss=6.0 + k) for s in ("pre-ln", "mdlm-ln") for k in (0, 1) for lr in (1e-3, 1e-2)]
                 ).to_csv(tmp_path / "sweep.csv", index=False)
    d = sweep_table(tmp_path)
    axis = lambda d: F.lr_sweep({"sweep": d}, {}).layout.yaxis.title.text  # noqa: E731
    assert axis(d[d.model == "pre-ln"]) == "final CE (nats/token)"
    assert axis(d[d.model == "mdlm-ln"]) == "final MDLM bound (nats/token)"
    assert axis(d) == "final loss, nats/token: CE; the MDLM bound for masked diffusion"


def test_gradient_figure_marks_the_models_whose_gradient_is_a_random_probes():
    """GradNorms differentiates a fixed random probe of the pooled output for encoders and masked-diffusion models
    (interp.collectors.objective), yet the report drew their lines beside the LMs' as 'the loss gradient'. Reference:
    for a tiny mdlm-ln, block 0's plotted norm is ‖∇θ₀ mean_seq ⟨r, mean-pooled logits⟩‖ with r ~ N(0, I/d) (seed 0),
    computed by hand, and not the CE gradient's; its line is marked '· probe', the causal model's is not."""
    import torch

    import interp
    import interp.collectors as C
    from interp.collectors.grads import GradNorms
    from interp.report.inputs import tables_from_results
    toks = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(0))
    models = [interp.zoo.build(s, n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=16, d_vocab=50).eval()
              for s in ("mdlm-ln", "pre-ln")]
    t = tables_from_results([C.collect(m, toks, collectors=[GradNorms()], progress=False) for m in models])
    fig = F.gradient_profiles(t, {})
    line = {tr.name: tr for tr in fig.data}
    assert set(line) == {"mdlm-ln · probe · params", "pre-ln · params", "mdlm-ln · probe · resid",
                         "pre-ln · resid"}
    assert "· probe: a random probe's gradient, not CE's" in fig.layout.title.text

    def block0(loss):
        m.zero_grad()
        loss.backward()
        return torch.sqrt(sum(p.grad.double().pow(2).sum() for p in m.blocks[0].parameters())).item()
    m = models[0]
    out = m(toks).double()
    r = torch.randn(out.shape[-1], generator=torch.Generator().manual_seed(0), dtype=torch.float64) / out.shape[-1] ** .5
    plotted = line["mdlm-ln · probe · params"].y[0]
    assert plotted == pytest.approx(block0((out.mean(1) @ r).mean()), rel=1e-6)
    ce = torch.nn.functional.cross_entropy(m(toks)[:, :-1].flatten(0, 1), toks[:, 1:].flatten())
    assert abs(plotted - block0(ce)) > 1.0


def test_norm_scale_axis_names_the_rmsnorm_divisor():
    """The axis said 'scale = √(var + ε)' for every model, but an RMSNorm divides by √(mean x² + ε) (SmolLM2, Gemma,
    pre-rmsnorm). Reference: for a tiny pre-rmsnorm, the plotted median of ln1 at block 1 is the median over tokens
    of √(mean x² + ε) of the block's input from run_with_cache (within the collector's 2.3 % histogram bin), which
    √(var + ε) is not."""
    import torch

    import interp
    import interp.collectors as C
    from interp.report.inputs import tables_from_results
    m = interp.zoo.build("pre-rmsnorm", n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=16, d_vocab=50).eval()
    with torch.no_grad():  # a stream with a mean across dims (as trained models have), so the two divisors differ
        m.embed.weight += torch.linspace(0, 0.2, 32)
    toks = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    fig = F.norm_scales(tables_from_results([C.collect(m, toks, collectors=[C.NormScales()], progress=False)]), {})
    assert fig.layout.yaxis.title.text == "divisor: √(var + ε), RMSNorm √(mean x² + ε) (log)"
    line = next(tr for tr in fig.data if tr.name == "pre-rmsnorm · ln1")
    _, cache = m.run_with_cache(toks)
    x, eps = cache["blocks.1.hook_resid_pre"].double(), m.blocks[1].ln1.eps
    rms = (x.pow(2).mean(-1) + eps).sqrt().flatten().median().item()
    sd = (x.var(-1, unbiased=False) + eps).sqrt().flatten().median().item()
    assert line.y[list(line.x).index(1)] == pytest.approx(rms, rel=0.025) and abs(rms / sd - 1) > 0.05


def test_logit_lens_axis_is_the_stream_depth():
    """The lens figure's x-axis said 'layer', but its points are the stream depths 0..L (a 2-block model has three:
    the embeddings, then each block's output). Reference: at depth 0 the plotted probability is the embeddings read
    through ln_final and the unembedding, at depth 1 block 0's output, by hand in float64."""
    import torch

    import interp
    from interp.report.main_job import attribution_tables
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=16, d_vocab=50).eval()
    toks = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(0))
    fig = F.logit_lens({"logit_lens": attribution_tables(m, toks, lambda s: None)["logit_lens"]}, {})
    assert fig.layout.xaxis.title.text == "depth ℓ (0 = embeddings, ℓ = after ℓ blocks: the output of block ℓ−1)"
    line = fig.data[0]
    assert list(line.x) == [0, 1, 2]
    with torch.no_grad():
        logits, cache = m.run_with_cache(toks)
        top = logits.argmax(-1, keepdim=True)
        for depth, h in ((0, cache["blocks.0.hook_resid_pre"]), (1, cache["blocks.0.hook_resid_post"])):
            p = m.unembed(m.ln_final(h)).double().softmax(-1).gather(-1, top).mean().item()
            assert line.y[depth] == pytest.approx(p, rel=1e-5)


def test_gradient_axis_says_which_stream_a_dotted_point_is():
    """The gradient figure's x-axis said 'layer' for both kinds, but params points are blocks 0..L−1 and the dotted
    resid points stream depths 0..L. Reference: the dotted point at x = 0 is the mean per-token ‖∂ΣCE/∂h‖ at the
    input of block 0, at x = L at the last block's output (run_with_hooks + backward by hand)."""
    import torch

    import interp
    import interp.collectors as C
    from interp.collectors.grads import GradNorms
    from interp.report.inputs import tables_from_results
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=16, d_vocab=50).eval()
    toks = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(0))
    g = tables_from_results([C.collect(m, toks, collectors=[GradNorms()], progress=False)])["gradients"]
    axis = lambda d: F.gradient_profiles({"gradients": d}, {}).layout.xaxis.title.text  # noqa: E731
    assert axis(g) == "block ℓ (dotted: the stream entering block ℓ; at ℓ = L, the last block's output)"
    assert axis(g[g.target == "params"]) == "block ℓ"
    assert axis(g[g.target == "resid"]) == "depth ℓ (0 = embeddings, ℓ = after ℓ blocks: the output of block ℓ−1)"
    kept = {}

    def keep(x, hook):
        x.retain_grad()
        kept[hook.name] = x
        return x
    logits = m.run_with_hooks(toks, fwd_hooks=[("blocks.0.hook_resid_pre", keep), ("blocks.1.hook_resid_post", keep)])
    torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), toks[:, 1:].flatten(), reduction="sum").backward()
    dotted = next(tr for tr in F.gradient_profiles({"gradients": g}, {}).data if tr.name == "pre-ln · resid")
    assert list(dotted.x) == [0, 1, 2] and dotted.line.dash == "dot"
    assert dotted.y[0] == pytest.approx(kept["blocks.0.hook_resid_pre"].grad.norm(dim=-1).mean().item(), rel=1e-5)
    assert dotted.y[2] == pytest.approx(kept["blocks.1.hook_resid_post"].grad.norm(dim=-1).mean().item(), rel=1e-5)


def test_whole_numbers_of_a_float_column_print_in_full():
    """A card without n_params made the column float, and the Models table printed 134515008 to 4 significant digits
    ('1.345e+08'); whole numbers now print as the integers they are, other floats as before, NaN as —."""
    import re

    from interp.report.render import _fmt, render_html
    t = tables()
    t["cards"] = t["cards"].assign(n_params=[134515008] * (len(t["cards"]) - 1) + [None])
    html = render_html(t, sources=["x"])
    models = html[html.index('<section id="models">'):].split("</section>")[0]
    cells = re.findall(r'<td class="num">([^<]*)</td>', models)
    assert cells.count("134,515,008") == len(t["cards"]) - 1 and "1.345e+08" not in models and "—" in models
    assert [_fmt(v) for v in (65504.0, 12345.0, 3.14159, 4.0, 1e-13, 1e20, float("inf"))] == \
        ["65,504", "12,345", "3.142", "4", "1e-13", "1e+20", "inf"]


def test_whitespace_tokens_are_visible_in_the_tables():
    """Massive activations sit on tokens such as '\\n' and the BOS; the largest-activations table printed a token as it
    is, so '\\n' or ' ' showed as an empty cell and ' the' as 'the' (and the DLA input's target ' Paris' as 'Paris').
    Tokens are now shown as Python literals (repr), the reference for each cell."""
    import html as H
    import re

    from interp.report.render import render_html
    t = tables()
    toks = ["\n", " ", " the", "<b>"]
    t["outliers"] = pd.DataFrame([dict(model="smollm2-135m", depth=2, position=i, token=s, dim=7, value=1e3 * (9 - i),
                                       massive=True) for i, s in enumerate(toks)])
    t["dla_example"] = t["dla_example"].assign(target=" Paris")
    page = render_html(t, sources=["x"])
    massive = page[page.index('<section id="massive">'):].split("</section>")[0]
    rows = re.findall(r"<tr><td>.*?</tr>", massive.split("Largest activations")[1].split("</table>")[0], flags=re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S) for r in rows]
    assert [H.unescape(c[3]) for c in cells] == [repr(s) for s in toks]
    dla = page[page.index('<section id="dla">'):].split("</section>")[0]
    assert "<td>&#39; Paris&#39;</td>" in dla


def test_a_missing_value_is_labelled_as_missing_not_nan():
    """A model whose growth ratio is undefined (var(1) = 0: growth_summary gives NaN, its table cell —) got a bar
    label 'nan' in the growth bars, as did a missing CE in the LN-removal bars. They now say —, as the tables do."""
    from interp.report.summary import growth_summary
    s = pd.DataFrame([dict(model=m, depth=d, variance=v) for m, vs in (("a", (1.0, 1.0, 2.0, 4.0)),
                                                                    ("b", (1.0, 0.0, 1.0, 2.0)))
                      for d, v in enumerate(vs)])
    g = growth_summary(s)
    assert g.loc[g.model == "a", "ratio_last_first"].item() == 4.0 and np.isnan(g.loc[g.model == "b", "ratio_last_first"].item())
    assert list(F.growth_bars({"growth": g}, {}).data[0].text) == ["4", "—"]
    lr = pd.DataFrame([dict(model="pre-ln", ce_original=4.0, ce_vanilla=float("nan"), ce_lnfree=3.95)])
    assert [tr.text[0] for tr in F.ln_removal({"ln_removal": lr}, {}).data] == ["4.0000", "—", "3.9500"]


def test_norm_scale_lines_of_one_model_tell_its_norms_apart():
    """Peri-LN's ln1 and ln1_post (and ln2, ln2_post) were drawn in the model's colour with the same dash (any
    name starting 'ln1' solid, every other one dashed): two of its four lines could not be told apart. Reference:
    the norms a collected peri-ln actually has (its site map); each of its lines has its own dash."""
    import torch

    import interp
    import interp.collectors as C
    from interp.collectors.scales import scale_sites
    from interp.report.inputs import tables_from_results
    m = interp.zoo.build("peri-ln", n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=16, d_vocab=50).eval()
    toks = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    fig = F.norm_scales(tables_from_results([C.collect(m, toks, collectors=[C.NormScales()], progress=False)]), {})
    norms = {n for _, n, _ in scale_sites(m.sites)}
    assert {"ln1", "ln1_post", "ln2", "ln2_post"} <= norms
    lines = {tr.name.split(" · ")[1]: tr.line.dash for tr in fig.data if tr.showlegend is not False}
    assert set(lines) == norms and len(set(lines.values())) == len(lines), lines
