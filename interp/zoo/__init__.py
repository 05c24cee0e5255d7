"""The normalization zoo: one decoder, every placement × norm kind, TransformerLens hook names."""
from __future__ import annotations

from typing import Any

import torch

from interp.zoo.config import STRATEGIES, ZooConfig, strategy_config
from interp.zoo.io import load, save
from interp.zoo.model import Block, ZooModel


def build(name: str, seed: int | None = 0, *, device: str | None = None, dtype: str | torch.dtype | None = None,
          **overrides: Any) -> ZooModel:
    """Build strategy `name` (see STRATEGIES) with config `overrides`, randomly initialised from `seed` (on the
    CPU, so the weights do not depend on the device), then moved to `device` / cast to `dtype` (interp.device)."""
    from interp.device import place
    cfg = strategy_config(name, **overrides)
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return place(ZooModel(cfg), device, dtype)
    return place(ZooModel(cfg), device, dtype)


ZooModel.save = save  # model.save(dir)

__all__ = ["STRATEGIES", "ZooConfig", "ZooModel", "Block", "build", "load", "save", "strategy_config"]
