"""Build the exercise notebooks and their solutions from one source each, exercises/src/NN_name.py.

A source is a Python file in "percent" format, read by tools/cells.py; each cell starts with a header line:

    # %% [markdown]                   instructions (every line starts with "# ")
    # %%                              locked set-up code (imports)
    # %% solution rope-apply          the learner's cell; code between the marker lines
                                      ### BEGIN SOLUTION / ### END SOLUTION is the answer
    # %% grade rope-apply points=4    the check, worth 4 points; grade_id = the check's task id

From it come two notebooks with nbgrader metadata (schema 3):
  * exercises/NN_name.ipynb: each solution region replaced by "# YOUR CODE HERE / raise NotImplementedError()",
    as nbgrader's generate_assignment does;
  * exercises/solutions/NN_name.ipynb: the solutions, markers kept, which is also an nbgrader *source* notebook.
The build refuses a source whose grade cell calls a check for another task, or whose task heading states other
points than its grade cell. tests/test_exercises.py rebuilds in memory and fails when the committed files drift.

    python exercises/build.py           # write both sets
    python exercises/build.py --check   # only compare; exit 1 and name the files that differ
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tools"))
from cells import SourceError, split_cells as read_cells  # noqa: E402
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


class BuildError(SourceError):
    """A source file breaks one of the rules above; the message names the file and the cell."""


def split_cells(text: str, name: str) -> list[dict]:
    """[{kind, id, points, lines}] in order; kind is markdown, setup, solution or grade (tools/cells.py reads them)."""
    cells = []
    for cell in read_cells(text, name, {"markdown", "code", "solution", "grade"}):
        where = f"{name}:{cell.line}"
        task = cell.args[0] if cell.args else None
        if cell.kind in ("solution", "grade") and (len(cell.args) != 1 or not re.fullmatch(r"[A-Za-z0-9_-]+", task)):
            raise BuildError(f"{where}: a {cell.kind} cell names one task id, got {cell.args!r}")
        points = cell.options.get("points")
        if points is not None and (cell.kind != "grade" or not re.fullmatch(r"\d+(\.\d+)?", points)):
            raise BuildError(f"{where}: points=N belongs on a grade cell, as a number (got {points!r})")
        kind = {"code": "setup"}.get(cell.kind, cell.kind)
        cells.append({"kind": kind, "id": task, "points": points, "lines": cell.lines, "line": cell.line})
    return cells


def stub_out(lines: list[str], where: str) -> list[str]:
    """Replace every BEGIN..END SOLUTION region with the stub, at the BEGIN line's indentation."""
    out, inside = [], False
    for line in lines:
        if line.strip() == BEGIN:
            if inside:
                raise BuildError(f"{where}: {BEGIN} inside another solution region")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            out.extend(indent + stub for stub in STUB)
        elif line.strip() == END:
            if not inside:
                raise BuildError(f"{where}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise BuildError(f"{where}: {BEGIN} is never closed")
    return out


def nbgrader(grade_id: str, *, grade=False, solution=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3, "solution": solution}
    if points is not None:
        meta["points"] = points
    return meta


def check_grade_cell(cell: dict, previous_text: str, where: str) -> float:
    from minigemma.grading import REGISTRY
    task, points = cell["id"], float(cell["points"] or 0)
    if task not in REGISTRY:
        raise BuildError(f"{where}: no check is registered for task {task!r}")
    call = REGISTRY[task].__name__ + "("
    if not "\n".join(cell["lines"]).strip().startswith(call):
        raise BuildError(f"{where}: the grade cell for {task!r} must call {call[:-1]}")
    stated = re.findall(r"\((\d+(?:\.\d+)?) points?\)", previous_text)
    if not stated or float(stated[-1]) != points:
        raise BuildError(f"{where}: the task heading before it must say '({points:g} points)'")
    return points


def build_notebook(source: Path, with_solutions: bool):
    name = source.name
    cells, previous_text, counts = [], "", {}
    for cell in split_cells(source.read_text(), name):
        where = f"{name}:{cell['line']}"
        kind = cell["kind"]
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "markdown":
            previous_text = "\n".join(cell["lines"]).strip()
            node = nbformat.v4.new_markdown_cell(previous_text)
            grade_id = f"{source.stem[:2]}-text-{counts[kind]}"
            node.metadata["nbgrader"] = nbgrader(grade_id)
        elif kind == "grade":
            points = check_grade_cell(cell, previous_text, where)
            node = nbformat.v4.new_code_cell("\n".join(cell["lines"]).strip())
            grade_id = cell["id"]
            node.metadata["nbgrader"] = nbgrader(grade_id, grade=True, points=points)
        else:
            lines = cell["lines"] if with_solutions or kind != "solution" else stub_out(cell["lines"], where)
            if kind == "solution":
                stub_out(cell["lines"], where)                       # validates the markers either way
            node = nbformat.v4.new_code_cell("\n".join(lines).strip())
            grade_id = f"{cell['id']}-code" if kind == "solution" else f"{source.stem[:2]}-setup-{counts[kind]}"
            node.metadata["nbgrader"] = nbgrader(grade_id, solution=kind == "solution")
        node["id"] = grade_id
        cells.append(node)
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": KERNEL, "language_info": {"name": "python"}})
    nbformat.validate(nb)
    return nb


def render_all() -> dict[Path, str]:
    """{target path: notebook JSON text} for every source, stubs and solutions."""
    out = {}
    for source in sorted((HERE / "src").glob("[0-9][0-9]_*.py")):
        out[HERE / f"{source.stem}.ipynb"] = nbformat.writes(build_notebook(source, False)) + "\n"
        out[HERE / "solutions" / f"{source.stem}.ipynb"] = nbformat.writes(build_notebook(source, True)) + "\n"
    return out


def main(argv: list[str]) -> int:
    rendered = render_all()
    if "--check" in argv:
        stale = [str(p.relative_to(HERE)) for p, text in rendered.items() if not p.exists() or p.read_text() != text]
        print("up to date" if not stale else "out of date (run python exercises/build.py): " + ", ".join(stale))
        return 1 if stale else 0
    (HERE / "solutions").mkdir(exist_ok=True)
    for path, text in rendered.items():
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
