"""The docs say only what their sources say: every number rendered from benchmarks/results/*.json and
data/zoo/manifest.json equals its JSON, no JSON number is copied into hand-written text, every result file has
its provenance and its section, and the Python quick starts run as written."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
PROVENANCE = ("benchmark", "description", "machine", "threads", "torch", "python", "date", "command", "results")


def load_generator():
    import importlib.util
    spec = importlib.util.spec_from_file_location("docs_numbers", ROOT / "docs" / "numbers_from_json.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pages_equal_what_their_sources_render():
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "numbers_from_json.py"), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr + out.stdout


def test_a_changed_json_number_makes_the_check_fail(tmp_path, monkeypatch):
    gen = load_generator()
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert gen.render_page(page, "benchmarks.md") == page
    src = json.loads(RESULTS[0].read_text())
    fake = tmp_path / "results"
    fake.mkdir()
    for p in RESULTS:
        (fake / p.name).write_text(p.read_text())
    row = src["results"] if isinstance(src["results"], dict) else src["results"][0]
    first = next(k for k, v in gen.flat(row).items() if isinstance(v, float))
    doc = json.loads((fake / RESULTS[0].name).read_text())
    target = doc["results"] if isinstance(doc["results"], dict) else doc["results"][0]
    node = target
    *path, last = first.split("/")
    for k in path:
        node = node[k]
    node[last] = node[last] * 1.5 + 1.0
    (fake / RESULTS[0].name).write_text(json.dumps(doc))
    monkeypatch.setattr(gen, "RESULTS", fake)
    assert gen.render_page(page, "benchmarks.md") != page


def test_a_quote_spells_a_key_with_spaces_with_underscores():
    gen = load_generator()
    doc = {"results": {"zoo on AMD EPYC (AVX2)": {"ratio": 1.0}, "zoo on Intel": {"ratio": 2.0}}}
    assert gen.lookup(doc, "results/zoo_on_AMD_EPYC_(AVX2)/ratio", "x") == 1.0
    assert gen.lookup(doc, "results/zoo_on_Intel/ratio", "x") == 2.0
    with pytest.raises(SystemExit, match="not in its JSON"):
        gen.lookup(doc, "results/zoo_on_AMD/ratio", "x")


def test_a_quote_reaches_a_key_that_holds_a_slash():
    gen = load_generator()
    doc = {"results": {"zoo on Intel": {"collect/plain (cpu, median)": 1.1, "collect": {"plain": 2.0},
                                        "step_seconds": {"loaded": {"gemma-3-270m": 7.8}}, "list": [5, 6]}}}
    assert gen.lookup(doc, "results/zoo_on_Intel/collect/plain_(cpu,_median)", "x") == 1.1
    assert gen.lookup(doc, "results/zoo_on_Intel/collect/plain", "x") == 2.0  # nested keys still nest
    assert gen.lookup(doc, "results/zoo_on_Intel/step_seconds/loaded/gemma-3-270m", "x") == 7.8
    assert gen.lookup(doc, "results/zoo_on_Intel/list/1", "x") == 6
    with pytest.raises(SystemExit, match=r"no 'plain_\(wall,_median\)'"):
        gen.lookup(doc, "results/zoo_on_Intel/collect/plain_(wall,_median)", "x")


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.stem)
def test_result_files_carry_their_provenance(path):
    d = json.loads(path.read_text())
    missing = [k for k in PROVENANCE if d.get(k) in (None, "", {})]
    assert not missing, f"{path.name} lacks {missing}: rerun its script (it writes through benchmarks/record.py)"
    assert d["benchmark"] == path.stem
    assert {"cpu", "cores"} <= set(d["machine"])
    assert f"### {path.stem}" in (ROOT / "docs" / "benchmarks.md").read_text()


def _json_numbers() -> set[str]:
    """Every non-integer number of the result files and the manifest, as the docs could print it (with four
    significant digits or more, so that a short constant in the text does not collide by chance)."""
    gen = load_generator()
    out: set[str] = set()

    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, float) and v == v and abs(v) not in (0.0, 1.0):
            for spec in (".4g", ".3f"):
                s = format(v, spec)
                if "." in s and len(s.strip("-0.").replace(".", "")) >= 4:  # a decimal, 4 significant digits
                    out.add(s)
    for p in RESULTS:
        walk(json.loads(p.read_text())["results"])
    walk(json.loads(gen.MANIFEST.read_text()).get("models", {}))
    return out


def _hand_written(text: str) -> str:
    text = re.sub(r"<!-- numbers: \w+ -->.*?<!-- /numbers -->", "", text, flags=re.S)
    text = re.sub(r"<!-- n: [^>]*-->.*?<!-- /n -->", "", text)
    return re.sub(r"```.*?```", "", text, flags=re.S)


def test_no_json_number_is_copied_by_hand():
    nums = _json_numbers()
    for page in PAGES:
        text = _hand_written(page.read_text())
        found = sorted(n for n in nums if re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", text))
        assert not found, (f"{page.relative_to(ROOT)} quotes {found} by hand; quote numbers through "
                           "<!-- n: SOURCE PATH -->…<!-- /n --> (see docs/numbers_from_json.py)")


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.slow
@pytest.mark.parametrize("page", ["README.md", "docs/getting-started.md"])
def test_python_quick_start_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _python_blocks(ROOT / page)[0]
    exec(compile(code, page, "exec"), {"__name__": "quickstart"})


def test_a_quote_the_pattern_cannot_read_is_an_error_not_left_unchecked():
    gen = load_generator()
    page = "ok <!-- n: zoo models/pre-ln/x -->1<!-- /n -->\nbad <!-- n: zoo models/pre ln/x .2f -->1<!-- /n -->\n"
    with pytest.raises(SystemExit, match=r"p\.md:2: malformed quote '<!-- n: zoo models/pre ln/x \.2f -->'"):
        gen.render_page(page, "p.md")


def test_an_interval_takes_the_format_spec_at_both_ends():
    gen = load_generator()
    assert gen.fmt([1.0794, 1.09], ".3f") == "1.079, 1.090"
    assert gen.fmt([1.0794, 1.09]) == "1.079, 1.09"


def test_concepts_placement_table_names_every_placement_and_strategy():
    """docs/concepts.md's placement table: one row per placement the card knows, each zoo strategy in the row of
    its own placement (a strategy added to the zoo without its row would leave the page incomplete)."""
    from interp.card import PLACEMENTS
    from interp.zoo.config import STRATEGIES
    text = (ROOT / "docs" / "concepts.md").read_text().split("## Placements")[1].split("\nNorm kinds")[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z]+)` \|[^|]*\|(.*)\|$", text, re.M)}
    assert set(rows) == set(PLACEMENTS)
    for name, cfg in STRATEGIES.items():
        assert f"`{name}`" in rows[cfg["placement"]], f"{name} missing from the {cfg['placement']} row"
