"""Every covered transformers family, built offline from a tiny random config, checked against transformers itself.

One row per family: what the family is (placement, norms) is stated here, independently of the name table, and
five checks run on each: the hooked stream equals transformers' output_hidden_states exactly; each norm's
hook_scale equals the scale recomputed from its hook_in (and hook_normalized is the module's output, after the
gain); hook_attn_out + hook_mlp_out is the block's change; the unobserved forward equals the plain transformers
forward; interp.collect and sublayer DLA run, and the DLA rows sum to the logit.
"""
from __future__ import annotations

import copy

import pytest
import torch

import interp
from interp.models.families import covered, wrap

V = 96
BASE = {"vocab_size": V, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
            "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 64, "pad_token_id": 0, "bos_token_id": 1,
            "eos_token_id": 2}
PRE2, PARALLEL1 = {"ln1", "ln2"}, {"ln1"}
QK = {"q_norm", "k_norm"}
PERI = {"ln1", "ln1_post", "ln2", "ln2_post"}

# model_type: (config overrides, placement, block norms (site-map names), attention module path, q_proj name)
FAMILIES = {
    "llama": ({}, "pre", PRE2, "model.layers.{l}.self_attn"),
    "mistral": ({}, "pre", PRE2, "model.layers.{l}.self_attn"),
    "qwen2": ({}, "pre", PRE2, "model.layers.{l}.self_attn"),
    "qwen3": ({}, "pre", PRE2 | QK, "model.layers.{l}.self_attn"),
    "smollm3": ({}, "pre", PRE2, "model.layers.{l}.self_attn"),
    "phi3": ({}, "pre", PRE2, "model.layers.{l}.self_attn"),
    "granite": ({"residual_multiplier": 0.5, "embedding_multiplier": 3.0, "logits_scaling": 4.0}, "pre", PRE2,
                "model.layers.{l}.self_attn"),
    "gemma": ({}, "pre", PRE2, "model.layers.{l}.self_attn"),
    "gemma2": ({"final_logit_softcapping": 0.1}, "peri", PERI, "model.layers.{l}.self_attn"),
    "gemma3_text": ({}, "peri", PERI | QK, "model.layers.{l}.self_attn"),
    "olmo": ({}, "pre", PRE2, "model.layers.{l}.self_attn"),
    "olmo2": ({}, "reordered", {"ln1_post", "ln2_post"} | QK, "model.layers.{l}.self_attn"),
    "olmo3": ({}, "reordered", {"ln1_post", "ln2_post"} | QK, "model.layers.{l}.self_attn"),
    "gpt2": ({}, "pre", PRE2, "transformer.h.{l}.attn"),
    "starcoder2": ({}, "pre", PRE2, "model.layers.{l}.self_attn"),
    "stablelm": ({"qk_layernorm": True, "use_parallel_residual": False}, "pre", PRE2 | QK, "model.layers.{l}.self_attn"),
    "gpt_neox": ({"use_parallel_residual": True}, "parallel", PRE2, "gpt_neox.layers.{l}.attention"),
    "gptj": ({"rotary_dim": 4}, "parallel", PARALLEL1, "transformer.h.{l}.attn"),
    "phi": ({"partial_rotary_factor": 0.5, "qk_layernorm": True}, "parallel", PARALLEL1 | QK,
            "model.layers.{l}.self_attn"),
    "cohere": ({"use_qk_norm": True, "logit_scale": 0.5}, "parallel", PARALLEL1 | QK, "model.layers.{l}.self_attn"),
    "bert": ({}, "post", PRE2, None),
    "roberta": ({}, "post", PRE2, None),
    "mpnet": ({}, "post", PRE2, None),
    "distilbert": ({"hidden_dim": 64}, "post", PRE2, None),
}
ENCODERS = {"bert", "roberta", "mpnet", "distilbert"}


