"""Confidence neurons: a planted neuron writing into W_U's exact null space acts only through the final norm."""
import pytest
import torch

import interp
from interp.attribution import confidence_neurons


def test_planted_null_space_neuron_acts_only_via_the_scale():
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=16, n_heads=2, d_mlp=8, d_vocab=40, n_ctx=8,
                         init_std=0.5).double().eval()
    e = torch.zeros(16, dtype=torch.float64)
    e[0], e[1] = 1 / 2 ** 0.5, -1 / 2 ** 0.5   # zero-mean unit direction
    with torch.no_grad():
        m.embed.weight -= (m.embed.weight @ e)[:, None] * e  # tied W_U now reads nothing along e
        m.blocks[1].mlp.down.weight[:, 3] = 6 * e
        m.blocks[1].mlp.up.bias[3] = 2.0  # keep the neuron active
    tok = torch.randint(0, 40, (2, 8), generator=torch.Generator().manual_seed(0))
    df = confidence_neurons(m, tok, null_k=1).set_index("neuron")
    assert df.loc[3, "null_fraction"] == pytest.approx(1.0, abs=1e-9)
    assert df.loc[3, "dH_frozen"] < 1e-10 and df.loc[3, "dH_total"] > 1e-4
    assert df.index[0] == 3  # the top of the via_scale ranking


def test_no_final_norm_means_no_scale_effect():
    m = interp.zoo.build("no-norm", n_layers=2, d_model=16, n_heads=2, d_mlp=8, d_vocab=40, n_ctx=8).double()
    df = confidence_neurons(m, torch.randint(0, 40, (1, 8)))
    assert df.via_scale.abs().max() < 1e-12


def test_a_model_that_is_not_from_the_zoo_is_refused_in_one_line():
    with pytest.raises(ValueError, match="not a zoo model: confidence_neurons reads zoo MLP neurons"):
        confidence_neurons(torch.nn.Linear(2, 2), torch.zeros(1, 4, dtype=torch.long))


def test_a_layer_that_does_not_exist_is_refused():
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=16, n_heads=2, d_mlp=8, d_vocab=40, n_ctx=8)
    with pytest.raises(ValueError, match="layer 5 does not exist"):  # not silently layer 5 % 2 = 1
        confidence_neurons(m, torch.randint(0, 40, (1, 8)), layer=5)


def test_frozen_divisor_final_norm_keeps_position_0_apart():
    """With a FakeLN final norm whose position-0 divisor differs, the ablated entropies match the model's own."""
    from fakeln_fixtures import ablated_entropy_change, frozen_divisor_model
    m, tok = frozen_divisor_model()
    df = confidence_neurons(m, tok).set_index("neuron")
    assert df.loc[2, "dH_total"] == pytest.approx(ablated_entropy_change(m, tok, 2), abs=1e-10)


@pytest.mark.parametrize("name", ["dyt", "powernorm", "td-ln"])
def test_a_final_norm_with_no_per_token_scale_is_refused(name):
    """DyT divides by nothing, PowerNorm by a batch statistic, TD-LN's gain depends on t: there is no scale to
    freeze, and reading them as a plain LayerNorm gave entropies that were not the model's (DyT, PowerNorm) or
    an AttributeError (TD-LN)."""
    m = interp.zoo.build(name, n_layers=2, d_model=16, n_heads=2, d_mlp=8, d_vocab=40, n_ctx=8).double().eval()
    with pytest.raises(ValueError, match="no per-token scale"):
        confidence_neurons(m, torch.randint(0, 40, (1, 8)))


@pytest.mark.parametrize("name", ["pre-ln", "pre-rmsnorm"])
def test_null_fraction_is_that_of_the_unembedding_as_the_norm_reads_the_stream(name):
    """The stream reaches W_U through the final norm's gain (and, for LayerNorm, its centring): a write v with
    centre(v)·w in W_U's null space is not read at all (its frozen-scale effect is nil), so its null fraction is 1;
    measured against the raw W_U (gain ignored) it was far below 1."""
    m = interp.zoo.build(name, n_layers=2, d_model=16, n_heads=2, d_mlp=8, d_vocab=40, n_ctx=8,
                         init_std=0.5).double().eval()
    g = torch.Generator().manual_seed(1)
    w = 0.3 + 2 * torch.rand(16, generator=g, dtype=torch.float64)
    e = torch.randn(16, generator=g, dtype=torch.float64)
    e -= (e @ (1 / w)) / (1 / w).pow(2).sum() * (1 / w)  # Σ e/w = 0: v = e/w is zero-mean, centre(v)·w = e
    e /= e.norm()
    with torch.no_grad():
        m.ln_final.w.copy_(w)
        m.embed.weight -= (m.embed.weight @ e)[:, None] * e  # tied W_U reads nothing along e
        m.blocks[1].mlp.down.weight[:, 3] = 6 * e / w
        m.blocks[1].mlp.up.bias[3] = 2.0  # keep the neuron active
    tok = torch.randint(0, 40, (2, 8), generator=torch.Generator().manual_seed(0))
    df = confidence_neurons(m, tok, null_k=1).set_index("neuron")
    assert df.loc[3, "dH_frozen"] < 1e-10  # the reference: the unembedding does not read this write
    assert df.loc[3, "null_fraction"] == pytest.approx(1.0, abs=1e-9)
