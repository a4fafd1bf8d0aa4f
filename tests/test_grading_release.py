"""What is graded comes from the release (fast, no kernel): grade cells, points, tags and order restored, only the
learner's solution sources kept; and the probe/remote round trip the grader uses, run in this process: outputs come
back as plain data, non-data as handles, refusals and errors with their reasons."""
from __future__ import annotations

import copy
import types
from pathlib import Path

import nbformat
import pytest
import torch

from minigemma.grading import check_rope
from minigemma.grading.core import run_body
from minigemma.grading.notebook import graded_tasks, nbgrader_meta
from minigemma.grading.release import ReleaseError, refused_modules, restored
from minigemma.grading.remote import Channel, Remote

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "exercises" / "solutions" / "04_rope.ipynb"
PROBE_SOURCE = (ROOT / "minigemma" / "grading" / "probe.py").read_text()


def cell(nb, grade_id):
    return next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id)


def test_grade_cells_points_and_order_come_from_the_release():
    nb = nbformat.read(SOLUTION, as_version=4)
    grade = cell(nb, "rope-apply")
    grade.source, grade.metadata["tags"] = "", ["skip-execution"]
    grade.metadata["nbgrader"]["points"] = 1000
    nb.cells.append(copy.deepcopy(cell(nb, "rope-angles")))              # a duplicate at the end
    nb.cells.remove(cell(nb, "rope-convert"))                            # and one deleted
    cell(nb, "rope-angles-code").source = "def rope_angles(*a):\n    return 'mine'"
    nb.cells.insert(0, nbformat.v4.new_code_cell("helper = 1"))          # a cell the learner added
    run, exercise = restored(nb, Path("learner/04_rope.ipynb"))
    assert exercise == "04_rope"
    tasks = graded_tasks(run)
    assert [(t.task_id, t.points) for t in tasks] == [("rope-angles", 2), ("rope-apply", 4), ("rope-convert", 3)]
    assert cell(run, "rope-apply").source == "check_rope(apply_rope)" and "tags" not in cell(run, "rope-apply").metadata
    assert cell(run, "rope-angles-code").source.endswith("return 'mine'")
    assert any(c.source == "helper = 1" for c in run.cells)
    assert all(c.outputs == [] for c in run.cells if c.cell_type == "code")


def test_the_original_submission_would_have_been_fooled():
    """The negative: read as submitted, the forged notebook claims 1000 points and an empty grade cell."""
    nb = nbformat.read(SOLUTION, as_version=4)
    cell(nb, "rope-apply").metadata["nbgrader"]["points"] = 1000
    assert sum(t.points for t in graded_tasks(nb)) > 9
    run, _ = restored(nb, SOLUTION)
    assert sum(t.points for t in graded_tasks(run)) == 9


def test_a_notebook_without_a_release_is_refused():
    nb = nbformat.read(SOLUTION, as_version=4)
    nb.metadata.pop("minigemma", None)
    with pytest.raises(ReleaseError, match="no release version"):
        restored(nb, Path("learner/my_rope.ipynb"))


def test_each_exercise_refuses_its_references_and_transformers():
    assert {"minigemma.rope", "transformers", "minigemma.grading.checks"} <= set(refused_modules("04_rope"))
    assert "minigemma.model" not in refused_modules("07_decoder")          # 07 hands out minigemma's parts


@pytest.fixture
def kernel(tmp_path):
    """probe.py loaded as the grader loads it in a kernel, with a namespace standing in for the learner's."""
    probe = types.ModuleType("minigemma_probe")
    probe.__file__ = "<probe>"
    exec(compile(PROBE_SOURCE, "<probe>", "exec"), probe.__dict__)
    namespace = {}
    channel = Channel(lambda code: probe.serve(*eval(code.split("serve", 1)[1]), namespace=namespace),
                      tmp_path, time_limit=20.0)
    return probe, namespace, channel


def test_a_check_judged_through_the_probe_passes_and_fails_as_in_the_kernel(kernel):
    probe, namespace, channel = kernel
    exec("import torch\ndef apply_rope(x, cos, sin):\n    h = x.shape[-1] // 2\n    x1, x2 = x.float()[..., :h], "
         "x.float()[..., h:]\n    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), -1).to(x.dtype)\n"
         "def identity(x, cos, sin):\n    return x", namespace)
    channel.start_task()
    learner = channel.lookup("apply_rope")
    assert isinstance(learner, Remote)
    assert run_body("rope-apply", check_rope.__wrapped__, (learner,), {}).passed
    result = run_body("rope-apply", check_rope.__wrapped__, (channel.lookup("identity"),), {})
    assert not result.passed and "equals the input" in result.message


def test_outputs_come_back_as_plain_data_and_objects_as_handles(kernel):
    probe, namespace, channel = kernel
    exec("import torch\nclass Sneaky(torch.Tensor):\n    pass\n"
         "def sneaky():\n    return torch.zeros(2).as_subclass(Sneaky)\n"
         "class Box:\n    def get(self):\n        return {'a': [1, 2.5, 'x']}\n", namespace)
    channel.start_task()
    out = channel.lookup("sneaky")()
    assert type(out) is torch.Tensor
    box = channel.lookup("Box")()
    assert isinstance(box, Remote) and box.remote_type == "Box" and box.get() == {"a": [1, 2.5, "x"]}


def test_a_refusal_and_an_error_name_what_happened(kernel):
    probe, namespace, channel = kernel
    exec("def broken(x):\n    return x.nope\n", namespace)
    channel.start_task()
    with pytest.raises(Exception, match="AttributeError"):
        channel.lookup("broken")(torch.zeros(1))
    probe.REFUSED.append("import of minigemma.rope (test)")
    with pytest.raises(Exception, match="refused: import of minigemma.rope"):
        channel.lookup("broken")