def build(model_type: str):
    """A tiny random transformers model of the family (norm gains and biases randomized too), and a plain copy."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
    extra = FAMILIES[model_type][0]
    cfg = AutoConfig.for_model(model_type, **BASE, **extra)
    torch.manual_seed(0)
    loader = AutoModel if model_type in ENCODERS else AutoModelForCausalLM
    try:
        hf = loader.from_config(cfg, attn_implementation="sdpa")
    except ValueError:  # no SDPA path in this family (Gemma-2, MPNet)
        hf = loader.from_config(cfg, attn_implementation="eager")
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name.lower() or ".ln" in name:  # non-trivial gains and biases, so "after the gain" is tested
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    hf.eval()
    return hf, copy.deepcopy(hf)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    t = request.param
    hf, plain = build(t)
    model = wrap(hf, name=f"tiny-{t}")
    torch.manual_seed(1)
    tokens = torch.randint(3, V, (2, 9))
    with torch.no_grad():
        out, cache = model.run_with_cache(tokens)
    return t, model, plain, tokens, out, cache


def brute_scale(x: torch.Tensor, centre: bool, eps: float) -> torch.Tensor:
    x = x.double()
    if centre:
        x = x - x.mean(-1, keepdim=True)
    return (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()


def module_eps(m) -> float:
    if hasattr(m, "norms"):  # one LayerNorm per head
        m = m.norms[0]
    return float(getattr(m, "eps", getattr(m, "variance_epsilon", 1e-5)))  # OLMo's LayerNorm: fixed 1e-5


def test_card_and_sites(family):
    t, model, _, _, _, cache = family
    _, placement, norms, _ = FAMILIES[t]
    assert model.card.placement == placement and model.card.family in (t, t.replace("_text", ""))
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.placement) == (2, 32, placement)
    for ls in model.sites.layers:
        assert set(ls.norm_inputs) == norms == set(ls.norm_scales), (t, ls.norm_inputs)
        assert ls.placement == placement
    for name in model.sites.all_hook_names():
        assert name in model.hook_dict and name in cache, name


def test_stream_equals_output_hidden_states(family):
    t, model, plain, tokens, _, cache = family
    with torch.no_grad():
        H = plain(input_ids=tokens, output_hidden_states=True).hidden_states
    stream = model.sites.stream()
    assert len(H) == len(stream)
    for l in range(len(stream) - 1):
        assert torch.equal(cache[stream[l]], H[l]), (t, l)
    if t in ENCODERS:  # no final norm: the last hidden state is the last block's output
        assert torch.equal(cache[stream[-1]], H[-1])
    else:  # transformers' last hidden state is the final norm's output
        assert torch.equal(cache["ln_final.hook_normalized"], H[-1])
        assert torch.equal(cache["ln_final.hook_in"], cache[stream[-1]])


def test_norm_scales_from_inputs(family):
    """hook_scale = sqrt(var + eps) (LayerNorm) or sqrt(mean x² + eps) (RMSNorm), brute force from hook_in with
    the module's own eps; hook_normalized = the module applied to hook_in (after the gain); where each norm reads."""
    t, model, _, _, _, cache = family
    names = [(ls, n) for ls in model.sites.layers for n in ls.norm_inputs]
    if model.sites.final_norm_input:
        names.append((None, "final"))
    for ls, n in names:
        hin = ls.norm_inputs[n] if ls else model.sites.final_norm_input
        path = hin.rsplit(".", 1)[0]
        hooks = model.get_submodule(path)
        mod = hooks.norm
        x = cache[hin]
        centre = hooks.kind == "layernorm"
        assert torch.allclose(cache[f"{path}.hook_scale"].double(), brute_scale(x, centre, module_eps(mod)),
                              rtol=1e-5), (t, path)
        xin = x.transpose(1, 2) if hooks.heads_first else x
        y = mod(xin)
        y = y.transpose(1, 2) if hooks.heads_first else y
        assert torch.allclose(cache[f"{path}.hook_normalized"], y, atol=1e-6), (t, path)
        gain_free = (x - x.mean(-1, keepdim=True) if centre else x) / cache[f"{path}.hook_scale"]
        per_head = list(mod.norms) if hasattr(mod, "norms") else None  # StableLM: one LayerNorm per head
        w = torch.stack([m.weight for m in per_head]) if per_head else getattr(mod, "weight", None)
        b = torch.stack([m.bias for m in per_head]) if per_head and per_head[0].bias is not None else (
            None if per_head else getattr(mod, "bias", None))
        if w is not None:  # after the gain, as documented (QK-norms too: [d_head] or [heads, d_head] gains)
            g = 1 + w if hooks.kind == "rmsnorm1p" else w
            assert torch.allclose(cache[f"{path}.hook_normalized"], gain_free * g + (0 if b is None else b),
                                  atol=1e-5), (t, path)


