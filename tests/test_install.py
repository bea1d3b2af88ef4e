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
    importlib.import_module("fragfix.formats.deflate")  # the subpackage a bad wheel lacked
    from fragfix.bundled import resolve_model_path
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
