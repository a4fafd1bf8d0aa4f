"""What gets graded: the release version of an exercise, with only the learner's solution code taken from the
submission (as nbgrader's autograde restores its locked cells).

The release notebook is rebuilt from exercises/src/NN_name.py (or read from the committed exercises/NN_name.ipynb),
found by the id in the submission's metadata (`minigemma.exercise`) or else by its file name. From the release come
every grade cell, its id, points, tags and order, and every locked cell; from the submission come the *sources* of
the cells whose id is a release solution cell, and any code cells the learner added (kept after the solution cell
they follow), outputs cleared. A submitted cell that claims to be a grade or locked cell is ignored.
Also here: which modules each exercise refuses in the learner's kernel (the reference implementations).
Not here: running it (runner.py).
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

from .notebook import nbgrader_meta

# the release versions: the repository's exercises/, or $MINIGEMMA_EXERCISES for a grader installed from a wheel
EXERCISES_DIR = Path(os.environ.get("MINIGEMMA_EXERCISES") or Path(__file__).resolve().parents[2] / "exercises")
LESSON_MODULES = ["tokenizer", "bpe", "embedding", "rmsnorm", "rope", "attention", "mlp", "block", "model",
                  "kv_cache", "generate", "gemma3", "weights", "memory", "reference", "cli"]
GIVEN = {"07": {"embedding", "rmsnorm", "rope", "attention", "mlp", "block", "model", "kv_cache"},
         "08": {"embedding", "rmsnorm", "rope", "attention", "mlp", "block"},   # parts these exercises hand out
         "11": {"embedding", "rmsnorm", "rope", "attention", "mlp", "block", "model", "kv_cache", "gemma3",
                "weights", "tokenizer", "bpe", "generate"}}     # the 6-bit packing it hands out is in weights
ALWAYS_REFUSED = ["transformers", "minigemma.grading.checks", "minigemma.grading.core", "minigemma.grading.compare",
                  "minigemma.grading.runner", "minigemma.grading.remote", "minigemma.grading.release",
                  "minigemma.grading.session", "minigemma.grading.sandbox"]


class ReleaseError(ValueError):
    """No release version for this submission: it cannot be graded."""


def exercise_id(nb, path: Path) -> str:
    declared = nb.metadata.get("minigemma", {}).get("exercise") if isinstance(nb.metadata, dict) else None
    for candidate in (declared, path.stem):
        if isinstance(candidate, str) and re.fullmatch(r"\d\d_[a-z0-9_]+", candidate) and (
                (EXERCISES_DIR / "src" / f"{candidate}.py").exists() or (EXERCISES_DIR / f"{candidate}.ipynb").exists()):
            return candidate
    raise ReleaseError(f"{path}: no release version of this exercise (looked for exercises/src/{path.stem}.py "
                       "and the notebook's metadata minigemma.exercise); it cannot be graded")


def release_notebook(exercise: str):
    source = EXERCISES_DIR / "src" / f"{exercise}.py"
    if source.exists():
        import sys
        sys.path.insert(0, str(EXERCISES_DIR))
        try:
            import build
        finally:
            sys.path.remove(str(EXERCISES_DIR))
        return build.build_notebook(source, with_solutions=False)
    import nbformat
    return nbformat.read(EXERCISES_DIR / f"{exercise}.ipynb", as_version=4)


def cell_key(cell) -> str | None:
    return nbgrader_meta(cell).get("grade_id") or cell.get("id")


def learner_cells(submission, solution_ids: set[str]) -> tuple[dict, dict]:
    """({solution id: source}, {solution id or '': [added code cells after it]}) from the submission."""
    sources, added, current = {}, {"": []}, ""
    for cell in submission.cells:
        meta, key = nbgrader_meta(cell), cell_key(cell)
        if cell.cell_type != "code":
            continue
        if key in solution_ids and key not in sources:
            sources[key], current = cell.source, key
            added.setdefault(key, [])
        elif not (meta.get("grade") or meta.get("locked") or key in solution_ids):
            added[current].append(cell.source)
    return sources, added


def restored(submission, path: Path):
    """(the notebook to run: release cells, learner sources; the exercise id)."""
    import nbformat
    exercise = exercise_id(submission, path)
    release = release_notebook(exercise)
    solution_ids = {cell_key(c) for c in release.cells if nbgrader_meta(c).get("solution")}
    sources, added = learner_cells(submission, solution_ids)
    cells, first_solution = [], True
    for cell in release.cells:
        is_solution = nbgrader_meta(cell).get("solution")
        if is_solution and first_solution:
            cells += [nbformat.v4.new_code_cell(text) for text in added[""]]
            first_solution = False
        node = copy.deepcopy(cell)
        if is_solution:
            node.source = sources.get(cell_key(cell), cell.source)
        if node.cell_type == "code":
            node.outputs, node.execution_count = [], None
        cells.append(node)
        if is_solution:
            cells += [nbformat.v4.new_code_cell(text) for text in added.get(cell_key(cell), [])]
    run = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(release.metadata))
    return run, exercise


REFUSED_TOO = {"11": ["minigemma.quant"]}    # the answers of exercise 11 (quantizers, block decoders)


def refused_modules(exercise: str) -> list[str]:
    given = GIVEN.get(exercise[:2], set())
    return ([f"minigemma.{name}" for name in LESSON_MODULES if name not in given] + REFUSED_TOO.get(exercise[:2], [])
            + ALWAYS_REFUSED)
