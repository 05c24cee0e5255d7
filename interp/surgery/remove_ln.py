"""LayerNorm removal by fine-tuning (Heimersheim 2024, "You can remove GPT2's LayerNorm by fine-tuning";
code: submarat/removing-layer-norm), for Pre-LN zoo models.

Each LayerNorm is replaced by a FakeLN whose divisor is that LN's average per-token std (sqrt(var + eps)),
measured over `calib_batches` training batches at the moment of removal and frozen, with a separate average
for position 0. Stages, each followed by `steps_per_stage` fine-tuning steps:
  ln2     the MLP-input LN of every layer
  ln1_qk  the attention-input LN for queries and keys (the attention gets split inputs: SplitInputAttention)
  ln1_v   the attention-input LN for values
  ln_final
  pos0    every FakeLN drops its separate position-0 divisor (all positions share one)
Simplified from the reference schedule (submarat/removing-layer-norm, config.py): there each LN type is frozen
one layer at a time, in layer order, a few steps apart (gpt2_standard: 2 steps for ln2 and ln1_qk, 3 for ln1_v),
inside one continuous fine-tuning run with one learning-rate schedule, and position 0 is released in two steps
(EOT tokens, then BOS); here every layer of a stage is frozen at once and each stage is its own fine-tuning call.
The reference's frozen LN also drops the mean subtraction (x·w/σ + b); FakeLN keeps it ((x − mean)·w/σ + b, as
linear as the rest and folded the same way), so freezing changes only the divisor.
A FakeLN with one constant divisor is affine, so at the end it is folded into the linear layer that reads it
and the result is an ordinary zoo `no-norm` model (placement "none", no LayerNorm left; untied unembedding
with a bias b_U from the folded final LN).
QK-norm and rotary positions: the removal is about the norms on the residual stream (ln1, ln2, ln_final).
QK-norm's q_norm / k_norm (RMSNorm of each head's query and key, after the projection) are not LayerNorms of
the stream and are kept as they are, trained with the rest; RoPE is kept too. Both act after the qkv
projection, so folding ln1 into it is still exact, and the LN-free model keeps `qk_norm=True` / rotary.
Masked-diffusion (MDLM) models are refused: their calibration, fine-tuning and evaluation would need masked
inputs and the time t, which the procedure's next-token loop does not give.
The control is a vanilla fine-tune of the original: by default the same fine-tuning calls (same steps, batches
and learning-rate schedules) with every LayerNorm kept ("matched"), or one run of the same total length
("single").
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from interp.collectors.objective import token_ce
from interp.norms import FakeLN, Identity, LayerNorm, Norm
from interp.surgery.fold import copy_into, fold_affine
from interp.surgery.split_attention import SplitInputAttention
from interp.zoo.model import ZooModel

STAGES = ("ln2", "ln1_qk", "ln1_v", "ln_final", "pos0")
FineTune = Callable[[ZooModel, int, int], None]  # (model, steps, stage index) -> None, trains in place


def check_structure(model) -> None:
    """A Pre-LN LayerNorm zoo model with a final norm, what the stages and the fold handle (any objective)."""
    cfg = getattr(model, "cfg", None)
    if not isinstance(model, ZooModel):
        raise ValueError(f"LN removal works on zoo models; got {type(model).__name__}")
    if cfg.n_post_layers:
        raise ValueError(f"{cfg.strategy} is a Post-LN model: its norms sit on the residual stream itself, and the "
                         "LN-free procedure only removes Pre-LN norms; give a pre-ln zoo model")
    if cfg.placement != "pre" or cfg.norm != "layernorm" or not cfg.final_norm:
        raise ValueError(f"LN removal needs a Pre-LN LayerNorm zoo model with a final norm; got placement "
                         f"{cfg.placement!r}, norm {cfg.norm!r}")


def check_removable(model) -> None:
    """What remove_layernorm needs: check_structure, and a causal LM (its loop uses the next-token loss)."""
    check_structure(model)
    cfg = model.cfg
    if cfg.objective != "causal_lm":
        raise ValueError(f"{cfg.strategy!r} is a masked-diffusion ({cfg.objective}) model; LN removal calibrates, "
                         "fine-tunes and scores with the next-token loss and does not support it: give a causal "
                         "Pre-LN zoo model (e.g. pre-ln), or use to_rmsnorm for an exact norm swap")


def _check_ids(model: ZooModel, named: dict[str, torch.Tensor]) -> None:
    """Token tensors must hold integer ids in [0, d_vocab): one line naming the tensor otherwise."""
    for name, t in named.items():
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer token ids, got dtype {t.dtype}")
        if t.numel() and (t.min() < 0 or t.max() >= model.cfg.d_vocab):
            raise ValueError(f"{name} holds ids outside [0, {model.cfg.d_vocab}) (min {t.min().item()}, max "
                             f"{t.max().item()}): tokenize with the model's own tokenizer")


def lm_ce(model, tokens: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy (nats/token) of `tokens` [n, t] under `model`, in eval mode (the model's own
    mode is restored)."""
    was = model.training
    model.eval()
    tot, n = 0.0, 0
    try:
        with torch.no_grad():
            for i in range(0, len(tokens), batch_size):
                x = tokens[i:i + batch_size]
                logits = model(x[:, :-1])
                tot += token_ce(logits.flatten(0, 1), x[:, 1:].flatten()).sum().item()
                n += x[:, 1:].numel()
    finally:
        model.train(was)
    return tot / n


