"""The public API a reader can see: no package attribute is a function hiding a submodule of the same name,
`interp.collect` is a plain function, and the attribution modules import one way (no circle, lazy imports
included)."""
import ast
import importlib
import pkgutil
import types
from pathlib import Path


import interp

ROOT = Path(interp.__file__).resolve().parent


def shadows() -> list[str]:
    """Every `package.name` where `name` is a submodule but the package attribute is not that module."""
    found = []
    for m in pkgutil.walk_packages(interp.__path__, "interp."):
        if not m.ispkg:
            continue
        pkg = importlib.import_module(m.name)
        for sub in pkgutil.iter_modules(pkg.__path__):
            v = pkg.__dict__.get(sub.name)
            if v is not None and not isinstance(v, types.ModuleType):
                found.append(f"{m.name}.{sub.name}")
    return found


def test_no_function_shadows_its_module():
    assert shadows() == []


def test_collect_is_a_plain_function():
    assert isinstance(interp.collect, types.FunctionType)


def imports_of(path: Path) -> set[str]:
    """interp modules `path` imports anywhere in its code (inside functions too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("interp"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("interp"))
    return out


def test_attribution_modules_import_one_way():
    pkg = ROOT / "attribution"
    mods = {f"interp.attribution.{p.stem}": p for p in pkg.glob("*.py") if p.stem != "__init__"}
    graph = {m: imports_of(p) & mods.keys() - {m} for m, p in mods.items()}
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, "import circle: " + " -> ".join(path + (m,))
        if m in done:
            return
        for d in graph[m]:
            visit(d, path + (m,))
        done.add(m)

    for m in graph:
        visit(m, ())
    assert graph["interp.attribution.direct"] >= {"interp.attribution.sublayers", "interp.attribution.targets"}


def test_attribution_names():
    from interp.attribution import dla, dla_summary, dla_sublayers, logit_lens
    assert {f.__name__ for f in (dla, dla_summary, dla_sublayers, logit_lens)} == \
        {"dla", "dla_summary", "dla_sublayers", "logit_lens"}
    assert "summary" not in interp.attribution.__all__


def test_model_card_docstring_names_every_placement_and_objective_a_card_can_carry():
    from interp.card import PLACEMENTS
    from interp.models.families import DECODERS, Decoder
    doc = interp.ModelCard.__doc__
    placements = {d.placement for d in DECODERS.values() if isinstance(d, Decoder)} - set(PLACEMENTS)
    objectives = {p.get("objective", "causal_lm") for p in interp.STRATEGIES.values()} | {"encoder"}
    assert placements == {"parallel"} and objectives == {"causal_lm", "mdlm", "encoder"}
    for word in placements | objectives:
        assert f'"{word}"' in doc, word