def test_norms_read_the_documented_tensors(family):
    """Each norm's input is the tensor its placement says (independently of the adapter's wiring)."""
    t, model, _, _, _, c = family
    _, placement, norms, attn_path = FAMILIES[t]
    for l, ls in enumerate(model.sites.layers):
        p = f"blocks.{l}"
        pre, mid = c[ls.resid_pre], c[f"{p}.hook_resid_mid"]
        if placement in ("pre", "peri", "parallel"):
            assert torch.equal(c[f"{p}.ln1.hook_in"], pre)
        if "ln2" in norms and placement in ("pre", "peri"):
            assert torch.allclose(c[f"{p}.ln2.hook_in"], mid, atol=1e-6)
        if "ln2" in norms and placement == "parallel":
            assert torch.equal(c[f"{p}.ln2.hook_in"], pre)
        if placement in ("peri", "reordered"):
            assert torch.equal(c[f"{p}.ln1_post.hook_in"], c[f"{p}.attn.hook_out"])
            assert torch.equal(c[f"{p}.ln2_post.hook_in"], c[f"{p}.mlp.hook_out"])
            assert torch.equal(c[f"{p}.ln1_post.hook_normalized"], c[f"{p}.hook_attn_out"])
        if placement == "post":
            assert torch.allclose(c[f"{p}.ln1.hook_in"], pre + c[f"{p}.hook_attn_out"], atol=1e-5)
            assert torch.equal(c[f"{p}.ln1.hook_normalized"], mid)
        if "q_norm" in norms:  # the query norm reads the query projection of the attention's input
            attn = model.hf.get_submodule(attn_path.format(l=l))
            a_in = pre if placement == "reordered" else c[f"{p}.ln1.hook_normalized"]
            q = attn.q_proj(a_in)
            hq = c[f"{p}.attn.q_norm.hook_in"]
            assert torch.allclose(hq, q.view(hq.shape), atol=1e-6), (t, l)
            assert c[f"{p}.attn.q_norm.hook_scale"].shape == (*hq.shape[:-1], 1)


def test_sublayer_deltas_sum_to_block_change(family):
    t, model, _, _, _, c = family
    for l, ls in enumerate(model.sites.layers):
        a, m = c[ls.deltas["attn"]], c[ls.deltas["mlp"]]
        if t in ENCODERS:  # Post-LN: the deltas sum into each norm's input
            assert torch.allclose(c[ls.norm_inputs["ln2"]], c[f"blocks.{l}.hook_resid_mid"] + m, atol=1e-5)
        else:
            assert torch.allclose(c[ls.resid_post] - c[ls.resid_pre], a + m, atol=1e-5), (t, l)


def test_unobserved_forward_equals_plain(family):
    t, model, plain, tokens, out, _ = family
    with torch.no_grad():
        ours = model(tokens)
        ref = plain(input_ids=tokens)
    ref = ref.last_hidden_state if t in ENCODERS else ref.logits
    assert torch.equal(ours, ref), t
    assert torch.equal(out, ref), t  # observing every hook changes nothing either


def test_collect_and_dla(family):
    t, model, _, tokens, out, cache = family
    res = interp.collect(model, tokens, progress=False)
    scales, resid = res["norm_scales"], res["residual"]
    norms = FAMILIES[t][2]
    assert set(scales[scales.layer == 0].norm) == norms
    assert {f"norm_in:{n}" for n in norms} <= set(resid.site)
    assert (scales["n"] > 0).all() and resid["var"].notna().all()
    ls, dims = model.sites.layers[0], res["residual_dims"]
    for n, hook in ls.norm_inputs.items():  # pooled over tokens × values, brute force from the cached input
        x = cache[hook].double().reshape(-1)
        row = resid[(resid.layer == 0) & (resid.site == f"norm_in:{n}")].iloc[0]
        assert abs(row["var"] - x.var(unbiased=False).item()) <= 1e-6 * max(1.0, row["var"]), (t, n)
        width = cache[hook][0, 0].numel()
        assert len(dims[(dims.layer == 0) & (dims.site == f"norm_in:{n}")]) == width, (t, n)
    if t in ENCODERS:
        with pytest.raises(ValueError, match="encoder"):
            interp.attribution.dla(model, tokens, target=5)
        return
    df = interp.attribution.dla(model, tokens, target=[5, 7], pos=-1)
    logit = out[:, -1].double().gather(1, torch.tensor([[5], [7]]))[:, 0]
    cap = model.logit_softcap
    if cap:  # DLA attributes the logit before Gemma-2's soft cap
        logit = cap * torch.atanh(logit / cap)
    sums = df.groupby("batch")["dla"].sum().to_numpy()
    assert torch.allclose(torch.tensor(sums), logit, atol=1e-4, rtol=1e-4), (t, sums, logit)
    assert torch.allclose(torch.tensor(df.groupby("batch")["metric"].first().to_numpy()), logit, atol=1e-4)


