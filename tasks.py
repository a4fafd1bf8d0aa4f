"""The commands of the README, runnable with nothing but Python 3.10+:

    python3 tasks.py course    # set up .venv (first time only) and open the course in JupyterLab
    python3 tasks.py test      # set up .venv (first time only) and run every test, notebooks included
    python3 tasks.py site      # set up .venv (first time only) and build the course website into site/

Set-up installs torch 2.13.0 first (a plain `torch` requirement could pull a multi-GB CUDA build), then this
package with its course, test, gguf and site extras. Extra arguments after `test` go to pytest.
"""
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
TORCH = os.environ.get("MINIGEMMA_TORCH", "torch==2.13.0")


def run(*cmd) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def setup() -> None:
    """Create .venv and install into it; skipped when pyproject.toml has not changed since the last set-up."""
    stamp = VENV / ".minigemma-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + TORCH.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    if sys.version_info < (3, 10):
        sys.exit(f"minigemma needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        venv.create(VENV, with_pip=True)
    run(PYTHON, "-m", "pip", "install", "--quiet", TORCH)
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[course,test,gguf,site]")
    run(PYTHON, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3")
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("course", "test", "site"):
        print(__doc__)
        return 2
    setup()
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if argv[0] == "course":
        cmd = [BIN / "jupyter", "lab", ROOT / "notebooks" / "00_overview.ipynb", *argv[1:]]
        if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in cmd:
            cmd.append("--allow-root")             # containers often run as root; Jupyter refuses without it
    elif argv[0] == "site":
        cmd = [PYTHON, ROOT / "docs" / "build_site.py", *argv[1:]]     # static pages from the committed notebooks
    else:
        cmd = [PYTHON, "-m", "pytest", "--nbval", "--sanitize-with", "notebooks/sanitize.cfg", *argv[1:]]
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
