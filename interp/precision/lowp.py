"""A low-precision twin of a hooked model: the same weights cast to bf16 or fp16, hooks and card intact.

On a CPU without fp16 / bf16 matrix units, torch's low-precision matrix multiply is slow: fp16 ~30× slower
than fp32 (1.42 s vs 0.048 s for a 1024×576 @ 576×1536 product, one thread), bf16 ~3×, while every other op
(norms, softmax, SDPA, GELU, adds) runs natively at about fp32 speed. So by default each `nn.Linear` and each
transformers `Conv1D` (GPT-2's block layers, weight stored [in, out]; see gemm.py) of the twin computes as a GPU
fp16 / bf16 GEMM does: inputs and weights in the format, products accumulated in fp32, the result rounded to
the format — emulated by upcasting (a product of two fp16 or bf16 numbers is exact in fp32),
which gives the same values up to the order of the fp32 sum. `linear="native"` uses torch's own low-precision
GEMM instead. Runs say which one was used (`fp32_ops`); nothing else is kept in fp32 by this module (a model's
own code may upcast, e.g. transformers' RMSNorm computes in fp32).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from interp.precision.gemm import gemm_kinds, gemm_modules, linear_weight

LINEAR_MODES = ("fp32-accumulate", "native")
FP32_ACCUMULATE_NOTE = ("{kinds}: {fmt} inputs and weights, products accumulated in fp32 and rounded to {fmt} "
                        "(GPU GEMM semantics, emulated by upcasting: torch's CPU {fmt} GEMM is much slower)")


def _strip_hooks(hf: nn.Module, ids: set[int]) -> None:
    """Remove the PyTorch hooks with these handle ids from every module of `hf` (a deep copy keeps them)."""
    for m in hf.modules():
        for name, d in vars(m).items():
            if name.startswith(("_forward", "_backward")) and isinstance(d, dict):
                for k in ids & set(d):
                    del d[k]


def _cast_memo(module: nn.Module, dtype: torch.dtype) -> dict[int, object]:
    """A deepcopy memo that hands every floating-point parameter and buffer of `module` over already cast to
    `dtype` (tied weights stay tied): the copy never holds a second full-precision set of weights."""
    memo: dict[int, object] = {}
    for t in [*module.parameters(), *module.buffers()]:
        if id(t) not in memo and t.is_floating_point():
            new = t.detach().to(dtype, copy=True)
            memo[id(t)] = nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else new
    return memo


def clone(model, dtype: torch.dtype):
    """A copy of `model` cast to `dtype`, in eval mode, with its own hook points (the original is untouched;
    the tokenizer is shared)."""
    from interp.models.hooked import HookedHF
    if isinstance(model, HookedHF):  # rebuild the wrapper: the copied hooks would still fire the original's points
        hf = copy.deepcopy(model.hf, _cast_memo(model.hf, dtype))
        _strip_hooks(hf, {h.id for h in model._handles})
        twin = type(model)(hf.to(dtype), model.tokenizer, **model._info)
    else:
        memo = _cast_memo(model, dtype)
        tok = getattr(model, "tokenizer", None)
        if tok is not None:
            memo[id(tok)] = tok
        twin = copy.deepcopy(model, memo).to(dtype)
        for m in twin.modules():  # a hook run as a point's own forward (collectors.driver.direct) is not copied
            if isinstance(m, HookPoint):
                if m.__dict__.pop("_interp_direct", None):
                    m.__dict__.pop("forward", None)
    return twin.eval()


def _fp32_accumulate(mod: nn.Module):
    """A forward for an nn.Linear or Conv1D: x W + b with fp32 products and sums, rounded to x's dtype."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        b = None if mod.bias is None else mod.bias.float()
        return F.linear(x.float(), linear_weight(mod).float(), b).to(x.dtype)
    return forward


def low_precision(model, fmt: str, linear: str = "fp32-accumulate") -> tuple[object, list[str]]:
    """(twin of `model` in `fmt` ("bf16" | "fp16"), notes on what does not run in that format)."""
    if fmt not in ("bf16", "fp16"):
        raise ValueError(f"unknown low-precision format {fmt!r}; choose 'bf16' or 'fp16'")
    if linear not in LINEAR_MODES:
        raise ValueError(f"unknown linear mode {linear!r}; choose one of {', '.join(LINEAR_MODES)}")
    twin = clone(model, torch.bfloat16 if fmt == "bf16" else torch.float16)
    notes: list[str] = []
    if linear == "fp32-accumulate":
        n = 0
        for mod in gemm_modules(twin):
            mod.forward = _fp32_accumulate(mod)
            n += 1
        if n:
            notes.append(FP32_ACCUMULATE_NOTE.format(kinds=gemm_kinds(twin), fmt=fmt))
    return twin, notes