# families with a learned position embedding: the module transformers adds to the token embedding
POS_EMBED = {"gpt2": "transformer.wpe", "bert": "embeddings.position_embeddings",
             "roberta": "embeddings.position_embeddings", "mpnet": "embeddings.position_embeddings",
             "distilbert": "embeddings.position_embeddings"}


def test_pos_embed_is_batch_by_position(family):
    """hook_pos_embed is [b, t, d] as documented (GPT-2, BERT, DistilBERT look up one row of positions for the
    whole batch): against the plain transformers model's own position-embedding output, broadcast over the batch
    as transformers adds it. Rotary families have no hook_pos_embed."""
    t, model, plain, tokens, _, cache = family
    if t not in POS_EMBED:
        assert "hook_pos_embed" not in model.hook_dict
        return
    seen = []
    handle = plain.get_submodule(POS_EMBED[t]).register_forward_hook(lambda m, a, o: seen.append(o))
    try:
        with torch.no_grad():
            plain(input_ids=tokens)
    finally:
        handle.remove()
    assert cache["hook_pos_embed"].shape == (*tokens.shape, 32)
    assert torch.equal(cache["hook_pos_embed"], seen[0].expand(*tokens.shape, 32)), t


def test_family_list():
    """Every covered family has a row here (and the other way round); prints the list."""
    fams = covered()
    print(f"\n{len(fams)} transformers families: {', '.join(fams)}")
    assert sorted(FAMILIES) == fams
    assert len(fams) >= 20


def test_context_length_is_the_longest_input_transformers_takes(family):
    """Families with learned positions: model.cfg.n_ctx tokens run, one more fails in transformers itself (the
    reference). RoBERTa and MPNet number positions from pad_token_id + 1, so their n_ctx is below
    max_position_embeddings; collection splits a longer sequence into windows of n_ctx (it raised IndexError)."""
    t, model, plain, _, _, _ = family
    if t not in POS_EMBED:
        return
    n = model.cfg.n_ctx
    long = torch.randint(3, V, (1, n + 1))
    with torch.no_grad():
        plain(input_ids=long[:, :n])
        with pytest.raises((IndexError, RuntimeError)):  # a position row (or BERT's token-type buffer) too few
            plain(input_ids=long)
        assert model(long[:, :n]).shape[1] == n
    res = interp.collect(model, torch.randint(3, V, (1, 2 * n + 5)), progress=False)
    assert (res["norm_scales"]["n"] > 0).all()


def test_deepcopy_has_its_own_hook_points(family):
    """copy.deepcopy of a hooked model: the copy caches every hook point of its own, gives the original's output,
    ignores hooks on the original and obeys its own (its PyTorch hooks fired the original's points before, so its
    cache missed most sites and an ablation on the original changed the copy)."""
    t, model, _, tokens, out, cache = family
    twin = copy.deepcopy(model)
    site = model.sites.layers[0].resid_post
    with torch.no_grad():
        twin_out, twin_cache = twin.run_with_cache(tokens)
        assert set(twin_cache.keys()) == set(cache.keys()) and torch.equal(twin_out, out), t
        model.add_hook(site, lambda x, hook: x * 0)
        try:
            assert torch.equal(twin(tokens), out), t
        finally:
            model.reset_hooks()
        ablated = twin.run_with_hooks(tokens, fwd_hooks=[(site, lambda x, hook: x * 0)])
    assert not torch.equal(ablated, out) and twin.card == model.card, t


def test_listing_the_families_prints_nothing():
    """available_models() printed two transformers warnings in plain Python ('bos_token_id must be None or an
    integer within the vocabulary ... got 50256'): a default config of a covered family warns about its own token
    ids while family_rows reads it. Reference: the warning transformers gives for that config when asked at its
    default verbosity (so the test fails if the quirk is gone), against an empty stderr from the listing."""
    import subprocess
    import sys
    code = ("from transformers import AutoConfig; from interp.models.families import covered\n"
            "[AutoConfig.for_model(t) for t in covered()]")
    raw = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if "token_id" not in raw.stderr:
        pytest.skip("this transformers' default configs warn about nothing")
    listing = subprocess.run([sys.executable, "-c", "import interp; interp.available_models()"], capture_output=True,
                             text=True, timeout=300)
    assert listing.returncode == 0 and listing.stderr == "", listing.stderr
