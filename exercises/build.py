"""Build the exercise notebooks and their solutions from one source each, exercises/src/NN_name.py.

A source is a Python file in "percent" format; each cell starts with a header line:

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
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}
HEADER = re.compile(r"# %%(?: \[(?P<markdown>markdown)\]| (?P<kind>solution|grade) (?P<id>[A-Za-z0-9_-]+)"
                    r"(?: points=(?P<points>\d+(?:\.\d+)?))?)?\s*$")


class BuildError(ValueError):
    """A source file breaks one of the rules above; the message names the file and the cell."""


def split_cells(text: str, name: str) -> list[dict]:
    """[{kind, id, points, lines}] in order; kind is markdown, setup, solution or grade."""
    cells = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("# %%"):
            match = HEADER.match(line)
            if not match:
                raise BuildError(f"{name}:{number}: unrecognised cell header {line!r}")
            kind = "markdown" if match["markdown"] else match["kind"] or "setup"
            cells.append({"kind": kind, "id": match["id"], "points": match["points"], "lines": [], "line": number})
        elif cells:
            cells[-1]["lines"].append(line)
        elif line.strip() and not line.startswith("#"):
            raise BuildError(f"{name}:{number}: code before the first '# %%' cell header")
    for cell in cells:
        while cell["lines"] and not cell["lines"][-1].strip():
            cell["lines"].pop()
    return cells


def markdown_text(lines: list[str], where: str) -> str:
    for line in lines:
        if line and line != "#" and not line.startswith("# "):
            raise BuildError(f"{where}: markdown lines must start with '# ' ({line!r})")
    return "\n".join(line[2:] for line in lines).strip()


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
            previous_text = markdown_text(cell["lines"], where)
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
