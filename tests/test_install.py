"""The package as users get it: a wheel holds every subpackage and the bundled model.

Under CI (FRAGFIX_EXPECT_INSTALLED=1) the tests must import the installed package, not the source
tree: an editable install or the checkout on sys.path hid a wheel without `fragfix/formats/`.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path

import pytest

import fragfix


SOURCE = Path(__file__).resolve().parent.parent / "fragfix"


def test_every_subpackage_and_the_model_are_importable():
    root = Path(fragfix.__file__).parent
    for mod in pkgutil.walk_packages([str(root)], "fragfix."):
        if not mod.name.endswith("__main__"):  # importing it runs the CLI
            importlib.import_module(mod.name)
    importlib.import_module("fragfix.formats.deflate.search")  # the subpackage a bad wheel lacked
    from fragfix.model.bundled import resolve_model_path
    assert resolve_model_path(None).is_file()
    assert resolve_model_path(None).stat().st_size > 10_000


@pytest.mark.skipif(not os.environ.get("FRAGFIX_EXPECT_INSTALLED"), reason="only where the wheel is installed (CI)")
def test_tests_run_against_the_installed_wheel():
    here = Path(fragfix.__file__).resolve().parent
    assert here != SOURCE, f"tests imported the source tree {here}, not the installed wheel"
    assert "site-packages" in here.parts
    # every module of the source tree made it into the wheel
    want = {p.relative_to(SOURCE).as_posix() for p in SOURCE.rglob("*.py")}
    have = {p.relative_to(here).as_posix() for p in here.rglob("*.py")}
    assert want <= have, f"missing from the wheel: {sorted(want - have)}"


# the layers, each importing only those before it (docs/development.md)
LAYERS = (("fragfix", "fragfix.errors", "fragfix.config"), ("fragfix.model", "fragfix.files", "fragfix.formats"),
          ("fragfix.rule", "fragfix.training"), ("fragfix.recovery",), ("fragfix.evaluation",), ("fragfix.cli",),
          ("fragfix.__main__",))


def _imports() -> dict[str, set[str]]:
    """Every fragfix module -> the fragfix modules it imports, at the top or inside a function.
    `from pkg import sub` is an import of the submodule (the package is initialised for any import
    below it); names the package itself defines make it an edge to the package."""
    import ast
    root = Path(fragfix.__file__).parent
    files = {}
    for p in root.rglob("*.py"):
        parts = p.relative_to(root.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    out = {}
    for name, p in files.items():
        package = name if p.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
                subs = {f"{mod}.{a.name}" for a in node.names} & set(files)
                found |= subs | ({mod} if mod in files and len(subs) < len(node.names) else set())
        out[name] = found - {name}
    return out


def _layer(name: str) -> int:
    return max(i for i, layer in enumerate(LAYERS) for top in layer if name == top or name.startswith(top + "."))


def test_no_import_cycles_and_no_import_upward():
    graph = _imports()
    assert len(graph) > 50
    upward = sorted((a, b) for a, bs in graph.items() for b in bs if _layer(b) > _layer(a))
    assert upward == [], f"imports from a later layer: {upward}"
    # the repair rule and the pipelines never reach into training code (decide once took `cut`
    # from the dataset module), nor training into the rule: siblings in one layer
    apart = sorted((a, b) for a, bs in graph.items() for b in bs
                   if a.startswith(("fragfix.rule", "fragfix.recovery")) and b.startswith("fragfix.training")
                   or a.startswith("fragfix.training") and b.startswith("fragfix.rule"))
    assert apart == [], f"imports between the rule and training: {apart}"
    state: dict[str, int] = {}  # depth-first search: 1 on the path, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, f"import cycle: {' -> '.join(path[path.index(n):] + [n])}" if n in path else n
            if n not in state:
                visit(n, path + [n])
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