def default_finetune(train_tokens: torch.Tensor, lr: float = 1e-3, batch_size: int = 8,
                     seq_len: int | None = None, seed: int = 0) -> FineTune:
    """A FineTune on interp.train.fine_tune (AdamW, warm-up + cosine); each stage reads a different shuffle, and
    each `seed` a different set of them (seed 0: shuffle k for stage k)."""
    from interp.train import fine_tune

    def run(model: ZooModel, steps: int, stage: int) -> None:
        if steps > 0:
            fine_tune(model, train_tokens, steps, lr, batch_size=batch_size, seq_len=seq_len, seed=1000 * seed + stage,
                      progress=False, log_layers=False, eval_every=10 ** 9)
    return run


def _avg_std(model: ZooModel, norms: dict[str, Norm], batches: list[torch.Tensor]) -> dict[str, tuple[float, float]]:
    """Average per-token divisor of each norm over `batches`: (positions ≥ 1, position 0)."""
    acc = {k: [0.0, 0, 0.0, 0] for k in norms}
    handles = []
    for k, n in norms.items():
        def hook(mod, inp, out, k=k):
            s = out.detach().double()[..., 0]  # [b, t]
            acc[k][0] += s[:, 1:].sum().item()
            acc[k][1] += s[:, 1:].numel()
            acc[k][2] += s[:, 0].sum().item()
            acc[k][3] += s[:, 0].numel()
        handles.append(n.hook_scale.register_forward_hook(hook))
    model.eval()
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for h in handles:
            h.remove()
    return {k: (a[0] / max(a[1], 1), a[2] / max(a[3], 1)) for k, a in acc.items()}


def _fake(ln: LayerNorm, scale: float, scale_pos0: float) -> FakeLN:
    f = FakeLN(ln.d, scale=scale, scale_pos0=scale_pos0, bias=ln.b is not None)
    with torch.no_grad():
        f.w.copy_(ln.w)
        if ln.b is not None:
            f.b.copy_(ln.b)
        f = f.to(ln.w.dtype)
        f.scale.fill_(scale)  # set after the cast: torch.tensor(float) alone would round to float32
        f.scale_pos0.fill_(scale_pos0)
    return f


def _targets(model: ZooModel, stage: str) -> dict[str, tuple[object, str]]:
    """The (parent module, attribute) of each norm a stage replaces, by hook-style name."""
    if stage == "ln2":
        return {f"blocks.{b.layer}.ln2": (b, "ln2") for b in model.blocks}
    if stage == "ln1_qk":
        return {f"blocks.{b.layer}.attn.ln_qk": (b.attn, "ln_qk") for b in model.blocks}
    if stage == "ln1_v":
        return {f"blocks.{b.layer}.attn.ln_v": (b.attn, "ln_v") for b in model.blocks}
    if stage == "ln_final":
        return {"ln_final": (model, "ln_final")}
    return {}


def _refresh(model: ZooModel) -> None:
    """Re-register hook points and the model's norm list after modules were swapped."""
    model._norms = [m for m in model.modules() if isinstance(m, Norm)]
    model.setup()


def split_ln1(model: ZooModel) -> None:
    """Give every attention separate Q/K and V input norms (copies of ln1); ln1 becomes an Identity."""
    for b in model.blocks:
        if isinstance(b.attn, SplitInputAttention):
            continue
        b.attn = SplitInputAttention(b.attn, copy.deepcopy(b.ln1), copy.deepcopy(b.ln1))
        b.ln1 = Identity(b.ln1.d)
    _refresh(model)


