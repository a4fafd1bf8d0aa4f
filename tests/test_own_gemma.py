"""The learner's own Gemma pieces added for issue 13: the attention module (05) and the generation loop (08) are
graded through `minigemma grade` (checks judged in the grader, the learner's code in a sandboxed kernel), and
delegating them to minigemma's own modules scores zero on that task with the reason, the honest tasks beside it
keeping their points. (Negative tests of the feedback on honest mistakes are in tests/test_exercises.py.)"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch

from minigemma.grading.runner import grade

SOLUTIONS = Path(__file__).resolve().parents[1] / "exercises" / "solutions"

DELEGATED_ATTENTION = '''
from minigemma.attention import Attention as _Reference
from minigemma.config import GemmaConfig
class Attention(_Reference):
    def __init__(self, hidden_size, num_heads, num_kv_heads, head_dim):
        super().__init__(GemmaConfig.tiny(hidden_size=hidden_size, num_heads=num_heads,
                                          num_kv_heads=num_kv_heads, head_dim=head_dim))
    def forward(self, x, cos, sin):
        return super().forward(x, (cos, sin), None)
'''.strip()

DELEGATED_GENERATE = '''
import minigemma.generate
def generate(model, prompt_ids, max_new_tokens, stop_ids):
    return minigemma.generate.generate(model, prompt_ids, max_new_tokens, stop_ids=stop_ids).tolist()
'''.strip()

FUSED_ATTENTION_MODULE = '''
import torch.nn.functional as F
class Attention(torch.nn.Module):
    def __init__(self, hidden_size, num_heads, num_kv_heads, head_dim):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.q_proj = torch.nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.k_proj = torch.nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.v_proj = torch.nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.o_proj = torch.nn.Linear(num_heads * head_dim, hidden_size, bias=False)
    def forward(self, x, cos, sin):
        q = self.q_proj(x)
        return F.scaled_dot_product_attention(q, q, q)
'''.strip()


DELEGATED_MODEL = '''
from minigemma.model import Gemma
from minigemma.weights.layouts import hf_to_minigemma_name
def load_gemma1(config, state):
    model = Gemma(config)
    model.load_state_dict({hf_to_minigemma_name(n, False): t for n, t in state.items()}, strict=False)
    return model
'''.strip()


DELEGATED_GEMMA3 = '''
from minigemma.gemma3 import Gemma3, Gemma3Config
from minigemma.weights.layouts import hf_to_minigemma_name
def load_gemma3(config, state):
    model = Gemma3(Gemma3Config(**vars(config)))
    model.load_state_dict({hf_to_minigemma_name(n, True): t for n, t in state.items()})
    return model
'''.strip()


def with_code(name, task, source, path):
    nb = nbformat.read(SOLUTIONS / name, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == f"{task}-code")
    cell.source = source
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own-gemma")
    paths = [with_code("05_attention.ipynb", "attention-module", DELEGATED_ATTENTION, folder / "05_attention.ipynb"),
             with_code("08_kv_cache_sampling.ipynb", "generate-greedy", DELEGATED_GENERATE,
                       folder / "08_kv_cache_sampling.ipynb")]
    paths.append(with_code("10_own_gemma.ipynb", "own-gemma1", DELEGATED_MODEL, folder / "10_own_gemma.ipynb"))
    gemma3 = folder / "gemma3"
    gemma3.mkdir()
    paths.append(with_code("10_own_gemma.ipynb", "own-gemma3", DELEGATED_GEMMA3, gemma3 / "10_own_gemma.ipynb"))
    fused = folder / "fused"
    fused.mkdir()
    paths.append(with_code("05_attention.ipynb", "attention-module", FUSED_ATTENTION_MODULE,
                           fused / "05_attention.ipynb"))
    return {Path(r.path).parent.name + "/" + Path(r.path).name: {t.task: t for t in r.tasks}
            for r in grade(paths, jobs=2)}


def test_importing_the_reference_attention_module_scores_zero(graded):
    tasks = graded[next(k for k in graded if k.endswith("/05_attention.ipynb") and not k.startswith("fused"))]
    assert tasks["attention-module"].points == 0
    assert "refused: import of minigemma.attention" in tasks["attention-module"].message
    assert all(t.points == t.max_points for name, t in tasks.items() if name != "attention-module")


def test_the_fused_kernel_is_refused_in_the_attention_module(graded):
    tasks = graded["fused/05_attention.ipynb"]
    assert tasks["attention-module"].points == 0
    assert "refused: call to torch.nn.functional.scaled_dot_product_attention" in tasks["attention-module"].message


def test_delegating_the_generation_loop_scores_zero(graded):
    tasks = graded[next(k for k in graded if k.endswith("08_kv_cache_sampling.ipynb"))]
    assert tasks["generate-greedy"].points == 0
    assert "refused: import of minigemma.generate" in tasks["generate-greedy"].message
    assert all(t.points == t.max_points for name, t in tasks.items() if name != "generate-greedy")


def test_loading_into_minigemmas_model_instead_of_your_own_scores_zero(graded):
    tasks = graded[next(k for k in graded if k.endswith("10_own_gemma.ipynb") and not k.startswith("gemma3"))]
    task = tasks["own-gemma1"]
    assert task.points == 0 and "refused: import of minigemma.model" in task.message, task.message
    # (task 2 builds on task 1's classes, gone here; the honest 270M run in the sandbox: tests/test_exercises.py)


def test_loading_the_270m_into_minigemmas_gemma3_scores_zero_and_task_1_keeps_its_points(graded):
    tasks = graded["gemma3/10_own_gemma.ipynb"]
    assert tasks["own-gemma3"].points == 0, tasks["own-gemma3"].message
    assert "refused: import of minigemma.gemma3" in tasks["own-gemma3"].message
    assert tasks["own-gemma1"].points == tasks["own-gemma1"].max_points


def test_your_own_gemma3_continues_the_real_270m_like_minigemma_and_a_missed_change_is_named():
    """The solution's Gemma 3 reproduces minigemma's greedy tokens; keeping Gemma 1's attention (no QK-norm) changes
    them, and the message names Gemma 3's changes without handing over the code."""
    import runpy
    from minigemma.grading import check_own_gemma3
    solution = runpy.run_path(str(SOLUTIONS.parent / "src" / "10_own_gemma.py"), run_name="exercise_source")
    assert check_own_gemma3.run(solution["load_gemma3"]).passed
    block3, gemma1_attention = solution["Block3"], solution["Block"].attention
    original = block3.attention
    block3.attention = lambda self, x, cos, sin, mask: gemma1_attention(self, x, cos, sin)   # task 1's, unchanged
    try:
        result = check_own_gemma3.run(solution["load_gemma3"])
    finally:
        block3.attention = original
    assert not result.passed and "on a tiny random Gemma 3" in result.message and "differ" in result.message
    assert "q_norm" in result.message and "sliding_window" in result.message, result.message


