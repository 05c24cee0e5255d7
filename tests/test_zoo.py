"""The zoo's hook contract and placements, checked against a plain-torch re-implementation written here."""
import json
import math

import pytest
import torch

import interp
from interp.zoo import STRATEGIES, build, load

SMALL = dict(n_layers=4, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=97)


def _randomize(model, seed=0):
    """Give every norm a non-trivial gain/bias so placement mistakes change the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("ln", "norm")) and p.dim() >= 1:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
            if name.endswith("alpha"):
                p.fill_(0.7)
        for m in model.modules():  # batch-statistic norms: non-trivial running statistics
            for buf in ("running_phi", "running_var"):
                if hasattr(m, buf):
                    getattr(m, buf).copy_(0.5 + torch.rand(m.d, generator=g))
    return model


# ---------- brute force: plain torch, no hooks, written from the papers' equations ----------
def ref_norm(kind, sd, prefix, x, cond, eps=1e-5, groups=1):
    if kind == "layernorm":
        mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * sd[prefix + "w"] + sd[prefix + "b"]
    if kind == "rmsnorm":
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * sd[prefix + "w"]
    if kind == "crmsnorm":
        full = torch.cat([x, -x.sum(-1, keepdim=True)], -1)  # the implied (d+1)-th coordinate
        return x / torch.sqrt((full * full).mean(-1, keepdim=True) + eps) * sd[prefix + "w"]
    if kind == "dyt":
        return torch.tanh(sd[prefix + "alpha"] * x) * sd[prefix + "w"] + sd[prefix + "b"]
    if kind == "tdln":
        t = cond.view(-1, 1, 1)
        sg = torch.sigmoid((1 + sd[prefix + "gate_w"][0]) * t + sd[prefix + "gate_b"][0])  # DiMR: slope = 1 + w
        sb = torch.sigmoid((1 + sd[prefix + "gate_w"][1]) * t + sd[prefix + "gate_b"][1])
        mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        gamma = sg * sd[prefix + "w0"] + (1 - sg) * sd[prefix + "w1"]
        beta = sb * sd[prefix + "b0"] + (1 - sb) * sd[prefix + "b1"]
        return (x - mu) / torch.sqrt(var + eps) * gamma + beta
    if kind == "powernorm":  # eval: group scaling (RMS of each of `groups` channel blocks), then the running ψ²
        x = torch.cat([c / torch.sqrt((c * c).mean(-1, keepdim=True) + eps) for c in x.chunk(groups, -1)], -1)
        return x / torch.sqrt(sd[prefix + "running_phi"] + eps) * sd[prefix + "w"] + sd[prefix + "b"]
    if kind == "unified":
        return x / torch.sqrt(sd[prefix + "running_var"] + eps) * sd[prefix + "w"] + sd[prefix + "b"]
    raise AssertionError(kind)


def ref_forward(model, tokens, cond=None):
    c, sd = model.cfg, {k: v for k, v in model.state_dict().items()}
    b, t = tokens.shape
    x = sd["embed.weight"][tokens] + sd["pos_embed.weight"][torch.arange(t)]
    N = lambda p, h: ref_norm(c.norm, sd, p, h, cond, groups=c.norm_kwargs.get("group_num", 1))

    def attn(p, h):
        q, k, v = (h @ sd[p + "qkv.weight"].T + sd[p + "qkv.bias"]).split(c.d_model, -1)
        q, k, v = (y.view(b, t, c.n_heads, -1).transpose(1, 2) for y in (q, k, v))
        if c.qk_norm:  # RMSNorm over each head's d_head, one gain [d_head] shared by the heads
            q, k = ref_norm("rmsnorm", sd, p + "q_norm.", q, cond), ref_norm("rmsnorm", sd, p + "k_norm.", k, cond)
        s = q @ k.transpose(-1, -2) / math.sqrt(c.d_head)
        s = s.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
        z = (s.softmax(-1) @ v).transpose(1, 2).reshape(b, t, -1)
        return z @ sd[p + "out.weight"].T + sd[p + "out.bias"]

    def mlp(p, h):
        a = h @ sd[p + "up.weight"].T + sd[p + "up.bias"]
        a = 0.5 * a * (1 + torch.erf(a / math.sqrt(2)))
        return a @ sd[p + "down.weight"].T + sd[p + "down.bias"]

    n_post = int(c.mix_alpha * c.n_layers) if c.placement == "mix" else None
    alpha = (2 * c.n_layers) ** 0.25 if c.deepnorm else 1.0  # DeepNet, decoder-only: α = (2N)^¼
    for l in range(c.n_layers):
        p = f"blocks.{l}."
        place = c.placement if n_post is None else ("post" if l < n_post else "pre")
        if place == "pre":
            x = x + attn(p + "attn.", N(p + "ln1.", x))
            x = x + mlp(p + "mlp.", N(p + "ln2.", x))
        elif place == "lns":
            s = 1 / math.sqrt(l + 1)
            x = x + attn(p + "attn.", s * N(p + "ln1.", x))
            x = x + mlp(p + "mlp.", s * N(p + "ln2.", x))
        elif place == "post":
            x = N(p + "ln1.", alpha * x + attn(p + "attn.", x))
            x = N(p + "ln2.", alpha * x + mlp(p + "mlp.", x))
        elif place == "reordered":  # OLMo-2: norms on sublayer outputs only
            x = x + N(p + "ln1_post.", attn(p + "attn.", x))
            x = x + N(p + "ln2_post.", mlp(p + "mlp.", x))
        elif place == "peri":
            x = x + N(p + "ln1_post.", attn(p + "attn.", N(p + "ln1.", x)))
            x = x + N(p + "ln2_post.", mlp(p + "mlp.", N(p + "ln2.", x)))
        else:
            x = x + attn(p + "attn.", x)
            x = x + mlp(p + "mlp.", x)
    if c.final_norm:
        x = N("ln_final.", x)
    return x @ sd["embed.weight"].T


@pytest.mark.parametrize("name", [n for n in STRATEGIES if not n.startswith("mdlm")])  # MDLM: test_zoo_mdlm.py
def test_logits_match_brute_force(name):
    model = _randomize(build(name, **SMALL).double().eval())
    tokens = torch.randint(0, SMALL["d_vocab"], (2, 11), generator=torch.Generator().manual_seed(1))
    cond = torch.tensor([0.3, -1.2], dtype=torch.float64)
    got = model(tokens, cond=cond)
    assert got.shape == (2, 11, SMALL["d_vocab"])
    torch.testing.assert_close(got, ref_forward(model, tokens, cond), atol=1e-5, rtol=1e-5)


def _documented_hooks(model):
    c, L = model.cfg, model.cfg.n_layers
    b, t, d, h, dh = 2, 7, c.d_model, c.n_heads, c.d_head
    shapes = {"hook_embed": (b, t, d), "hook_pos_embed": (b, t, d)}
    for l in range(L):
        p = f"blocks.{l}."
        for s in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out"):
            shapes[p + s] = (b, t, d)
        for s in ("hook_q", "hook_k", "hook_v", "hook_z"):
            shapes[p + "attn." + s] = (b, t, h, dh)
        shapes[p + "attn.hook_pattern"] = shapes[p + "attn.hook_attn_scores"] = (b, h, t, t)
        shapes[p + "mlp.hook_pre"] = shapes[p + "mlp.hook_post"] = (b, t, c.d_mlp)
        norms = [] if c.block_placement(l) in ("none", "reordered") else ["ln1", "ln2"]
        norms += ["ln1_post", "ln2_post"] if c.placement in ("peri", "reordered") else []
        for n in ["q_norm", "k_norm"] if c.qk_norm else []:  # per head: [b, t, h, dh], scale [b, t, h, 1]
            shapes[f"{p}attn.{n}.hook_in"] = shapes[f"{p}attn.{n}.hook_normalized"] = (b, t, h, dh)
            shapes[f"{p}attn.{n}.hook_scale"] = (b, t, h, 1)
        for n in norms:
            shapes[f"{p}{n}.hook_in"] = shapes[f"{p}{n}.hook_normalized"] = (b, t, d)
            if c.norm in ("powernorm", "unified"):
                shapes[f"{p}{n}.hook_scale"] = (1, 1, d)
            elif c.norm != "dyt":
                shapes[f"{p}{n}.hook_scale"] = (b, t, 1)
    if c.final_norm:
        shapes["ln_final.hook_normalized"] = (b, t, d)
        if c.norm not in ("dyt",):
            shapes["ln_final.hook_scale"] = (b, t, 1) if c.norm not in ("powernorm", "unified") else (1, 1, d)
    return shapes


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_documented_hook_fires_with_its_shape(name):
    model = build(name, **SMALL).eval()
    tokens = torch.randint(0, SMALL["d_vocab"], (2, 7))
    logits, cache = model.run_with_cache(tokens)
    for hook, shape in _documented_hooks(model).items():
        assert hook in cache, f"{name}: {hook} did not fire"
        assert tuple(cache[hook].shape) == shape, f"{name}: {hook} {tuple(cache[hook].shape)} != {shape}"
    for hook in model.sites.all_hook_names():
        assert hook in cache, f"{name}: site-map hook {hook} did not fire"
    # hooking the pattern switches SDPA off; both paths agree
    torch.testing.assert_close(logits, model(tokens), atol=1e-5, rtol=1e-5)


def test_post_ln_stream_is_normalized_after_every_block():
    model = _randomize(build("post-ln", **SMALL).double().eval())
    _, cache = model.run_with_cache(torch.randint(0, 97, (2, 9)))
    for l, blk in enumerate(model.blocks):
        x = cache[f"blocks.{l}.hook_resid_post"]
        z = (x - blk.ln2.b) / blk.ln2.w  # undo the affine map: per-token mean 0, RMS 1 (up to eps)
        torch.testing.assert_close(z.mean(-1), torch.zeros_like(z.mean(-1)), atol=1e-9, rtol=0)
        assert torch.allclose(z.pow(2).mean(-1).sqrt(), torch.ones(2, 9, dtype=torch.float64), atol=1e-3)
        # the un-normalized sum is at ln2.hook_in: normalizing it gives the carried stream
        torch.testing.assert_close(blk.ln2(cache[f"blocks.{l}.ln2.hook_in"]), x)


def test_lns_scales_each_layer_by_inverse_sqrt_depth():
    model = build("lns", **SMALL).eval()
    seen = {}
    for l, blk in enumerate(model.blocks):
        blk.attn.register_forward_pre_hook(lambda m, a, l=l: seen.__setitem__(l, a[0].detach()))
    _, cache = model.run_with_cache(torch.randint(0, 97, (1, 6)))
    for l in range(SMALL["n_layers"]):
        normed = cache[f"blocks.{l}.ln1.hook_normalized"]
        ratio = seen[l] / normed
        torch.testing.assert_close(ratio, torch.full_like(ratio, 1 / math.sqrt(l + 1)), atol=0, rtol=1e-6)


@pytest.mark.parametrize("n_layers,alpha,k", [(4, 0.25, 1), (12, 0.25, 3), (8, 0.5, 4), (5, 0.25, 1), (90, 0.7, 63),
                                               (100, 0.29, 29), (3, 1 / 3, 1), (7, 0.3, 2)])
def test_mix_has_floor_alpha_l_post_blocks(n_layers, alpha, k):
    """k = ⌊αL⌋ worked out by hand (int(0.7 * 90) was 62: the float product is 62.99…)."""
    model = build("mix-ln", **{**SMALL, "n_layers": n_layers, "mix_alpha": alpha})
    placements = [b.placement for b in model.blocks]
    assert placements == ["post"] * k + ["pre"] * (n_layers - k)


def test_no_norm_has_no_norm_modules():
    model = build("no-norm", **SMALL)
    assert not [n for n, m in model.named_modules() if isinstance(m, interp.norms.Norm)]
    assert not [n for n in model.hook_dict if "ln" in n]


def test_crmsnorm_on_zero_mean_input_equals_layernorm():
    d = 15
    g = torch.Generator().manual_seed(3)
    full = torch.randn(4, 5, d + 1, generator=g, dtype=torch.float64)
    full = full - full.mean(-1, keepdim=True)  # zero-mean (d+1)-vectors
    ln = interp.norms.LayerNorm(d + 1, bias=False).double()
    crms = interp.norms.CRMSNorm(d).double()
    w = torch.randn(d + 1, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ln.w.copy_(w)
        crms.w.copy_(w[:d])
    assert torch.allclose(crms(full[..., :d]), ln(full)[..., :d], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind,buf", [("powernorm", "running_phi"), ("unified", "running_var")])
def test_batch_norms_use_batch_stats_in_train_and_running_stats_in_eval(kind, buf):
    d = 8
    norm = interp.norms.make_norm(kind, d, warmup_iters=100).double()
    if kind == "powernorm":
        norm.group_scaling = False  # isolate the channel statistic
    x = 3.0 * torch.randn(4, 6, d, dtype=torch.float64) + 1.0
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1, 4:] = False  # padding is excluded from the batch statistic
    x[1, 4:] = 1e6
    norm.token_mask = norm_mask = mask
    norm.train()
    y = norm(x)
    second_moment = x[norm_mask].pow(2).mean(0)  # brute force: over real tokens, per channel, no centring
    torch.testing.assert_close(y, x / torch.sqrt(second_moment + 1e-5))
    norm.eval()
    with torch.no_grad():
        getattr(norm, buf).fill_(4.0)
    torch.testing.assert_close(norm(x), x / math.sqrt(4.0 + 1e-5))


def test_dyt_alpha_initialised_to_half():
    model = build("dyt", **SMALL)
    alphas = [m.alpha.item() for m in model.modules() if isinstance(m, interp.norms.DyT)]
    assert len(alphas) == 2 * SMALL["n_layers"] + 1 and all(a == 0.5 for a in alphas)


def test_padding_and_mask_leave_real_tokens_unchanged():
    model = build("pre-ln", **SMALL).eval()
    a = torch.randint(0, 97, (1, 5))
    padded = torch.cat([a, torch.zeros(1, 3, dtype=torch.long)], 1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    torch.testing.assert_close(model(padded, attention_mask=mask)[:, :5], model(a), atol=1e-6, rtol=1e-5)
    left = torch.cat([torch.zeros(1, 3, dtype=torch.long), a], 1)  # left padding: positions shift with the mask
    torch.testing.assert_close(model(left, attention_mask=mask.flip(1))[:, 3:], model(a), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["pre-ln", "mdlm-ln"])
def test_all_real_mask_matches_the_masked_path(name):
    """An all-True attention mask takes SDPA's own causal (MDLM: full) attention; the same logits as the explicit
    [b, 1, t, t] mask of a batch with one padding position in front."""
    model = build(name, **SMALL).eval()
    a = torch.randint(0, 97, (2, 6))
    ones = torch.ones(2, 6, dtype=torch.bool)
    left = torch.cat([torch.zeros(2, 1, dtype=torch.long), a], 1)
    mask = torch.cat([torch.zeros(2, 1, dtype=torch.bool), ones], 1)
    torch.testing.assert_close(model(a, attention_mask=ones), model(left, attention_mask=mask)[:, 1:],
                               atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["peri-ln", "powernorm", "td-ln"])
def test_save_load_round_trip_gives_identical_logits(tmp_path, name):
    model = _randomize(build(name, **SMALL)).eval()
    tokens = torch.randint(0, 97, (2, 8))
    model.save(tmp_path / "ckpt")
    again = load(tmp_path / "ckpt")
    assert torch.equal(model(tokens), again(tokens))
    assert again.card.strategy == name and again.card.placement == model.card.placement


def test_a_float_cond_reaches_a_float64_model_unrounded():
    """cond=0.3 became a float32 tensor (t = 0.30000001), so a float64 TD-LN model was 1e-9 off the brute force
    at t = 0.3; it is now float64 (a float32 model is unchanged: each norm casts t to its dtype)."""
    model = _randomize(build("td-ln", **SMALL).double().eval())
    tokens = torch.randint(0, 97, (2, 8), generator=torch.Generator().manual_seed(3))
    ref = ref_forward(model, tokens, torch.full((2,), 0.3, dtype=torch.float64))
    torch.testing.assert_close(model(tokens, cond=0.3), ref, rtol=1e-13, atol=1e-13)


def test_a_checkpoint_of_the_earlier_scalar_gate_td_ln_loads(tmp_path):
    """TD-LN before per-channel gates stored gate_w, gate_b as [2] (slope as is); interp.zoo.load refused such a
    checkpoint ("tensor(s) of another shape") though the norm converts it. Reference: the old scalar-gate formula
    γ(t) = s·w0 + (1 − s)·w1, s = σ(w_old·t + b_old), written out here."""
    from safetensors.torch import load_file, save_file
    build("td-ln", **SMALL).save(tmp_path / "old")
    sd = load_file(tmp_path / "old" / "model.safetensors")
    for k in [k for k in sd if k.endswith("gate_w")]:
        sd[k], sd[k[:-1] + "b"] = torch.tensor([1.5, 0.7]), torch.tensor([0.2, -0.1])
    for k in [k for k in sd if k.endswith(("ln1.w1", "ln1.b1"))]:
        sd[k] = sd[k] + 0.5
    save_file(sd, str(tmp_path / "old" / "model.safetensors"), metadata={"format": "interp-zoo"})
    norm = load(tmp_path / "old").blocks[1].ln1
    t = torch.tensor([0.3, -1.2])
    p = {k: sd[f"blocks.1.ln1.{k}"] for k in ("w0", "w1", "b0", "b1")}
    sg, sb = torch.sigmoid(1.5 * t + 0.2)[:, None], torch.sigmoid(0.7 * t - 0.1)[:, None]
    gamma, beta = norm.params(t)
    torch.testing.assert_close(gamma, sg * p["w0"] + (1 - sg) * p["w1"])
    torch.testing.assert_close(beta, sb * p["b0"] + (1 - sb) * p["b1"])


def test_float64_checkpoint_loads_without_precision_loss(tmp_path):
    model = _randomize(build("pre-ln", **SMALL).double()).eval()
    model.save(tmp_path / "f64")
    again = load(tmp_path / "f64", dtype=torch.float64)
    tokens = torch.randint(0, 97, (1, 8))
    assert torch.equal(model(tokens), again(tokens))


def test_a_model_its_config_cannot_rebuild_is_refused_by_save(tmp_path):
    """A model in the middle of LN removal (ln2 = FakeLN, a config still saying layernorm) was saved, and then
    load() refused the checkpoint ('unexpected blocks.0.ln2.scale'): save refuses it instead, writing nothing."""
    from interp.surgery import remove_stage
    model = build("pre-ln", **SMALL).eval()
    remove_stage(model, "ln2", [torch.randint(0, 97, (2, 8))])
    state = torch.get_rng_state()
    with pytest.raises(ValueError, match=r"modules differ from what its config builds.*blocks\.0\.ln2\.scale") as e:
        model.save(tmp_path / "mid")
    assert "\n" not in str(e.value) and not (tmp_path / "mid").exists() and list(tmp_path.iterdir()) == []
    assert torch.equal(torch.get_rng_state(), state)  # the check draws no random numbers


def test_an_untied_unembedding_under_tie_embeddings_is_not_dropped_by_save(tmp_path):
    """save stores a tied unembedding once (as embed.weight): an unembedding that no longer equals the embedding
    while the config still says tie_embeddings was dropped, and the loaded model's logits differed. Refused now."""
    model = build("pre-ln", **SMALL).eval()
    model.unembed.weight = torch.nn.Parameter(torch.randn_like(model.embed.weight))
    with pytest.raises(ValueError, match="tie_embeddings.*unembed.weight") as e:
        model.save(tmp_path / "untied")
    assert "\n" not in str(e.value) and not (tmp_path / "untied").exists()
    tied = build("pre-ln", **SMALL).eval()
    tied.save(tmp_path / "tied")  # a tied model still saves, and loads with its own logits
    tokens = torch.randint(0, 97, (1, 6))
    assert torch.equal(load(tmp_path / "tied")(tokens), tied(tokens))


