"""Build the course notebooks from their sources in notebooks/src/, then execute them top to bottom.

Each source `src/NN_name.py` defines `CELLS`, a list made with `md(...)`, `code(...)` and `export(...)`.
`export("minigemma.rmsnorm.RMSNorm")` inserts the package's *own* source for that object as a code cell, tagged in
the cell metadata (`minigemma.export`); tests/test_notebook_drift.py fails when a committed notebook's exported
cell and the package differ, so the code a notebook finishes is always the code `minigemma/` ships.

    python notebooks/nbbuild.py            # build and execute every notebook
    python notebooks/nbbuild.py 03 05      # only these
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import textwrap
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def md(text: str):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip())


def code(source: str, tags: tuple[str, ...] = ()):
    cell = nbformat.v4.new_code_cell(textwrap.dedent(source).strip())
    if tags:
        cell.metadata["tags"] = list(tags)        # e.g. "nbval-ignore-output" for timings
    return cell


def check_catches_cell():
    """The helper of every "common mistakes" section, as a cell of its own."""
    return code("""
    def check_catches(check):
        \"\"\"Run a check that is expected to fail; return True when it does.\"\"\"
        try:
            check()
        except AssertionError:
            return True
        return False
    """)


def resolve(dotted: str):
    """'minigemma.rmsnorm.RMSNorm' -> the object."""
    module_name, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def export_source(dotted: str) -> str:
    return inspect.getsource(resolve(dotted)).rstrip()


def export(*dotted: str):
    """One code cell holding the package's source of these objects, verbatim."""
    cell = nbformat.v4.new_code_cell("\n\n\n".join(export_source(d) for d in dotted))
    cell.metadata["minigemma"] = {"export": list(dotted)}
    return cell


def build(source: Path, execute: bool = True, timeout: int = 600) -> Path:
    spec = importlib.util.spec_from_file_location(source.stem, source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    nb = nbformat.v4.new_notebook(cells=module.CELLS)
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
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
