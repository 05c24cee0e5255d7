"""The model card: a small, JSON-serialisable description every analysed model carries as `model.card`.

Reports and saved results embed the card so a report can be rebuilt without the model itself.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

PLACEMENTS = ("pre", "post", "peri", "mix", "lns", "reordered", "none")
NORM_KINDS = ("layernorm", "rmsnorm", "crmsnorm", "powernorm", "unified", "dyt", "tdln", "adaln", "fakeln", "none")


@dataclass
class ModelCard:
    """What a model is, in the terms this suite compares models by.

    name: registry name or path; family: zoo / llama / gemma3 / bert / gpt2 ...;
    strategy: the zoo preset (or a descriptive label for real models); placement: one of PLACEMENTS, or
    "parallel" for a real model whose attention and MLP both read the block input (e.g. Phi, GPT-J, GPT-NeoX);
    norm_kind: one of NORM_KINDS; objective: "causal_lm", "mdlm" (the zoo's masked-diffusion models) or
    "encoder" (encoders have no LM head).
    """

    name: str
    family: str
    placement: str
    norm_kind: str
    n_layers: int
    d_model: int
    n_params: int
    strategy: str = ""
    objective: str = "causal_lm"
    weight_source: str = ""
    quantization: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"model card has unknown fields {sorted(unknown)}; expected a subset of {sorted(names)}")
        return cls(**d)
