"""Write the notebooks in this folder from plain Python, so they are valid nbformat JSON and reviewable here.

    .venv/bin/python notebooks/make_notebooks.py          # rewrite the .ipynb files
    .venv/bin/python notebooks/make_notebooks.py --check  # exit 1 if a committed notebook differs from this file

The notebooks use the public API only (interp.load_model, interp.zoo, interp.collect, interp.attribution,
interp.surgery, interp.train, interp.diffusion, interp.precision, interp.report.build) and draw with plotly
express from the tidy result tables. They run on the trained models shipped in data/zoo and the packaged real
models, and stop with an error when one is missing. INTERP_NOTEBOOK_SMALL=1 (what the tests set) shrinks the data
so each runs in minutes. Notebooks 06 and 07 keep their cells in nb_time_conditioning.py and nb_precision.py.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''import os

import pandas as pd
import plotly.express as px
import plotly.io as pio
import torch

import interp
import interp.data
import interp.train

pio.renderers.default = "notebook"   # figures carry plotly.js, so they draw offline and in the saved notebook
torch.set_num_threads(1)             # one thread: steady speed when other processes share the CPU
SMALL = os.environ.get("INTERP_NOTEBOOK_SMALL") == "1"   # the tests run the notebooks on a little data


def zoo_model(name):
    """A trained zoo model shipped in data/zoo (an error, not a stand-in, when it is missing)."""
    return interp.zoo.load(interp.data.DATA_DIR / "zoo" / name).eval()'''


def md(text: str):
    return new_markdown_cell(text)


def cells_from(module: str) -> list:
    """The cells of a notebook kept in a file of its own beside this one (its `cells(md, SETUP)`)."""
    spec = importlib.util.spec_from_file_location(module, HERE / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.cells(md, SETUP)


def notebooks() -> dict[str, nbformat.NotebookNode]:
    books: dict[str, list] = {}

    books["01_quickstart.ipynb"] = [
        md("# interp quick start: one model, its hooks, its statistics\n\n"
           "Load a trained zoo model, look at its hook points through TransformerLens' `run_with_cache`, run the "
           "streaming collectors over held-out text and plot what they measured."),
        SETUP,
        '''model = zoo_model("pre-ln")
model.card''',
        md("`model.card` says what the model is. Every model in interp has the same hook names as TransformerLens, "
           "and `run_with_cache` returns a `transformer_lens.ActivationCache`:"),
        '''text = "In the beginning God created the heaven and the earth."
print(model.to_str_tokens(text))
logits, cache = model.run_with_cache(text)
cache["blocks.0.ln1.hook_scale"].shape   # [batch, position, 1]: what the first LayerNorm divides each token by''',
        md("Now the streaming collectors: one forward pass per batch with hooks, statistics folded into small "
           "float64 states, never the activations themselves. Each table is a tidy DataFrame whose columns are "
           "documented in `docs/results.md`."),
        '''tokens = interp.data.heldout_tokens(4 if SMALL else 16, 128)   # windows of the validation books
res = interp.collect(model, tokens)
res["residual"].query("kind == 'stream'").head()''',
        md("**The figure** shows the variance of the residual stream leaving each block (depth ℓ is the output of "
           "block ℓ − 1), on a log scale."),
        '''stream = res["residual"].query("site == 'resid_post'").assign(depth=lambda d: d.layer + 1)
fig = px.line(stream, x="depth", y="var", markers=True, log_y=True,
              title="pre-ln: variance of the residual stream by depth")
fig.show()''',
        md("**What to look for:** in a Pre-LN model every block adds its output to an un-normalized stream, so the "
           "variance tends to rise with depth. A straight line on this log scale means exponential growth (the "
           "Curse-of-Depth paper's claim for Pre-LN); a curve that flattens means the growth slows."),
        md("Massive activations (Sun et al. 2024) per depth: the largest |x| of each sequence's hidden state "
           "next to its median."),
        '''m = res["massive"].melt(id_vars="depth", value_vars=["top1_mean", "median_mean"], var_name="statistic",
                        value_name="|x|")
px.line(m, x="depth", y="|x|", color="statistic", log_y=True, markers=True,
        title="pre-ln: largest and median |x| per depth").show()''',
        md("**What to look for:** a massive activation is > 100 and ≥ 1000× the median. A top-1 line that stays "
           "within a decade or two of the median, as is usual in a model this small, means there are none; the "
           "next notebook shows them in a real model."),
    ]

    books["02_massive_activations.ipynb"] = [
        md("# Massive activations in a real model (SmolLM2-135M)\n\n"
           "Sun et al. (2024) found a few activations in large language models that are > 100 and ≥ 1000× the "
           "median of their hidden state, in fixed dimensions, mostly on the first token. Setting them to their "
           "mean keeps the loss; setting them to zero destroys it. This notebook measures both on SmolLM2."),
        SETUP,
        '''model = interp.load_model("smollm2-135m").eval()   # Pre-RMSNorm (Llama), from its PyPI package
texts = interp.data.heldout_texts(2 if SMALL else 8, 300 if SMALL else 600)
massive = interp.collectors.MassiveActivations()
res = interp.collect(model, texts, collectors=[massive], batch_size=4)
res["massive"][["depth", "n_massive", "top1_mean", "median_mean"]]''',
        md("**The figure** shows, per depth of the residual stream, the largest |x| of each sequence's hidden "
           "state (averaged over sequences) and the median |x|, on a log scale."),
        '''m = res["massive"].melt(id_vars="depth", value_vars=["top1_mean", "median_mean"], var_name="statistic",
                        value_name="|x|")
px.line(m, x="depth", y="|x|", color="statistic", log_y=True, markers=True,
        title="SmolLM2-135M: largest and median |x| per depth").show()''',
        md("**What to look for:** the top-1 line jumps by orders of magnitude at one depth in the early layers and "
           "stays up, while the median stays near 1. The depth of the jump is where the massive activations "
           "appear."),
        md("The largest activations, with where they sit and on which token:"),
        '''res["massive_top"][["depth", "position", "dim", "token", "value", "seq_median", "massive"]].head(10)''',
        md("**What to look for:** the same one or two dimensions recur, on the first token (or a delimiter), the "
           "pattern Sun et al. describe."),
        md("The ablation test: the loss on held-out text with the massive values left alone, set to zero, and set "
           "to their mean."),
        '''abl = massive.ablation(model, texts, batch_size=4)
abl''',
        '''px.bar(abl, x="intervention", y="loss",
       title="SmolLM2-135M: loss with massive activations ablated").show()''',
        md("**What to look for:** zeroing a handful of activations raises the loss sharply, while setting them to "
           "their mean leaves it almost unchanged: they act as fixed biases the model relies on, not as "
           "information about the input."),
    ]

    books["03_variance_and_gradients.ipynb"] = [
        md("# Variance growth and gradient norms across the zoo\n\n"
           "The zoo's models differ only in where their norms sit and which norm it is. Here they run on the same "
           "held-out tokens: how the residual stream grows with depth (the Curse-of-Depth, LayerNorm-Scaling and "
           "Peri-LN papers) and how the gradient is spread over the layers (the Mix-LN paper)."),
        SETUP,
        '''strategies = ["pre-ln", "peri-ln", "lns", "post-ln"] if SMALL else \\
    ["pre-ln", "post-ln", "peri-ln", "mix-ln", "lns", "pre-rmsnorm", "dyt", "no-norm"]
tokens = interp.data.heldout_tokens(4 if SMALL else 16, 128)
collectors = lambda: [interp.collectors.ResidualStats(), interp.collectors.GradNorms()]
results = [interp.collect(zoo_model(s), tokens, collectors=collectors()) for s in strategies]''',
        md("**The figure** shows the variance of the residual stream leaving each block, one line per strategy, on "
           "a log scale."),
        '''stream = pd.concat(r["residual"] for r in results).query("site == 'resid_post'")
stream = stream.assign(depth=stream.layer + 1)
px.line(stream, x="depth", y="var", color="model", log_y=True, markers=True,
        title="variance of the residual stream by depth").show()''',
        md("**What to look for:** Pre-LN's stream grows with depth because nothing normalizes it. LayerNorm "
           "Scaling (`lns`) shrinks each block's input by 1/√ℓ and should grow less; Peri-LN normalizes what each "
           "block adds, so its growth is about linear. In Post-LN the carried stream is normalized after every "
           "block, so its variance stays near 1 by construction. Compare slopes, not levels."),
        md("**The figure** shows the norm of the loss gradient with respect to each block's parameters, one line per "
           "strategy."),
        '''grads = pd.concat(r["grad_norms"] for r in results).query("kind == 'param'")
px.line(grads, x="layer", y="mean", color="model", log_y=True, markers=True,
        title="gradient norm per block").show()''',
        md("**What to look for:** the Mix-LN paper argues that Post-LN starves the early layers of gradient (a line "
           "rising with the layer) and Pre-LN the deep ones (a line falling). A flat line means every layer "
           "learns at a similar rate. These are small models trained briefly on one corpus: read the shapes, and "
           "check the report's claims table for the intervals across seeds."),
    ]

    books["04_dla_and_ln_removal.ipynb"] = [
        md("# Direct logit attribution, and removing LayerNorm\n\n"
           "DLA reads each component's write through the final norm with the norm's scale **frozen**; the true "
           "direct effect removes the write and **recomputes** the norm. The gap is the error of DLA. Without a "
           "norm the two agree exactly; LN removal (Heimersheim 2024) makes a model without norms by fine-tuning."),
        SETUP,
        '''from interp.attribution import dla, logit_lens, dla_summary
tokens = interp.data.heldout_tokens(2 if SMALL else 8, 129)
x, nxt = tokens[:, :-1], tokens[:, 1:]
pos = x.shape[1] - 1
model = zoo_model("pre-ln")
df = dla(model, x, target=nxt[:, pos], pos=pos)     # one row per component (embeddings, heads, MLPs) and sequence
dla_summary(df)''',
        md("**The figure** puts each component's DLA (x) against its direct effect (y), in logits. The dashed line is "
           "y = x."),
        '''comp = df[df["direct_effect"].notna()]
fig = px.scatter(comp, x="dla", y="direct_effect", color="kind", hover_data=["component", "batch"],
                 title="pre-ln: DLA against the direct effect")
lo, hi = comp[["dla", "direct_effect"]].min().min(), comp[["dla", "direct_effect"]].max().max()
fig.add_shape(type="line", x0=lo, y0=lo, x1=hi, y1=hi, line=dict(dash="dash", color="grey"))
fig.show()''',
        md("**What to look for:** points on the line are components DLA describes well. Points off it are the ones "
           "whose own write moved the final norm's scale, the part DLA ignores; they are usually the large writes of "
           "the last layers."),
        md("The same attribution through TransformerLens' own API: `decompose_resid` and `logit_attrs` on the "
           "cache. interp's cache applies the final norm's gain, so the rows equal the sublayer sums of the DLA "
           "above."),
        '''logits, cache = model.run_with_cache(x)
stack, labels = cache.decompose_resid(pos_slice=pos, return_labels=True)
attrs = cache.logit_attrs(stack, nxt[:, pos], pos_slice=pos)
pd.DataFrame({"component": labels, "logit_attr (sequence 0)": attrs[:, 0].tolist()}).head(6)''',
        md("**The figure** shows the logit lens: each intermediate stream read through the final norm (statistics "
           "recomputed) and the unembedding, and its KL divergence from the model's final prediction."),
        '''lens = logit_lens(model, x)
px.line(lens.groupby("layer", as_index=False)["kl_to_final"].mean(), x="layer", y="kl_to_final", markers=True,
        log_y=True, title="pre-ln: logit lens, KL to the final distribution by depth").show()''',
        md("**What to look for:** the KL falls towards 0 as depth rises; the depth where it drops is where the "
           "prediction forms."),
        md("LN removal: every LayerNorm becomes a frozen-scale FakeLN, stage by stage, with fine-tuning in "
           "between; then the FakeLNs are folded away. The control is a vanilla fine-tune of the same length."),
        '''from interp.surgery import remove_layernorm
data = interp.data.prepare("kjv")
r = remove_layernorm(zoo_model("pre-ln"), data.train_tokens, interp.data.heldout_tokens(4, 128),
                     steps_per_stage=2 if SMALL else 30)
r.ce''',
        '''ce = pd.DataFrame({"model": ["original", "vanilla fine-tune", "LN-free"],
                   "cross-entropy": [r.ce["before"], r.ce["vanilla"], r.ce["lnfree"]]})
px.bar(ce, x="model", y="cross-entropy", title="pre-ln: cross-entropy before and after LN removal").show()''',
        md("**What to look for:** the LN-free model should land close to the vanilla fine-tune; the gap is what "
           "removing the norms cost. With a few steps per stage (as in the tests) both stay near the original. "
           "The LN-free model has no norm, so its DLA is exact: run the DLA cells on `r.model` to see the points "
           "fall on the line."),
    ]

    books["05_train_your_own.ipynb"] = [
        md("# Train your own strategy and compare it with the zoo\n\n"
           "Any placement × norm kind is one `ZooConfig`. Train one with the suite's loop on the same corpus, "
           "collect the same statistics, and put it in a report next to a zoo model."),
        SETUP,
        '''data = interp.data.prepare("kjv")
cfg = interp.zoo.ZooConfig(n_layers=4 if SMALL else 12, d_model=64, n_heads=4, d_mlp=256, n_ctx=128,
                           d_vocab=data.tokenizer.vocab_size, placement="peri", norm="rmsnorm",
                           strategy="peri-rmsnorm")
mine = interp.zoo.ZooModel(cfg)
mine.tokenizer = data.tokenizer
run = interp.train.fine_tune(mine, data.train_tokens, steps=8 if SMALL else 300, lr=2e-3, batch_size=8,
                             seq_len=127, weight_decay=0.1)
mine.eval()
run.steps[["step", "loss", "grad_norm"]].tail()''',
        md("**The figure** shows the training loss per step."),
        '''px.line(run.steps, x="step", y="loss", title="peri-rmsnorm: training loss").show()''',
        md("**What to look for:** a loss that falls from about ln(4096) ≈ 8.3 (a uniform guess) to below the "
           "unigram entropy (about 6 nats on this corpus) has learned more than token frequencies. Spikes or a "
           "flat plateau near 6 say the recipe does not suit the strategy."),
        '''tokens = interp.data.heldout_tokens(4 if SMALL else 16, 128)
results = [interp.collect(m, tokens) for m in (mine, zoo_model("pre-ln"))]
path = interp.report.build(results, "out/my_report.html", force=True)  # replaces this notebook's earlier report
print("report:", path)''',
        md("**The figure** compares the two models' residual streams by depth."),
        '''stream = pd.concat(r["residual"] for r in results).query("site == 'resid_post'")
stream = stream.assign(depth=stream.layer + 1)
px.line(stream, x="depth", y="var", color="model", log_y=True, markers=True,
        title="your model next to the zoo's pre-ln").show()''',
        md("**What to look for:** Peri-LN normalizes what each block adds, so its stream should grow more slowly "
           "with depth than Pre-LN's. Open `out/my_report.html` for every other measurement side by side."),
    ]

    books["06_time_conditioning.ipynb"] = cells_from("nb_time_conditioning")
    books["07_precision.ipynb"] = cells_from("nb_precision")

    out = {}
    for name, cells in books.items():
        book = new_notebook(cells=[c if not isinstance(c, str) else new_code_cell(c) for c in cells])
        book.metadata.update(kernelspec={"name": "python3", "display_name": "Python 3", "language": "python"},
                             language_info={"name": "python"})
        for i, cell in enumerate(book.cells):  # stable ids, so regenerating changes nothing
            cell["id"] = f"{name[:2]}-{i:02d}"
        nbformat.validate(book)
        out[name] = book
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a committed notebook differs from this file")
    a = ap.parse_args()
    stale = []
    for name, book in notebooks().items():
        text = nbformat.writes(book) + "\n"
        path = HERE / name
        if not path.is_file() or path.read_text() != text:
            stale.append(name)
            if not a.check:
                path.write_text(text)
    if a.check and stale:
        print(f"notebooks differ from make_notebooks.py: {', '.join(stale)}; run it", file=sys.stderr)
        return 1
    print(("stale: " if a.check else "wrote: ") + (", ".join(stale) or "nothing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
