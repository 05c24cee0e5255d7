"""The report's input tables: names and columns, documented once. Every table is tidy and carries `model`.

Collectors, attribution, surgery and training write their own tables (see their docs); `interp.report.inputs`
turns those into these canonical tables, so figures and claims read one stable schema. A table that is
absent makes its report section say so; a table with a missing column is an error naming the column.
"""
from __future__ import annotations

import pandas as pd

# table name -> {column: meaning}. Columns marked optional in OPTIONAL may be absent.
TABLES: dict[str, dict[str, str]] = {
    "cards": {"model": "model name", "family": "zoo / llama / gemma3 / bert / gpt2 ...",
              "strategy": "zoo preset or descriptive label", "placement": "pre/post/peri/mix/lns/none",
              "norm_kind": "layernorm/rmsnorm/...", "n_layers": "blocks", "d_model": "width",
              "n_params": "parameters", "weight_source": "where the weights came from",
              "quantization": "quantization of the weights, if any",
              "objective": "causal_lm / mdlm (masked diffusion) / encoder"},
    "stream": {"model": "", "depth": "0 = stream entering block 0, ℓ = stream leaving block ℓ-1",
               "variance": "variance of the stream's entries pooled over tokens × dims (residual collector 'var'); "
                           "in Post-LN blocks the carried stream is the normalized one",
               "rms": "root mean square of the stream's entries"},
    "growth": {"model": "", "slope_log_var": "growth figures of the stream's variance at depths 1..L, defined "
               "once in docs/results.md (interp.analysis.growth)", "ratio_last_first": "var(L) / var(1)",
               "growth_factor": "(var(L)/var(1))^(1/(L−1))", "shape": "ln(RSS linear / RSS exponential law)",
               "var_first": "var(1)", "var_last": "var(L)"},
    "massive": {"model": "", "depth": "0 = input of block 0, ℓ = output of block ℓ-1",
                "top1": "largest |x| (mean over sequences)", "top2": "2nd largest |x|",
                "top3": "3rd largest |x|", "median": "median |x| of the hidden state",
                "n_massive": "count of |x| > abs threshold and ≥ ratio × median"},
    "massive_dims": {"model": "", "depth": "", "dim": "residual dimension",
                     "count": "massive activations seen in this dim at this depth", "mean_value": "their mean"},
    "dims_rms": {"model": "", "layer": "", "dim": "residual dimension", "value": "RMS over tokens of the stream "
                 "leaving the block, per dimension"},
    "outliers": {"model": "", "depth": "", "position": "token position", "token": "token string",
                 "dim": "residual dimension", "value": "activation value",
                 "massive": "whether it passes both thresholds of n_massive"},
    "ablation": {"model": "", "ablation": "none / mean / zero", "loss": "mean CE on held text (nats)",
                 "depth": "the stream depth edited (where massive activations first appear)",
                 "dims": "the dimensions edited there (those seen massive), space-separated"},
    "gradients": {"model": "", "layer": "block (params) or stream depth (resid)",
                  "target": "params (block parameters) or resid (stream, per token)",
                  "grad_norm": "L2 norm of the loss gradient"},
    "angular": {"model": "", "layer": "ℓ", "n": "distance between h_ℓ and h_ℓ+n",
                "distance": "arccos(cos(h_ℓ, h_ℓ+n))/π, mean over sequences (last token)"},
    "skip": {"model": "", "layer": "", "loss_delta": "CE with block ℓ skipped − CE of the full model (nats)"},
    "norm_scales": {"model": "", "layer": "", "norm": "which norm (ln1, ln2, ln_final ...)",
                    "q05": "", "q25": "", "median": "", "q75": "", "q95": "quantiles of hook_scale"},
    "dla_error": {"model": "", "median_rel_error": "median |DLA − direct effect| / |logit|",
                  "max_rel_error": "max |DLA − direct effect| / |logit|"},
    "dla_example": {"model": "", "prompt": "input text", "target": "target token", "component": "",
                    "dla": "direct logit attribution", "direct_effect": "path-ablation direct effect"},
    "logit_lens": {"model": "", "layer": "", "prob": "probability of the target", "rank": "rank of the target",
                   "kl": "KL(final ‖ layer) in nats"},
    "training": {"model": "", "step": "optimizer step", "loss": "training loss (nats/token; see objective)",
                 "objective": "the model's loss: causal_lm (CE) / mdlm (the masked-diffusion bound)",
                 "val_loss": "validation loss where the log has it (nats/token)"},
    "sweep": {"model": "strategy", "lr": "peak learning rate", "diverged": "NaN/Inf or loss blow-up",
              "n_spikes": "loss spikes", "final_loss": "final training loss (nats/token; see objective)",
              "seed": "sweep seed (init and data order)", "first_loss": "training loss at the first step (nats/token)",
              "objective": "the strategy's loss: causal_lm (CE) / mdlm (the masked-diffusion bound)",
              "max_attn_logit": "largest |q·k|/√d_head of the trained run on the first validation batch, "
                                "as its loss feeds it (MDLM presets: masked, cond = t)"},
    "attn_logits": {"model": "", "layer": "block", "head": "attention head",
                    "max_abs_logit": "max |q·k|/√d_head over counted query-key pairs (interp.collectors.attn_logits); "
                                     "MDLM models: clean text at t = 0, as the whole main pass",
                    "rms_logit": "root mean square of q·k/√d_head over the same pairs"},
    "ln_removal": {"model": "", "ce_original": "CE before (nats)", "ce_vanilla": "CE after a vanilla fine-tune",
                   "ce_lnfree": "CE after LN removal with the same fine-tuning budget"},
    "seq_stream": {"model": "", "seq": "held-out sequence (its position in the run's data)", "depth": "stream depth",
                   "n": "elements counted (tokens × d_model)", "s1": "Σx", "s2": "Σx²", "sabs": "Σ|x|",
                   "top1": "max |x|", "median": "lower median of |x| over the sequence's hidden state",
                   "ang": "arccos(cos(h_depth, h_depth+1))/π on the last counted token (NaN at the last depth)"},
    "seq_loss": {"model": "", "seq": "held-out sequence", "loss_sum": "Σ next-token CE (nats)",
                 "n_pred": "predicted tokens"},
    "seq_ablation": {"model": "", "seq": "held-out sequence", "ablation": "none / mean / zero",
                     "loss": "mean next-token CE of the sequence (nats/token)", "n_pred": "predicted tokens"},
    "seed_plan": {"model": "zoo strategy", "seeds": "seeds the zoo's manifest plans for it"},
    "seq_skip": {"model": "", "seq": "held-out sequence", "layer": "block skipped (output := input)",
                 "loss_delta": "mean next-token CE of the sequence with the block skipped − intact (nats/token)",
                 "base": "intact mean next-token CE of the sequence (nats/token)"},
    "grads_init": {"model": "the trained model whose step-0 weights these are", "layer": "block",
                   "target": "params", "grad_norm": "L2 norm of the block's CE gradient at initialization"},
    "timing": {"model": "model the variants come from", "variant": "pre-ln / pre-rmsnorm / pre-crmsnorm / "
               "unified-fused", "round": "interleaved timing round", "seconds": "seconds per forward"},
    "entropy_neurons": {"model": "", "role": "original / lnfree / vanilla", "neuron": "last-layer MLP neuron",
                        "dH": "mean |Δ entropy| (nats) when the neuron is mean-ablated on the direct path",
                        "via_scale": "the part of dH carried by the final norm's scale"},
    "log_spikes": {"model": "", "steps": "steps counted (after the median window fills)",
                   "spikes": "steps with grad norm > 3× the median of the previous 50"},
    "log_bstat": {"model": "", "site": "batch-statistic norm (module name)",
                  "fluctuation": "median over steps after the LR warm-up of bstat_x2_rel_change"},
    "log_steadiness": {"model": "", "site": "batch-statistic norm (module name)",
                       "steps": "steps counted (after 10 % of the run and the norm's statistics warm-up and window)",
                       "batch": "median over those steps of bstat_x2_rel_change",
                       "running": "the same of rstat_x2_rel_change (the running second moment; NaN if not logged)",
                       "divisor": "the same of dstat_x2_rel_change (the statistic divided by; NaN if not logged)"},
    # weights along training (interp.analysis.dynamics; every column in docs/results.md, "Training dynamics")
    "dynamics": {"model": "", "step": "training step (0 = the seed's init)", "tokens": "training tokens seen",
                 "depth": "stream depth", "variance": "as in stream", "top1": "max |x|, mean over sequences",
                 "median": "median |x|, mean over sequences", "top1_median": "max |x| / median |x| per sequence, "
                 "mean over sequences"},
    "dynamics_grads": {"model": "", "step": "", "tokens": "", "layer": "block",
                       "grad_norm": "‖∇θ_ℓ mean CE‖₂, mean over batches"},
    "dynamics_seq": {"model": "", "step": "", "seq": "held-out sequence", "depth": "", "n": "", "s1": "", "s2": "",
                     "top1": "", "median": ""},
    "equivalence": {"model": "", "form": "pre-rmsnorm / pre-crmsnorm",
                    "max_abs_diff": "max |logit − original logit| in float64",
                    "max_abs_logit": "max |original logit|"},
    # masked-diffusion zoo models (interp.report.mdlm); t = mask probability, bounds in nats per scored token
    "mdlm_bound": {"model": "", "t": "mask probability", "in_nelbo": "a midpoint of the NELBO's t grid",
                   "bound": "(1/t)·Σ masked CE / L, mean over sequences (interp.train.mdlm)",
                   "bound_sem": "its standard error over sequences", "ce_masked": "CE per masked token",
                   "masked_frac": "fraction of scored positions masked", "n_seq": "sequences"},
    "mdlm_seq": {"model": "", "seq": "held-out sequence", "nelbo": "its midpoint-rule NELBO (nats/token)"},
    "mdlm_cond_params": {"model": "", "strategy": "", "n_params": "parameters", "cond_params": "parameters that "
                         "exist only to take t in (interp.zoo.conditioning)", "t_embed": "of which the t-embedder",
                         "adaln": "adaLN-Zero maps and gates", "tdln": "TD-LN's p1 and gates",
                         "nelbo": "held-out NELBO", "nelbo_sem": "its standard error over sequences",
                         "train_wall_s": "training wall time (s; training record)", "steps": "training steps"},
    "mdlm_norm_t": {"model": "", "norm": "module name", "layer": "block (n_layers: ln_final)", "kind": "tdln / adaln",
                    "t": "", "channel": "", "gamma": "γ(t)", "beta": "β(t)"},
    "mdlm_norm_motion": {"model": "", "norm": "", "layer": "", "kind": "", "gamma_range": "RMS over channels of "
                         "max_t γ − min_t γ", "beta_range": "the same for β", "gamma_rms": "RMS of γ",
                         "gamma_rel": "gamma_range / gamma_rms"},
    "mdlm_stream_t": {"model": "", "t": "noise level the collectors ran at", "depth": "", "variance": "as in stream",
                      "rms": ""},
    "mdlm_massive_t": {"model": "", "t": "noise level the collectors ran at", "depth": "", "top1": "as in massive",
                       "median": "", "n_massive": ""},
    # precision safety (interp.collectors.Precision and interp.precision; every column in docs/results.md)
    "precision": {"model": "", "layer": "block", "site": "residual site", "hook": "", "abs_max": "max |x|",
                  "fp16_headroom": "65504 / abs_max", "frac_fp16_overflow": "values fp16 turns into inf",
                  "fp16_rel_error": "", "bf16_rel_error": "", "int8_tensor_rel_error": "",
                  "int8_tensor_token_error": "", "int8_token_token_error": "", "n_outlier_features": "",
                  "kind": "", "n_tokens": "", "bf16_headroom": "", "frac_fp16_flush": "", "int8_token_rel_error": "",
                  "frac_outlier_values": ""},
    "precision_outliers": {"model": "", "site": "site family", "dim": "", "layer_frac": "", "token_frac": ""},
    "precision_runs": {"model": "", "format": "bf16 / fp16 / int8 / int8-token", "loss": "inf on overflow",
                       "loss_fp32": "", "delta_loss": "", "top1_agreement": "", "status": "ok / overflow / error",
                       "first_hook": "", "position": "", "token": "", "what": ""},
}
OPTIONAL: dict[str, set[str]] = {
    "cards": {"family", "strategy", "placement", "norm_kind", "n_layers", "d_model", "n_params",
              "weight_source", "quantization", "objective"},
    "stream": {"rms"}, "massive": {"top2", "top3"}, "massive_dims": {"mean_value"}, "outliers": {"position", "token", "massive"}, "ablation": {"depth", "dims"},
    "norm_scales": {"q05", "q25", "q75", "q95"}, "logit_lens": {"rank", "kl"}, "training": {"objective", "val_loss"},
    "sweep": {"n_spikes", "final_loss", "seed", "first_loss", "max_attn_logit", "objective"}, "growth": {"growth_factor", "shape", "var_first", "var_last"},
    "equivalence": {"max_abs_logit"}, "dla_example": {"prompt", "target"},
    "precision": {"kind", "n_tokens", "bf16_headroom", "frac_fp16_flush", "int8_token_rel_error", "frac_outlier_values"},
}


def check_table(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Raise a one-line error if `df` lacks a required column of canonical table `name`; return `df`."""
    if name not in TABLES:
        raise ValueError(f"unknown report table {name!r}; known: {', '.join(TABLES)}")
    required = set(TABLES[name]) - OPTIONAL.get(name, set())
    missing = sorted(required - set(df.columns))
    if missing:
        raise ValueError(f"report table {name!r} lacks column(s) {missing}; it has {sorted(map(str, df.columns))}")
    return df
