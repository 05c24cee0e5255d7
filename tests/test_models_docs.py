"""docs/models.md's families table says what interp.models.families does: the same 24 model types, each with the
placement on its card, its norm kind, whether it has QK-norm sites and whether its .gguf files load."""
from pathlib import Path

from interp.models.decoder import Decoder
from interp.models.families import DECODERS, covered, family_rows, layout_for

DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"


def doc_rows() -> dict[str, list[str]]:
    lines = DOC.read_text(encoding="utf-8").split("<!-- families:", 1)[1].splitlines()[1:]
    table = [ln for ln in lines[:lines.index("")] if ln.startswith("| `")]
    return {ln.split("`")[1]: [c.strip() for c in ln.strip("|").split("|")] for ln in table}


def test_families_table_matches_the_name_table():
    from transformers import AutoConfig
    rows, code = doc_rows(), {r["name"].removeprefix("family:"): r for r in family_rows()}
    assert sorted(rows) == covered() and len(rows) == 24
    for t, (_, placement, norm, qk, gguf) in rows.items():
        lay = layout_for(AutoConfig.for_model(t))
        assert placement.split()[0] == code[t]["placement"].split()[0], t
        assert ("per config" in code[t]["placement"]) == callable(DECODERS.get(t)) == ("when" in placement), t
        assert norm.split()[0].rstrip(",") == {"rmsnorm": "RMSNorm", "layernorm": "LayerNorm"}[code[t]["norm_kind"]], t
        assert ("(1+w)" in norm) == (isinstance(lay, Decoder) and lay.norm == "rmsnorm1p"), t
        has_qk = isinstance(lay, Decoder) and lay.q_norm is not None
        assert (qk != "—") == has_qk, t
        if has_qk:
            assert lay.q_norm in qk and (lay.qk_flag is None or lay.qk_flag in qk), t
        assert gguf == ("yes" if ".gguf" in code[t]["source"] else "no"), t
