"""The MDLM loss and held-out bound against brute-force computations written here (per sequence, per masked token,
in float64), their determinism, the Trainer's bitwise resume with them, and their errors on bad input."""
import pytest
import torch

from interp.data import TokenBatches
from interp.data.batches import Batch
from interp.train import TrainConfig, Trainer
from interp.train.mdlm import mdlm_eval, mdlm_loss, mdlm_terms
from interp.zoo import build

TINY = {"n_layers": 2, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_ctx": 12, "d_vocab": 29}


def _model(name="mdlm-tdln", seed=0):
    m = build(name, seed=seed, **TINY).double()
    g = torch.Generator().manual_seed(seed + 10)
    with torch.no_grad():  # gates and adaLN-Zero maps off their constant init, so t matters
        for n, p in m.named_parameters():
            if any(k in n for k in ("ln", "ada_gate", "mask_embed")):
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


def _batch(b=5, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, TINY["d_vocab"], (b, TINY["n_ctx"]), generator=g)
    x[:, 0] = 0  # BOS
    return Batch(x, x, torch.zeros(b))


def _brute_terms(model, x0, t, masked):
    """(1/t_b)·Σ over masked i of −log softmax(logits of z_b)[x0_bi], one sequence and one token at a time."""
    out = []
    for b in range(x0.shape[0]):
        z = x0[b].clone()
        z[masked[b]] = TINY["d_vocab"]  # [MASK]
        with torch.no_grad():
            logits = model(z[None], cond=t[b:b + 1].double())[0].double()
        s = 0.0
        for i in range(x0.shape[1]):
            if masked[b, i]:
                s += float(torch.logsumexp(logits[i], 0) - logits[i, x0[b, i]])
        out.append(s / float(t[b]) if masked[b].any() else 0.0)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("masked_only", [False, True], ids=["all-logits", "masked-logits"])
@pytest.mark.parametrize("name", ["mdlm-tdln", "mdlm-adaln", "mdlm-ln"])
def test_terms_match_brute_force_with_one_over_t_on_masked_positions_only(name, masked_only):
    model, batch = _model(name).eval(), _batch()
    t = torch.tensor([0.05, 0.3, 0.5, 0.9, 1.0])
    g = torch.Generator().manual_seed(4)
    masked = torch.rand(batch.x.shape, generator=g) < t[:, None]
    masked[:, 0] = False
    masked[0] = False  # a sequence with nothing masked: its term is 0
    with torch.no_grad():
        got = mdlm_terms(model, batch.x, t, masked, masked_only=masked_only).double()
    torch.testing.assert_close(got, _brute_terms(model, batch.x, t, masked), rtol=1e-5, atol=1e-6)


def test_training_loss_is_the_documented_estimator_on_the_global_rng():
    """Train mode: t_i = (u_i + i)/B (u from the global RNG), then masks u' < t_i on positions ≥ 1; the loss is
    the mean over sequences of the 1/t-weighted masked cross-entropy divided by L = T − 1 (not by the mask count)."""
    model, batch = _model().train(), _batch()
    B, T = batch.x.shape
    torch.manual_seed(123)
    loss = mdlm_loss(model, batch, use_cond=True)
    torch.manual_seed(123)
    t = (torch.rand(B) + torch.arange(B)) / B
    masked = torch.rand(B, T) < t[:, None]
    masked[:, 0] = False
    want = _brute_terms(model.eval(), batch.x, t, masked).sum() / (B * (T - 1))
    assert masked.any() and not masked[:, 0].any()
    torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=1e-6)


def test_eval_mode_loss_is_deterministic_and_leaves_the_global_rng_alone():
    model, batch = _model().eval(), _batch()
    state = torch.get_rng_state()
    a, b = mdlm_loss(model, batch, True), mdlm_loss(model, batch, True)
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())
    res1 = mdlm_eval(model, [batch, _batch(seed=5)], n_t=4)
    res2 = mdlm_eval(model, [batch, _batch(seed=5)], n_t=4)
    assert torch.equal(state, torch.get_rng_state())
    assert res1.nelbo == res2.nelbo and res1.per_t.equals(res2.per_t)


