"""The wheel: built from this tree, it holds every module of the package (setuptools finds the subpackages, so a
new one cannot be forgotten), and installed away from the repository its commands work."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(out), str(ROOT)], check=True, cwd=out)
    (built,) = out.glob("minigemma-*.whl")
    return built


def test_wheel_holds_every_module_of_the_source_tree(wheel):
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "minigemma").rglob("*.py")}
    packed = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    assert packed == source, f"missing from the wheel: {sorted(source - packed)}; extra: {sorted(packed - source)}"


def test_a_missing_subpackage_would_be_noticed(wheel):
    """The comparison above fails for a module the wheel lacks (guards against a test that cannot fail)."""
    packed = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    assert "minigemma/weights/gguf/model.py" in packed and "minigemma/grading/checks/rope.py" in packed
    assert packed - {"minigemma/weights/gguf/model.py"} != packed


def test_installed_wheel_runs_vram_info_and_grade_outside_the_repo(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                    str(wheel)], check=True)
    sys.path.insert(0, str(ROOT / "tests"))
    from reference import save_example_checkpoints                     # a tiny random-weight checkpoint
    checkpoint = save_example_checkpoints(tmp_path / "ckpt") / "hf"
    exercise = ROOT / "exercises" / "solutions" / "03_rmsnorm.ipynb"
    env = {**os.environ, "PYTHONPATH": str(target), "MINIGEMMA_EXERCISES": str(ROOT / "exercises")}
    where = subprocess.run([sys.executable, "-c", "import minigemma; print(minigemma.__file__)"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(target)), where                        # the installed copy, not the repository
    for argv, expect in ((["vram", "--model", "2b", "--context", "1k"], "2,506,172,416 parameters"),
                         (["info", str(checkpoint)], "parameters"),
                         (["grade", str(exercise)], "rms")):
        run = subprocess.run([sys.executable, "-m", "minigemma", *argv], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and expect in run.stdout, (argv, run.stdout[-2000:], run.stderr[-2000:])
