"""End-to-end precision runs against brute force (the model cast with .half() / .bfloat16(), int8 quantized by
hand), the overflow report against the fp32 activations, Gemma-3 against a plain transformers fp16 run, and the
`interp precision` command."""
import copy
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import interp
import interp.data
from interp.cli import main
from interp.precision import precision_runs, verdicts
from interp.precision.formats import FP16_OVERFLOW
from interp.precision.watch import UNWATCHED

from faults import broken_format  # noqa: E402

KW = {"n_layers": 3, "d_model": 32, "n_heads": 4, "d_mlp": 64, "n_ctx": 16, "d_vocab": 256}
DATA = [[5, 17, 33, 2, 90, 41, 7], [8, 3, 250, 11], [60, 61, 62, 63, 64, 65, 66, 67, 68]]


def batch(data):
    from interp.collectors.batches import batches
    return next(batches(data, len(data), 0, "right"))


def ce_and_argmax(logits, tokens, mask):
    pair = mask[:, :-1] & mask[:, 1:]
    lg = logits[:, :-1][pair].float()
    return F.cross_entropy(lg, tokens[:, 1:][pair]).item(), lg.argmax(-1)


def int8_by_hand(model, modules, tokens, mask, per_token: bool) -> float:
    """CE of `model` with the input of every module in `modules` fake-quantized to int8 by hand: one scale per
    sequence over its real tokens, or one per token."""
    def quant(mod, args):
        x = args[0]
        out = torch.empty_like(x)
        for s in range(x.shape[0]):
            amax = x[s].abs().amax(-1, keepdim=True) if per_token else x[s][mask[s]].abs().max()
            scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
            out[s] = torch.round(x[s] / scale).clamp(-127, 127) * scale
        return (out,)
    hs = [m.register_forward_pre_hook(quant) for m in modules]
    try:
        return ce_and_argmax(model(tokens, attention_mask=mask), tokens, mask)[0]
    finally:
        for h in hs:
            h.remove()


@pytest.mark.parametrize("strategy", ["pre-ln", "post-ln", "peri-ln", "lns"])
def test_bf16_fp16_int8_match_brute_force(strategy):
    model = interp.zoo.build(strategy, **KW).eval()
    tokens, mask = batch(DATA)
    runs = precision_runs(model, DATA, ("bf16", "fp16", "int8", "int8-token"), batch_size=3, linear="native",
                          progress=False).set_index("format")
    with torch.no_grad():
        ref, top = ce_and_argmax(model(tokens, attention_mask=mask), tokens, mask)
        for fmt, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            loss, top_f = ce_and_argmax(copy.deepcopy(model).to(dtype)(tokens, attention_mask=mask), tokens, mask)
            assert runs.loc[fmt, "loss"] == pytest.approx(loss, rel=1e-5)
            assert runs.loc[fmt, "delta_loss"] == pytest.approx(loss - ref, abs=1e-5)
            assert runs.loc[fmt, "top1_agreement"] == pytest.approx((top_f == top).double().mean().item())
        for fmt, per_token in (("int8", False), ("int8-token", True)):
            linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
            loss = int8_by_hand(model, linears, tokens, mask, per_token)
            assert runs.loc[fmt, "loss"] == pytest.approx(loss, rel=1e-5)
    assert (runs["status"] == "ok").all()
    assert list(runs["loss_fp32"]) == pytest.approx([ref] * len(runs), rel=1e-6)
    fast = precision_runs(model, DATA, ("bf16", "fp16"), batch_size=3, progress=False).set_index("format")
    for fmt, tol in (("fp16", 2e-3), ("bf16", 1e-2)):  # fp32-accumulated products vs torch's own GEMM
        assert fast.loc[fmt, "loss"] == pytest.approx(runs.loc[fmt, "loss"], abs=tol)
        assert f"{fmt} inputs and weights, products accumulated in fp32" in fast.loc[fmt, "fp32_ops"]