def remove_stage(model: ZooModel, stage: str, calib: list[torch.Tensor]) -> dict[str, tuple[float, float]]:
    """Apply one removal stage in place; returns the frozen divisors (σ, σ at position 0) by norm."""
    check_structure(model)  # the public stages on a Post-LN, LNS or RMSNorm model would be wrong or crash
    if stage not in STAGES:  # a typo (e.g. the reference's "lnf") would otherwise freeze nothing, silently
        raise ValueError(f"unknown LN-removal stage {stage!r}; the stages, in order: {', '.join(STAGES)}")
    if stage == "ln1_v" and not all(isinstance(b.attn, SplitInputAttention) for b in model.blocks):
        raise ValueError("stage 'ln1_v' freezes the value input norm that 'ln1_qk' splits off: run 'ln1_qk' first")
    if stage == "pos0":
        for m in model.modules():
            if isinstance(m, FakeLN):
                m.scale_pos0.fill_(float("nan"))
        return {}
    if stage == "ln1_qk":
        split_ln1(model)
    targets = _targets(model, stage)
    stds = _avg_std(model, {k: getattr(p, a) for k, (p, a) in targets.items()}, calib)
    for k, (p, a) in targets.items():
        setattr(p, a, _fake(getattr(p, a), *stds[k]))
    _refresh(model)
    return stds


def fold_fakeln(model: ZooModel) -> ZooModel:
    """The no-norm zoo model equal to a fully LN-removed one: every constant-divisor FakeLN folded away."""
    check_structure(model)  # e.g. LayerNorm Scaling's 1/√ℓ would be dropped by the fold
    fakes = [m for n, m in model.named_modules() if isinstance(m, Norm) and not isinstance(m, Identity)
             and not n.endswith((".q_norm", ".k_norm"))]  # QK-norm is kept (module docstring)
    if any(not isinstance(m, FakeLN) or not torch.isnan(m.scale_pos0) for m in fakes) or \
            not all(isinstance(b.attn, SplitInputAttention) for b in model.blocks):
        raise ValueError("fold_fakeln needs a model after every removal stage (FakeLN everywhere, one divisor)")
    cfg = dataclasses.replace(model.cfg, placement="none", norm="none", final_norm=False, tie_embeddings=False,
                              unembed_bias=True, bias=True, strategy=f"{model.cfg.strategy}-lnfree")
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    new = ZooModel(cfg, tokenizer=getattr(model, "tokenizer", None)).to(next(model.parameters()).dtype)
    # everything the LN-free model has is carried (embeddings, QK-norm gains, [MASK], a t-embedder); the layers
    # that read a FakeLN are replaced below
    s = {k: v for k, v in sd.items() if k in new.state_dict()}
    fold = lambda W, c, f: fold_affine(W, c, f.w.detach(), None if f.b is None else f.b.detach(),
                                       f.scale.item(), f.centre)
    with torch.no_grad():
        for b in model.blocks:
            p, w = f"blocks.{b.layer}", b.attn.n_heads * b.attn.d_head
            W, c = b.attn.qkv.weight.detach(), b.attn.qkv.bias
            c = torch.zeros(W.shape[0], dtype=W.dtype) if c is None else c.detach()
            Wqk, cqk = fold(W[:2 * w], c[:2 * w], b.attn.ln_qk)
            Wv, cv = fold(W[2 * w:], c[2 * w:], b.attn.ln_v)
            s[f"{p}.attn.qkv.weight"], s[f"{p}.attn.qkv.bias"] = torch.cat([Wqk, Wv]), torch.cat([cqk, cv])
            s[f"{p}.mlp.up.weight"], s[f"{p}.mlp.up.bias"] = fold(b.mlp.up.weight.detach(), b.mlp.up.bias, b.ln2)
            for lin in ("attn.out", "mlp.down"):
                s[f"{p}.{lin}.weight"] = sd[f"{p}.{lin}.weight"]
                s[f"{p}.{lin}.bias"] = sd.get(f"{p}.{lin}.bias", torch.zeros_like(sd[f"{p}.{lin}.weight"][:, 0]))
        s["unembed.weight"], s["unembed.bias"] = fold(model.unembed.weight.detach(), sd.get("unembed.bias"),
                                                      model.ln_final)  # an existing b_U is kept
        copy_into(new, s)
    new.weight_source = f"{getattr(model, 'weight_source', 'random init')} -> LN removed"
    return new.eval()


@dataclass
class RemovalResult:
    model: ZooModel                 # the LN-free model (zoo no-norm, FakeLNs folded)
    control: ZooModel               # the vanilla fine-tune of the original (same steps, same data)
    ce: dict[str, float]            # before, vanilla (control), lnfree, lnfree_minus_vanilla
    stages: pd.DataFrame = field(default_factory=pd.DataFrame)  # stage, norms, steps, ce_after, sigma_mean


