"""Cheating submissions: each scores zero on the task it cheats, with a reason naming what was refused (or what the
grader used instead), while the honest task beside it keeps its points; a print flood and a 30 GB allocation are
stopped; the grader's files and a classmate's notebook are unchanged afterwards.

All submissions are graded in one `grade` call (two kernels at a time), since kernels are slow to start.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nbformat
import pytest

import minigemma
from minigemma.grading.core import GRADE_MIME
from minigemma.grading.runner import grade
from minigemma.grading.sandbox import bwrap_works

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "exercises" / "solutions"
GRADER_FILE = Path(minigemma.__file__).parent / "grading" / "core.py"
SECRET = "s3cret-grader-token"
PASSED = {"points": 1}            # marker: this task must keep its full points
FORGED = {"output_type": "execute_result", "execution_count": 1, "metadata": {},
          "data": {"text/plain": "✓ rope-apply: passed.",
                   GRADE_MIME: {"task": "rope-apply", "passed": True, "message": "passed.", "seconds": 0.0}}}


def cell_of(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def solution(name):
    return nbformat.read(SOLUTIONS / name, as_version=4)


def set_code(nb, task, source):
    cell_of(nb, f"{task}-code").source = source


def add_cell(nb, before_task, source):
    index = nb.cells.index(cell_of(nb, f"{before_task}-code"))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))


STUB = "def apply_rope(x, cos, sin):\n    raise NotImplementedError()"


def cheats(classmate: Path) -> dict[str, tuple]:
    """{file name: (notebook, {task: expected message part, or PASSED})}; file names say the exercise."""
    out = {}
    nb = solution("04_rope.ipynb")                      # importing the answer
    set_code(nb, "rope-apply", "from minigemma.rope import apply_rope")
    set_code(nb, "rope-convert", "import os\ndef interleaved_to_half_split(weight, head_dim):\n    os._exit(3)")
    out["import"] = (nb, {"rope-apply": "refused: import of minigemma.rope", "rope-angles": PASSED,
                          "rope-convert": "crashed the kernel"})      # inside the check's call: the kernel dies
    nb = solution("04_rope.ipynb")                      # the answer through the package's top level
    set_code(nb, "rope-apply", "import minigemma\napply_rope = minigemma.rope.apply_rope")
    set_code(nb, "rope-angles", "import os\nimport minigemma\n"       # the reference's source, exec'd
             "exec(open(os.path.join(minigemma.__path__[0], 'rope.py')).read())")
    out["package"] = (nb, {"rope-apply": "refused: import of minigemma.rope", "rope-convert": PASSED})
    if bwrap_works():                                  # only bubblewrap's view of the package hides the source
        out["package"][1]["rope-angles"] = "No such file"
    nb = solution("04_rope.ipynb")                      # redefine the check, patch the grader, forge the display
    set_code(nb, "rope-apply", STUB)
    add_cell(nb, "rope-apply", "import sys\nclass Fake:\n    def _repr_mimebundle_(self, **kw):\n"
             f"        return {FORGED['data']!r}\n"
             "def check_rope(fn):\n    return Fake()\n"
             "sys.displayhook = lambda value: print('✓ rope-apply: passed.')\n"
             "try:\n    import minigemma.grading.core as core\n    core.run_body = lambda *a, **k: None\n"
             "except ImportError:\n    pass")
    grade_cell = cell_of(nb, "rope-apply")             # emptied, forged output, skip-execution, 1000 points
    grade_cell.source, grade_cell.outputs = "", [nbformat.from_dict(FORGED)]
    grade_cell.metadata["tags"] = ["skip-execution"]
    grade_cell.metadata["nbgrader"]["points"] = 1000
    out["forged"] = (nb, {"rope-apply": "refused: import of minigemma.grading.core", "rope-angles": PASSED})
    nb = solution("04_rope.ipynb")                      # duplicate one grade cell, delete another
    angles = cell_of(nb, "rope-angles")
    nb.cells.insert(nb.cells.index(angles), nbformat.from_dict(dict(angles)))
    nb.cells.remove(cell_of(nb, "rope-convert"))
    set_code(nb, "rope-convert", "def interleaved_to_half_split(weight, head_dim):\n    return weight")
    out["duplicate"] = (nb, {"rope-convert": "came back unchanged", "rope-angles": PASSED, "rope-apply": PASSED})
    nb = solution("04_rope.ipynb")                      # expected values from the caller's frame
    set_code(nb, "rope-apply", "import sys\ndef apply_rope(x, cos, sin):\n"
             "    frames, f = [], sys._getframe(1)\n    while f is not None:\n"
             "        for name in ('expected', 'reference', 'ref'):\n"
             "            if name in f.f_locals:\n                return f.f_locals[name]\n"
             "        f = f.f_back\n    return x")
    set_code(nb, "rope-convert", "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n"
             "    pass")                                   # ignores the interrupt: killed, the notebook re-run
    out["frames"] = (nb, {"rope-apply": "equals the input", "rope-angles": PASSED,
                          "rope-convert": "ignored the interrupt"})
    nb = solution("04_rope.ipynb")                      # rewrite the grader, overwrite a classmate, read the env
    set_code(nb, "rope-angles", f"open({str(GRADER_FILE)!r}, 'w').write('# pwned')")
    set_code(nb, "rope-convert", f"import os\nleaked = os.environ.get('MINIGEMMA_TEST_SECRET', 'nothing')\n"
             f"try:\n    open({str(classmate)!r}, 'w').write(leaked)\nexcept OSError:\n    pass\n"
             "raise RuntimeError('the environment gave ' + leaked)")
    out["write"] = (nb, {"rope-angles": "your code cell raised", "rope-convert": "the environment gave nothing",
                         "rope-apply": PASSED})
    nb = solution("05_attention.ipynb")                 # the fused kernel in the write-it-yourself task
    set_code(nb, "attention-core", "import torch.nn.functional as F\ndef attention(q, k, v):\n"
             "    return F.scaled_dot_product_attention(q, k, v, is_causal=True)")
    out["sdpa"] = (nb, {"attention-core": "refused: call to torch.nn.functional.scaled_dot_product_attention",
                        "attention-mask": PASSED, "attention-window": PASSED})
    nb = solution("06_geglu.ipynb")                      # transformers' reference; a print flood; 30 GB
    set_code(nb, "geglu-gelu", "from transformers.activations import gelu_pytorch_tanh as gelu_tanh")
    mlp, fused = cell_of(nb, "geglu-mlp-code"), cell_of(nb, "geglu-fused-code")
    mlp.source = "while True:\n    print('x' * 1000)\n" + mlp.source
    fused.source = "import torch\nhuge = torch.empty(30 * 2**30, dtype=torch.uint8)\nhuge.fill_(1)\n" + fused.source
    out["flood"] = (nb, {"geglu-gelu": "refused: import of transformers", "geglu-mlp": "printed too much",
                         "geglu-fused": "allocate"})
    if bwrap_works():                                  # remove the import guard: bubblewrap's hidden folders remain
        unguard = "import sys\nsys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != 'Guard']\n"
        nb = solution("04_rope.ipynb")
        set_code(nb, "rope-apply", unguard + "from minigemma.rope import apply_rope")
        set_code(nb, "rope-angles", unguard + "import os, re\n"      # the solutions' source, beside the package
                 "text = open(os.path.join(os.environ['PYTHONPATH'], 'exercises', 'src', '04_rope.py')).read()\n"
                 "for block in re.findall(r'### BEGIN SOLUTION\\n(.*?)### END SOLUTION', text, re.S):\n"
                 "    exec(block)")
        out["unguarded"] = (nb, {"rope-apply": "No module named 'minigemma.rope'", "rope-angles": "No such file",
                                 "rope-convert": PASSED})
        nb = solution("06_geglu.ipynb")
        set_code(nb, "geglu-gelu", unguard + "from transformers.activations import gelu_pytorch_tanh as gelu_tanh")
        out["unguarded-transformers"] = (nb, {"geglu-gelu": "No module named 'transformers.activations'",
                                              "geglu-mlp": "name 'gelu_tanh' is not defined"})   # uses it
    nb = solution("11_quantization.ipynb")              # the package's quantizer and block decoder as answers
    set_code(nb, "quant-int8", "from minigemma.quant.int8 import quantize_int8_rows as quantize_int8")
    set_code(nb, "quant-q8-0", "from minigemma.quant import ggml_blocks\n"
             "def dequantize_q8_0(blocks):\n    return ggml_blocks.dequantize('Q8_0', blocks)")
    out["quant"] = (nb, {"quant-int8": "refused: import of minigemma.quant", "quant-q8-0": "refused: import of "
                         "minigemma.quant", "quant-q4-k": PASSED})
    return out


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cheats")
    classmate = folder / "classmate" / "04_rope.ipynb"
    classmate.parent.mkdir()
    classmate.write_bytes((SOLUTIONS / "04_rope.ipynb").read_bytes())
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (GRADER_FILE, classmate)}
    expected, paths = {}, []
    exercise_of = {"sdpa": "05_attention", "flood": "06_geglu", "quant": "11_quantization",
                   "unguarded-transformers": "06_geglu"}
    os.environ["MINIGEMMA_TEST_SECRET"] = SECRET
    try:
        for name, (nb, tasks) in cheats(classmate).items():
            path = folder / name / f"{exercise_of.get(name, '04_rope')}.ipynb"
            path.parent.mkdir()
            nbformat.write(nb, path)
            paths.append(path)
            expected[str(path)] = tasks
        reports = grade(paths, time_limit=5, jobs=2, margin=2)
    finally:
        del os.environ["MINIGEMMA_TEST_SECRET"]
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before}
    return reports, expected, before, after


def test_each_cheat_scores_zero_with_a_reason_and_the_honest_tasks_keep_their_points(graded):
    reports, expected, _, _ = graded
    for report in reports:
        results = {t.task: t for t in report.tasks}
        for task, want in expected[report.path].items():
            got = results[task]
            if want is PASSED:
                assert got.passed and got.points == got.max_points, (report.path, got)
            else:
                assert got.points == 0 and want in got.message, (report.path, got)


def test_points_ids_and_order_come_from_the_release(graded):
    reports, *_ = graded
    for report in reports:
        if "04_rope" in report.path:
            assert [t.task for t in report.tasks] == ["rope-angles", "rope-apply", "rope-convert"]
            assert report.max_points == 9                  # not 1000, not a duplicated task


@pytest.mark.skipif(not bwrap_works(), reason="no bubblewrap here: file writes are not sandboxed")
def test_grader_files_and_a_classmates_notebook_are_unchanged(graded):
    _, _, before, after = graded
    assert before == after


def test_the_graders_environment_does_not_reach_the_kernel(graded):
    reports, *_ = graded
    assert all(SECRET not in t.message for r in reports for t in r.tasks)


def test_unknown_kernel_is_an_error():
    with pytest.raises(ValueError, match="no-such-kernel"):
        grade([SOLUTIONS / "04_rope.ipynb"], kernel="no-such-kernel")
