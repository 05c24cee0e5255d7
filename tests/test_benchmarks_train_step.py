"""benchmarks/train_step.py: the step breakdown sorts the profiler's own op names into the parts it reports.

The reference is torch.profiler itself: a workload made of one known op of each kind is profiled, and every op
the profiler names for it must land in the part that op belongs to (a renamed op in a new torch shows up here).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from train_step import category  # noqa: E402


def parts_of(fn) -> dict[str, set[str]]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    out: dict[str, set[str]] = {}
    for e in prof.key_averages():
        out.setdefault(category(e.key), set()).add(e.key)
    return out


def test_matrix_products_and_attention_are_the_floor_parts():
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    q = torch.randn(1, 2, 8, 4, requires_grad=True)
    assert "aten::mm" in parts_of(lambda: a @ b)["matrix products"]
    assert "aten::addmm" in parts_of(lambda: F.linear(a, torch.randn(8, 32), torch.randn(8)))["matrix products"]
    att = parts_of(lambda: F.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward())
    assert any(k.startswith("aten::_scaled_dot_product") for k in att["attention (SDPA)"])
    assert not any("dot_product" in k for k in att.get("matrix products", set()))


def test_optimizer_copies_and_the_rest():
    p = torch.nn.Parameter(torch.randn(10))
    p.grad = torch.randn(10)
    opt = torch.optim.AdamW([p], lr=1e-3, fused=True)
    assert any("adamw" in k.lower() for k in parts_of(opt.step)["optimizer"])
    x = torch.randn(10)
    assert "aten::copy_" in parts_of(lambda: torch.empty(10).copy_(x))["copies and fills"]
    assert "aten::exp" in parts_of(lambda: x.exp())["other (dispatch, autograd, telemetry)"]
