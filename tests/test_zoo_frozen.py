"""The presets that were trained before TD-LN's fix and MDLM landed compute what they did.

FROZEN_VALUES (tests/zoo_frozen.json) holds, per (strategy, seed), values recorded with the code of commit 8170916
(torch 2.13.0, one thread): the sha256 prefix of the init state_dict from `build` at the zoo size (bit-exact: the
RNG stream is the same on every CPU), the L2 norm of every parameter's gradient of the next-token loss on a fixed
batch (train mode), and the eval-mode logits at 16 fixed positions with their overall norm. Gradients and logits
are compared to 1e-4 relative, not bit for bit: float32 matmul kernels differ between CPU generations in the last
bits, while any change of modules, parameters, RNG use or arithmetic moves them by far more. New config fields and
presets must leave these unchanged. td-ln is absent: its init changed on purpose (DiMR's slope-1 gates).
"""
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from interp.data.batches import Batch
from interp.train.trainer import lm_loss
from interp.zoo import build

SIZE = {"n_layers": 12, "d_model": 64, "n_heads": 4, "d_mlp": 256, "n_ctx": 128, "d_vocab": 4096}
TORCH = "2.13.0"
VALUES = Path(__file__).with_name("zoo_frozen.json")
FROZEN_VALUES = {tuple(k.rsplit(":", 1)[0:1]) + (int(k.rsplit(":", 1)[1]),): v
                 for k, v in json.loads(VALUES.read_text()).items()}
RTOL = 1e-4


def _h(named) -> str:
    m = hashlib.sha256()
    for k, v in named:
        m.update(k.encode())
        m.update(v.detach().contiguous().cpu().numpy().tobytes())
    return m.hexdigest()[:16]


def values(name: str, seed: int) -> dict:
    """{init: sha256 prefix of the init state_dict, grads: {param: ‖grad‖}, logits: 16 values, logits_norm}."""
    kw = {"norm_kwargs": {"warmup_iters": 3}} if name in ("powernorm", "unified-norm") else {}
    model = build(name, seed=seed, **SIZE, **kw)
    init = _h(sorted(model.state_dict().items()))
    g = torch.Generator().manual_seed(7)
    x, y = torch.randint(0, 4096, (2, 128), generator=g), torch.randint(0, 4096, (2, 128), generator=g)
    cond = torch.tensor([0.25, 0.75])
    model.train()
    lm_loss(model, Batch(x, y, cond), model.cfg.conditioned).backward()
    grads = {n: float(p.grad.double().norm()) for n, p in sorted(model.named_parameters()) if p.grad is not None}
    model.eval()
    with torch.no_grad():
        logits = model(x, cond=cond).double()
    picks = logits[torch.tensor([0, 1]).repeat_interleave(8), torch.arange(0, 128, 8), torch.arange(0, 4096, 256)]
    return {"init": init, "grads": grads, "logits": picks.tolist(), "logits_norm": float(logits.norm())}


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _close(a: float, b: float, scale: float = 1e-3) -> bool:
    """Equal to RTOL relative, or to RTOL × `scale` absolute (the size of the values compared side by side: a
    logit near 0 among logits of 0.3 carries float32 rounding of the others' size, which varies across CPUs)."""
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=RTOL * scale)


@pytest.mark.skipif(not torch.__version__.startswith(TORCH), reason=f"values recorded with torch {TORCH}")
@pytest.mark.parametrize("name,seed", list(FROZEN_VALUES))
def test_existing_presets_compute_what_they_did(name, seed, one_thread):
    got, want = values(name, seed), FROZEN_VALUES[(name, seed)]
    assert got["init"] == want["init"], f"{name} seed {seed}: build() gives other initial weights than before"
    assert got["grads"].keys() == want["grads"].keys(), f"{name} seed {seed}: other trainable parameters"
    bad = [k for k in want["grads"] if not _close(got["grads"][k], want["grads"][k])]
    assert not bad, f"{name} seed {seed}: training gradients differ from before at {bad[:3]}"
    assert _close(got["logits_norm"], want["logits_norm"]), f"{name} seed {seed}: eval logits differ from before"
    scale = max(abs(v) for v in want["logits"])
    assert all(_close(a, b, scale) for a, b in zip(got["logits"], want["logits"])), f"{name} seed {seed}: logits differ"


def test_a_changed_model_is_caught(one_thread):
    """The comparison is sensitive: a 1e-3 change of one weight moves the recorded values past the tolerance."""
    want = FROZEN_VALUES[("pre-ln", 0)]
    model = build("pre-ln", seed=0, **SIZE)
    with torch.no_grad():
        model.blocks[5].mlp.down.weight.mul_(1.001)
    g = torch.Generator().manual_seed(7)
    x, y = torch.randint(0, 4096, (2, 128), generator=g), torch.randint(0, 4096, (2, 128), generator=g)
    model.train()
    lm_loss(model, Batch(x, y, torch.tensor([0.25, 0.75])), False).backward()
    grads = {n: float(p.grad.double().norm()) for n, p in sorted(model.named_parameters()) if p.grad is not None}
    assert any(not _close(grads[k], want["grads"][k]) for k in want["grads"])