def test_load_takes_a_dtype_by_name_as_build_does(tmp_path):
    """build(dtype="bf16") worked; load(dtype="bf16") failed with "Invalid device string: 'bf16'"."""
    model = _randomize(build("pre-ln", **SMALL)).eval()
    model.save(tmp_path / "ck")
    tokens = torch.randint(0, 97, (1, 6))
    by_name, by_dtype = load(tmp_path / "ck", dtype="bf16"), load(tmp_path / "ck", dtype=torch.bfloat16)
    assert next(by_name.parameters()).dtype == torch.bfloat16
    assert torch.equal(by_name(tokens), by_dtype(tokens))
    with pytest.raises(ValueError, match="unsupported dtype 'int8'"):
        load(tmp_path / "ck", dtype="int8")


def test_corrupt_or_truncated_checkpoint_raises_clear_error(tmp_path):
    build("pre-ln", **SMALL).save(tmp_path / "ok")
    w = tmp_path / "ok" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:200])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load(tmp_path / "ok")
    with pytest.raises(FileNotFoundError, match="not a zoo checkpoint"):
        load(tmp_path / "missing")


def test_a_damaged_step_checkpoint_is_named_in_the_error(tmp_path):
    """load(step=N) reads checkpoints/step-N.safetensors: a truncated or foreign one is named, not model.safetensors."""
    model = build("pre-ln", **SMALL)
    model.save(tmp_path / "ck")
    (tmp_path / "ck" / "checkpoints").mkdir()
    step = tmp_path / "ck" / "checkpoints" / "step-000005.safetensors"
    step.write_bytes((tmp_path / "ck" / "model.safetensors").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"step-000005\.safetensors is corrupt or truncated"):
        load(tmp_path / "ck", step=5)
    from safetensors.torch import save_file
    save_file({"embed.weight": model.embed.weight.detach()}, str(step))
    with pytest.raises(ValueError, match=r"step-000005\.safetensors does not match its config: missing"):
        load(tmp_path / "ck", step=5)


