"""Cells of notebook 06, time conditioning in masked diffusion (make_notebooks.py writes the notebook)."""
from __future__ import annotations

from collections.abc import Callable


def cells(md: Callable, setup: str) -> list:
    """The notebook's cells: markdown cells from `md`, code cells as strings, `setup` second."""
    return [
        md("# Time conditioning in masked diffusion: TD-LN, adaLN-Zero, an added embedding\n\n"
           "The MDLM zoo models are bidirectional and trained to fill in masked tokens: each token but the first "
           "is masked with probability t, and the model is told t. They differ only in how t enters: "
           "`mdlm-tdln` interpolates every norm's γ and β between two end points with a learned sigmoid gate "
           "of t (DiMR's TD-LN), `mdlm-adaln` modulates norms without affine parameters by an MLP of a "
           "t-embedding and gates each block's output (DiT's adaLN-Zero), `mdlm-ln` only adds the t-embedding "
           "to the input (plain LayerNorm). How many parameters does each spend on t, what does it buy, and "
           "what do the norms do with it?"),
        setup,
        '''import interp.diffusion
from interp.data import Batch
from interp.train.mdlm import mdlm_eval
from interp.zoo.conditioning import conditioning_parameters

names = ["mdlm-tdln", "mdlm-adaln", "mdlm-ln"]
models = {n: zoo_model(n) for n in names}
pd.DataFrame([{"model": n, "parameters": sum(p.numel() for p in m.parameters()), **conditioning_parameters(m)}
              for n, m in models.items()])''',
        md("`total` counts the parameters that exist only to take t in: TD-LN's second end points and gates, "
           "adaLN-Zero's modulation maps and gates, the t-embedder's MLP."),
        md("**The figure** shows the held-out bound per token at fixed t: the cross-entropy of the masked tokens "
           "weighted by 1/t and divided by the number of positions (`interp.train.mdlm`). Its mean over the "
           "grid of t is the NELBO, an upper bound on the negative log-likelihood per token."),
        '''tokens = interp.data.heldout_tokens(8 if SMALL else 64, 128)
batches = [Batch(tokens[i:i + 8], tokens[i:i + 8], torch.zeros(len(tokens[i:i + 8])))
           for i in range(0, len(tokens), 8)]
evals = {n: mdlm_eval(m, batches, n_t=5 if SMALL else 10, n_draws=1 if SMALL else 4) for n, m in models.items()}
print({n: f"NELBO {e.nelbo:.3f} ± {e.nelbo_sem:.3f}" for n, e in evals.items()})
bound = pd.concat(e.per_t.assign(model=n) for n, e in evals.items())
px.line(bound, x="t", y="bound", color="model", error_y="bound_sem", markers=True,
        title="held-out MDLM bound at fixed t (nats per token)").show()''',
        md("**What to look for:** at t = 1 every token is masked and the best prediction is the unigram "
           "distribution, so all models should meet near the unigram entropy; at small t the context is almost "
           "whole and the conditioning matters least. A strategy whose curve lies lower at every t is better "
           "overall; curves that cross say where in t each conditioning helps."),
        md("**The figure** shows γ(t) of TD-LN: for the norm whose γ moves most over t ∈ [0, 1], a few of its "
           "channels (`interp.diffusion.norm_params_over_t`)."),
        '''params = pd.concat(interp.diffusion.norm_params_over_t(m) for m in models.values())
motion = interp.diffusion.norm_motion(params)
top = motion.query("model == 'mdlm-tdln'").sort_values("gamma_range").iloc[-1]["norm"]
g = params.query("model == 'mdlm-tdln' and norm == @top")
channels = g.groupby("channel")["gamma"].agg(lambda v: v.max() - v.min()).nlargest(6).index
px.line(g[g.channel.isin(channels)], x="t", y="gamma", color="channel",
        title=f"mdlm-tdln {top}: γ(t) of its six most time-dependent channels").show()''',
        md("**The figure** compares how far each norm moves with t, TD-LN against adaLN-Zero, in depth order "
           "(RMS over channels of max_t γ − min_t γ)."),
        '''site = motion.assign(site=motion["norm"].str.split(".").str[-1])   # ln1, ln2 per block; ln_final
px.line(site, x="layer", y="gamma_range", color="model", line_dash="site", markers=True,
        title="how much each norm's γ depends on t").show()''',
        md("**What to look for:** TD-LN can only move each channel monotonically between two end points (its "
           "gate is a sigmoid of t), adaLN-Zero can move it any way its MLP of the sinusoidal t-embedding "
           "allows. Layers whose γ barely moves have left the conditioning unused."),
        md("**The figures** run the residual and massive-activation collectors at fixed noise levels "
           "(`interp.diffusion.collect_over_t`: inputs masked at rate t, cond = t)."),
        '''over = interp.diffusion.collect_over_t(models["mdlm-tdln"], tokens[:4 if SMALL else 16],
                                      ts=(0.0, 0.5, 1.0), progress=False)
stream = pd.concat(r["residual"].query("site == 'resid_post'").assign(t=str(t), depth=lambda d: d.layer + 1)
                   for t, r in over.items())
px.line(stream, x="depth", y="var", color="t", log_y=True, markers=True,
        title="mdlm-tdln: variance of the residual stream by depth, at three noise levels").show()''',
        '''massive = pd.concat(r["massive"].assign(t=str(t)) for t, r in over.items())
px.line(massive, x="depth", y="top1_mean", color="t", log_y=True, markers=True,
        title="mdlm-tdln: largest |x| per depth (mean over sequences), at three noise levels").show()''',
        md("**What to look for:** a fully masked input (t = 1) carries no token information, so any growth of "
           "the stream or any massive activation there is the model's own doing, independent of the text."),
    ]
