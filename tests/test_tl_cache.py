"""TransformerLens-native caches: `accumulated_resid` / `decompose_resid` / `apply_ln_to_stack` / `logit_attrs` against
interp's own DLA (an independent computation: float64 replay of the residual path) and the model's own logits;
refusals where TransformerLens' assumptions break; `to_tokens` / `to_str_tokens` against each tokenizer itself."""
import pytest
import torch
from transformer_lens import ActivationCache

import interp
from interp.attribution import dla
from interp.data import DATA_DIR
from interp.tl import UnsupportedByTransformerLens

from gpt2_fixtures import TEXT, write_tokenizer  # noqa: E402

TINY = dict(n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=50)
TEXTS = ["In the beginning God created the heaven and the earth.", "And God said, Let there be light"]


def tl_dla(model, tokens, mask=None, target=None):
    """TransformerLens' recipe: decompose the final stream at the last position, attribute to `target`."""
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, attention_mask=mask) if mask is not None else \
            model.run_with_cache(tokens)
        assert isinstance(cache, ActivationCache)
        stack, labels = cache.decompose_resid(pos_slice=-1, return_labels=True)
        attrs = cache.logit_attrs(stack, target, pos_slice=-1)  # [components, batch]
    return logits, cache, attrs, labels


def zoo_rows(d, j, n_layers, n_heads):
    """interp's zoo DLA rows for sequence j, summed to TransformerLens' sublayer components."""
    g = d[d.batch == j].set_index("component")["dla"]
    rows = [g["embed"], g["pos_embed"]]
    for l in range(n_layers):
        rows += [sum(g[f"L{l}.H{h}"] for h in range(n_heads)) + g.get(f"L{l}.attn_bias", 0.0), g[f"L{l}.mlp"]]
    return torch.tensor(rows, dtype=torch.float64)


def check_against_dla(model, d, logits, attrs, tgt, rows_of):
    for j in range(len(tgt)):
        logit = float(logits[j, -1, tgt[j]])
        ref = rows_of(j)
        assert (attrs[:, j].double() - ref).abs().max() <= 1e-4 * abs(logit)
        # the rows plus the norm bias (and b_U) are the logit: no folding needed
        g = d[d.batch == j]
        bias = g[g["direct_effect"].isna()]["dla"].sum()
        assert abs(float(attrs[:, j].sum()) + bias - logit) <= 1e-4 * max(abs(logit), 1.0)


@pytest.fixture(scope="module")
def zoo_pre_ln():
    d = DATA_DIR / "zoo" / "pre-ln"
    if not (d / "model.safetensors").is_file():
        pytest.fail("data/zoo/pre-ln is missing: the zoo ships with the repository")
    return interp.zoo.load(d).eval()


def test_zoo_pre_ln_logit_attrs_equal_interp_dla(zoo_pre_ln):
    m = zoo_pre_ln
    tokens = m.to_tokens(TEXTS)[:, :24]
    with torch.no_grad():
        tgt = m(tokens)[:, -1].argmax(-1)
    logits, cache, attrs, labels = tl_dla(m, tokens, target=tgt)
    assert labels[:4] == ["embed", "pos_embed", "0_attn_out", "0_mlp_out"]
    d = dla(m, tokens, target=tgt, pos=-1)
    check_against_dla(m, d, logits, attrs, tgt, lambda j: zoo_rows(d, j, m.cfg.n_layers, m.cfg.n_heads))


@pytest.mark.parametrize("strategy", ["pre-ln", "pre-rmsnorm", "pre-crmsnorm", "lns", "no-norm"])
def test_tiny_zoo_every_additive_placement(strategy):
    torch.manual_seed(0)
    m = interp.zoo.build(strategy, **TINY).eval()
    with torch.no_grad():  # non-trivial gains and biases, so a missing gain or a leaked bias shows
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    tokens, tgt = torch.randint(0, 50, (3, 12)), torch.tensor([1, 7, 30])
    logits, cache, attrs, _ = tl_dla(m, tokens, target=tgt)
    d = dla(m, tokens, target=tgt, pos=-1)
    check_against_dla(m, d, logits, attrs, tgt, lambda j: zoo_rows(d, j, 3, 4))
    # logit lens recipe: the last accumulated stream through the final norm gives the logits
    acc = cache.accumulated_resid(apply_ln=True, pos_slice=-1)
    b_U = 0 if m.b_U is None else m.b_U
    assert torch.allclose(acc[-1] @ m.W_U + b_U, logits[:, -1], atol=1e-5)