def test_own_gemma_check_accepts_the_solution_and_names_the_usual_suspects():
    import runpy
    from minigemma.grading import check_own_gemma1
    solution = runpy.run_path(str(SOLUTIONS.parent / "src" / "10_own_gemma.py"), run_name="exercise_source")
    assert check_own_gemma1.run(solution["load_gemma1"]).passed
    module_globals = solution["load_gemma1"].__globals__

    def rms_norm_without_one(x, weight, eps):                # a classic mistake: weight instead of (1 + weight)
        x32 = x.float()
        return x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    module_globals["rms_norm"] = rms_norm_without_one
    result = check_own_gemma1.run(solution["load_gemma1"])
    assert not result.passed and "(1 + weight)" in result.message and "differ" in result.message, result.message


def test_keep_collects_the_finished_solution_cells_into_one_module_of_your_own(tmp_path, capsys):
    import shutil
    import sys
    sys.path.insert(0, str(SOLUTIONS.parent))
    import keep                                               # exercises/keep.py
    for path in sorted(SOLUTIONS.glob("0[0-9]_*.ipynb")):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(SOLUTIONS.parent / "04_rope.ipynb", tmp_path / "04_rope.ipynb")   # exercise 04 not done yet
    assert keep.main([str(tmp_path)]) == 0
    assert "left out (not done yet): 04_rope.ipynb: rope-angles" in capsys.readouterr().out
    text = (tmp_path / "my_gemma.py").read_text()
    assert "minigemma" not in text.replace("by exercises/keep.py", "") and "NotImplementedError" not in text
    namespace = {}
    exec(compile(text, "my_gemma.py", "exec"), namespace)
    assert "apply_rope" not in namespace                      # the stub was left out
    from minigemma.grading import check_attention_module, check_kv_cache
    assert check_attention_module.run(namespace["Attention"]).passed      # the kept code still works
    assert check_kv_cache.run(namespace["KVCache"]).passed
    assert keep.main([str(tmp_path / "nothing-here")]) == 2
    assert "no exercise notebooks" in capsys.readouterr().err


GEMMA3_MISSES = {"no sliding window": ("causal & (positions[:, None] - positions[None, :] < c.sliding_window)", "causal"),
                 "head_dim scale": ("c.query_pre_attn_scalar ** -0.5", "c.head_dim ** -0.5"),
                 "no position scaling": ("positions / c.rope_scaling_factor", "positions"),
                 "one RoPE base": ("c.rope_local_theta", "c.rope_theta")}


@pytest.mark.parametrize("miss", sorted(GEMMA3_MISSES))
def test_gemma3_changes_the_270m_cannot_show_are_caught_on_a_tiny_gemma3(miss):
    """The 270M's window (512) is longer than the prompt, its query_pre_attn_scalar equals head_dim and it scales
    no positions: a tiny random Gemma 3 where each of these matters runs first, and catches each omission."""
    from minigemma.grading.checks.own_gemma3 import check_tiny, tiny_reference
    from minigemma.grading.compare import fresh_generator
    from minigemma.grading.core import Mismatch
    right, wrong = GEMMA3_MISSES[miss]
    source = (SOLUTIONS.parent / "src" / "10_own_gemma.py").read_text()
    assert right in source
    namespace = {}
    exec(compile(source.replace(right, wrong).replace("check_own_gemma1(load_gemma1)", "")
                 .replace("check_own_gemma3(load_gemma3)", ""), "solution", "exec"), namespace)
    tiny = tiny_reference(fresh_generator())
    with pytest.raises(Mismatch, match="on a tiny random Gemma 3.*differ from minigemma's.*query_pre_attn_scalar"):
        check_tiny(namespace["load_gemma3"], *tiny)
