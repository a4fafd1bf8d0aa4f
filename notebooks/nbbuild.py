"""Build the course notebooks from their sources in notebooks/src/, then execute them top to bottom.

Each source `src/NN_name.py` is a plain Python file in percent format (read by tools/cells.py). Besides markdown
and code cells, a lesson may use
    # %% export minigemma.rmsnorm.RMSNorm ...   the package's *own* source of these objects, inserted as a code
                                               cell tagged in its metadata (`minigemma.export`);
    # %% include check_catches                  the helper of every "common mistakes" section.
tests/test_notebook_drift.py fails when a committed notebook's exported cell and the package differ, so the code a
notebook finishes is always the code `minigemma/` ships.

    python notebooks/nbbuild.py            # build and execute every notebook
    python notebooks/nbbuild.py 03 05      # only these
"""
from __future__ import annotations

import importlib
import inspect
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tools"))
from cells import SourceError, split_cells  # noqa: E402

KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}
KINDS = {"markdown", "code", "export", "include"}
INCLUDES = {"check_catches": '''
def check_catches(check):
    """Run a check that is expected to fail; return True when it does."""
    try:
        check()
    except AssertionError:
        return True
    return False
'''.strip()}


def resolve(dotted: str):
    """'minigemma.rmsnorm.RMSNorm' -> the object."""
    module_name, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def export_source(dotted: str) -> str:
    return inspect.getsource(resolve(dotted)).rstrip()


def export_cell(names: list[str]):
    """One code cell holding the package's source of these objects, verbatim."""
    cell = nbformat.v4.new_code_cell("\n\n\n".join(export_source(d) for d in names))
    cell.metadata["minigemma"] = {"export": list(names)}
    return cell


def notebook_cell(cell, where: str):
    if cell.kind == "markdown":
        return nbformat.v4.new_markdown_cell(cell.text)
    if cell.kind == "export":
        if not cell.args or cell.text:
            raise SourceError(f"{where}: an export cell names objects and has no body")
        return export_cell(cell.args)
    if cell.kind == "include":
        if cell.args[:1] != cell.args or cell.args[0] not in INCLUDES:
            raise SourceError(f"{where}: include one of {', '.join(INCLUDES)}")
        return nbformat.v4.new_code_cell(INCLUDES[cell.args[0]])
    node = nbformat.v4.new_code_cell(cell.text)
    if "tags" in cell.options:
        node.metadata["tags"] = cell.options["tags"].split(",")      # e.g. "nbval-ignore-output" for timings
    return node


def notebook(source: Path):
    cells = split_cells(source.read_text(), source.name, KINDS)
    nb = nbformat.v4.new_notebook(cells=[notebook_cell(c, f"{source.name}:{c.line}") for c in cells])
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def build(source: Path, execute: bool = True, timeout: int = 600) -> Path:
    nb = notebook(source)
    target = HERE / f"{source.stem}.ipynb"
    if execute:
        started = time.time()
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
        print(f"{target.name}: executed in {time.time() - started:.1f}s")
    nbformat.write(nb, target)
    return target


def main(argv: list[str]) -> int:
    sources = sorted((HERE / "src").glob("[0-9][0-9]_*.py"))
    if argv:
        sources = [s for s in sources if s.stem[:2] in argv]
    for source in sources:
        build(source)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