def test_apply_ln_to_stack_at_a_block_is_the_normalized_input_minus_bias():
    torch.manual_seed(1)
    m = interp.zoo.build("lns", **TINY).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    _, cache = m.run_with_cache(torch.randint(0, 50, (2, 10)))
    for mlp_input, norm in ((False, "ln1"), (True, "ln2")):
        stack = cache.decompose_resid(layer=2, mlp_input=mlp_input)
        out = cache.apply_ln_to_stack(stack, layer=2, mlp_input=mlp_input).sum(0)
        ln = getattr(m.blocks[2], norm)
        ref = (cache[f"blocks.2.{norm}.hook_normalized"] - ln.b) * m.blocks[2].depth_scale  # what F reads
        assert torch.allclose(out, ref, atol=1e-5)


def test_components_that_do_not_add_up_are_refused():
    m = interp.zoo.build("pre-ln", **TINY).eval()
    _, cache = m.run_with_cache(torch.randint(0, 50, (2, 10)))
    cache.cache_dict["blocks.1.hook_mlp_out"] = 2 * cache.cache_dict["blocks.1.hook_mlp_out"]
    with pytest.raises(UnsupportedByTransformerLens, match="do not add up"):
        cache.decompose_resid()


@pytest.mark.parametrize("strategy,reason", [
    ("post-ln", "Post-LN"), ("mix-ln", "Post-LN"), ("powernorm", "second moment over the batch"),
    ("unified-norm", "second moment over the batch"), ("dyt", "not linear"), ("td-ln", "cond")])
def test_refused_where_transformer_lens_assumptions_break(strategy, reason):
    m = interp.zoo.build(strategy, **{**TINY, "n_layers": 4}).eval()  # mix-ln: block 0 is Post-LN
    _, cache = m.run_with_cache(torch.randint(0, 50, (2, 10)))
    with pytest.raises(UnsupportedByTransformerLens, match=reason):
        stack = cache.decompose_resid(pos_slice=-1)
        cache.logit_attrs(stack, 3, pos_slice=-1)
    if strategy in ("post-ln", "mix-ln"):
        with pytest.raises(UnsupportedByTransformerLens, match="Post-LN"):
            cache.apply_ln_to_stack(cache.accumulated_resid(layer=1), layer=0)
        assert cache.accumulated_resid().shape[0] == 4 + 1  # reading the stream is fine


def test_per_head_helpers_point_to_interp_dla():
    m = interp.zoo.build("peri-ln", **TINY).eval()
    _, cache = m.run_with_cache(torch.randint(0, 50, (1, 6)))
    assert cache.decompose_resid().shape[0] == 2 + 2 * TINY["n_layers"]  # Peri-LN: post-norm outputs add up
    with pytest.raises(UnsupportedByTransformerLens, match="interp.attribution.dla"):
        cache.stack_head_results()


def test_zoo_tokens(zoo_pre_ln):
    from tokenizers import Tokenizer
    m = zoo_pre_ln
    tk = Tokenizer.from_file(str(DATA_DIR / "zoo" / "pre-ln" / "tokenizer.json"))
    ids = tk.encode(TEXTS[0], add_special_tokens=False).ids
    tokens = m.to_tokens(TEXTS[0])
    assert tokens.tolist() == [[m.tokenizer.bos_id] + ids]
    assert m.to_tokens(TEXTS[0], prepend_bos=False).tolist() == [ids]
    strs = m.to_str_tokens(TEXTS[0])
    assert len(strs) == len(ids) + 1 and "".join(strs[1:]) == TEXTS[0]
    batch = m.to_tokens(TEXTS)
    assert batch.shape[0] == 2 and batch[1, -1] == m.tokenizer.pad_id  # right-padded
    out_text, _ = m.run_with_cache(TEXTS[1])  # text is tokenized as to_tokens does (the cached forward computes
    assert torch.equal(out_text, m.run_with_cache(m.to_tokens(TEXTS[1]))[0])  # attention unfused: compare like with like)
    with pytest.raises(ValueError, match="not a single token"):
        m.to_single_token(TEXTS[0])
    with pytest.raises(ValueError, match="no tokenizer"):
        interp.zoo.build("pre-ln", **TINY).to_tokens("hi")


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel
    d = tmp_path_factory.mktemp("gpt2") / "tiny-gpt2"
    vocab = write_tokenizer(d)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64, vocab_size=vocab)).eval()
    with torch.no_grad():
        for ln in [b.ln_1 for b in hf.transformer.h] + [b.ln_2 for b in hf.transformer.h] + [hf.transformer.ln_f]:
            ln.weight.uniform_(0.5, 1.5), ln.bias.normal_(0, 0.1)
    hf.save_pretrained(d)
    return d


