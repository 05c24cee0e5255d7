"""Every kind of model satisfies the model contract (interp.contract.HookedModel), with the config fields it names."""
import dataclasses

import pytest

import interp
from interp.contract import HookedModel, ModelConfig


def config_fields_present(cfg) -> None:
    for name in ModelConfig.__annotations__:
        assert hasattr(cfg, name), name


@pytest.mark.parametrize("strategy", ["pre-ln", "post-ln", "peri-ln", "dyt", "no-norm"])
def test_zoo_models_satisfy_the_contract(strategy):
    m = interp.zoo.build(strategy, n_layers=2, d_model=16, n_heads=2, d_mlp=32, n_ctx=8, d_vocab=20)
    assert isinstance(m, HookedModel) and isinstance(m.cfg, ModelConfig)
    config_fields_present(m.cfg)


def test_a_plain_module_does_not():
    import torch
    assert not isinstance(torch.nn.Linear(2, 2), HookedModel)


def test_real_model_satisfies_the_contract(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM
    from interp.models.families import wrap
    cfg = AutoConfig.for_model("llama", vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=32)
    m = wrap(AutoModelForCausalLM.from_config(cfg), name="tiny-llama")
    assert isinstance(m, HookedModel) and isinstance(m.cfg, ModelConfig)
    config_fields_present(m.cfg)
    assert set(ModelConfig.__annotations__) <= {f.name for f in dataclasses.fields(m.cfg)}
