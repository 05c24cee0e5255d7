"""The presets that were trained before TD-LN's fix and MDLM landed compute bit-identically what they did.

FROZEN holds, per (strategy, seed), sha256 prefixes recorded with the code of commit 8170916 (torch 2.13.0, one
thread): of the init state_dict from `build` at the zoo size, of the gradients of the next-token loss on a
fixed batch (train mode), and of the eval-mode logits. New config fields and presets must leave these three
unchanged (same modules, same parameters, same RNG consumption, same arithmetic). td-ln is absent: its init
changed on purpose (DiMR's slope-1 gates).
"""
import hashlib

import pytest
import torch

from interp.data.batches import Batch
from interp.train.trainer import lm_loss
from interp.zoo import build

SIZE = {"n_layers": 12, "d_model": 64, "n_heads": 4, "d_mlp": 256, "n_ctx": 128, "d_vocab": 4096}
TORCH = "2.13.0"
FROZEN = {
    ("post-ln", 0): ("19191b02e64ed3ce", "b9fe61bc194a0c2d", "bbc10140a0aca6dd"),
    ("post-ln", 1): ("d3e675bf564d3039", "3a6eaa1f73f1c242", "875e64d41f653c9b"),
    ("pre-ln", 0): ("69f5081a5d04bea1", "581e7defa8d14c68", "58c6a63284bac305"),
    ("pre-ln", 1): ("95b9cc5bf63c97ab", "2343f4f936eaa259", "9e10be8d4de4817e"),
    ("peri-ln", 0): ("0b803e6033f3a80a", "5d40bf9b7b44bedf", "0b0439fde71266db"),
    ("peri-ln", 1): ("bfb534f8bbcf0771", "d4981777e9414f92", "1741b7c51190c05e"),
    ("mix-ln", 0): ("69f5081a5d04bea1", "a4c2babecc37b6c6", "3027d9a9848d536c"),
    ("mix-ln", 1): ("95b9cc5bf63c97ab", "09c2cecbf1034b77", "a2d8a8fb58fc07de"),
    ("lns", 0): ("69f5081a5d04bea1", "f678c2831398c01f", "12205c18ce563eda"),
    ("lns", 1): ("95b9cc5bf63c97ab", "64ebcff407a607cb", "f3dd3b65351d89ed"),
    ("pre-rmsnorm", 0): ("232e46a0ada41190", "fd2c7eb87a8c09f0", "046b0e4b0b4da8d1"),
    ("pre-rmsnorm", 1): ("ce6e35d1b423503c", "7a6604e13f603238", "003f93f3a17d9dce"),
    ("pre-crmsnorm", 0): ("232e46a0ada41190", "44179d18bdd2d307", "c58ff7ed454717cf"),
    ("pre-crmsnorm", 1): ("ce6e35d1b423503c", "ca134650440806e3", "67b12001d00fa0eb"),
    ("powernorm", 0): ("ae03dccb66d10378", "1372da74a1600e29", "50ff04ede09055a2"),
    ("powernorm", 1): ("6b13e8180e8bec1c", "62dbb31d788ab92c", "a2e804b90e8e30bd"),
    ("unified-norm", 0): ("d5e630ae03520044", "076b6949573fbc6e", "6d19723399cacbbb"),
    ("unified-norm", 1): ("7a1e77ff34335a5a", "8ace5be25f6cfb58", "1515c6e08cd010e6"),
    ("dyt", 0): ("6bb75eb6d9950267", "d9fa434f2e099227", "26d1a37076c9d7f0"),
    ("dyt", 1): ("a92f2ee8991cb6c3", "018b1dc9f3d72c3d", "d32839a31493157a"),
    ("no-norm", 0): ("8c913c126ceb9772", "ee73934579545186", "b11c222e47d900d0"),
    ("no-norm", 1): ("a817066e9058984d", "d80a18a767b3bf56", "664c2ec66e94e4cf"),
}


def _h(named) -> str:
    m = hashlib.sha256()
    for k, v in named:
        m.update(k.encode())
        m.update(v.detach().contiguous().cpu().numpy().tobytes())
    return m.hexdigest()[:16]


def fingerprint(name: str, seed: int) -> tuple[str, str, str]:
    kw = {"norm_kwargs": {"warmup_iters": 3}} if name in ("powernorm", "unified-norm") else {}
    model = build(name, seed=seed, **SIZE, **kw)
    init = _h(sorted(model.state_dict().items()))
    g = torch.Generator().manual_seed(7)
    x, y = torch.randint(0, 4096, (2, 128), generator=g), torch.randint(0, 4096, (2, 128), generator=g)
    cond = torch.tensor([0.25, 0.75])
    model.train()
    lm_loss(model, Batch(x, y, cond), model.cfg.conditioned).backward()
    grads = _h(sorted((n, p.grad) for n, p in model.named_parameters() if p.grad is not None))
    model.eval()
    with torch.no_grad():
        logits = _h([("logits", model(x, cond=cond))])
    return init, grads, logits


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.skipif(not torch.__version__.startswith(TORCH), reason=f"hashes recorded with torch {TORCH}")
@pytest.mark.parametrize("name,seed", list(FROZEN))
def test_existing_presets_are_bit_identical_to_before(name, seed, one_thread):
    init, grads, logits = fingerprint(name, seed)
    want = FROZEN[(name, seed)]
    assert init == want[0], f"{name} seed {seed}: build() gives other initial weights than before"
    assert grads == want[1], f"{name} seed {seed}: training gradients differ from before"
    assert logits == want[2], f"{name} seed {seed}: eval logits differ from before"
