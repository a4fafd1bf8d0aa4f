"""Keep your own code as you go: collect the solution cells of your exercise notebooks into one module of yours.

    python exercises/keep.py                    # reads exercises/NN_*.ipynb, writes exercises/my_gemma.py
    python exercises/keep.py FOLDER --out FILE  # your notebooks elsewhere

Every solution cell (nbgrader metadata `solution: true`) of every exercise notebook before 10, in order, goes into
the module, under a comment naming its notebook and task; cells still holding the stub (`raise
NotImplementedError()`) are left out and listed. The imports of the notebooks' set-up cells come along, except
minigemma's: your module must not depend on the reference. In exercise 10, run `%load my_gemma.py` in the solution
cell: the code becomes part of the notebook, so it is graded as yours (the grader sees only that notebook).
Not here: checking that the kept code works (the exercises' checks do that).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
STUB = "raise NotImplementedError()"


def kept_imports(nb) -> list[str]:
    lines = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and not meta.get("solution") and not meta.get("grade"):
            lines += [line for line in cell.source.splitlines() if line.startswith(("import ", "from "))
                      and "minigemma" not in line]
    return lines


def collect(folder: Path) -> tuple[str, list[str]]:
    """(the module's text, ['notebook: task' of every cell left out because it is still a stub])."""
    imports, parts, skipped = [], [], []
    notebooks = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if p.name[:2] < "10")
    if not notebooks:
        raise ValueError(f"{folder}: no exercise notebooks (NN_name.ipynb) to keep code from")
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        imports += [line for line in kept_imports(nb) if line not in imports]
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if not meta.get("solution"):
                continue
            task = meta.get("grade_id", "?").removesuffix("-code")
            if STUB in cell.source:
                skipped.append(f"{path.name}: {task}")
                continue
            parts.append(f"# ---- {path.name}: {task}\n{cell.source.strip()}\n")
    header = '"""My own Gemma: my solution cells, kept by exercises/keep.py."""\n'
    return header + "\n".join(imports) + "\n\n\n" + "\n\n".join(parts), skipped


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=HERE)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        text, skipped = collect(args.folder)
    except ValueError as err:
        print(f"keep: error: {err}", file=sys.stderr)
        return 2
    out = args.out or args.folder / "my_gemma.py"
    out.write_text(text)
    print(f"wrote {out}" + (f"; left out (not done yet): {', '.join(skipped)}" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
