"""Write the notebooks in this folder from plain Python (so they are valid nbformat JSON and reviewable here).

    .venv/bin/python notebooks/make_notebooks.py

Each notebook runs top to bottom offline; INTERP_NOTEBOOK_SMALL=1 (what `make test` sets) shrinks the data.
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = '''import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import plotly.io as pio
import torch
import interp, interp.collect, interp.data, interp.report, interp.train
from interp.report import figures as F

pio.renderers.default = "notebook"      # figures render in the saved notebook (not only live in JupyterLab)
torch.set_num_threads(2)
SMALL = os.environ.get("INTERP_NOTEBOOK_SMALL") == "1"   # make test runs the notebooks with small settings


def zoo_model(strategy):
    """The trained zoo model shipped in data/zoo, or (if the zoo is not there) a randomly initialised one."""
    d = interp.data.DATA_DIR / "zoo" / strategy
    if (d / "model.safetensors").is_file():
        return interp.zoo.load(d).eval()
    print(f"data/zoo/{strategy} not found: using an untrained {strategy} (run `interp train --zoo`)")
    return interp.zoo.build(strategy, n_layers=12, d_model=64, n_heads=4, d_mlp=256, n_ctx=128).eval()'''


def nb(name: str, cells: list) -> None:
    book = new_notebook(cells=[c if not isinstance(c, str) else new_code_cell(c) for c in cells])
    book.metadata.update(kernelspec={"name": "python3", "display_name": "Python 3", "language": "python"},
                         language_info={"name": "python"})
    nbformat.validate(book)
    nbformat.write(book, HERE / name)


def md(text: str):
    return new_markdown_cell(text)


nb("01_quickstart.ipynb", [
    md("# interp quickstart: load a model, collect, plot\n\nLoad a zoo model, run the streaming collectors on "
       "the fixed held-out sample of the corpus, look at the tidy tables and plot them."),
    SETUP,
    '''model = zoo_model("pre-ln")
tokens = interp.data.heldout_tokens(4 if SMALL else 16, 128)   # [n, 128] token ids from the validation books
res = interp.collect(model, tokens, progress=False)
res''',
    md("Every collector gives a tidy DataFrame; the columns are documented in `docs/results.md`."),
    '''res["residual"].query("kind == 'stream'").head()''',
    md("The report's figures take the report's canonical tables (`interp.report.TABLES`)."),
    '''tables = interp.report.tables_from_results([res])
F.stream_growth(tables, {}).show()
F.massive_census(tables, {}).show()''',
])

nb("02_massive_activations.ipynb", [
    md("# Massive activations in a real model (SmolLM2-135M)\n\nSun et al. (2024): a few activations are "
       "> 100 and ≥ 1000× the median of their hidden state; setting them to their mean keeps the loss, setting "
       "them to zero destroys it."),
    SETUP,
    '''from interp.collect import MassiveActivations, ResidualStats
model = interp.load_model("smollm2-135m").eval()
texts = interp.data.heldout_texts(2 if SMALL else 8, 300 if SMALL else 600)
massive = MassiveActivations()
res = interp.collect(model, texts, collectors=[massive, ResidualStats()], batch_size=4, progress=False)
res["massive"][["depth", "n_massive", "top1_mean", "median_mean"]]''',
    '''tables = interp.report.tables_from_results([res])
F.massive_census(tables, {}).show()
for fig in F.massive_heatmaps(tables, {}):
    fig.show()''',
    md("The largest activations, where they sit and on which token:"),
    '''res["massive_top"].head(10)''',
    md("The ablation test: loss on held text with the massive values left alone, set to zero, set to their mean."),
    '''try:
    print(massive.ablation(model, texts, batch_size=4))
except ValueError as e:   # no massive activation found on this little text
    print(e)''',
])

nb("03_variance_and_gradients.ipynb", [
    md("# Variance growth and gradient norms across the zoo\n\nThe Curse-of-Depth and Peri-LN papers: in Pre-LN "
       "the residual stream's variance grows with depth; LayerNorm Scaling and Peri-LN keep it in check. "
       "Mix-LN: Post-LN starves early layers of gradient, Pre-LN deep layers."),
    SETUP,
    '''from interp.collect import ResidualStats
from interp.collect.grads import GradNorms
strategies = ["pre-ln", "peri-ln", "lns", "post-ln"] if SMALL else \\
    ["pre-ln", "post-ln", "peri-ln", "mix-ln", "lns", "pre-rmsnorm", "dyt", "no-norm"]
tokens = interp.data.heldout_tokens(4 if SMALL else 16, 128)
results = [interp.collect(zoo_model(s), tokens, collectors=[ResidualStats(), GradNorms()], progress=False)
           for s in strategies]
tables = interp.report.tables_from_results(results)
colors = interp.report.model_colors(tables)
F.stream_growth(tables, colors).show()''',
    '''from interp.report.summary import growth_summary
growth_summary(tables["stream"])''',
    '''F.gradient_profiles(tables, colors).show()''',
])

nb("04_dla_and_ln_removal.ipynb", [
    md("# Direct logit attribution and LayerNorm removal\n\nDLA reads each component's write through the "
       "*frozen* final-norm scale; the true direct effect removes the write and recomputes the norm. Without a "
       "norm the two agree exactly. LN removal (Heimersheim 2024) replaces each LN by a frozen-scale FakeLN, "
       "stage by stage, with fine-tuning in between."),
    SETUP,
    '''from interp.attribution import dla, summary, logit_lens
tokens = interp.data.heldout_tokens(2 if SMALL else 8, 128)
pos = tokens.shape[1] - 2
tabs = []
for s in ["pre-ln", "no-norm"]:
    m = zoo_model(s)
    tabs.append(dla(m, tokens, target=tokens[:, pos + 1], pos=pos))
import pandas as pd
d = pd.concat(tabs)
summary(d)''',
    '''from interp.report.inputs import from_dla, from_logit_lens
tables = from_dla(d)
tables.update(from_logit_lens(logit_lens(zoo_model("pre-ln"), tokens)))
F.dla_error_bars(tables, {}).show()
for fig in F.dla_example(tables, {}):   # one per model
    fig.show()
F.logit_lens(tables, {}).show()''',
    md("LN removal on the Pre-LN zoo model (a few fine-tuning steps per stage here; the README gives the "
       "full-budget numbers)."),
    '''from interp.surgery import remove_layernorm
data = interp.data.prepare("kjv")
eval_tokens = interp.data.heldout_tokens(4, 128)
r = remove_layernorm(zoo_model("pre-ln"), data.train_tokens, eval_tokens, steps_per_stage=2 if SMALL else 30)
r.ce''',
    '''t = {"ln_removal": pd.DataFrame([dict(model="pre-ln", ce_original=r.ce["before"], ce_vanilla=r.ce["vanilla"],
                                     ce_lnfree=r.ce["lnfree"])])}
F.ln_removal(t, {}).show()''',
])

nb("05_train_your_own.ipynb", [
    md("# Train your own strategy and add it to a report\n\nAny placement × norm kind is one `ZooConfig`. Train it "
       "on the corpus with the suite's loop, collect, and build a report next to a zoo model."),
    SETUP,
    '''from interp.zoo import ZooConfig, ZooModel
data = interp.data.prepare("kjv")
cfg = ZooConfig(n_layers=4 if SMALL else 12, d_model=64, n_heads=4, d_mlp=256, n_ctx=128,
                d_vocab=data.tokenizer.vocab_size, placement="peri", norm="rmsnorm", strategy="peri-rmsnorm")
mine = ZooModel(cfg)
mine.tokenizer = data.tokenizer
run = interp.train.fine_tune(mine, data.train_tokens, steps=8 if SMALL else 300, lr=2e-3, batch_size=8,
                             seq_len=127, weight_decay=0.1, progress=False)
mine.eval()
run.steps[["step", "loss"]].tail()''',
    '''tokens = interp.data.heldout_tokens(4 if SMALL else 16, 128)
results = [interp.collect(m, tokens, progress=False) for m in (mine, zoo_model("pre-ln"))]
curve = {"training": run.steps[["step", "loss"]].assign(model=mine.card.name)}
path = interp.report.build(results, "out/my_report.html", extra=curve)
print("report:", path, f"{path.stat().st_size / 1e6:.1f} MB")''',
    '''tables = interp.report.merge_tables(interp.report.tables_from_results(results), curve)
F.training_curves(tables, interp.report.model_colors(tables)).show()
F.stream_growth(tables, interp.report.model_colors(tables)).show()''',
])

if __name__ == "__main__":
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("*.ipynb"))))
