"""Running exercise notebooks in fresh kernels and turning them into scores.

Each notebook runs top to bottom in its own kernel (nbclient) with errors allowed, so one broken task never stops
the others. Two time limits guard every task: the check itself stops the learner's code after `time_limit` seconds
(SIGALRM inside the kernel, passed in through MINIGEMMA_TASK_TIME_LIMIT), and nbclient interrupts any cell that
runs `time_limit + MARGIN` seconds (a hang in C code, or code outside a check) and moves on to the next cell.
A cell that kills the kernel (os._exit, a segfault, memory) is recorded as such, and the notebook runs again in a
new kernel without it, so the tasks after it are still graded. Several notebooks may run at once (`jobs`), each in
its own kernel.
Not here: reading task results out of a cell (notebook.py), printing the report (report.py).
"""
from __future__ import annotations

import ast
import asyncio
import copy
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .core import REGISTRY, TIME_LIMIT_ENV, run_body
from .notebook import KERNEL_DIED, TIMED_OUT, TaskResult, error_text, graded_tasks, read_result, setup_cells
from .release import ReleaseError, refused_modules, restored
from .remote import Channel
from .sandbox import FLOOD, CappedClient, kernel_env, kernel_manager, kill

PROBE_SOURCE = Path(__file__).with_name("probe.py")

MARGIN = 10.0               # seconds nbclient waits beyond the in-kernel limit before interrupting
SETUP_TIMEOUT = 180.0       # imports (torch) on a slow, busy machine
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


def make_client(nb, workdir: Path, settings: Settings, replies: dict, started: list, refused: list[str]):
    setup = {id(nb.cells[i]) for i in setup_cells(nb)}

    def cell_timeout(cell) -> int:
        grader_setup = id(cell) in setup or cell.metadata.get("minigemma_probe")
        return int(SETUP_TIMEOUT if grader_setup else settings.time_limit + settings.margin)

    def starting(cell, cell_index):
        started.append(cell_index)

    def finished(cell, cell_index, execute_reply):
        replies[cell_index] = execute_reply

    km = kernel_manager(settings.kernel or "python3", workdir, refused)
    return CappedClient(nb, km=km, allow_errors=True, interrupt_on_timeout=True,
                        timeout_func=cell_timeout, startup_timeout=int(SETUP_TIMEOUT),
                        on_cell_execute=starting, on_cell_executed=finished,
                        error_on_timeout={"ename": TIMED_OUT, "evalue": "cell interrupted", "traceback": []},
                        extra_arguments=["--log-level=ERROR"],     # no start-up chatter on our stderr
                        resources={"metadata": {"path": str(workdir)}})


class KernelCrash(BaseException):
    """The kernel died, or ignored an interrupt and was killed, in cell `index`."""

    def __init__(self, index: int):
        super().__init__(index)
        self.index = index


def probe_cell(exercise: str, task_ids: list[str]) -> str:
    """The first cell: load probe.py into its own module in the kernel and install the guard."""
    import minigemma
    names = {name: getattr(minigemma, name).__module__ for name in dir(minigemma)
             if not name.startswith("_") and hasattr(getattr(minigemma, name), "__module__")}
    forbidden = sorted({pair for task in task_ids for pair in getattr(REGISTRY.get(task), "forbid", ())})
    return (f"import types as _t\n_m = _t.ModuleType('minigemma_probe'); _m.__file__ = '<probe>'\n"
            f"exec(compile({PROBE_SOURCE.read_text()!r}, '<probe>', 'exec'), _m.__dict__)\n"
            f"_m.install({refused_modules(exercise)!r}, {str(Path(minigemma.__file__).parent)!r}, {forbidden!r}, "
            f"{names!r})\ndel _t, _m")


def grade_call(cell) -> list[str]:
    """The names a (release) grade cell passes to its check: check_rope(apply_rope) -> ['apply_rope']."""
    call = ast.parse(cell.source).body[0].value
    return [arg.id for arg in call.args]


async def execute(nb, exercise: str, settings: Settings, skip: set[int]):
    """Run a copy of nb, cells in `skip` left out, grade cells judged here: (run, replies, results, problem)."""
    from nbclient.exceptions import DeadKernelError
    run = copy.deepcopy(nb)
    calls = {task.cell_index: grade_call(nb.cells[task.cell_index]) for task in graded_tasks(nb)}
    for index in skip:
        run.cells[index].source = ""                  # nbclient does not send empty cells to the kernel
    replies, started, results = {}, [], {}
    tasks = {task.cell_index: task for task in graded_tasks(run)}
    with tempfile.TemporaryDirectory(prefix="minigemma-grade-") as folder:
        workdir = Path(folder)
        client = make_client(run, workdir, settings, replies, started, refused_modules(exercise))
        loop, setup = asyncio.get_running_loop(), set(setup_cells(run))

        async def run_cell(cell, index):
            limit = (SETUP_TIMEOUT if index in setup or index < 0 else settings.time_limit + settings.margin) + settings.margin
            try:
                await asyncio.wait_for(client.async_execute_cell(cell, index, store_history=False), limit)
            except (asyncio.TimeoutError, DeadKernelError):
                kill(client.km)                           # it ignored the interrupt, or it is already dead
                raise KernelCrash(index) from None

        current = [0]                                 # the grade cell being judged (for nbclient's bookkeeping)

        def execute_code(code):
            cell = nbformat.v4.new_code_cell(code)
            asyncio.run_coroutine_threadsafe(run_cell(cell, current[0]), loop).result()
        channel = Channel(execute_code, workdir, settings.time_limit)

        def judge(task, index):
            current[0] = index
            channel.start_task()
            body = REGISTRY[task.task_id].__wrapped__
            return run_body(task.task_id, lambda: body(*[channel.lookup(n) for n in calls[index]]), (), {})
        try:
            async with client.async_setup_kernel(stdout=subprocess.DEVNULL, env=kernel_env(workdir, {TIME_LIMIT_ENV: str(settings.time_limit)})):
                probe = nbformat.v4.new_code_cell(probe_cell(exercise, [t.task_id for t in tasks.values()]))
                probe.metadata["minigemma_probe"] = True
                await run_cell(probe, -1)
                for index, cell in enumerate(run.cells):
                    if index in tasks and index not in skip:
                        results[index] = await asyncio.to_thread(judge, tasks[index], index)
                    elif cell.cell_type == "code" and index not in tasks:
                        await run_cell(cell, index)
                        if index in getattr(client, "flooded", ()):
                            replies[index] = {"content": {"status": "error", "ename": FLOOD, "evalue": ""}}
        except KernelCrash as crash:
            return run, replies, results, crash.index if crash.index >= 0 else "the kernel died on start-up"
        except Exception as err:                      # the kernel never started, or nbclient gave up
            lines = str(err).strip().splitlines()
            return run, replies, results, f"the kernel stopped: {type(err).__name__}" + (f": {lines[0]}" if lines else "")
    return run, replies, results, None


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
    return asyncio.run(grade_all(notebooks, Settings(time_limit, margin, kernel), jobs))