def test_gpt2_layernorm_with_bias_and_tokens(tiny_gpt2):
    from transformers import AutoTokenizer
    m = interp.load_model(tiny_gpt2)
    hf_tok = AutoTokenizer.from_pretrained(str(tiny_gpt2))
    tokens = m.to_tokens(TEXT)
    assert tokens.tolist() == [[hf_tok.eos_token_id] + hf_tok(TEXT)["input_ids"]]  # GPT-2 starts with <|endoftext|>
    assert "".join(m.to_str_tokens(TEXT)[1:]) == TEXT
    tgt = torch.tensor([5])
    logits, _, attrs, labels = tl_dla(m, tokens[:, :20], target=tgt)
    assert labels[:2] == ["embed", "pos_embed"]
    d = dla(m, tokens[:, :20], target=tgt, pos=-1)
    rows = d[d.direct_effect.notna()]["dla"].to_numpy()  # embed (= embed + pos_embed), L0.attn, L0.mlp, ...
    tl = torch.cat([attrs[:2].sum(0), attrs[2:, 0]]).double()
    logit = float(logits[0, -1, 5])
    assert (tl - torch.tensor(rows)).abs().max() <= 1e-4 * abs(logit)


@pytest.mark.slow
def test_smollm2_logit_attrs_equal_interp_dla():
    m = interp.load_model("smollm2-135m")
    tokens = m.to_tokens(["The capital of France is"])
    assert tokens[0, 0] != m.tokenizer.bos_id  # SmolLM2 is used without BOS
    assert m.to_str_tokens(tokens[0])[-1] == " is"
    prompts = [("The capital of France is", " Paris"), ("Water boils at a temperature of", None),
               ("In the beginning God created the", None)]
    for text, target in prompts:  # one sequence at a time: the last position is a real token in each
        tokens = m.to_tokens([text])
        with torch.no_grad():
            top = int(m(tokens)[0, -1].argmax())
        tgt = torch.tensor([m.to_single_token(target) if target else top])
        logits, cache, attrs, labels = tl_dla(m, tokens, target=tgt)
        assert labels[:3] == ["embed", "0_attn_out", "0_mlp_out"]
        assert len(labels) == 1 + 2 * m.cfg.n_layers
        d = dla(m, tokens, target=tgt, pos=-1)
        rows = torch.tensor(d[d.direct_effect.notna()]["dla"].to_numpy())  # embed, L0.attn, L0.mlp, ...
        logit = float(logits[0, -1, tgt[0]])
        assert (attrs[:, 0].double() - rows).abs().max() <= 1e-4 * abs(logit), text
        assert abs(float(attrs[:, 0].sum()) - logit) <= 1e-4 * abs(logit), text  # RMSNorm: no bias, no b_U
        # accumulated_resid: the stream after the last block, through the final norm, gives the logits
        acc = cache.accumulated_resid(apply_ln=True, pos_slice=-1)
        assert acc.shape[0] == m.cfg.n_layers + 1
        assert torch.allclose(acc[-1] @ m.W_U, logits[:, -1], atol=1e-4 * logits[:, -1].abs().max().item())


@pytest.mark.slow
def test_gemma3_peri_sublayers_and_tokens():
    m = interp.load_model("gemma-3-270m")
    text = "The capital of France is"
    tokens = m.to_tokens(text)
    assert tokens[0, 0] == m.tokenizer.bos_id  # Gemma-3 starts with <bos>
    assert tokens.tolist()[0][1:] == list(m.tokenizer.tok(text, add_special_tokens=False)["input_ids"])
    tgt = torch.tensor([int(m(tokens)[0, -1].argmax())])
    logits, _, attrs, _ = tl_dla(m, tokens, target=tgt)
    d = dla(m, tokens, target=tgt, pos=-1)
    rows = torch.tensor(d[d.direct_effect.notna()]["dla"].to_numpy())
    logit = float(logits[0, -1, tgt[0]])
    assert (attrs[:, 0].double() - rows).abs().max() <= 1e-4 * max(abs(logit), 1.0)


