"""One run of a restored exercise notebook in one sandboxed kernel: the learner's cells run there in order, and
each grade cell is judged here, in the grader's process, its calls to the learner's code sent through the probe.

The first cell the kernel runs is the grader's: probe.py's source, loaded into a module of its own, which installs
the import guard and the forbidden functions. nbclient runs every cell (and every probe call, as a hidden cell)
with a time limit; a cell that outlives it by `margin` more seconds (a kernel ignoring the interrupt) has its kernel
killed, reported as a crash in that cell, so the runner can run the notebook again without it.
Not here: which notebook and cells (release.py), the scores and re-runs (runner.py), the sandbox (sandbox.py).
"""
from __future__ import annotations

import ast
import asyncio
import copy
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat

from .core import REGISTRY, TIME_LIMIT_ENV, prepared, run_body
from .notebook import TIMED_OUT, graded_tasks, setup_cells
from .release import refused_modules
from .remote import Channel

if TYPE_CHECKING:                                     # runner imports this module: no cycle at run time
    from .runner import Settings
from .sandbox import FLOOD, CappedClient, kernel_env, kernel_manager, kill

MARGIN = 10.0               # seconds nbclient waits beyond the in-kernel limit before interrupting
SETUP_TIMEOUT = 180.0       # imports (torch) on a slow, busy machine
PROBE_SOURCE = Path(__file__).with_name("probe.py")


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
            checker = REGISTRY[task.task_id]
            reference = prepared(checker.prepare)            # the grader's own work: before the clock starts
            channel.start_task()
            # the learner's time is the channel's clock (their calls only); this alarm is a backstop for the rest
            return run_body(task.task_id, lambda: checker.__wrapped__(*[channel.lookup(n) for n in calls[index]],
                                                                      **reference), (), {},
                            limit=2 * settings.time_limit + settings.margin, learner_limit=settings.time_limit)
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
        finally:
            await stop_kernel(client.km)
    return run, replies, results, None


async def stop_kernel(km) -> None:
    """nbclient leaves a kernel it was given (not one it started) running: stop it here, every time, or a cohort's
    kernels would pile up until the grader exits."""
    try:
        if km.has_kernel:
            await km.shutdown_kernel(now=True)
    except Exception:                                 # already gone, or refusing: kill the process
        kill(km)
