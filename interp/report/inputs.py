"""Gather what a report shows: `Results` (one per model, from `interp.collect`) and saved results directories
→ the canonical tables of `interp.report.tables`, one DataFrame per table with a `model` column.

Adapters for each producer's table live here, so figures and claims read one schema. A producer's table
whose name is already canonical and whose columns match passes through unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from interp.report.tables import TABLES, check_table

# producer table name -> adapter(df, card) -> {canonical name: DataFrame}; filled in by `adapter` below.
ADAPTERS: dict[str, Callable[[pd.DataFrame, Any], dict[str, pd.DataFrame]]] = {}


def adapter(name: str):
    """Register an adapter for producer table `name`."""
    def deco(fn):
        ADAPTERS[name] = fn
        return fn
    return deco


def card_row(card: Any) -> dict[str, Any]:
    d = card.to_dict() if hasattr(card, "to_dict") else dict(card)
    d = {("model" if k == "name" else k): v for k, v in d.items() if k != "extra"}
    return d


def _with_model(df: pd.DataFrame, name: str) -> pd.DataFrame:
    df = df.copy()
    if "model" not in df.columns:
        df.insert(0, "model", name)
    return df


Part = tuple[dict[str, Any], dict[str, list[pd.DataFrame]]]  # (card row, {canonical name: its rows})


def result_part(r: Any) -> Part:
    """One `Results` object's card row and canonical tables (what `tables_from_results` concatenates): the
    adapters' work, which the main job does for each model as its task returns, while the others run."""
    parts: dict[str, list[pd.DataFrame]] = {}
    for name, df in r.tables.items():
        if name in ADAPTERS:
            out = ADAPTERS[name](df, r.card)
        elif name in TABLES:
            out = {name: df}
        else:
            continue  # a table the report does not show
        for cname, cdf in out.items():
            if cdf is not None and not cdf.empty:
                parts.setdefault(cname, []).append(_with_model(cdf, r.card.name))
    return card_row(r.card), parts


def tables_from_parts(parts: Iterable[Part]) -> dict[str, pd.DataFrame]:
    """Canonical tables from `result_part`s, in their order."""
    tables: dict[str, list[pd.DataFrame]] = {}
    cards: list[dict[str, Any]] = []
    for i, (card, part) in enumerate(parts, 1):
        first = next((j for j, c in enumerate(cards, 1) if c["model"] == card["model"]), None)
        if first is not None:  # their rows would be pooled as one model's (a line zigzagging between two runs)
            raise ValueError(f"results {first} and {i} are both of model {card['model']!r}: the report would pool "
                             "their rows as one model's; report them in separate files")
        cards.append(card)
        for k, v in part.items():
            tables.setdefault(k, []).extend(v)
    out = {k: check_table(k, pd.concat(v, ignore_index=True)) for k, v in tables.items()}
    if cards:
        out["cards"] = pd.DataFrame(cards).drop_duplicates("model", keep="last")
    return out


def tables_from_results(results: Iterable[Any]) -> dict[str, pd.DataFrame]:
    """Canonical tables from `Results` objects (anything with `.card` and `.tables`)."""
    return tables_from_parts(result_part(r) for r in results)


