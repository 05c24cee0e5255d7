"""Cells of notebook 07, will SmolLM2 and Gemma-3 survive fp16, bf16 and int8? (make_notebooks.py writes the
notebook)."""
from __future__ import annotations

from collections.abc import Callable


def cells(md: Callable, setup: str) -> list:
    """The notebook's cells: markdown cells from `md`, code cells as strings, `setup` second."""
    return [
        md("# Will it survive fp16, bf16 and int8?\n\n"
           "fp16 stores numbers up to 65,504 with 11 significant bits; bf16 keeps fp32's range with 8; int8 "
           "absmax quantization maps a whole tensor (or one token) onto 255 levels set by its largest |x|. Massive "
           "activations and a growing residual stream decide which of these a model can run in. This notebook "
           "asks it of two real models with different norm placements: SmolLM2-135M (Pre-RMSNorm) and Gemma-3-270M "
           "(Peri-LN: a norm before and after every sublayer)."),
        setup,
        '''from interp.precision.check import check
from interp.precision.report import headroom_profile, int8_profile, safety_bars

texts = interp.data.heldout_texts(2 if SMALL else 8, 200 if SMALL else 600)   # held-out passages
n_tok = 64 if SMALL else None                                                    # tokens read (None: all)
smol = interp.load_model("smollm2-135m").eval()
chk_smol = check(smol, texts, max_tokens=n_tok, run_tokens=32 if SMALL else 512)
chk_smol.verdict.T''',
        md("`check` runs the `Precision` collector (one fp32 pass, every residual site) and the end-to-end runs "
           "(the model cast to bf16 and fp16, and with every linear input fake-quantized to int8, against fp32 on "
           "the same tokens). `fp16_headroom` is 65,504 divided by the largest |x| anywhere: SmolLM2 fits, with "
           "little to spare. The largest values and where they sit:"),
        '''chk_smol.sites.sort_values("abs_max", ascending=False).head(8)[
    ["layer", "site", "abs_max", "fp16_headroom", "bf16_rel_error", "int8_tensor_token_error", "int8_token_token_error"]]''',
        md("`int8_tensor_token_error` is the mean over tokens of ‖q(x_t) − x_t‖ / ‖x_t‖ when one int8 scale "
           "serves a whole sequence: where a massive activation sets that scale, ordinary tokens lose most of "
           "their values. One scale per token (`int8_token_token_error`) keeps them."),
        '''chk_smol.runs[["format", "status", "loss", "loss_fp32", "delta_loss", "top1_agreement", "seconds"]]''',
        md("Now Gemma-3. Its residual stream is known to reach ~1e5."),
        '''gemma = interp.load_model("gemma-3-270m").eval()
chk_gemma = check(gemma, texts, max_tokens=n_tok, run_tokens=32 if SMALL else 512)
chk_gemma.verdict.T''',
        '''r = chk_gemma.runs.set_index("format").loc["fp16"]
print(f"fp16 run: {r.status}, loss {r.loss}")
print(f"first non-finite hook: {r.first_hook} (layer {r.layer}), position {r.position}, token {r.token!r}")
print(r.what)''',
        md("The fp16 run goes non-finite: the row says so (loss = inf, never averaged with finite tokens), names "
           "the first hook and the token where it happened, and what the fp32 model computes there (beyond "
           "fp16's 65,504). bf16 has fp32's range and stays finite."),
        md("**The figures** put both models side by side: the fp16 headroom of every block (below the dashed "
           "line, fp16 overflows), the headroom per model, and the int8 error on the stream leaving each block "
           "(★: the stream carries massive activations there, ◆: LLM.int8() outlier features reach it)."),
        '''tables = {"precision": pd.concat([chk_smol.sites, chk_gemma.sites], ignore_index=True),
          "precision_runs": pd.concat([chk_smol.runs, chk_gemma.runs], ignore_index=True)}
res = interp.collect(smol, texts, [interp.collectors.MassiveActivations()], max_tokens=n_tok, progress=False)
res2 = interp.collect(gemma, texts, [interp.collectors.MassiveActivations()], max_tokens=n_tok, progress=False)
tables["massive"] = pd.concat([res["massive"], res2["massive"]]).rename(columns={"top1_mean": "top1"})
colors = {"smollm2-135m": "#fdae6b", "gemma-3-270m": "#74c476"}
headroom_profile(tables, colors).show()
safety_bars(tables, colors).show()
int8_profile(tables, colors).show()''',
        md("**What to look for:** Gemma-3's Peri-LN normalizes what each sublayer *adds*, but nothing bounds the "
           "stream itself, and its embeddings are scaled by √d_model: the headroom falls below 1 mid-depth. "
           "SmolLM2's Pre-LN stream stays within fp16 but with under a decade to spare at its massive dimension, "
           "and per-sequence int8 scaling costs it far more loss than bf16 or fp16 do. The same question for "
           "every zoo strategy, with seeds, is the report's precision section and its fp16-headroom claim. "
           "From the shell: `interp precision gemma-3-270m`."),
        '''chk_smol.outliers.head(10)   # LLM.int8() outlier features: |x| ≥ 6 in ≥ 25 % of layers and ≥ 6 % of tokens''',
    ]
