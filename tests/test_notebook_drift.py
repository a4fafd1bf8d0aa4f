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