def merge_tables(*many: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Concatenate canonical tables from several sources (later rows for the same model win for cards)."""
    out: dict[str, list[pd.DataFrame]] = {}
    for t in many:
        for k, v in t.items():
            if v is not None and not v.empty:
                out.setdefault(k, []).append(v)
    merged = {k: pd.concat(v, ignore_index=True) for k, v in out.items()}
    if "cards" in merged:
        merged["cards"] = merged["cards"].drop_duplicates("model", keep="last").reset_index(drop=True)
    return merged


def load_dirs(paths: Iterable[str | Path], progress: bool = False) -> list[Any]:
    """Load every saved `Results` under each path (the path itself, or its immediate subdirectories); `progress`:
    a bar on stderr, one step per directory, shown once loading has taken half a second (a quick load, or one that
    fails on a bad file at once, prints nothing but its result or its one-line error)."""
    from tqdm.auto import tqdm

    from interp.collectors.results import Results
    from interp.report.paths import results_dirs
    dirs = results_dirs(paths)  # every path checked before any is loaded
    with tqdm(dirs, desc="load results", unit="dir", disable=not progress, delay=0.5) as bar:  # closed before
        out = [Results.load(d) for d in bar]  # an error propagates: the bar ends above it, not after it
    seen: dict = {}
    for d, r in zip(dirs, out):
        if r.card.name in seen:  # tables_from_results would refuse them, without the folders' names
            raise ValueError(f"{seen[r.card.name]} and {d} both hold results of model {r.card.name!r}: the report "
                             "would pool their rows as one model's; report them in separate files")
        seen[r.card.name] = d
    return out


# ---- adapters: producers' tables (docs/results.md, interp.attribution) → canonical tables ----

@adapter("residual")
def _residual(df: pd.DataFrame, card: Any) -> dict[str, pd.DataFrame]:
    """ResidualStats rows of kind 'stream' → the stream at depth 0 (resid_pre of block 0) .. L (resid_post)."""
    s = df[df["kind"] == "stream"]
    first = s[(s["layer"] == 0) & (s["site"] == "resid_pre")].assign(depth=0)
    post = s[s["site"] == "resid_post"].assign(depth=lambda x: x["layer"] + 1)
    out = pd.concat([first, post])[["depth", "var", "rms"]].rename(columns={"var": "variance"})
    return {"stream": out.sort_values("depth").reset_index(drop=True)}


@adapter("residual_dims")
def _residual_dims(df: pd.DataFrame, card: Any) -> dict[str, pd.DataFrame]:
    """Per-dimension RMS of the stream leaving each block: the layer × dimension picture of outlier dims."""
    s = df[df["site"] == "resid_post"]
    return {"dims_rms": s.assign(value=s["mean_square"] ** 0.5)[["layer", "dim", "value"]]}


def from_dla(df: pd.DataFrame, example_components: int = 16, prompt: str | None = None,
             target: str | None = None) -> dict[str, pd.DataFrame]:
    """`interp.attribution.dla` output → dla_error (its `dla_summary`) and dla_example (first sequence, the
    components with the largest |DLA|, with the prompt and target when given)."""
    from interp.attribution import dla_summary
    first = df[(df["batch"] == df["batch"].min()) & df["direct_effect"].notna()]
    ex = first.loc[first["dla"].abs().sort_values(ascending=False).index[:example_components]]
    ex = ex[["model", "component", "dla", "direct_effect"]].reset_index(drop=True)
    if prompt is not None:
        ex = ex.assign(prompt=prompt, target=target if target is not None else "")
    return {"dla_error": dla_summary(df)[["model", "median_rel_error", "max_rel_error"]], "dla_example": ex}


def from_logit_lens(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """`interp.attribution.logit_lens` output → mean over positions per layer of p(target), rank and KL."""
    g = df.groupby(["model", "layer"], sort=False).agg(prob=("target_prob", "mean"), rank=("target_rank", "median"),
                                                       kl=("kl_to_final", "mean")).reset_index()
    return {"logit_lens": g}


@adapter("massive")
def _massive(df: pd.DataFrame, card: Any) -> dict[str, pd.DataFrame]:
    """MassiveActivations.result → per-depth top-3 / median |x| (means over sequences) and the massive count."""
    out = df.rename(columns={"top1_mean": "top1", "top2_mean": "top2", "top3_mean": "top3", "median_mean": "median"})
    return {"massive": out[["depth", "top1", "top2", "top3", "median", "n_massive"]]}


@adapter("massive_top")
def _massive_top(df: pd.DataFrame, card: Any) -> dict[str, pd.DataFrame]:
    return {"outliers": df[["depth", "position", "token", "dim", "value", "massive"]]}


@adapter("massive_dims")
def _massive_dims(df: pd.DataFrame, card: Any) -> dict[str, pd.DataFrame]:
    return {"massive_dims": df[["depth", "dim", "count", "mean_value"]]}


@adapter("norm_scales")
def _norm_scales(df: pd.DataFrame, card: Any) -> dict[str, pd.DataFrame]:
    """NormScales.result → quantiles of hook_scale per layer and norm (the final norm sits at layer L)."""
    return {"norm_scales": df.rename(columns={"q50": "median"})[["layer", "norm", "q05", "q25", "median", "q75", "q95"]]}


def from_ablation(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """MassiveActivations.ablation output → canonical ablation rows (none / mean / zero)."""
    return {"ablation": df.rename(columns={"intervention": "ablation"})[
        ["model", "ablation", "depth", "dims", "loss"]]}


def from_zoo_dir(zoo_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Training curves from a trained zoo (data/zoo/<strategy>/steps.parquet), model = the directory name,
    objective from its config.json (causal_lm: the loss is CE; mdlm: the masked-diffusion bound)."""
    import json
    frames = []
    for d in sorted(Path(zoo_dir).glob("*/steps.parquet")):
        s = pd.read_parquet(d)
        try:
            objective = json.loads((d.parent / "config.json").read_text())["config"].get("objective", "causal_lm")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            objective = "causal_lm"  # a log without its checkpoint's config: the zoo's default objective
        frames.append(s[["step", "loss"] + (["val_loss"] if "val_loss" in s else [])].assign(
            model=d.parent.name, objective=objective))
    return {"training": pd.concat(frames, ignore_index=True)} if frames else {}


@adapter("layer_effect")
def _layer_effect(df: pd.DataFrame, card: Any) -> dict[str, pd.DataFrame]:
    """LayerEffect.result → angular distance from depth ℓ to ℓ+n on the last real token (Mix-LN's measure)."""
    return {"angular": df.rename(columns={"depth": "layer", "angular_last": "distance"})[["layer", "n", "distance"]]}


@adapter("layer_skip")
def _layer_skip(df: pd.DataFrame, card: Any) -> dict[str, pd.DataFrame]:
    """LayerEffect.skip_table → CE increase when block ℓ is skipped (LMs only: encoders use another metric)."""
    lm = df[df["metric"] == "next_token_ce"]
    return {"skip": lm.rename(columns={"increase": "loss_delta"})[["layer", "loss_delta"]]}


@adapter("grad_norms")
def _grad_norms(df: pd.DataFrame, card: Any) -> dict[str, pd.DataFrame]:
    """GradNorms.result → mean gradient norm per block (params) and per stream depth (resid, per token)."""
    out = df.assign(target=df["kind"].map({"param": "params", "stream": "resid"}), grad_norm=df["mean"])
    return {"gradients": out[["layer", "target", "grad_norm"]]}


def from_sweep(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """`interp.train.sweep.lr_sweep` output (strategy, lr, diverged, loss_spikes, final_loss ...) → sweep, with each
    strategy's objective (causal_lm: the losses are CE; mdlm: the masked-diffusion bound the sweep trains)."""
    from interp.zoo.config import STRATEGIES
    out = df.rename(columns={"strategy": "model", "loss_spikes": "n_spikes"})
    out["diverged"] = out["diverged"].astype(str).str.lower().isin(["true", "1"]) if out["diverged"].dtype == object \
        else out["diverged"].astype(bool)
    if "objective" not in out:
        out["objective"] = [STRATEGIES.get(str(m), {}).get("objective", "causal_lm") for m in out["model"]]
    keep = ["model", "lr", "diverged", "n_spikes", "final_loss", "seed", "first_loss", "max_attn_logit", "objective"]
    return {"sweep": out[[c for c in keep if c in out]]}