def remove_layernorm(model: ZooModel, tokens: torch.Tensor, eval_tokens: torch.Tensor, steps_per_stage: int = 50,
                     finetune: FineTune | None = None, calib_batches: int = 4, batch_size: int = 8,
                     lr: float = 1e-3, control: str | None = "matched", seed: int = 0) -> RemovalResult:
    """Remove every LayerNorm of a Pre-LN zoo model by staged freezing and fine-tuning (see module docstring).

    tokens: the training token stream (1-D) for fine-tuning and calibration; eval_tokens [n, t]: held-out
    windows for CE. finetune(model, steps, stage) replaces the default interp.train.fine_tune loop.
    control: "matched" (the removal's fine-tuning calls, LN kept), "single" (one run of the same total
    length) or None (no control). seed picks the calibration windows and the default fine-tune's shuffles (a
    custom finetune gets only the stage index). The input model is not modified.
    """
    check_removable(model)
    if isinstance(steps_per_stage, bool) or not isinstance(steps_per_stage, int) or steps_per_stage < 0:
        raise ValueError(f"steps_per_stage must be a whole number ≥ 0, got {steps_per_stage!r}")
    if eval_tokens.dim() != 2 or eval_tokens.shape[0] < 1 or eval_tokens.shape[1] < 2:
        raise ValueError(f"eval_tokens must be [n ≥ 1, t ≥ 2] held-out windows, got {tuple(eval_tokens.shape)}")
    if control not in ("matched", "single", None):
        raise ValueError(f"unknown control {control!r}; choose 'matched', 'single' or None")
    for name, v, low in (("calib_batches", calib_batches, 1), ("batch_size", batch_size, 1), ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:  # 0 calibration batches: every σ = 0, NaN model
            raise ValueError(f"{name} must be a whole number ≥ {low}, got {v!r}")
    tokens = torch.as_tensor(tokens).flatten()
    _check_ids(model, {"tokens": tokens, "eval_tokens": eval_tokens})
    if eval_tokens.shape[1] > model.cfg.n_ctx + 1:
        raise ValueError(f"eval_tokens windows of {eval_tokens.shape[1]} tokens are longer than the context + 1 "
                         f"({model.cfg.n_ctx + 1}: inputs and the last target); cut them shorter")
    seq_len = eval_tokens.shape[1]  # window length, target included: calibration and fine-tuning read seq_len − 1
    ft = finetune or default_finetune(tokens, lr=lr, batch_size=batch_size, seq_len=seq_len - 1, seed=seed)
    bos = getattr(getattr(model, "tokenizer", None), "bos_id", None)
    n_win = len(tokens) // (seq_len - 1)
    if n_win < 1:
        raise ValueError(f"token stream of {len(tokens)} tokens is shorter than one window of {seq_len - 1}")

    def calib(stage: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(1000 + stage + 10_000 * seed)
        out = []
        for _ in range(calib_batches):
            idx = torch.randint(0, n_win, (batch_size,), generator=g)
            rows = torch.stack([tokens[i * (seq_len - 1):(i + 1) * (seq_len - 1)] for i in idx.tolist()])
            out.append(torch.cat([torch.full((batch_size, 1), 0 if bos is None else bos), rows], 1)[:, :-1])
        return out

    ce = {"before": lm_ce(model, eval_tokens)}
    work = copy.deepcopy(model).eval()  # calibrated in eval mode; each fine-tune sets train mode
    rows = []
    for i, stage in enumerate(tqdm(STAGES, desc="LN removal", leave=False)):
        stds = remove_stage(work, stage, calib(i))
        ft(work, steps_per_stage, i)
        rows.append(dict(stage=stage, norms=len(stds), steps=steps_per_stage, ce_after=lm_ce(work, eval_tokens),
                         sigma_mean=sum(s for s, _ in stds.values()) / len(stds) if stds else float("nan"),
                         sigma_pos0_mean=sum(s for _, s in stds.values()) / len(stds) if stds else float("nan")))
    lnfree = fold_fakeln(work)
    ce["lnfree_fakeln"] = rows[-1]["ce_after"]
    ce["lnfree"] = lm_ce(lnfree, eval_tokens)
    ctrl = copy.deepcopy(model).eval()
    if control == "matched":  # the same fine-tuning calls (same batches, same schedules), every LayerNorm kept
        for i in range(len(STAGES)):
            ft(ctrl, steps_per_stage, i)
    elif control == "single":  # one fine-tuning run of the same total length (one warm-up + cosine)
        ft(ctrl, steps_per_stage * len(STAGES), len(STAGES))
    if control:
        ce["vanilla"] = lm_ce(ctrl, eval_tokens)
        ce["lnfree_minus_vanilla"] = ce["lnfree"] - ce["vanilla"]
    return RemovalResult(lnfree.eval(), ctrl.eval(), ce, pd.DataFrame(rows))