def test_bound_of_an_input_blind_model_is_flat_in_t_and_equals_its_cross_entropy():
    """If the prediction ignores the input, E[(1/t)·Σ_masked CE] / L = the mean CE of the fixed prediction at every
    t: this pins down the 1/t weight and the division by L (dividing by the mask count would give CE/t)."""
    model = build("mdlm-ln", **TINY).double().eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if not n.startswith(("ln_final", "embed")):
                p.zero_()  # blocks, positions, t-embedding and [MASK]'s embedding off
        g = torch.Generator().manual_seed(0)
        model.embed.weight.copy_(torch.randn(model.embed.weight.shape, generator=g, dtype=torch.float64))
        model.ln_final.b.copy_(torch.randn(TINY["d_model"], generator=g, dtype=torch.float64))
    x = torch.randint(1, TINY["d_vocab"], (64, TINY["n_ctx"]), generator=torch.Generator().manual_seed(1))
    x[:, 0] = 0
    z = torch.full_like(x, model.cfg.mask_id)
    logits = model(z)[0, 0].double().detach()  # a masked position embeds to 0: its logits are b_final·Eᵀ, fixed
    ce = torch.logsumexp(logits, 0) - logits[x[:, 1:]]
    res = mdlm_eval(model, [Batch(x[i:i + 8], x[i:i + 8], torch.zeros(8)) for i in range(0, 64, 8)], n_t=5,
                    extra_t=(1.0,), n_draws=3)
    for _, r in res.per_t.iterrows():
        tol = 4 * r.bound_sem if r.t < 1 else 0.0
        assert abs(r.bound - float(ce.mean())) < tol + 1e-6, (r.t, r.bound, float(ce.mean()))
    assert ce.std() > 0.5  # a non-uniform prediction: tokens differ in CE
    assert res.per_t.set_index("t").loc[1.0, "masked_frac"] == 1.0


def test_eval_midpoint_nelbo_is_the_mean_of_the_grid_rows():
    model = _model().eval()
    res = mdlm_eval(model, [_batch(), _batch(seed=9)], n_t=4, extra_t=(1.0, 0.02))
    grid = res.per_t[res.per_t.in_nelbo]
    assert grid.t.tolist() == [0.125, 0.375, 0.625, 0.875]
    assert res.nelbo == pytest.approx(grid.bound.mean(), rel=1e-12)
    assert res.nelbo_sem > 0 and len(res.per_t) == 6
    assert res.per_t[~res.per_t.in_nelbo].t.tolist() == [1.0, 0.02]   # the t asked for, not its float32 rounding


