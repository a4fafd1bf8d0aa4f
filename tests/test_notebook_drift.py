"""The code a notebook finishes is the code the package ships: every exported cell must equal the package source."""
import json
from pathlib import Path

import pytest

import sys
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebooks"))
from nbbuild import export_source  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def drift(notebook: dict) -> list[str]:
    """Names of exported objects whose cell differs from the package's current source."""
    problems = []
    for cell in notebook["cells"]:
        names = cell.get("metadata", {}).get("minigemma", {}).get("export")
        if not names:
            continue
        source = "".join(cell["source"])
        expected = "\n\n\n".join(export_source(n) for n in names)
        if source.rstrip() != expected:
            problems.append(", ".join(names))
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_matches_package(path):
    notebook = json.loads(path.read_text())
    assert drift(notebook) == [], (f"{path.name}: exported cells differ from minigemma: {drift(notebook)}. "
                                   f"Rebuild with: python notebooks/nbbuild.py {path.name[:2]}")


def test_every_notebook_exports_something():
    exported = [p.name for p in NOTEBOOKS
                if any(c.get("metadata", {}).get("minigemma") for c in json.loads(p.read_text())["cells"])]
    assert len(exported) >= 1


def test_drift_check_catches_an_edit():
    notebooks_with_exports = [p for p in NOTEBOOKS if '"export"' in p.read_text()]
    if not notebooks_with_exports:
        pytest.skip("no notebook exports package code yet")
    notebook = json.loads(notebooks_with_exports[0].read_text())
    cell = next(c for c in notebook["cells"] if c.get("metadata", {}).get("minigemma"))
    cell["source"] = "".join(cell["source"]).replace("(", "( ", 1)      # a one-character edit
    assert drift(notebook), "the drift check did not notice an edited exported cell"


ALL_NOTEBOOKS = NOTEBOOKS + sorted((NOTEBOOKS[0].parents[1] / "exercises").rglob("[0-9][0-9]_*.ipynb"))


def machine_specific_outputs(notebook: dict, checkout: str) -> list[int]:
    """Cells whose stored output names this checkout's folder: strict nbval fails on any other clone."""
    return [i for i, cell in enumerate(notebook["cells"])
            for output in cell.get("outputs", []) if checkout in json.dumps(output)]


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=[p.relative_to(NOTEBOOKS[0].parents[1]).as_posix() for p in ALL_NOTEBOOKS])
def test_no_stored_output_names_the_checkout(path):
    checkout = str(path.resolve().parents[1 if path.parent.name != "solutions" else 2])
    cells = machine_specific_outputs(json.loads(path.read_text()), checkout)
    assert cells == [], (f"{path.name}: cells {cells} store output naming {checkout} (a warning's path?); "
                         f"silence or avoid it and rebuild the notebook")


def test_the_checkout_check_catches_a_path_in_a_warning():
    notebook = {"cells": [{"outputs": [{"name": "stdout", "text": ["fine\n"]}]},
                          {"outputs": [{"name": "stderr", "text": ["/x/repo/.venv/lib/a.py:1: FutureWarning\n"]}]}]}
    assert machine_specific_outputs(notebook, "/x/repo") == [1]
