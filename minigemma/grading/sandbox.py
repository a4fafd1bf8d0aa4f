"""Where the learner's kernel runs while it is graded: a fresh temporary folder, a memory limit, a cap on output,
a clean environment and, where the machine allows it, a bubblewrap sandbox.

  * bubblewrap (`bwrap`, when it can create namespaces here): the whole file system is mounted read-only, /tmp is
    a fresh empty tmpfs, and only the submission's temporary folder is writable; the kernel gets its own process
    namespace and dies with the grader. So the installed grader, the package and other submissions cannot be
    changed; the refused references (minigemma's modules, transformers) and, in a source checkout, the folders
    beside the package (the exercises' solutions among them) are hidden under empty tmpfs mounts, so code that
    removes the import guard still finds nothing to import or read.
  * without bubblewrap: the same temporary folder as the kernel's working directory and the limits below, but
    the kernel can write wherever the grader's user can: run the grader as an unprivileged user then.
  * always: RLIMIT_AS (`prlimit --as`, MEMORY_LIMIT bytes), so a huge allocation fails at once instead of
    swapping the machine; an environment of only PATH, HOME (the temporary folder), PYTHONPATH, LANG and the
    time limit; at most OUTPUT_CAP bytes of output per cell, the rest dropped (never buffered) and the cell
    interrupted.
Not here: what runs in the kernel (probe.py), the order of cells (runner.py).
"""
from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nbclient import NotebookClient
from jupyter_client.manager import AsyncKernelManager

MEMORY_LIMIT = 8 * 2**30          # bytes of address space for the kernel (torch itself maps ~2-3 GB)
OUTPUT_CAP = 200_000              # bytes of output kept per cell
FLOOD = "OutputFlood"             # the ename recorded for a cell whose output was cut off
PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


@functools.lru_cache(maxsize=None)
def bwrap_works() -> bool:
    if not shutil.which("bwrap"):
        return False
    try:
        return subprocess.run(["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
                               "--die-with-parent", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def mechanism() -> str:
    return "bubblewrap" if bwrap_works() else "rlimits and a temporary folder (no bubblewrap here)"


def kernel_env(workdir: Path, extra: dict) -> dict:
    path = os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])
    return {"PATH": path, "HOME": str(workdir), "PYTHONPATH": PACKAGE_PARENT, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), **extra}


def package_view(refused: list[str]) -> list[str]:
    """bwrap arguments that show the kernel only the package files it may import: an empty tmpfs over the
    package, then each allowed file bound read-only. (So the references cannot even be read and exec'd.)"""
    package = Path(PACKAGE_PARENT) / "minigemma"
    args = ["--tmpfs", str(package)]
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        if not any(module == r or module.startswith(r + ".") for r in refused):
            args += ["--ro-bind", str(path), str(path)]
    return args + ["--remount-ro", str(package)]          # the tmpfs itself read-only too


def hidden_folders(refused: list[str]) -> list[str]:
    """bwrap arguments that put an empty tmpfs over what could hand the learner an answer past the import guard
    (which the learner's code can remove from sys.meta_path): the refused packages outside minigemma
    (transformers), and, in a source checkout, every folder beside the package (exercises/ with its solutions,
    notebooks/, tests/, build/, .git, ...) except the one holding this Python. Also the release exercises."""
    import importlib.util
    folders = set()
    for name in {r.split(".")[0] for r in refused} - {"minigemma"}:
        spec = importlib.util.find_spec(name)
        folders.update(spec.submodule_search_locations or [] if spec else [])
    root = Path(PACKAGE_PARENT)
    if (root / "pyproject.toml").is_file():                       # a checkout, not site-packages
        python = Path(sys.prefix).resolve()
        folders.update(str(p) for p in root.iterdir() if p.is_dir() and p.name != "minigemma"
                       and not (python == p.resolve() or p.resolve() in python.parents))
    from .release import EXERCISES_DIR
    if EXERCISES_DIR.is_dir():
        folders.add(str(EXERCISES_DIR.resolve()))
    return [arg for folder in sorted(map(str, folders)) for arg in ("--tmpfs", folder, "--remount-ro", folder)]


def wrap_command(command: list[str], workdir: Path, refused: list[str]) -> list[str]:
    limited = ["prlimit", f"--as={MEMORY_LIMIT}", "--"] + command if shutil.which("prlimit") else command
    if not bwrap_works():
        return limited
    return ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            *hidden_folders(refused), *package_view(refused),
            "--bind", str(workdir), str(workdir), "--unshare-pid", "--die-with-parent", "--chdir", str(workdir),
            "--clearenv"] + [arg for key, value in kernel_env(workdir, {}).items()
                             for arg in ("--setenv", key, value)] + limited


class SandboxedKernelManager(AsyncKernelManager):
    """The kernel command, wrapped in the sandbox; its connection file inside the submission's folder."""
    workdir: Path = Path("/nonexistent")
    refused: list[str] = []

    def format_kernel_cmd(self, extra_arguments=None):
        return wrap_command(super().format_kernel_cmd(extra_arguments), self.workdir, self.refused)


def kernel_manager(kernel_name: str, workdir: Path, refused: list[str]) -> SandboxedKernelManager:
    km = SandboxedKernelManager(kernel_name=kernel_name)
    km.workdir, km.refused = workdir, refused
    km.connection_file = str(workdir / ".kernel.json")
    km.kernel_spec.interrupt_mode = "message"      # a signal from outside may not cross the sandbox; ipykernel
    return km                                      # raises KeyboardInterrupt in itself on an interrupt_request


class CappedClient(NotebookClient):
    """nbclient's client with at most OUTPUT_CAP bytes of output per cell; a flooding cell is interrupted."""

    def output(self, outs, msg, display_id, cell_index):
        used = self.__dict__.setdefault("_used", {})
        flooded = self.__dict__.setdefault("flooded", set())
        used[cell_index] = used.get(cell_index, 0) + len(json.dumps(msg.get("content", {})))
        if used[cell_index] <= OUTPUT_CAP:
            return super().output(outs, msg, display_id, cell_index)
        if cell_index not in flooded:
            flooded.add(cell_index)
            asyncio.ensure_future(self.km.interrupt_kernel())
        return None


def kill(km) -> None:
    """Stop a kernel that ignores interrupts: the process (and, with bubblewrap, everything in its namespace)."""
    try:
        km.provisioner.process.kill()
    except Exception:                          # already gone
        pass