def test_bad_input_raises_one_clear_error():
    model, batch = _model().eval(), _batch()
    masked = torch.zeros(batch.x.shape, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        mdlm_terms(model, batch.x, torch.tensor([0.5, 1.2, 0.1, 0.1, 0.1]), masked)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        mdlm_eval(model, [batch], extra_t=(-0.1,))
    with pytest.raises(ValueError, match="t = 0 masks nothing"):
        mdlm_eval(model, [batch], extra_t=(0.0,))
    causal = build("pre-ln", **TINY)
    with pytest.raises(ValueError, match="causal_lm model.*objective='mdlm'"):
        mdlm_eval(causal, [batch])
    with pytest.raises(ValueError, match="causal_lm model"):
        mdlm_loss(causal, batch, False)


def test_trainer_resumes_an_mdlm_run_bitwise(tmp_path):
    """The loss draws t and masks from the global RNG, which the Trainer checkpoints: a killed run resumes exactly."""
    stream = torch.randint(2, TINY["d_vocab"], (3000,), generator=torch.Generator().manual_seed(0))
    batches = lambda: TokenBatches(stream, TINY["n_ctx"], 4, bos_id=0, seed=1)
    cfg = TrainConfig(steps=6, batch_size=4, seq_len=TINY["n_ctx"], warmup=2, eval_every=3, eval_batches=2,
                      ckpt_every=2)
    new = lambda: build("mdlm-adaln", **TINY)
    straight = Trainer(new(), batches(), cfg, val=batches(), progress=False, loss_fn=mdlm_loss).run()
    Trainer(new(), batches(), cfg, val=batches(), run_dir=tmp_path, progress=False, loss_fn=mdlm_loss).run(until=4)
    resumed = Trainer(new(), batches(), cfg, val=batches(), run_dir=tmp_path, progress=False, loss_fn=mdlm_loss).run()
    assert resumed.steps.loss.tolist() == straight.steps.loss.tolist()
    assert resumed.evals == straight.evals and resumed.status == "done"


def _exact_nelbo_per_token(model, x0, n_nodes=48):
    """NELBO/L of one sequence by enumeration: Σ over masks M of ∫ t^(k−1)(1 − t)^(L−k) Σ_{i∈M} CE_i(M, t) dt
    (k = |M|; Gauss–Legendre on [0, 1]) — MDLM's integral with the Bernoulli(t) mask probabilities written out."""
    import itertools

    import numpy as np
    L = x0.shape[0] - 1
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    ts, ws = (nodes + 1) / 2, weights / 2
    total = 0.0
    for bits in itertools.product([False, True], repeat=L):
        k = sum(bits)
        if k == 0:
            continue
        masked = torch.tensor([False, *bits])
        z = x0.masked_fill(masked, TINY["d_vocab"])[None].expand(len(ts), -1)
        with torch.no_grad():
            logp = model(z, cond=torch.tensor(ts, dtype=torch.float64)).double().log_softmax(-1)  # [n_t, T, V]
        ce = -logp[:, masked, :].gather(-1, x0[masked][None, :, None].expand(len(ts), -1, 1))[..., 0].sum(-1)
        total += float((torch.tensor(ws * ts ** (k - 1) * (1 - ts) ** (L - k)) * ce).sum())
    return total / L


@pytest.mark.parametrize("loss_fn", [mdlm_loss, "k"])
def test_both_estimators_average_to_the_exact_bound(loss_fn):
    """Monte Carlo mean of the training loss (1/t weights, or mask-count weights) over many draws = the bound
    computed by enumerating every mask and integrating over t, on a 5-token sequence."""
    from interp.train.mdlm import mdlm_loss_k
    fn = mdlm_loss_k if loss_fn == "k" else loss_fn
    tiny = {**TINY, "n_ctx": 5}
    model = build("mdlm-tdln", **tiny).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype) * ("ln" in n))  # t really matters
    x0 = torch.tensor([0, 3, 17, 8, 25])
    exact = _exact_nelbo_per_token(model.eval(), x0)
    model.train()
    torch.manual_seed(0)
    batch = Batch(x0[None].expand(256, -1), x0[None].expand(256, -1), torch.zeros(256))
    with torch.no_grad():
        draws = torch.tensor([float(fn(model, batch, True)) for _ in range(40)])
    se = float(draws.std() / len(draws) ** 0.5)
    assert abs(float(draws.mean()) - exact) < 4 * se + 1e-3, (float(draws.mean()), exact, se)


@pytest.mark.parametrize("shape", [(4, 1), (0, 12)], ids=["prefix-only", "no-sequences"])
def test_eval_refuses_a_batch_with_nothing_to_score(shape):
    """A batch of 1-token sequences (only the clean prefix) or of no sequences has no scored position: one clear
    error, not a ZeroDivisionError or an error from inside the model."""
    model = _model().eval()
    x = torch.zeros(shape, dtype=torch.long)
    with pytest.raises(ValueError, match=r"mdlm_eval needs batches \[sequences ≥ 1, tokens > 1\]"):
        mdlm_eval(model, [_batch(), Batch(x, x, torch.zeros(shape[0]))], n_t=2)