@pytest.mark.slow
def test_minilm_post_ln_refused_tokens_fine():
    from transformers import AutoTokenizer
    from interp.models.registry import REGISTRY
    m = interp.load_model("minilm-l6")
    text = "A man is playing a guitar."
    hf_tok = AutoTokenizer.from_pretrained(str(REGISTRY["minilm-l6"].locate()))
    assert m.to_tokens(text).tolist() == [hf_tok(text)["input_ids"]]  # [CLS] ... [SEP]
    assert m.to_str_tokens(text)[0] == "[CLS]" and m.to_str_tokens(text)[-1] == "[SEP]"
    # one token for the tokenizer itself is one token here too (encode's appended [SEP] made every word two)
    assert m.to_single_token("guitar") == hf_tok.convert_tokens_to_ids("guitar") == hf_tok("guitar")["input_ids"][1]
    with pytest.raises(ValueError, match="not a single token"):
        m.to_single_token("A man")
    long = " ".join([text] * 200)  # truncated as the tokenizer itself truncates: [CLS] ... [SEP] in n_ctx tokens
    assert m.to_tokens(long).tolist() == [hf_tok(long, truncation=True, max_length=m.cfg.n_ctx)["input_ids"]]
    _, cache = m.run_with_cache(text)
    with pytest.raises(UnsupportedByTransformerLens, match="Post-LN"):
        cache.decompose_resid()


def tiny_family(model_type: str):
    """A tiny random transformers model of one family (norm gains and biases randomized), wrapped by interp."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from interp.models.families import wrap
    cfg = AutoConfig.for_model(model_type, vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                               pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name.lower():
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    return wrap(hf, name=f"tiny-{model_type}")


@pytest.mark.parametrize("model_type,placement", [("llama", "pre"), ("qwen3", "pre"), ("gemma3_text", "peri"),
                                                  ("gpt_neox", "parallel"), ("olmo2", "reordered")])
def test_transformers_families(model_type, placement):
    m = tiny_family(model_type)
    assert m.card.placement == placement
    tokens, tgt = torch.randint(3, 96, (2, 9)), torch.tensor([5, 40])
    if placement == "reordered":  # OLMo-2: x + N(F(x)), no input norms
        _, cache = m.run_with_cache(tokens)
        with pytest.raises(UnsupportedByTransformerLens, match="reordered"):
            cache.decompose_resid()
        return
    logits, _, attrs, _ = tl_dla(m, tokens, target=tgt)
    d = dla(m, tokens, target=tgt, pos=-1)
    for j in range(2):
        rows = torch.tensor(d[(d.batch == j) & d.direct_effect.notna()]["dla"].to_numpy())
        logit = float(logits[j, -1, tgt[j]])
        assert (attrs[:, j].double() - rows).abs().max() <= 1e-4 * max(abs(logit), 1.0)


def test_olmo_layernorm_without_gain_or_bias(tmp_path):
    """OLMo's LayerNorm has no learnable gain or bias (gain None: the identity). Its attributions are interp's DLA
    rows and add up to the model's own logits; apply_ln_to_stack at a block is what the sublayer reads."""
    from transformers import OlmoConfig, OlmoForCausalLM
    vocab = write_tokenizer(tmp_path)
    torch.manual_seed(0)
    OlmoForCausalLM(OlmoConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64, max_position_embeddings=64, initializer_range=0.2,
                               pad_token_id=0, bos_token_id=0, eos_token_id=0)).save_pretrained(tmp_path)
    m = interp.load_model(tmp_path)
    assert m.ln_final.gain is None and m.ln_final.bias is None and m.b_U is None
    tokens, tgt = torch.randint(3, vocab, (2, 9)), torch.tensor([5, 40])
    logits, cache, attrs, _ = tl_dla(m, tokens, target=tgt)
    d = dla(m, tokens, target=tgt, pos=-1)
    for j in range(2):
        rows = torch.tensor(d[(d.batch == j) & d.direct_effect.notna()]["dla"].to_numpy())
        logit = float(logits[j, -1, tgt[j]])
        assert abs(logit) > 0.1
        assert (attrs[:, j].double() - rows).abs().max() <= 1e-4 * max(abs(logit), 1.0)
        assert abs(float(attrs[:, j].sum()) - logit) <= 1e-4 * max(abs(logit), 1.0)  # no norm bias, no b_U
    for mlp_input, norm in ((False, "ln1"), (True, "ln2")):
        stack = cache.decompose_resid(layer=1, mlp_input=mlp_input)
        out = cache.apply_ln_to_stack(stack, layer=1, mlp_input=mlp_input).sum(0)
        assert torch.allclose(out, cache[f"blocks.1.{norm}.hook_normalized"], atol=1e-5)


