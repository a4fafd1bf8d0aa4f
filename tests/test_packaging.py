"""The repository's promises about itself: pip and conda set-ups agree, modules are small and documented,
and CI runs the README's test command."""
import ast
import re
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:          # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def requirement_names(requirements) -> dict[str, str]:
    return {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower(): r.replace(" ", "") for r in requirements}


def test_environment_yml_installs_what_pyproject_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    conda_reqs = [r for r in pip_section if not r.startswith("-e")]
    assert requirement_names(conda_reqs) == requirement_names(declared)
    assert "-e ." in pip_section


def test_every_module_is_documented_and_short():
    for path in sorted((ROOT / "minigemma").rglob("*.py")):
        source = path.read_text()
        if path.name != "__main__.py":
            assert ast.get_docstring(ast.parse(source)), f"{path.relative_to(ROOT)} has no module docstring"
        lines = len(source.splitlines())
        assert lines <= 220, f"{path.relative_to(ROOT)} has {lines} lines; split it (about 200 at most)"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(python3 tasks\.py \w+)", readme, flags=re.M)
    assert commands[:2] == ["python3 tasks.py course", "python3 tasks.py test"]
    assert "python3 tasks.py test" in (ROOT / ".ci" / "run").read_text()
