"""Hand-made canonical report tables for rendering tests (not measurements: they exercise the HTML machinery)."""
import numpy as np
import pandas as pd

XSS = ('<script>document.body.setAttribute("data-pwned","1")</script>'
       '"><img src=x onerror="document.body.setAttribute(\'data-pwned\',\'2\')">')


def tables(text: str = "the") -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    zoo = ["pre-ln", "peri-ln", "lns", "post-ln", "mix-ln", "no-norm"]
    real = "smollm2-135m"
    cards = pd.DataFrame([dict(model=m, family="zoo", strategy=m, n_layers=4) for m in zoo]
                         + [dict(model=real, family="llama", strategy="pre-rmsnorm", n_layers=4)])
    grid = [(m, l) for m in zoo for l in range(4)]
    return dict(
        cards=cards,
        stream=pd.DataFrame([dict(model=m, depth=d, variance=1.0 + d) for m in zoo for d in range(5)]),
        massive=pd.DataFrame([dict(model=real, depth=l, top1=10.0 ** l, median=0.5, n_massive=l) for l in range(4)]),
        dims_rms=pd.DataFrame([dict(model=real, layer=l, dim=d, value=rng.random()) for l in range(4)
                               for d in range(8)]),
        massive_dims=pd.DataFrame([dict(model=real, depth=2, dim=7, count=3, mean_value=1234.5)]),
        outliers=pd.DataFrame([dict(model=real, depth=2, position=0, token=text, dim=7, value=1234.5)]),
        ablation=pd.DataFrame(dict(model=real, ablation=["none", "mean", "zero"], loss=[3.0, 3.1, 8.0])),
        gradients=pd.DataFrame([dict(model=m, layer=l, target="params", grad_norm=1.0 + l) for m, l in grid]),
        angular=pd.DataFrame([dict(model=m, layer=l, n=1, distance=0.1 + 0.01 * l) for m, l in grid]),
        skip=pd.DataFrame([dict(model=m, layer=l, loss_delta=0.1 * l) for m, l in grid]),
        norm_scales=pd.DataFrame([dict(model=m, layer=l, norm="ln1", median=1.0 + l) for m, l in grid]),
        dla_error=pd.DataFrame(dict(model=["pre-ln", "no-norm"], median_rel_error=[0.01, 1e-9], max_rel_error=[0.1, 1e-8])),
        dla_example=pd.DataFrame([dict(model="pre-ln", prompt=text, target=" x", component=c, dla=1.0, direct_effect=1.1)
                                  for c in ("embed", "L0.attn", text)]),
        logit_lens=pd.DataFrame([dict(model=m, layer=l, prob=l / 4) for m, l in grid]),
        training=pd.DataFrame([dict(model=m, step=s, loss=5.0 - s / 100) for m in zoo for s in range(0, 50, 10)]),
        sweep=pd.DataFrame([dict(model=m, lr=lr, diverged=lr > 0.05, final_loss=4.0) for m in zoo[:2]
                            for lr in (1e-3, 1e-2, 1e-1)]),
        ln_removal=pd.DataFrame([dict(model="pre-ln", ce_original=4.0, ce_vanilla=3.9, ce_lnfree=3.95)]),
        equivalence=pd.DataFrame(dict(model="pre-ln", form=["pre-rmsnorm", "pre-crmsnorm"], max_abs_diff=1e-13)),
    )
