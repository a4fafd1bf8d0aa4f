"""Grading exercise notebooks: each submission restored to its release version (release.py), run in a fresh
sandboxed kernel (session.py), and turned into points per task.

A cell that kills the kernel (os._exit, a segfault, memory, or ignoring an interrupt) is recorded as such, and the
notebook runs again in a new kernel without it, so the tasks after it are still graded. Several notebooks may run
at once (`jobs`), each in its own kernel. The time limit must be finite and positive; the kernel must exist.
Not here: a task's score from its results (notebook.py), printing the report (report.py).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from .notebook import KERNEL_DIED, TaskResult, error_text, graded_tasks, read_result, setup_cells
from .release import ReleaseError, restored
from .session import MARGIN, execute

MAX_CRASHES = 3             # kernel restarts per notebook, each skipping the cell that killed the kernel


@dataclass
class NotebookReport:
    path: str
    tasks: list[TaskResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    unreadable: bool = False          # not a notebook nbformat can read: nothing was graded

    @property
    def points(self) -> float:
        return sum(t.points for t in self.tasks)

    @property
    def max_points(self) -> float:
        return sum(t.max_points for t in self.tasks)

    def to_dict(self) -> dict:
        return {"path": self.path, "points": self.points, "max_points": self.max_points,
                "seconds": round(self.seconds, 2), "error": self.error, "unreadable": self.unreadable,
                "tasks": [t.to_dict() for t in self.tasks]}


def find_notebooks(path: Path) -> list[Path]:
    """The notebook itself, or the notebooks directly inside a folder (not its subfolders), in name order."""
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_dir():
        notebooks = sorted(p for p in path.glob("*.ipynb") if p.is_file())
        if not notebooks:
            raise ValueError(f"{path}: no .ipynb notebooks in this folder")
        return notebooks
    if path.suffix != ".ipynb":
        raise ValueError(f"{path}: not a notebook (expected a .ipynb file or a folder of them)")
    return [path]


def read_notebook(path: Path):
    import nbformat
    try:
        return nbformat.read(path, as_version=4)
    except Exception as err:             # JSON or schema errors: say which file, in one line
        raise ValueError(f"{path}: not a readable notebook ({type(err).__name__}: {err})") from None


@dataclass
class Settings:
    time_limit: float = 20.0          # seconds per task, enforced inside the kernel by the check
    margin: float = MARGIN            # extra seconds before nbclient interrupts a cell from outside
    kernel: str | None = None         # Jupyter kernel name; None: the notebook's own


def setup_problem(nb, replies: dict, settings: Settings) -> str | None:
    for index in setup_cells(nb):
        problem = error_text(replies.get(index), settings.time_limit)
        if problem:
            hint = ""
            if "No module named 'minigemma'" in problem:
                hint = (f" (kernel {settings.kernel or 'python3'!r} runs a Python without minigemma: install it "
                        "there or pass --kernel)")
            return f"the set-up cell {problem}{hint}"
    return None


async def grade_notebook(path: Path, settings: Settings) -> NotebookReport:
    """Run the notebook; when a cell kills the kernel, run it again without that cell (up to MAX_CRASHES times)."""
    started = time.perf_counter()
    report = NotebookReport(str(path))
    try:
        nb = read_notebook(path)
    except ValueError as err:                         # unreadable: reported, and the other notebooks still graded
        report.error, report.unreadable = str(err), True
        return report
    try:
        nb, exercise = restored(nb, path)             # the release's cells, the learner's solution code
    except ReleaseError as err:
        report.error, report.unreadable = str(err), True
        return report
    tasks = graded_tasks(nb)
    crashed: set[int] = set()
    while True:
        run, replies, results, problem = await execute(nb, exercise, settings, crashed)
        if not isinstance(problem, int) or len(crashed) == MAX_CRASHES:
            break
        crashed.add(problem)
    if isinstance(problem, int):                      # it kept dying: stop re-running
        crashed.add(problem)
        problem = f"the kernel died {len(crashed)} times; the cells after the last crash did not run"
    replies.update({index: KERNEL_DIED for index in crashed})
    report.error = problem if isinstance(problem, str) else None
    probe = error_text(replies.get(-1), settings.time_limit)
    setup = f"the grader's probe could not start in the kernel ({probe})" if probe else setup_problem(run, replies, settings)
    if setup:                                         # nothing after a failed set-up means anything
        report.error = setup
        report.tasks = [TaskResult(t.task_id, 0.0, t.points, False, f"not graded: {setup}") for t in tasks]
    else:
        not_run = f"not run: {report.error}" if report.error else "not run"
        report.tasks = [read_result(task, results.get(task.cell_index), replies, settings.time_limit, not_run)
                        for task in tasks]
    report.seconds = time.perf_counter() - started
    return report


def check_kernel(name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        known = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
        raise ValueError(f"no Jupyter kernel named {name!r} (installed: {known})") from None


async def grade_all(paths: list[Path], settings: Settings, jobs: int) -> list[NotebookReport]:
    gate = asyncio.Semaphore(max(1, jobs))

    async def one(path: Path) -> NotebookReport:
        async with gate:
            return await grade_notebook(path, settings)

    return list(await asyncio.gather(*(one(p) for p in paths)))


def grade(paths, time_limit: float = 20.0, jobs: int = 1, kernel: str | None = None,
          margin: float = MARGIN) -> list[NotebookReport]:
    """Grade notebooks (files or folders of them); one report per notebook, in order. A cell still running
    `time_limit + margin` seconds after it started is interrupted (the check's own limit should fire first)."""
    notebooks = [nb for p in paths for nb in find_notebooks(Path(p))]
    if not 0 < time_limit < float("inf"):
        raise ValueError(f"the time limit must be a finite positive number of seconds, got {time_limit}")
    check_kernel(kernel or "python3")
    import_references()
    return asyncio.run(grade_all(notebooks, Settings(time_limit, margin, kernel), jobs))


def import_references() -> None:
    """Import transformers' Gemma (lazily loaded modules) once, before the checks run in threads: two threads
    importing it for the first time at once made one fail, and an honest notebook lose a task."""
    try:
        from transformers import GemmaForCausalLM  # noqa: F401
    except ImportError:                               # the checks that need it say so themselves
        pass