def overflowing_model():
    """A pre-ln model whose block-1 MLP output exceeds fp16's range at one token only: scaled so that fp16's
    overflow threshold sits halfway (geometrically) between the largest and the second largest token, the
    gain split between the MLP's two weights so that every weight stays well inside fp16's range."""
    model = interp.zoo.build("pre-ln", **KW).eval()
    tokens, mask = batch(DATA)
    mlp = model.blocks[1].mlp

    def peaks():
        _, cache = model.run_with_cache(tokens, attention_mask=mask, names_filter=["blocks.1.hook_mlp_out"])
        return cache["blocks.1.hook_mlp_out"][mask].abs().amax(-1).topk(2).values.tolist()

    with torch.no_grad():
        for lin in (mlp.up, mlp.down):
            v1, v2 = peaks()
            k = (FP16_OVERFLOW / (v1 * v2) ** 0.5) ** (0.5 if lin is mlp.up else 1.0)
            lin.weight *= k
            lin.bias *= k
        v1, v2 = peaks()
        assert v1 / v2 > 1.01 and max(mlp.up.weight.abs().max(), mlp.down.weight.abs().max()) < 1e4
    return model, tokens, mask


def test_fp16_overflow_is_a_clear_row_located_where_fp32_leaves_the_range():
    model, tokens, mask = overflowing_model()
    runs = precision_runs(model, DATA, ("bf16", "fp16", "int8"), batch_size=3, progress=False).set_index("format")
    r = runs.loc["fp16"]
    assert r["status"] == "overflow" and r["loss"] == math.inf and r["delta_loss"] == math.inf
    assert 0 < r["frac_nonfinite"] <= 1 and 0 <= r["top1_agreement"] < 1
    # the reference: the first watched hook (execution order) whose fp32 value is beyond fp16's range
    names = [n for n in model.hook_dict if not n.endswith(UNWATCHED)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, attention_mask=mask, names_filter=names)
    first = next(n for n, x in cache.items() if (x[mask].abs() >= FP16_OVERFLOW).any())
    assert first == "blocks.1.hook_mlp_out" and r["first_hook"] == first
    assert r["first_module"] == "blocks.1.mlp.down" and r["layer"] == 1
    hit = ((cache[first].abs() >= FP16_OVERFLOW).any(-1) & mask).nonzero()  # [(row, pos)]: one token
    assert len(hit) == 1
    row, pos = hit[0].tolist()
    assert r["position"] == pos and r["token"] == str(int(tokens[row, pos])) and "beyond fp16's max" in r["what"]
    assert runs.loc["bf16", "status"] == "ok" and runs.loc["int8", "status"] == "ok"
    numbers = runs[["loss", "delta_loss", "top1_agreement", "frac_nonfinite"]].to_numpy(dtype=float)
    assert not pd.isna(numbers).any()  # inf where it overflowed, never a NaN
    res = interp.collect(model, DATA, [interp.collectors.Precision()], progress=False)
    v = verdicts(res["precision"], runs.reset_index()).iloc[0]
    assert not v["fp16_safe"] and v["fp16_overflow_at"].startswith("blocks.1.hook_mlp_out, position")
    assert v["fp16_evidence"] == "end-to-end fp16 run" and v["delta_fp16"] == math.inf


