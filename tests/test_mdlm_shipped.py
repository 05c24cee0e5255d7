"""The shipped masked-diffusion zoo (data/zoo/mdlm-*): with every token masked (t = 1) a trained model predicts the
corpus unigram distribution; its validation bound is the manifest's and lies below the unigram cross-entropy.

Thresholds, fixed before the models were trained:
  KL(unigram ‖ p_θ(· | all masked, t = 1)) ≤ 0.15 nats, averaged over positions 1..T−1 — for scale, the uniform
  distribution is ≈ 2 nats from the unigram here. The optimum of the MDLM loss at t = 1 is the marginal of a
  window position, which for windows cut at arbitrary offsets is the unigram distribution of the training stream.
  Validation bound ≥ 0.2 nats/token below the unigram cross-entropy (the bound is an upper bound on the NLL).
"""
import json

import pytest
import torch

from interp.data import DATA_DIR

ZOO = DATA_DIR / "zoo"
NAMES = [s + k for s in ("mdlm-tdln", "mdlm-adaln", "mdlm-ln") for k in ("", ".seed1", ".seed2")]
KL_MAX, BELOW_UNIGRAM = 0.15, 0.2


@pytest.fixture(scope="module")
def corpus():
    if not (ZOO / "mdlm-tdln" / "model.safetensors").is_file():
        pytest.skip("data/zoo/mdlm-tdln is absent: the MDLM zoo is not trained yet (interp train --zoo)")
    from interp.data import TOKENIZER_PATH, prepare
    data = prepare("kjv", TOKENIZER_PATH)
    counts = torch.bincount(data.train_tokens, minlength=data.tokenizer.vocab_size).double()
    return data, counts / counts.sum()


def _load(name):
    import interp.zoo
    if not (ZOO / name / "model.safetensors").is_file():
        pytest.skip(f"data/zoo/{name} is absent (not trained yet)")
    return interp.zoo.load(ZOO / name).eval()


def all_masked_kl(model, unigram: torch.Tensor, bos_id: int) -> float:
    """Mean over positions 1..T−1 of KL(unigram ‖ p_θ) for the input [BOS, MASK, …, MASK] at t = 1 (nats)."""
    T = model.cfg.n_ctx
    z = torch.full((1, T), model.cfg.mask_id)
    z[0, 0] = bos_id
    with torch.no_grad():
        logq = model(z, cond=torch.ones(1))[0, 1:].double().log_softmax(-1)  # [T − 1, V]
    p = unigram.double()
    kl = (p * (p.clamp(min=1e-300).log() - logq)).sum(-1)
    return float(kl.mean())


@pytest.mark.parametrize("name", NAMES)
def test_all_masked_prediction_is_the_unigram_distribution(corpus, name):
    data, unigram = corpus
    model = _load(name)
    kl = all_masked_kl(model, unigram, data.tokenizer.bos_id)
    uniform = float((unigram * (unigram.clamp(min=1e-300).log() + torch.log(torch.tensor(float(len(unigram))))))
                    .sum())
    assert kl <= KL_MAX, f"{name}: KL(unigram ‖ model at t = 1) = {kl:.3f} nats > {KL_MAX} (uniform: {uniform:.2f})"


@pytest.mark.parametrize("name", NAMES)
def test_validation_bound_is_the_manifests_and_below_the_unigram(corpus, name):
    from interp.data import TokenBatches
    from interp.train.mdlm import mdlm_loss
    data, _ = corpus
    model = _load(name)
    manifest = json.loads((ZOO / "manifest.json").read_text())
    rec = manifest["models"][name]
    assert rec.get("objective") == "mdlm"
    cfg = rec["train_config"]
    val = TokenBatches(data.val_tokens, cfg["seq_len"], cfg["batch_size"], data.tokenizer.bos_id, shuffle=False)
    with torch.no_grad():  # the Trainer's validation: eval-mode (deterministic) loss over the first eval_batches
        losses = [float(mdlm_loss(model, b, True)) for b in val.first(cfg["eval_batches"])]
    val_loss = sum(losses) / len(losses)
    assert abs(val_loss - rec["final_val_loss"]) < 1e-3, (val_loss, rec["final_val_loss"])
    unigram_xent = manifest["baselines_nats_per_token"]["unigram_xent_val"]
    assert val_loss < unigram_xent - BELOW_UNIGRAM, f"{name}: bound {val_loss:.3f} vs unigram {unigram_xent:.3f}"
