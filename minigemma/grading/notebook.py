"""Reading an exercise notebook: which cells are graded tasks (nbgrader metadata), and what each task scored once
the notebook has run.

Cell roles come from the `nbgrader` cell metadata, so a notebook made for nbgrader is graded the same way here:
  * grade cell (grade: true, a code cell): one task, worth `points`, named by `grade_id`; it calls a check;
  * solution cell (solution: true): the learner's code for the task graded by the next grade cell;
  * locked cell: set-up and instructions; an error in one before the first task spoils the whole notebook.
A task's score is read from its grade cell's outputs: the check's record (MIME type GRADE_MIME) when it passed,
the `CheckFailed` error's message when it failed, or the reason nothing came back (an error, a time-out).
Not here: running the kernel (runner.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


TIMED_OUT = "TimeLimitExceeded"           # the ename nbclient reports for a cell stopped from outside
KERNEL_DIED = {"content": {"status": "error", "ename": "KernelDied", "evalue": ""}}   # the reply we record instead


@dataclass
class Task:
    task_id: str
    points: float
    cell_index: int
    code_cells: list[int] = field(default_factory=list)    # the learner's cells before the grade cell


@dataclass
class TaskResult:
    task: str
    points: float
    max_points: float
    passed: bool
    message: str
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def graded_tasks(nb) -> list[Task]:
    """The grade cells in order, each with the solution (and learner-added) code cells since the previous one."""
    tasks, pending = [], []
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code":
            continue
        if meta.get("grade"):
            points = float(meta.get("points", 0))
            tasks.append(Task(meta.get("grade_id") or f"cell-{index}", points, index, pending))
            pending = []
        elif not meta.get("locked"):
            pending.append(index)
    return tasks


def setup_cells(nb) -> list[int]:
    """Locked code cells before the first task: imports and the like."""
    indices = []
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if meta.get("grade"):
            break
        if cell.cell_type == "code" and meta.get("locked"):
            indices.append(index)
    return indices


def error_text(reply: dict | None, time_limit: float) -> str | None:
    """'Ename: evalue' of a cell's execute reply, or None when it ran cleanly."""
    content = (reply or {}).get("content", {})
    if content.get("status") != "error":
        return None
    if content.get("ename") in (TIMED_OUT, "KeyboardInterrupt"):
        return f"did not finish within the time limit ({time_limit:g} s); is there a loop that never ends?"
    if content.get("ename") == "KernelDied":
        return ("crashed the kernel or ignored the interrupt (os._exit, a crash in native code, out of memory, or a "
                "loop that ignores Ctrl-C), so the kernel was stopped; the cells after it ran in a new kernel.")
    if content.get("ename") == "OutputFlood":
        return "printed too much: its output was cut off and the cell stopped."
    if content.get("ename") == "NotImplementedError":
        return "raised NotImplementedError: not implemented yet."
    return f"raised {content.get('ename')}: {content.get('evalue')}".rstrip(": ")


def read_result(task: Task, judged, replies: dict[int, dict], time_limit: float, not_run: str) -> TaskResult:
    """The task's score from the grader's own judgement (`judged`, a CheckResult) and the learner's cells' replies."""
    def result(passed: bool, message: str, seconds: float = 0.0) -> TaskResult:
        return TaskResult(task.task_id, task.points if passed else 0.0, task.points, passed, message, seconds)

    if judged is not None and (judged.passed or judged.message.startswith("refused")):
        return result(judged.passed, judged.message, judged.seconds)
    for index in task.code_cells:                     # the learner's cell failed, so the check could not run
        problem = error_text(replies.get(index), time_limit)
        if problem:
            return result(False, f"your code cell {problem}")
    if task.cell_index in replies and replies[task.cell_index] is KERNEL_DIED:
        return result(False, f"the check {error_text(KERNEL_DIED, time_limit)}")
    if judged is None:
        return result(False, not_run)
    return result(False, judged.message, judged.seconds)