def test_a_failing_format_is_an_error_row(monkeypatch):
    import interp.precision.runs as R
    model = interp.zoo.build("pre-ln", **KW).eval()
    broken_format(monkeypatch, "fp16", "\"addmm_impl_cpu_\" not implemented for 'Half'\nmore lines")
    runs = R.precision_runs(model, DATA, ("bf16", "fp16"), progress=False).set_index("format")
    assert runs.loc["fp16", "status"] == "error" and "not implemented for 'Half'" in runs.loc["fp16", "what"]
    assert "more lines" not in runs.loc["fp16", "what"] and runs.loc["bf16", "status"] == "ok"
    # the verdict and the report's safety bars say the fp16 run failed (they said "no fp16 run" and "ok")
    from interp.precision.report import safety_bars
    res = interp.collect(model, DATA, [interp.collectors.Precision()], progress=False)
    v = verdicts(res["precision"], runs.reset_index()).iloc[0]
    assert v["fp16_evidence"] == "site statistics only (the fp16 run failed)"
    fig = safety_bars({"precision": res["precision"], "precision_runs": runs.reset_index()}, {})
    assert list(fig.data[0].text) == ["fp16 run: failed in 1 of 1 run(s)"]


def test_other_objectives_compare_outputs():
    model = interp.zoo.build("mdlm-ln", **KW).eval()  # masked diffusion: no next-token loss
    tokens, mask = batch(DATA)
    runs = precision_runs(model, DATA, ("bf16",), batch_size=3, progress=False).iloc[0]
    with torch.no_grad():
        ref = model(tokens, attention_mask=mask)[mask].double()
        low = copy.deepcopy(model).to(torch.bfloat16)(tokens, attention_mask=mask)[mask].double()
    assert runs["metric"] == "output_rel_error" and runs["loss_fp32"] == 0
    assert runs["loss"] == pytest.approx(((low - ref).norm() / ref.norm()).item(), rel=1e-5)
    assert runs["top1_agreement"] == pytest.approx((low.argmax(-1) == ref.argmax(-1)).double().mean().item())


def test_refuses_a_model_that_is_not_fp32():
    model = interp.zoo.build("pre-ln", dtype="bf16", **KW)
    with pytest.raises(ValueError, match="compare against the fp32 model"):
        precision_runs(model, DATA, progress=False)
    with pytest.raises(ValueError, match="unknown precision format"):
        precision_runs(interp.zoo.build("pre-ln", **KW), DATA, ("fp8",), progress=False)


@pytest.mark.skipif(not (interp.data.DATA_DIR / "zoo" / "pre-ln" / "model.safetensors").is_file(),
                    reason="no shipped zoo")