def test_tokens_outside_the_vocabulary_or_of_another_shape_raise_one_line():
    """An id ≥ d_vocab or < 0 said 'index out of range in self', a 1-D batch 'not enough values to unpack'."""
    model = build("pre-ln", **SMALL).eval()
    for bad in (torch.tensor([[3, 97]]), torch.tensor([[-1, 3]])):
        with pytest.raises(ValueError, match=r"token ids must lie in \[0, 96\].*vocabulary of 97"):
            model(bad)
    with pytest.raises(ValueError, match=r"tokens must be a \[batch, positions\] tensor of integer ids; got \(4,\)"):
        model(torch.tensor([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="integer ids; got .*float"):
        model(torch.ones(1, 4))


def test_an_attention_mask_of_another_shape_than_the_tokens_is_refused():
    """A [2, 5] mask for [2, 6] tokens was ignored when all True and failed in the position embedding otherwise."""
    model = build("pre-ln", **SMALL).eval()
    tokens = torch.randint(0, 97, (2, 6))
    for mask in (torch.ones(2, 5, dtype=torch.bool), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]),
                 torch.ones(6, dtype=torch.bool)):
        with pytest.raises(ValueError, match=r"attention_mask must have the tokens' shape \(2, 6\); got"):
            model(tokens, attention_mask=mask)


