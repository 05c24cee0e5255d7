"""`interp convert`: a Pre-LN zoo checkpoint as the equivalent Pre-RMSNorm or Pre-CRMSNorm model."""
from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> None:
    from interp.commands._check import apart, at_least, dir_target, zoo_checkpoint
    at_least(args, threads=1)
    apart(args.out, args.model)
    dir_target(args.out, "checkpoint", args.force)  # before any work
    zoo_checkpoint(args.model)
    import torch  # the checks above need none of these (a mistyped path fails in a moment)

    from interp import zoo
    from interp.surgery import to_crmsnorm, to_rmsnorm
    torch.set_num_threads(args.threads)
    model = zoo.load(args.model, dtype=torch.float64)
    conv = {"rmsnorm": to_rmsnorm, "crmsnorm": to_crmsnorm}[args.to](model)
    tok = torch.randint(0, model.cfg.d_vocab, (4, min(32, model.cfg.n_ctx)), generator=torch.Generator().manual_seed(0))
    if model.cfg.objective == "mdlm":  # the [MASK] embedding is read only where a token is masked
        tok[:, 1::2] = model.cfg.mask_id
    ts = (0.0, 0.5, 1.0) if model.cfg.conditioned else (None,)  # the t path too, not only t = 0
    ok, diff = True, 0.0
    with torch.no_grad():
        for t in ts:
            c = None if t is None else torch.full((len(tok),), t, dtype=torch.float64)
            a, b = model(tok, cond=c), conv(tok, cond=c)
            ok &= torch.allclose(a, b, rtol=1e-9, atol=1e-9)
            diff = max(diff, (a - b).abs().max().item())
    what = ("random tokens" + (", half of them [MASK]" if model.cfg.objective == "mdlm" else "")
            + (", t = 0, 0.5 and 1" if model.cfg.conditioned else ""))
    print(f"max |logit difference| in float64 on {what}: {diff:.3g}")
    if not ok:
        raise RuntimeError("the converted model does not reproduce the original's logits; nothing written")
    conv.float().save(args.out, force=args.force)
    print(f"wrote {args.out} ({conv.cfg.strategy}, d_model {conv.cfg.d_model}); saved in float32")


def register(sub) -> None:
    p = sub.add_parser("convert", help="Pre-LN -> equivalent Pre-RMSNorm / Pre-CRMSNorm (same logits)",
                       description="Fold LayerNorm gains and biases, re-centre the writers of the residual stream, "
                                   "swap LN for RMSNorm; crmsnorm also drops the redundant stream dimension.")
    p.add_argument("model", help="a Pre-LN zoo checkpoint directory")
    p.add_argument("--to", choices=("rmsnorm", "crmsnorm"), required=True)
    p.add_argument("--out", required=True, help="directory for the converted zoo checkpoint (new, empty, or an "
                                               "earlier checkpoint with --force; never the input)")
    p.add_argument("--force", action="store_true", help="replace an earlier zoo checkpoint at --out")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=run)
