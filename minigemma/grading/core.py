"""What every check shares: the `@check` decorator, the result it reports, and the per-task time limit.

A check runs the learner's code on fresh random inputs against minigemma's own modules and ends in one of two ways:
  * passed: it returns a `CheckResult`; displayed in a notebook it shows one line (and a record, MIME type
    GRADE_MIME, for tools; `minigemma grade` does not trust it: it judges each check itself, see session.py);
  * failed: it raises `CheckFailed`, whose message says what is wrong and hints at the fix. Jupyter shows only that
    message (no traceback), and nbgrader, which gives zero to a grade cell that raises, agrees with our grader.
`check_x.run(...)` gives the `CheckResult` without raising or displaying (the tests use it).
Interactively the body runs in the learner's kernel; under `minigemma grade` the same body runs in the grader's
process with the learner's function a `remote.Remote` (its calls run in the kernel), so the messages are the same.
Time limit: the whole check runs under SIGALRM (`MINIGEMMA_TASK_TIME_LIMIT` seconds, default 20) where the platform
has it; the grader also interrupts the kernel from outside, so a hang in C code is stopped too.
Not here: the comparisons themselves (compare.py) or running notebooks (runner.py).
"""
from __future__ import annotations

import functools
import os
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass

GRADE_MIME = "application/vnd.minigemma.grade+json"
TIME_LIMIT_ENV = "MINIGEMMA_TASK_TIME_LIMIT"
DEFAULT_TIME_LIMIT = 20.0
REGISTRY: dict[str, object] = {}          # task id -> check function
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # .../minigemma


class Mismatch(Exception):
    """Raised inside a check when the learner's answer is wrong; the message is shown as is."""


class TaskTimeout(BaseException):
    """The time limit expired. A BaseException, so a learner's `except Exception` cannot swallow it."""


@dataclass
class CheckResult:
    task: str
    passed: bool
    message: str
    seconds: float = 0.0

    def record(self) -> dict:
        return {"task": self.task, "passed": self.passed, "message": self.message, "seconds": round(self.seconds, 3)}

    def line(self) -> str:
        return f"{'✓' if self.passed else '✗'} {self.task}: {self.message}"

    def __repr__(self) -> str:
        return self.line()

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": self.line(), GRADE_MIME: self.record()}


class CheckFailed(AssertionError):
    """A failed check. In Jupyter it renders as its one-line message instead of a traceback."""

    def __init__(self, result: CheckResult):
        super().__init__(result.message)
        self.result = result

    def _render_traceback_(self):
        return [f"\x1b[31m{self.result.line()}\x1b[0m"]


def time_limit_seconds() -> float:
    value = os.environ.get(TIME_LIMIT_ENV, "")
    try:
        return float(value) if value else DEFAULT_TIME_LIMIT
    except ValueError:
        return DEFAULT_TIME_LIMIT


@contextmanager
def time_limit(seconds: float):
    """Raise TaskTimeout in the main thread after `seconds` (no-op where SIGALRM is unavailable)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or seconds <= 0:
        yield
        return

    def on_alarm(signum, frame):
        raise TaskTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def is_library(filename: str) -> bool:
    """Frames of minigemma itself (the checks included), torch and other installed packages."""
    if filename.startswith("<") and not filename.startswith("<ipython-input"):   # <string>, <frozen ...>
        return True
    path = os.path.abspath(filename)
    return path.startswith(PACKAGE_DIR + os.sep) or "site-packages" in path or "dist-packages" in path


def where_it_failed(err: BaseException) -> str:
    """' (line N of fn)' for the learner's last frame in the traceback, or '' when none of it is the learner's."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not is_library(f.filename)]
    return f" (line {frames[-1].lineno} of {frames[-1].name})" if frames else ""


def explain_error(err: Exception) -> str:
    where = where_it_failed(err)
    text = f"{type(err).__name__}: {err}".strip().rstrip(":")
    if where:
        return f"your code raised {text}{where}."
    return f"the check could not use your result ({text}); compare its type and shape with the task."


def run_body(task: str, body, args, kwargs, limit: float | None = None, learner_limit: float | None = None):
    """The check's result; `limit`: this process's alarm; `learner_limit`: the limit a timeout message names."""
    from .remote import Refused, RemoteError
    limit = limit or time_limit_seconds()
    started = time.perf_counter()
    try:
        with time_limit(limit):
            body(*args, **kwargs)
        passed, message = True, "passed."
    except Refused as err:                          # a reference import or a forbidden call: zero, and why
        passed, message = False, str(err)
    except RemoteError as err:                      # the learner's code raised in their kernel (grading)
        passed, message = False, f"your code raised {err}{err.where}."
    except NotImplementedError:
        passed, message = False, "not implemented yet: replace `raise NotImplementedError()` with your code."
    except Mismatch as err:
        passed, message = False, str(err)
    except TaskTimeout:
        passed, message = False, (f"stopped after {learner_limit or limit:g} s (the time limit); is there a loop "
                                  "that never ends?")
    except RecursionError:
        passed, message = False, "your code recursed without end (RecursionError)."
    except Exception as err:                        # the learner's code (or its result) broke: say where
        passed, message = False, explain_error(err)
    return CheckResult(task, passed, message, time.perf_counter() - started)


def prepared(prepare) -> dict:
    """{"reference": what `prepare()` computed} for a check that declares grader-side work (loading a model), done
    before its time limit starts: the limit is for the learner's code. A Mismatch it raises is handed on as the
    reference, for the body to raise (so it fails the task, with its message)."""
    if prepare is None:
        return {}
    try:
        return {"reference": prepare()}
    except Mismatch as err:
        return {"reference": err}
    except Exception as err:                        # the grader's own failure: this task fails, saying so
        return {"reference": Mismatch(f"the grader could not prepare this task ({type(err).__name__}: {err}); "
                                      "tell your instructor")}


def check(task: str, forbid: tuple[tuple[str, str], ...] = (), prepare=None):
    """Turn `body(learner_fn, ...)`, which raises Mismatch on a wrong answer, into a learner-facing check.
    `forbid`: (dotted function, reason) pairs that fail in the learner's kernel while the grader runs it.
    `prepare`: reference work outside the time limit; its result reaches the body as `reference=`."""
    def decorate(body):
        @functools.wraps(body)
        def checker(*args, **kwargs):
            result = run_body(task, body, args, {**kwargs, **prepared(prepare)})
            if not result.passed:
                raise CheckFailed(result)
            return result

        checker.run = lambda *args, **kwargs: run_body(task, body, args, {**kwargs, **prepared(prepare)})
        checker.task, checker.forbid, checker.prepare = task, tuple(forbid), prepare
        REGISTRY[task] = checker
        return checker
    return decorate


def require_callable(obj, what: str) -> None:
    """A clear message when the learner passes something that is not a function (or class)."""
    from .remote import is_callable
    if not is_callable(obj):
        raise Mismatch(f"expected your {what} (a function or class), got {type(obj).__name__}; "
                       f"pass the function itself, without calling it.")