def test_cli_prints_the_verdict(capsys):
    d = str(interp.data.DATA_DIR / "zoo" / "pre-ln")
    assert main(["precision", d, "--texts", "2", "--chars", "200", "--run-tokens", "64", "-q"]) == 0
    out = capsys.readouterr().out
    assert "precision verdict for" in out and "fp16_safe" in out and "int8" in out
    assert main(["precision", d, "--formats", "fp8", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown format" in err[0]
    assert main(["precision", "no/such/model", "-q"]) == 1


@pytest.mark.skipif(not (interp.data.DATA_DIR / "zoo" / "pre-ln" / "model.safetensors").is_file(),
                    reason="no shipped zoo")
def test_cli_saves_what_the_report_shows(tmp_path, capsys):
    d, out = str(interp.data.DATA_DIR / "zoo" / "pre-ln"), tmp_path / "pre-ln-precision"
    args = ["precision", d, "--texts", "2", "--chars", "200", "--run-tokens", "64", "-q", "-o", str(out)]
    assert main(args) == 0
    from interp.collectors.results import Results
    saved = Results.load(out)
    assert set(saved.tables) == {"precision", "precision_outliers", "precision_runs"}
    assert list(saved["precision_runs"]["format"]) == ["bf16", "fp16", "int8"]
    capsys.readouterr()
    assert main(args) == 1  # an earlier result is replaced only with --force
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0]
    assert main(args + ["--force"]) == 0
    html = tmp_path / "r.html"
    assert main(["report", str(out), "-o", str(html)]) == 0
    sec = html.read_text()
    sec = sec[sec.index('id="precision"'):]
    sec = sec[:sec.index("<section", 10)] if "<section" in sec[10:] else sec
    assert "fp16 safety and the loss change" in sec and sec.count("Plotly.newPlot") == 3


@pytest.mark.slow
def test_gemma3_is_not_fp16_safe_where_plain_transformers_overflows():
    model = interp.load_model("gemma-3-270m").eval()
    text = "The capital of France is Paris."
    runs = precision_runs(model, [text], ("fp16",), progress=False)
    r = runs.iloc[0]
    assert r["status"] == "overflow" and r["loss"] == math.inf
    # the plain transformers model, cast to fp16 (torch's own fp16 kernels), on the same tokens
    ids = [model.tokenizer.bos_id] + model.tokenizer.encode(text)
    hf = copy.deepcopy(model.hf)
    from interp.precision.lowp import _strip_hooks
    _strip_hooks(hf, {h.id for h in model._handles})
    with torch.no_grad():
        out = hf.to(torch.float16)(input_ids=torch.tensor([ids]), output_hidden_states=True, use_cache=False)
    bad = [l for l, h in enumerate(out.hidden_states[1:]) if not torch.isfinite(h).all()]
    assert bad, "plain transformers fp16 stayed finite"
    layer = bad[0]
    pos = int((~torch.isfinite(out.hidden_states[layer + 1][0])).any(-1).nonzero()[0, 0])
    assert r["layer"] == layer and r["position"] == pos
    assert r["first_hook"].startswith(f"blocks.{layer}.") and r["token"] == model.tokenizer.decode([ids[pos]])
    assert "beyond fp16's max" in r["what"]
    res = interp.collect(model, [text], [interp.collectors.Precision()], progress=False)
    v = verdicts(res["precision"], runs).iloc[0]
    assert not v["fp16_safe"] and v["fp16_headroom"] < 1 and f"blocks.{layer}." in v["fp16_overflow_at"]


@pytest.mark.slow
def test_encoder_runs_compare_hidden_states():
    model = interp.load_model("minilm-l6").eval()
    texts = ["A sentence to embed.", "Another, a little longer one."]
    runs = precision_runs(model, texts, linear="native", progress=False).set_index("format")
    fast = precision_runs(model, texts, progress=False).set_index("format")  # fp32-accumulated linear layers
    assert (runs["metric"] == "output_rel_error").all() and (runs["status"] == "ok").all()
    assert (runs["loss_fp32"] == 0).all() and runs["top1_agreement"].isna().all()  # hidden states: no top-1
    from interp.precision.lowp import _strip_hooks
    from interp.tokenize import batch_encode
    tokens, mask = batch_encode(model.tokenizer, texts)
    hf = copy.deepcopy(model.hf)
    _strip_hooks(hf, {h.id for h in model._handles})
    with torch.no_grad():
        ref = hf(input_ids=tokens, attention_mask=mask.long()).last_hidden_state[mask].double()
        low = hf.to(torch.bfloat16)(input_ids=tokens, attention_mask=mask.long()).last_hidden_state[mask].double()
    assert runs.loc["bf16", "loss"] == pytest.approx(((low - ref).norm() / ref.norm()).item(), rel=1e-4)
    # the emulation rounds as a GEMM that accumulates in fp32 does: the same error up to the order of the sums
    assert fast.loc["bf16", "loss"] == pytest.approx(runs.loc["bf16", "loss"], rel=0.05)


def test_low_precision_twin_keeps_ties_and_leaves_the_original_alone():
    """The twin is cast while it is copied: tied weights stay one tensor, its values are the fp32 weights rounded
    (what .to(dtype) of a deep copy gives), the tokenizer is shared and the fp32 model is unchanged."""
    from interp.precision.lowp import clone
    m = interp.zoo.build("pre-ln", seed=0, tie_embeddings=True, **KW).eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    for dtype in (torch.bfloat16, torch.float16):
        twin = clone(m, dtype)
        ref = copy.deepcopy(m).to(dtype)
        assert twin.unembed.weight is twin.embed.weight and twin.embed.weight is not m.embed.weight
        for (k, a), (_, b) in zip(twin.state_dict().items(), ref.state_dict().items()):
            assert a.dtype == b.dtype and torch.equal(a, b), k
        assert twin.tokenizer is m.tokenizer
    assert all(torch.equal(v, m.state_dict()[k]) and v.dtype == m.state_dict()[k].dtype for k, v in before.items())


def test_gpt2_conv1d_layers_are_quantized_and_fp32_accumulated(tmp_path):
    """GPT-2's attention and MLP projections are transformers Conv1D (weight [in, out]), not nn.Linear: the int8
    runs quantize their inputs and the fp16 / bf16 twin accumulates them in fp32, like every nn.Linear. Against
    brute force: hand-quantizing pre-hooks on every nn.Linear and Conv1D, and a plain transformers copy whose
    layers compute (x₃₂ W₃₂ + b₃₂) rounded to the format, each in its own weight layout."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.pytorch_utils import Conv1D
    from gpt2_fixtures import write_tokenizer
    from interp.precision.int8 import int8_linear_inputs
    from interp.precision.lowp import _strip_hooks, low_precision
    vocab = write_tokenizer(tmp_path)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64, vocab_size=vocab,
                               initializer_range=0.2)).save_pretrained(tmp_path)
    model = interp.load_model(tmp_path).eval()
    n_linear = sum(type(m) is torch.nn.Linear for m in model.hf.modules())
    n_conv = sum(type(m) is Conv1D for m in model.hf.modules())
    assert (n_linear, n_conv) == (1, 8)  # lm_head; c_attn, c_proj, c_fc, c_proj per block
    with int8_linear_inputs(model) as n:
        assert n == n_linear + n_conv
    for fmt in ("fp16", "bf16"):
        twin, notes = low_precision(model, fmt)
        assert sum("forward" in vars(m) for m in twin.hf.modules()) == n_linear + n_conv
        assert notes[0].startswith(f"nn.Linear / Conv1D: {fmt} inputs and weights, products accumulated in fp32")
    tokens, mask = batch(DATA)
    runs = precision_runs(model, DATA, ("bf16", "fp16", "int8", "int8-token"), batch_size=3,
                          progress=False).set_index("format")
    with torch.no_grad():
        for fmt, per_token in (("int8", False), ("int8-token", True)):
            gemms = [m for m in model.hf.modules() if type(m) in (torch.nn.Linear, Conv1D)]
            loss = int8_by_hand(model, gemms, tokens, mask, per_token)
            assert runs.loc[fmt, "loss"] == pytest.approx(loss, rel=1e-5)
            assert "nn.Linear / Conv1D inputs int8" in runs.loc[fmt, "fp32_ops"]
        for fmt, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            hf = copy.deepcopy(model.hf)
            _strip_hooks(hf, {h.id for h in model._handles})
            hf = hf.to(dtype)
            for m in hf.modules():
                if type(m) is Conv1D:  # weight [in, out]
                    m.forward = lambda x, m=m: (x.float() @ m.weight.float() + m.bias.float()).to(x.dtype)
                elif type(m) is torch.nn.Linear:  # weight [out, in]; GPT-2's lm_head has no bias
                    assert m.bias is None
                    m.forward = lambda x, m=m: (x.float() @ m.weight.float().T).to(x.dtype)
            logits = hf(input_ids=tokens, attention_mask=mask.long()).logits
            twin, _ = low_precision(model, fmt)
            out = twin(tokens, attention_mask=mask)
            assert torch.allclose(out[mask].float(), logits[mask].float(), rtol=0, atol=1e-5)
            loss, _ = ce_and_argmax(logits, tokens, mask)
            assert runs.loc[fmt, "loss"] == pytest.approx(loss, rel=1e-5)
    assert (runs["status"] == "ok").all()


def test_no_next_token_prediction_is_refused():
    # one-token sequences have nothing to predict: every loss was 0 / 0 reported as 0.0 with status "ok"
    model = interp.zoo.build("pre-ln", **KW).eval()
    with pytest.raises(ValueError, match="at least 2 tokens"):
        precision_runs(model, [[5], [7]], ("bf16", "int8"), progress=False)


def test_an_overflow_at_the_last_token_is_not_fp16_safe():
    """A logit that only the last real token pushes past fp16's range: that token predicts nothing in the loss,
    but the fp16 model's output there is inf (what generation samples from). The run read status "ok" and the
    verdict fp16-safe; against torch's own fp16 cast of the model, any real position non-finite is an overflow."""
    model = interp.zoo.build("pre-ln", **KW).eval()
    data = DATA[:2]
    tokens, mask = batch(data)
    last = int(mask[0].sum()) - 1
    with torch.no_grad():  # unembedding row 100: 7e4 along the last token's final state, 0 on every other token's
        _, cache = model.run_with_cache(tokens, attention_mask=mask, names_filter=["ln_final.hook_normalized"])
        x = cache["ln_final.hook_normalized"]
        others = torch.cat([x[0, :last], x[1][mask[1]]])
        q, _ = torch.linalg.qr(others.T)
        w = x[0, last] - q @ (q.T @ x[0, last])
        model.unembed.weight[100] = w / (w @ x[0, last]) * 7e4
        plain = copy.deepcopy(model).half()(tokens, attention_mask=mask)
    bad = ~torch.isfinite(plain).all(-1) & mask
    assert bad.nonzero().tolist() == [[0, last]]  # torch's fp16 model: inf at the last token only
    r = precision_runs(model, data, ("fp16",), linear="native", progress=False).iloc[0]
    assert r["status"] == "overflow" and r["loss"] == math.inf and r["delta_loss"] == math.inf
    assert r["frac_nonfinite"] == pytest.approx(bad.sum().item() / mask.sum().item())
    assert r["first_module"] == "unembed" and r["position"] == last
    res = interp.collect(model, data, [interp.collectors.Precision()], progress=False)
    v = verdicts(res["precision"], pd.DataFrame([r])).iloc[0]
    assert not v["fp16_safe"] and v["fp16_overflow_at"].startswith("unembed, position")


def test_an_overflow_at_padding_only_is_not_rerun_watched(monkeypatch):
    """Logits that overflow fp16 only at padding positions (torch's own fp16 cast agrees): every batch was rerun
    watched (the slow pass), and the watch, which ignores padding, never finished, so the next batch was too.
    Padding is now ignored when deciding: no rerun, and the run is ok."""
    import interp.precision.runs as R
    model = interp.zoo.build("pre-ln", **KW).eval()
    data = DATA[:2]
    tokens, mask = batch(data)
    with torch.no_grad():  # unembedding row 100: 7e4 along a padding position's final state, 0 on every real one's
        _, cache = model.run_with_cache(tokens, attention_mask=mask, names_filter=["ln_final.hook_normalized"])
        x = cache["ln_final.hook_normalized"]
        q, _ = torch.linalg.qr(x[mask].T)
        w = x[1, -1] - q @ (q.T @ x[1, -1])
        model.unembed.weight[100] = w / (w @ x[1, -1]) * 7e4
        plain = copy.deepcopy(model).half()(tokens, attention_mask=mask)
    bad = ~torch.isfinite(plain).all(-1)
    assert bad.any() and not (bad & mask).any()  # torch's fp16 model: non-finite at padding only
    reruns = []
    real = R.watching
    monkeypatch.setattr(R, "watching", lambda *a, **k: reruns.append(1) or real(*a, **k))
    r = precision_runs(model, data * 3, ("fp16",), batch_size=2, progress=False).iloc[0]
    assert len(reruns) == 0
    assert r["status"] == "ok" and r["frac_nonfinite"] == 0 and r["first_hook"] == r["first_module"] == ""


def test_the_model_keeps_its_train_mode():
    """precision_runs measures in eval mode but left the caller's model in eval mode for good (dropout and
    PowerNorm's running statistics off in the caller's training loop). Each module's mode is set back, and the
    rows equal those of the model in eval mode."""
    model = interp.zoo.build("powernorm", **KW)
    model.train()
    model.blocks[0].eval()  # a mixed state comes back as it was
    modes = [m.training for m in model.modules()]
    runs = precision_runs(model, DATA, ("bf16", "int8"), batch_size=3, progress=False)
    assert [m.training for m in model.modules()] == modes
    ref = precision_runs(copy.deepcopy(model).eval(), DATA, ("bf16", "int8"), batch_size=3, progress=False)
    cols = ["loss", "loss_fp32", "delta_loss", "top1_agreement", "status"]
    pd.testing.assert_frame_equal(runs[cols], ref[cols])


def test_a_format_named_twice_runs_once():
    """("bf16", "fp16", "bf16") gave two bf16 rows, and the verdict then failed on them (TypeError: float() of a
    Series; `interp precision --formats bf16,bf16` printed an unexpected error). One row per format."""
    model = interp.zoo.build("pre-ln", **KW).eval()
    runs = precision_runs(model, DATA, ("bf16", "fp16", "bf16"), batch_size=3, progress=False)
    once = precision_runs(model, DATA, ("bf16", "fp16"), batch_size=3, progress=False)
    assert list(runs["format"]) == ["bf16", "fp16"]
    cols = ["loss", "loss_fp32", "delta_loss", "top1_agreement", "status"]
    pd.testing.assert_frame_equal(runs[cols], once[cols])
    # one format given as a string was read letter by letter ("unknown precision format(s) ['f', 'p', '1', '6']")
    alone = precision_runs(model, DATA, "fp16", batch_size=3, progress=False)
    pd.testing.assert_frame_equal(alone[cols], once[cols].iloc[[1]].reset_index(drop=True))
    res = interp.collect(model, DATA, [interp.collectors.Precision()], progress=False)
    assert verdicts(res["precision"], runs).iloc[0]["delta_bf16"] == runs.set_index("format").loc["bf16", "delta_loss"]


def test_a_site_overflow_outside_the_runs_tokens_is_not_fp16_safe():
    """check() collects the site statistics on all the data and runs fp16 on its first run_tokens only: a token
    whose embedding fp16 turns into inf (7e4), past those tokens, left the verdict fp16-safe ('end-to-end fp16
    run') beside a headroom below 1. Brute force: torch's fp16 cast of the model on all the tokens goes non-finite."""
    from interp.precision.check import check
    model = interp.zoo.build("pre-ln", tie_embeddings=False, **KW).eval()
    with torch.no_grad():
        model.embed.weight[200, 2] = 7e4
    data = [[5, 17, 33, 2, 90, 41, 7, 8], [8, 3, 250, 11, 200, 4, 5, 6]]
    tokens, mask = batch(data)
    with torch.no_grad():
        plain = copy.deepcopy(model).half()(tokens, attention_mask=mask)
    assert not torch.isfinite(plain[0]).all() or not torch.isfinite(plain[1]).all()
    assert torch.isfinite(plain[0]).all()  # the first sequence alone (the run's tokens) stays finite
    c = check(model, data, run_tokens=8)
    assert (c.runs["status"] == "ok").all() and c.runs["n_tokens"].iloc[0] == 7
    v = c.verdict.iloc[0]
    assert v["fp16_headroom"] < 1 and not v["fp16_safe"]
    assert v["fp16_overflow_at"] == "blocks.0.hook_resid_pre (layer 0)" and v["fp16_evidence"].startswith("site")
    everything = check(model, data, run_tokens=None).verdict.iloc[0]  # the run over every token decides itself
    assert not everything["fp16_safe"] and everything["fp16_evidence"] == "end-to-end fp16 run"


def test_the_cli_table_counts_the_runs_tokens_when_one_failed(monkeypatch, capsys):
    """`interp precision` printed the fp32 reference's token count off the first run's row: 0 predicted tokens
    when bf16 failed at its first batch. It prints the runs' count (the next-token predictions)."""
    from interp.commands.precision import print_check
    from interp.precision.check import check
    broken_format(monkeypatch, "bf16", "bf16 kernel missing")
    chk = check(interp.zoo.build("pre-ln", **KW).eval(), DATA, run_tokens=None)
    print_check(chk)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith(f"on {sum(len(s) - 1 for s in DATA)} predicted tokens"), last


def test_an_unwatched_overflow_is_not_said_to_start_at_the_logits():
    """With watch=False nothing is watched, yet an overflowing run's `what` said 'no hook or module output was
    non-finite before them' (the logits), where the fp32 activations leave fp16's range at blocks.1.hook_mlp_out."""
    model, tokens, mask = overflowing_model()
    r = precision_runs(model, DATA, ("fp16",), batch_size=3, watch=False, progress=False).iloc[0]
    assert r["status"] == "overflow" and r["first_hook"] == "" and r["first_module"] == ""
    assert "not looked for" in r["what"] and "no hook or module" not in r["what"]


def test_check_names_a_bad_run_tokens():
    """check(run_tokens=0) collected the site statistics, then failed naming max_tokens ('max_tokens must be a whole
    number of at least 1 (got 0)'), an argument the caller had not given. It names run_tokens, before any work."""
    from interp.precision.check import check
    model = interp.zoo.build("pre-ln", **KW).eval()
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match=r"^run_tokens must be a whole number of at least 1"):
            check(model, DATA, run_tokens=bad)


