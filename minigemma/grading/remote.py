"""The grader's side of a check: the check's body runs here, in the grader's process, and the learner's function
is a `Remote` stand-in whose every call runs in the learner's kernel (through probe.py) and comes back as data.

So the reference values, the known-wrong variants and the diagnosis never enter the learner's kernel: reading the
caller's frame, patching the check or forging its display finds nothing to forge. What a call returns is loaded
with torch.load(weights_only=True): plain tensors, numbers, strings and containers, never the learner's objects;
other objects stay in the kernel and come back as further `Remote` handles (a cache instance, a bound method).
Not here: the kernel side (probe.py), running cells (runner.py).
"""
from __future__ import annotations

import itertools
import time

import torch

from .core import TaskTimeout


class RemoteError(Exception):
    """The learner's code raised in the kernel; the message says what and where."""

    def __init__(self, kind: str, message: str, where: str):
        super().__init__(f"{kind}: {message}".rstrip(": "))
        self.kind, self.where = kind, where


class Refused(Exception):
    """The learner's code imported a reference implementation or called a function the task forbids."""


class Channel:
    """Sends one request to the kernel and waits for its response: `execute(code)` runs a hidden cell there."""

    def __init__(self, execute, workdir, time_limit: float):
        self.execute, self.workdir, self.time_limit = execute, workdir, time_limit
        self.counter, self.seen_refusals, self.started = itertools.count(), 0, time.monotonic()
        self.task_refusals: list[str] = []

    def start_task(self) -> None:
        self.task_refusals, self.started = [], time.monotonic()

    def request(self, message: dict):
        remaining = self.time_limit - (time.monotonic() - self.started)
        if remaining <= 0:                             # the whole check, all its calls together, is time-limited
            raise TaskTimeout()
        number = next(self.counter)
        request_path, response_path = self.workdir / f".probe-{number}.in", self.workdir / f".probe-{number}.out"
        writing = time.monotonic()
        torch.save({**marked(message), "time_limit": remaining}, request_path)
        self.started += time.monotonic() - writing     # the grader's own work (a 1 GB state): not the learner's
        self.execute(f"__minigemma_probe__.serve({str(request_path)!r}, {str(response_path)!r})")
        if not response_path.exists():
            raise RemoteError("KernelStopped", "the call did not finish (time limit or crash)", "")
        reading = time.monotonic()
        response = torch.load(response_path, weights_only=True)
        response_path.unlink()
        self.started += time.monotonic() - reading
        refusals = [str(r) for r in response.get("refused", [])]
        new, self.seen_refusals = refusals[self.seen_refusals:], len(refusals)
        self.task_refusals += new
        if self.task_refusals:
            raise Refused("refused: " + "; ".join(self.task_refusals))
        if "error" in response:
            error = response["error"]
            if error["type"] == "NotImplementedError":
                raise NotImplementedError()
            if error["type"] in ("Timeout", "KeyboardInterrupt"):
                raise TaskTimeout()
            raise RemoteError(str(error["type"]), str(error["message"]), str(error["where"]))
        return unmarked(self, response["ok"])

    def lookup(self, name: str):
        return self.request({"op": "lookup", "name": name})


def marked(value):
    """Remote handles in a request become {"__ref__": n}; everything else goes as is (grader data, pickled)."""
    if isinstance(value, Remote):
        return {"__ref__": object.__getattribute__(value, "_ref")}
    if type(value) in (list, tuple):
        return type(value)(marked(v) for v in value)
    if type(value) is dict:
        return {k: marked(v) for k, v in value.items()}
    return value


def unmarked(channel: Channel, value):
    if isinstance(value, dict) and "__ref__" in value and "callable" in value:
        return Remote(channel, value)
    if type(value) in (list, tuple):
        return type(value)(unmarked(channel, v) for v in value)
    if type(value) is dict:
        return {k: unmarked(channel, v) for k, v in value.items()}
    return value


class Remote:
    """An object living in the learner's kernel: calls, attributes and iteration each cost one round trip."""

    def __init__(self, channel: Channel, info: dict):
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_ref", info["__ref__"])
        object.__setattr__(self, "_info", info)

    def _send(self, **message):
        return object.__getattribute__(self, "_channel").request({"ref": object.__getattribute__(self, "_ref"),
                                                                  **message})

    def __call__(self, *args, **kwargs):
        if not object.__getattribute__(self, "_info")["callable"]:
            raise RemoteError("TypeError", f"'{self.remote_type}' object is not callable", "")
        return self._send(op="call", args=args, kwargs=kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._send(op="getattr", name=name)

    def __setattr__(self, name: str, value) -> None:
        self._send(op="setattr", name=name, value=value)

    def __iter__(self):
        return iter(self._send(op="list"))

    @property
    def remote_type(self) -> str:
        return object.__getattribute__(self, "_info")["type"]

    @property
    def is_module(self) -> bool:
        return bool(object.__getattribute__(self, "_info")["module"])


def is_callable(obj) -> bool:
    return object.__getattribute__(obj, "_info")["callable"] if isinstance(obj, Remote) else callable(obj)


def is_module(obj) -> bool:
    return obj.is_module if isinstance(obj, Remote) else isinstance(obj, torch.nn.Module)