def test_accumulated_resid_recomputes_a_frozen_divisor_final_norm():
    """A FakeLN final norm (LN removal's 'ln_final' stage) divides position 0 by its own constant: the lens of the
    last stream is the model's logits at every position, also with a position slice."""
    from interp.norms import FakeLN
    from interp.surgery.remove_ln import _refresh
    m = interp.zoo.build("pre-ln", **TINY).double().eval()
    m.ln_final = FakeLN(32, scale=1.7, scale_pos0=0.4).double()
    _refresh(m)
    tokens = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    logits, cache = m.run_with_cache(tokens)
    for pos_slice, want in ((None, logits), (-1, logits[:, -1]), (0, logits[:, 0])):
        lens = cache.accumulated_resid(apply_ln=True, pos_slice=pos_slice)[-1] @ m.W_U
        assert torch.allclose(lens, want, atol=1e-10)


@pytest.mark.parametrize("model_type", ["phi", "cohere"])
def test_apply_ln_at_the_mlp_of_a_one_norm_parallel_block(model_type):
    """Phi and Cohere blocks have one norm, read by both sublayers: the MLP input's norm is ln1. Reference: the
    cached ln1 output minus its bias, since the frozen-scale norm is linear and the stack sums to resid_pre
    (this raised AttributeError: no ln2)."""
    m = tiny_family(model_type)
    assert not hasattr(m.blocks[1], "ln2")
    with torch.no_grad():
        _, cache = m.run_with_cache(torch.randint(3, 96, (2, 9)))
        stack = cache.decompose_resid(layer=1)
        out = cache.apply_ln_to_stack(stack, layer=1, mlp_input=True)
    b = m.blocks[1].ln1.bias
    ref = cache["blocks.1.ln1.hook_normalized"].double() - (0 if b is None else b.double())
    assert (out.double().sum(0) - ref).abs().max() <= 1e-5


def test_apply_ln_at_a_split_attention_input_is_refused():
    """LN removal's 'ln1_qk' stage gives the attention two input norms (attn.ln_qk for queries and keys, attn.ln_v
    for values) and makes ln1 an Identity: apply_ln_to_stack(layer) returned the stack unnormalized, 2.5 off what
    the queries read. Reference: ln_qk's own output minus its bias. The MLP input (ln2) is still one norm."""
    from interp.surgery import remove_stage
    m = interp.zoo.build("pre-ln", **TINY).double().eval()
    calib = [torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))]
    for stage in ("ln2", "ln1_qk"):
        remove_stage(m, stage, calib)
    _, cache = m.run_with_cache(torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(1)))
    stack = cache.decompose_resid(layer=1)
    qk = m.blocks[1].attn.ln_qk
    assert (stack.sum(0) - cache["blocks.1.hook_resid_pre"]).abs().max() < 1e-10
    assert (qk(stack.sum(0)) - qk.b - stack.sum(0)).abs().max() > 0.1  # the identity is far from it
    with pytest.raises(UnsupportedByTransformerLens, match="attn.ln_qk for queries and keys and attn.ln_v for values"):
        cache.apply_ln_to_stack(stack, layer=1)
    with pytest.raises(UnsupportedByTransformerLens, match="attn.ln_qk for queries and keys and attn.ln_v for values"):
        cache.decompose_resid(layer=1, apply_ln=True)
    stack = cache.decompose_resid(layer=1, mlp_input=True)
    out = cache.apply_ln_to_stack(stack, layer=1, mlp_input=True).sum(0)
    assert torch.allclose(out, cache["blocks.1.ln2.hook_normalized"] - m.blocks[1].ln2.b, atol=1e-10)