@pytest.mark.skipif(not (interp.data.DATA_DIR / "zoo" / "pre-ln" / "model.safetensors").is_file(),
                    reason="no shipped zoo")
def test_cli_formats_with_spaces_or_none_named(capsys):
    """--formats 'bf16, int8' refused ' int8' as an unknown format (the space was kept), and --formats '' silently
    ran nothing; the names are stripped, and an empty list is refused in one line."""
    d = str(interp.data.DATA_DIR / "zoo" / "pre-ln")
    base = ["precision", d, "--texts", "1", "--chars", "120", "--run-tokens", "16", "-q"]
    assert main(base + ["--formats", "bf16, int8"]) == 0
    out = capsys.readouterr().out
    assert "\n  bf16 " in out and "\n  int8 " in out
    assert main(base + ["--formats", " , "]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--formats names no format" in err[0]


@pytest.mark.skipif(not (interp.data.DATA_DIR / "zoo" / "pre-ln" / "model.safetensors").is_file(),
                    reason="no shipped zoo")
def test_cli_data_takes_a_corpus_name_as_collect_does(tmp_path, capsys):
    """`interp precision MODEL --data kjv` refused the corpus name `interp collect --data kjv` takes ("no such text
    file"); it now reads the corpus, one text per book, capped by --max-tokens: the same site table as the Python
    check on the corpus's books."""
    from interp.collectors.results import Results
    from interp.data import load_corpus
    from interp.precision.check import check
    d, out = str(interp.data.DATA_DIR / "zoo" / "pre-ln"), tmp_path / "kjv-precision"
    assert main(["precision", d, "--data", "kjv", "--max-tokens", "200", "--formats", "none", "-q", "-o",
                 str(out)]) == 0
    got = Results.load(out)["precision"]
    ref = check(interp.zoo.load(d), [b.text for b in load_corpus("kjv").books], (), max_tokens=200,
                progress=False).results()["precision"]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), ref.reset_index(drop=True))
    capsys.readouterr()
    assert main(["precision", d, "--data", "no-such-corpus", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a corpus" in err[0], err