def test_a_transformers_folder_is_named_foreign_not_told_to_re_save(tmp_path):
    """A transformers model folder (config.json without the zoo's 'config' object) said "not a valid zoo config
    ('config'); re-save the model": it now says the folder is not a zoo checkpoint and where such folders load."""
    build("pre-ln", **SMALL).save(tmp_path / "hf")
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    with pytest.raises(ValueError, match=r"not a zoo checkpoint.*no 'config' object.*interp\.load_model") as e:
        load(tmp_path / "hf")
    assert "re-save" not in str(e.value) and "\n" not in str(e.value)


def test_unknown_names_raise_naming_the_valid_choices():
    with pytest.raises(ValueError, match="unknown strategy 'pre-foo'.*pre-ln"):
        build("pre-foo")
    with pytest.raises(ValueError, match="unknown norm kind 'batchnorm'.*rmsnorm"):
        interp.zoo.ZooConfig(norm="batchnorm")
    with pytest.raises(ValueError, match="unknown placement 'middle'.*peri"):
        interp.zoo.ZooConfig(placement="middle")


def test_norm_kwargs_that_the_norm_does_not_take_are_refused_in_one_line(tmp_path):
    """A misspelt norm option (or eps, which is norm_eps) is a config error naming the valid options, also when a
    checkpoint's config.json holds it; valid options still build."""
    with pytest.raises(ValueError, match=r"norm_kwargs' has \['warmup'\].*'powernorm'.*warmup_iters") as e:
        interp.zoo.ZooConfig(norm="powernorm", norm_kwargs={"warmup": 10})
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"norm_kwargs' has \['eps'\].*norm_eps"):
        build("pre-ln", **SMALL, norm_kwargs={"eps": 1e-6})
    assert build("dyt", **SMALL, norm_kwargs={"alpha_init": 0.2}).blocks[0].ln1.alpha.item() == pytest.approx(0.2)
    build("pre-ln", **SMALL).save(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    meta["config"]["norm_kwargs"] = {"foo": 1}
    (tmp_path / "ck" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="is not a valid zoo config.*norm_kwargs"):
        load(tmp_path / "ck")


def test_every_norm_kind_the_config_accepts_builds_and_fakeln_is_refused():
    """ZooConfig(norm="fakeln") passed (its error even listed fakeln) and the model then crashed with a TypeError:
    FakeLN is LN removal's frozen norm, made by interp.surgery. Every kind the config accepts builds a model."""
    with pytest.raises(ValueError, match="'fakeln'.*interp.surgery") as e:
        interp.zoo.ZooConfig(norm="fakeln")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown norm kind") as e:
        interp.zoo.ZooConfig(norm="groupnorm")
    kinds = str(e.value).split("choose one of: ")[1].split(", ")
    assert "fakeln" not in kinds and {"layernorm", "powernorm", "adaln", "none"} <= set(kinds)
    for kind in kinds:
        extra = (dict(conditioned=True, t_embed="adaln") if kind == "adaln"
                 else dict(placement="none", final_norm=False) if kind == "none" else {})
        model = interp.zoo.ZooModel(interp.zoo.ZooConfig(norm=kind, **SMALL, **extra))
        assert torch.isfinite(model(torch.randint(0, 97, (1, 5)))).all(), kind


def test_run_with_hooks_edits_the_stream_and_leaves_no_hooks_behind():
    model = build("pre-ln", **SMALL).eval()
    tokens = torch.randint(0, 97, (1, 6))
    clean = model(tokens)
    zero = lambda x, hook: torch.zeros_like(x)
    edited = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_attn_out", zero)])
    assert not torch.allclose(clean, edited)
    # the hooks() context gives the same edit and removes it on exit
    with model.hooks(fwd_hooks=[("blocks.1.hook_attn_out", zero)]):
        torch.testing.assert_close(model(tokens), edited)
    torch.testing.assert_close(model(tokens), clean)
    assert all(not hp._forward_hooks for hp in model.hook_dict.values())


def test_cli_lists_every_strategy_with_its_placement(capsys):
    from interp.cli import main
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    for name, spec in STRATEGIES.items():
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        assert spec["placement"] in line


@pytest.mark.parametrize("strategy", ["powernorm", "unified-norm"])
def test_apply_final_norm_leaves_the_running_statistics_alone(strategy):
    """A lens call on a batch-statistic model in train mode used to update the final norm's running statistics
    (and step counter), so analysing a model changed it. The value is still the train-mode norm of x."""
    import copy
    model = build(strategy, seed=0, n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=97).train()
    x = torch.randn(3, 7, 32, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.ln_final.named_buffers()}
    want = copy.deepcopy(model.ln_final)(x)
    got = model.apply_final_norm(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    for k, v in model.ln_final.named_buffers():
        assert torch.equal(v, before[k]), k
