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


def imported_modules(path: Path) -> set[str]:
    """Every module name an `import` or `from ... import` in this file names (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and path.is_relative_to(ROOT / "minigemma"):   # from .x import y
            package = path.relative_to(ROOT).with_suffix("").parts[: -node.level]
            names.add(".".join(package + tuple((node.module or "").split("."))).rstrip("."))
    return names


def lesson_distributions() -> dict[str, set[str]]:
    """Distribution -> the lesson sources that need it, following imports of minigemma's own modules too."""
    import importlib.metadata
    import sys
    to_dist = importlib.metadata.packages_distributions()
    needed, seen = {}, set()
    for lesson in sorted((ROOT / "notebooks" / "src").glob("*.py")):
        pending = [lesson]
        while pending:
            for name in imported_modules(pending.pop()):
                top = name.split(".")[0]
                if top == "minigemma":
                    module = ROOT.joinpath(*name.split("."))
                    file = module / "__init__.py" if module.is_dir() else module.with_suffix(".py")
                    if file.exists() and (lesson, file) not in seen:
                        seen.add((lesson, file))
                        pending.append(file)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    for dist in to_dist.get(top, [f"<no distribution provides {top!r}>"]):
                        needed.setdefault(dist.lower(), set()).add(lesson.name)
    return needed


def test_the_course_extra_runs_every_lesson():
    """pip install "minigemma[course]" alone must provide every package a lesson (or the code it calls) imports."""
    missing = missing_from_course(course_requirements())
    assert not missing, f"add to the course extra in pyproject.toml (distribution: lessons needing it): {missing}"


def course_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["course"]


def missing_from_course(requirements: list[str]) -> dict[str, list[str]]:
    provided = requirement_names(requirements)
    return {dist: sorted(lessons) for dist, lessons in lesson_distributions().items() if dist not in provided}


def test_the_course_extra_check_sees_a_missing_package():
    """Negative: drop transformers (imported by lesson 07 and others) from the extra and the check reports it."""
    without = [r for r in course_requirements() if not r.startswith("transformers")]
    assert "07_model.py" in missing_from_course(without)["transformers"]
