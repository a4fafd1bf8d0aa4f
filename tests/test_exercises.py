"""The graded exercises: sources and notebooks agree, the nbgrader metadata is valid, every solution earns full
marks and every stub zero, classic mistakes lose points with a message naming them, and a task that never ends is
stopped while the rest of the notebook is still graded."""
from __future__ import annotations

import json
import math
import re
import runpy
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from minigemma import cli
from minigemma.grading import REGISTRY
from minigemma.grading import core
from minigemma.grading.runner import grade

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "exercises"
sys.path.insert(0, str(EXERCISES))
import build  # noqa: E402  (exercises/build.py)

STUBS = sorted(EXERCISES.glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((EXERCISES / "solutions").glob("[0-9][0-9]_*.ipynb"))
TOPICS = ["tokenizer", "embeddings", "rmsnorm", "rope", "attention", "geglu", "decoder", "kv_cache_sampling", "vram",
          "own_gemma", "quantization", "training"]
NBGRADER_KEYS = {"grade", "grade_id", "locked", "points", "schema_version", "solution", "task", "cell_type",
                 "checksum"}


# ---- sources, build and metadata ---------------------------------------------------------------------------------

def test_every_exercise_has_a_solution():
    assert [p.stem[3:] for p in STUBS] == TOPICS
    assert [p.name for p in SOLUTIONS] == [p.name for p in STUBS]


def test_committed_notebooks_match_their_sources():
    stale = [str(path.relative_to(EXERCISES)) for path, text in build.render_all().items()
             if not path.exists() or path.read_text() != text]
    assert stale == [], f"rebuild with: python exercises/build.py  (stale: {stale})"


def test_build_refuses_a_heading_with_other_points(tmp_path):
    source = (EXERCISES / "src" / "04_rope.py").read_text().replace("(4 points)", "(5 points)")
    (tmp_path / "04_rope.py").write_text(source)
    with pytest.raises(build.BuildError, match="5 points|4 points"):
        build.build_notebook(tmp_path / "04_rope.py", with_solutions=True)


def test_stub_keeps_the_indentation_of_the_markers():
    lines = ["def f(x):", "    y = 1", "    ### BEGIN SOLUTION", "    return x + y", "    ### END SOLUTION"]
    assert build.stub_out(lines, "test") == ["def f(x):", "    y = 1", "    # YOUR CODE HERE",
                                             "    raise NotImplementedError()"]


def metadata_problems(nb) -> list[str]:
    """What nbgrader (schema version 3) would reject or misread in this notebook's cell metadata."""
    problems, ids = [], set()
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader")
        where = f"cell {index}"
        if meta is None:
            problems.append(f"{where}: no nbgrader metadata")
            continue
        if set(meta) - NBGRADER_KEYS:
            problems.append(f"{where}: unknown keys {sorted(set(meta) - NBGRADER_KEYS)}")
        if meta.get("schema_version") != 3:
            problems.append(f"{where}: schema_version is not 3")
        if not all(isinstance(meta.get(key), bool) for key in ("grade", "solution", "locked")):
            problems.append(f"{where}: grade, solution and locked must be booleans")
        grade_id = meta.get("grade_id", "")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", grade_id) or grade_id in ids:
            problems.append(f"{where}: grade_id {grade_id!r} is missing, malformed or repeated")
        ids.add(grade_id)
        if meta.get("grade"):
            points = meta.get("points")
            if cell.cell_type != "code" or meta.get("solution") or not meta.get("locked"):
                problems.append(f"{where}: a grade cell must be a locked code cell, not a solution")
            if not isinstance(points, (int, float)) or points <= 0:
                problems.append(f"{where}: grade cell without positive points")
            if grade_id not in REGISTRY or not cell.source.startswith(REGISTRY[grade_id].__name__ + "("):
                problems.append(f"{where}: grade cell {grade_id!r} does not call its check")
        if meta.get("solution") and (meta.get("locked") or cell.cell_type != "code"):
            problems.append(f"{where}: a solution cell must be an unlocked code cell")
    return problems


@pytest.mark.parametrize("path", STUBS + SOLUTIONS, ids=lambda p: str(p.relative_to(EXERCISES)))
def test_nbgrader_metadata(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert metadata_problems(nb) == []
    grade_cells = [c for c in nb.cells if c.metadata["nbgrader"]["grade"]]
    solution_cells = [c for c in nb.cells if c.metadata["nbgrader"]["solution"]]
    at_least = 1 if "own_gemma" in path.name else 3         # the final exercise is one assembly task
    assert len(grade_cells) >= at_least and len(solution_cells) == len(grade_cells)
    for cell in solution_cells:
        if path in STUBS:
            assert "raise NotImplementedError()" in cell.source and "BEGIN SOLUTION" not in cell.source
        else:
            assert "### BEGIN SOLUTION" in cell.source and "NotImplementedError" not in cell.source


def test_metadata_check_catches_broken_metadata():
    nb = nbformat.read(SOLUTIONS[0], as_version=4)
    grade_cell = next(c for c in nb.cells if c.metadata["nbgrader"]["grade"])
    del grade_cell.metadata["nbgrader"]["points"]
    nb.cells[0].metadata["nbgrader"]["grade_id"] = grade_cell.metadata["nbgrader"]["grade_id"]
    assert len(metadata_problems(nb)) == 2


# ---- grading whole notebooks ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graded():
    import time
    started = time.perf_counter()
    solutions = grade([EXERCISES / "solutions"], jobs=2)
    seconds = time.perf_counter() - started
    print(f"\ngraded the {len(solutions)} solution notebooks in {seconds:.1f} s")
    return {"solutions": solutions, "stubs": grade([EXERCISES], jobs=2), "seconds": seconds}


def test_every_solution_earns_full_marks(graded):
    for report in graded["solutions"]:
        assert report.error is None, report.path
        assert report.points == report.max_points > 0, [(t.task, t.message) for t in report.tasks if not t.passed]


def test_solutions_grade_within_three_minutes(graded):
    assert graded["seconds"] < 180


def test_every_stub_scores_zero_as_not_implemented(graded):
    assert len(graded["stubs"]) == len(TOPICS)
    for report in graded["stubs"]:
        assert report.max_points > 0 and report.points == 0, report.path
        for task in report.tasks:
            assert "not implemented" in task.message, (report.path, task.task, task.message)


def substitute(nb, task: str, source: str) -> None:
    cell = next(c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == f"{task}-code")
    cell.source = source


def test_wrong_and_endless_tasks_lose_points_and_the_rest_is_graded_cli(tmp_path, capsys):
    nb = nbformat.read(EXERCISES / "solutions" / "04_rope.ipynb", as_version=4)
    substitute(nb, "rope-angles", "def rope_angles(positions, head_dim, theta=10000.0):\n    while True:\n        pass")
    substitute(nb, "rope-apply", INTERLEAVED_ROPE_SOURCE)
    path = tmp_path / "04_rope.ipynb"
    nbformat.write(nb, path)
    code = cli.main(["grade", str(path), "--json", str(tmp_path / "report.json"), "--time-limit", "2"])
    assert code == 0
    table = capsys.readouterr().out
    tasks = {t["task"]: t for t in json.loads((tmp_path / "report.json").read_text())["notebooks"][0]["tasks"]}
    assert tasks["rope-angles"]["points"] == 0 and "time limit" in tasks["rope-angles"]["message"]
    assert tasks["rope-apply"]["points"] == 0 and "interleaved" in tasks["rope-apply"]["message"]
    assert tasks["rope-convert"]["points"] == tasks["rope-convert"]["max_points"] == 3
    assert "3 / 9" in table and "interleaved" in table


def test_a_hang_or_a_crash_outside_any_check_spares_the_other_tasks(tmp_path):
    nb = nbformat.read(EXERCISES / "solutions" / "08_kv_cache_sampling.ipynb", as_version=4)
    substitute(nb, "kv-cache", "import os\nos._exit(1)")                   # kills the kernel
    substitute(nb, "kv-rolling", "import time\nwhile True:\n    time.sleep(0.05)")   # never finishes
    path = tmp_path / "08_kv_cache_sampling.ipynb"
    nbformat.write(nb, path)
    report = grade([path], time_limit=2, margin=1)[0]
    results = {t.task: t for t in report.tasks}
    assert "crashed the kernel" in results["kv-cache"].message
    assert "did not finish within the time limit" in results["kv-rolling"].message
    assert results["sampling-temperature"].passed and results["sampling-top-p"].passed
    assert report.points == results["sampling-temperature"].max_points + results["sampling-top-p"].max_points
    assert report.error is None


def grading_kernels() -> set[int]:
    """Process ids of running kernels started by `minigemma grade` (their connection file is in its temp folder)."""
    pids = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ipykernel_launcher" in command and b"minigemma-grade-" in command:
            pids.add(int(proc.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to list processes")
def test_grading_leaves_no_kernel_running_even_one_that_crashed_or_hung(tmp_path):
    """nbclient does not stop a kernel it was handed: a cohort's kernels once piled up until the grader exited."""
    before = grading_kernels()
    nb = nbformat.read(EXERCISES / "solutions" / "03_rmsnorm.ipynb", as_version=4)
    nbformat.write(nb, tmp_path / "03_rmsnorm.ipynb")
    substitute(nb, "rmsnorm-function", "import time\nwhile True:\n    time.sleep(0.05)")
    (tmp_path / "hung").mkdir()
    nbformat.write(nb, tmp_path / "hung" / "03_rmsnorm.ipynb")
    grade([tmp_path / "03_rmsnorm.ipynb", tmp_path / "hung" / "03_rmsnorm.ipynb"], time_limit=2, margin=1)
    assert grading_kernels() - before == set()


def test_grade_command_rejects_bad_paths(tmp_path, capsys):
    assert cli.main(["grade", str(tmp_path / "missing.ipynb")]) == 2
    assert cli.main(["grade", str(tmp_path)]) == 2
    (tmp_path / "broken.ipynb").write_text("{not json")
    assert cli.main(["grade", str(tmp_path / "broken.ipynb")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and "no such file" in errors[0] and "no .ipynb" in errors[1]
    assert "broken.ipynb: not a readable notebook" in errors[2]


def test_an_unreadable_notebook_in_a_folder_does_not_stop_the_others(tmp_path, capsys):
    folder = tmp_path / "learner"
    folder.mkdir()
    shutil.copy(EXERCISES / "03_rmsnorm.ipynb", folder / "03_rmsnorm.ipynb")
    (folder / "02_broken.ipynb").write_text("{not json")
    assert cli.main(["grade", str(folder), "--json", str(tmp_path / "report.json")]) == 2
    out, err = capsys.readouterr()
    assert "02_broken.ipynb: not a readable notebook" in err and err.count("\n") == 1
    report = json.loads((tmp_path / "report.json").read_text())
    broken, graded = report["notebooks"]
    assert "not a readable notebook" in broken["error"] and broken["tasks"] == [] and broken["unreadable"]
    assert "(1 unreadable, their points unknown and not counted)" in out
    assert graded["max_points"] > 0 and len(graded["tasks"]) >= 3              # the stub was still graded (to 0)
    assert all("not implemented" in task["message"].lower() for task in graded["tasks"])


# ---- the checks themselves, on known wrong implementations --------------------------------------------------------

INTERLEAVED_ROPE_SOURCE = '''
import torch
def apply_rope(x, cos, sin):
    even, odd = x[..., 0::2].float(), x[..., 1::2].float()
    return torch.stack((even * cos - odd * sin, odd * cos + even * sin), -1).flatten(-2).to(x.dtype)
'''.strip()


@pytest.fixture(scope="module")
def solution():
    """The reference solutions, by name, taken from the exercise sources (running a source runs its checks)."""
    names = {}
    for source in sorted((EXERCISES / "src").glob("[0-9][0-9]_*.py")):
        namespace = runpy.run_path(str(source), run_name="exercise_source")
        names.update({k: v for k, v in namespace.items() if getattr(v, "__module__", None) == "exercise_source"})
    return names


def fails_with(check, candidate, *phrases):
    result = check.run(candidate)
    assert not result.passed, f"{check.task} accepted a wrong implementation"
    assert any(p in result.message for p in phrases), f"{check.task}: {result.message!r} lacks {phrases}"


def test_every_check_accepts_its_solution(solution):
    names = {"tokenizer-encode": "encode", "tokenizer-chat": "chat_prompt", "tokenizer-bytes": "byte_fallback",
             "tokenizer-bpe": "bpe_encode", "embedding-lookup": "embed", "embedding-scale": "embedding_scale",
             "embedding-head": "tied_logits", "rmsnorm-function": "rms_norm", "rmsnorm-module": "RMSNorm",
             "rmsnorm-fold": "fold_norm_weight", "rope-angles": "rope_angles", "rope-apply": "apply_rope",
             "rope-convert": "interleaved_to_half_split", "attention-mask": "causal_mask",
             "attention-core": "attention", "attention-gqa": "attention_gqa",
             "attention-window": "sliding_window_mask", "attention-module": "Attention",
             "geglu-gelu": "gelu_tanh", "geglu-mlp": "geglu",
             "geglu-fused": "geglu_fused", "block-forward": "decoder_block", "block-model": "gemma_forward",
             "block-names": "to_hf_name", "kv-cache": "KVCache", "kv-rolling": "RollingKVCache",
             "sampling-temperature": "next_token_probs", "sampling-top-p": "top_p_filter",
             "vram-parameters": "count_parameters", "vram-kv-bytes": "kv_cache_bytes", "vram-context": "max_context",
             "quant-int8": "quantize_int8", "quant-q8-0": "dequantize_q8_0", "quant-q4-k": "dequantize_q4_k"}
    names.update({"generate-greedy": "generate", "own-gemma1": "load_gemma1", "own-gemma3": "load_gemma3", "loss-next-token": "next_token_loss",
                  "lora-forward": "lora_forward", "lora-merge": "merge_lora_weight"})
    extra = {"generate-greedy": [solution["TinyGemma"]]}        # checks that also take a given class
    assert set(names) == set(REGISTRY)
    for task, name in names.items():
        for _ in range(2):                                     # fresh random inputs each time
            result = REGISTRY[task].run(solution[name], *extra.get(task, []))
            assert result.passed, (task, result.message)


def test_tokenizer_mistakes(solution):
    from minigemma.grading import check_bpe_encode, check_byte_fallback, check_chat_prompt, check_encode
    fails_with(check_encode, lambda sp, text: sp.encode(text), "BOS")
    fails_with(check_encode, lambda sp, text: [2] + sp.encode(text) + [1], "EOS")
    fails_with(check_chat_prompt, lambda m: f"<start_of_turn>user\n{m}<end_of_turn>\n<start_of_turn>assistant\n",
               "not `assistant`")
    fails_with(check_chat_prompt, lambda m: f"<start_of_turn>user\n{m}<end_of_turn>\n<start_of_turn>model",
               "newline after `model`")
    fails_with(check_byte_fallback, lambda c: [f"<0x{b:02x}>" for b in c.encode()], "upper-case")
    fails_with(check_byte_fallback, lambda c: [f"<0x{ord(c):02X}>"], "UTF-8 *bytes*")
    bpe = solution["bpe_encode"]
    fails_with(check_bpe_encode, lambda text, scores: bpe(" " + text, scores), "dummy-prefix")
    fails_with(check_bpe_encode, lambda text, scores: list(text), "U+2581", "byte pieces")
    fails_with(check_bpe_encode, leftmost_bpe, "highest score")


def leftmost_bpe(text, scores):
    symbols = list(text.replace(" ", "\u2581"))
    merged = True
    while merged:
        merged = False
        for i in range(len(symbols) - 1):
            if symbols[i] + symbols[i + 1] in scores:
                symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
                merged = True
                break
    return [p for s in symbols for p in ([s] if s in scores else [f"<0x{b:02X}>" for b in s.encode()])]


def test_embedding_mistakes():
    from minigemma.grading import check_embed, check_embedding_scale, check_tied_logits
    fails_with(check_embed, lambda w, ids: w[ids], "forgot the scale")
    fails_with(check_embed, lambda w, ids: w[ids] * math.sqrt(w.shape[1]), "round the scale to the compute dtype")
    fails_with(check_embed, lambda w, ids: w[ids] * torch.tensor(math.sqrt(w.shape[1])).to(w.dtype) * 1.0001,
               "differ")
    fails_with(check_embedding_scale, lambda d, dtype: math.sqrt(d), "exactly")
    fails_with(check_embedding_scale, lambda d, dtype: torch.tensor(math.sqrt(d), dtype=torch.float32).to(dtype)
               .item() if dtype != torch.bfloat16 else math.floor(math.sqrt(d) * 4) / 4, "toward zero")
    fails_with(check_tied_logits, lambda h, w: h @ w.T * math.sqrt(w.shape[1]), "not scaled")
    fails_with(check_tied_logits, lambda h, w: (h @ w.T).softmax(-1), "not probabilities")


def test_rmsnorm_mistakes():
    from minigemma.grading import check_fold_norm, check_rms_norm, check_rmsnorm_module

    def in_input_dtype(x, w, eps=1e-6):                          # statistics in bfloat16 for bfloat16 input
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1 + w)

    fails_with(check_rms_norm, lambda x, w, eps=1e-6: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w,
               "(1 + weight)")
    fails_with(check_rms_norm, lambda x, w, eps=1e-6: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * (1 + w),
               "inside the square root")
    fails_with(check_rms_norm, lambda x, w, eps=1e-6: F.layer_norm(x, x.shape[-1:], eps=eps) * (1 + w), "LayerNorm")
    fails_with(check_rms_norm, in_input_dtype, "float32")
    fails_with(check_rms_norm, lambda x, w, eps=1e-6: in_input_dtype(x.float(), w.float(), eps), "dtype")

    class OnesNorm(torch.nn.Module):
        def __init__(self, dim, eps=1e-6):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(dim))

        def forward(self, x):
            return in_input_dtype(x, self.weight - 1)

    fails_with(check_rmsnorm_module, OnesNorm, "zeros")
    fails_with(check_fold_norm, lambda w, lin: lin * (1 + w)[:, None], "columns")
    fails_with(check_fold_norm, lambda w, lin: lin * w[None, :], "(1 + weight)")


def test_rope_mistakes(solution):
    from minigemma.grading import check_interleaved_to_half_split, check_rope, check_rope_angles
    namespace = {}
    exec(INTERLEAVED_ROPE_SOURCE, namespace)
    fails_with(check_rope, namespace["apply_rope"], "interleaved")

    def minus_angle(x, cos, sin):
        x1, x2 = x.float().chunk(2, -1)
        return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), -1).to(x.dtype)

    def rotated_in_bf16(x, cos, sin):
        x1, x2 = x.chunk(2, -1)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), -1)

    fails_with(check_rope, minus_angle, "-angle")
    fails_with(check_rope, rotated_in_bf16, "round to the input dtype once")

    def single_step(positions, head_dim, theta=10000.0):
        angles = positions.float()[:, None] * theta ** (-torch.arange(head_dim // 2).float() / head_dim)
        return angles.cos(), angles.sin()

    fails_with(check_rope_angles, single_step, "2i / head_dim")
    fails_with(check_rope_angles, lambda p, d, theta=10000.0: solution["rope_angles"](p, d, theta)[::-1], "(sin, cos)")

    def inverse(weight, head_dim):
        rows, hidden = weight.shape
        return weight.view(rows // head_dim, 2, head_dim // 2, hidden).transpose(1, 2).reshape(rows, hidden)

    def whole_matrix(weight, head_dim):
        return torch.cat((weight[0::2], weight[1::2]))

    fails_with(check_interleaved_to_half_split, inverse, "inverse permutation")
    fails_with(check_interleaved_to_half_split, whole_matrix, "within each head")


def test_attention_mistakes(solution):
    from minigemma.grading import check_attention, check_causal_mask, check_gqa, check_sliding_window_mask
    fails_with(check_causal_mask, lambda q, k: torch.ones(q, k, dtype=torch.bool).tril(), "*last* q_len")
    fails_with(check_causal_mask, lambda q, k: torch.ones(q, k, dtype=torch.bool).tril(k - q - 1), "see itself")
    fails_with(check_causal_mask, lambda q, k: torch.ones(q, k).tril(k - q), "boolean")

    def attention(q, k, v, scale=None, causal=True):
        scores = q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5 if scale is None else scale)
        if causal:
            scores = scores.masked_fill(~torch.ones(q.shape[2], q.shape[2], dtype=torch.bool).tril(), float("-inf"))
        return scores.softmax(-1) @ v

    fails_with(check_attention, lambda q, k, v: attention(q, k, v, scale=1.0), "not scaled")
    fails_with(check_attention, lambda q, k, v: attention(q, k, v, scale=1 / q.shape[-1]), "1/head_dim")
    fails_with(check_attention, lambda q, k, v: attention(q, k, v, causal=False), "no causal mask")
    group = lambda q, k: q.shape[1] // k.shape[1]          # noqa: E731
    fails_with(check_gqa, lambda q, k, v: attention(q, k.repeat(1, group(q, k), 1, 1), v.repeat(1, group(q, k), 1, 1)),
               "repeat_interleave")
    fails_with(check_gqa, lambda q, k, v: attention(q, k, v), "shape", "size", "raised")
    distance = lambda n: torch.arange(n)[:, None] - torch.arange(n)[None, :]   # noqa: E731
    fails_with(check_sliding_window_mask, lambda n, w: (distance(n) >= 0) & (distance(n) <= w), "off by one")
    fails_with(check_sliding_window_mask, lambda n, w: distance(n).abs() < w, "causal")


def attention_module_with(solution, edit):
    """The solution's Attention class with one line of its forward replaced (a classic mistake)."""
    cells = build.split_cells((EXERCISES / "src" / "05_attention.py").read_text(), "05_attention.py")
    source = "\n".join(next(c for c in cells if c["kind"] == "solution" and c["id"] == "attention-module")["lines"])
    old, new = edit
    assert old in source
    namespace = {"torch": torch, "attention_gqa": solution["attention_gqa"]}
    exec(source.replace(old, new), namespace)
    return namespace["Attention"]


def test_attention_module_mistakes(solution):
    from minigemma.grading import check_attention_module
    assert check_attention_module.run(solution["Attention"]).passed
    mistakes = [(("q = rope(heads(self.q_proj(x), self.num_heads))", "q = heads(self.q_proj(x), self.num_heads)"),
                 "RoPE on k only"),
                (("k = rope(heads(self.k_proj(x), self.num_kv_heads))", "k = heads(self.k_proj(x), self.num_kv_heads)"),
                 "RoPE on q only"),
                (("return t.view(batch, seq, count, self.head_dim).transpose(1, 2)",
                  "return t.view(batch, count, seq, self.head_dim)"), "heads are split wrongly"),
                (("out.transpose(1, 2).reshape(batch, seq, -1)", "out.reshape(batch, seq, -1)"),
                 "heads are merged wrongly"),
                (("t1, t2 = t[..., : self.head_dim // 2], t[..., self.head_dim // 2:]",
                  "t1, t2 = t[..., 0::2], t[..., 1::2]\n            return torch.stack((t1 * cos - t2 * sin, "
                  "t2 * cos + t1 * sin), -1).flatten(-2)"), "interleaved"),
                (("self.q_proj = torch.nn.Linear", "self.query = torch.nn.Linear"), "q_proj")]
    for edit, phrase in mistakes:
        fails_with(check_attention_module, attention_module_with(solution, edit), phrase)


def test_generation_loop_mistakes(solution):
    from minigemma.grading import check_greedy_generate
    KVCache, TinyGemma = solution["KVCache"], solution["TinyGemma"]

    def loop(cache_each_step=False, keep_stop=True, stop=True, extra=0):
        def generate(model, prompt_ids, max_new_tokens, stop_ids):
            ids, new = list(prompt_ids), []
            cache = KVCache(model.config, 1, len(ids) + max_new_tokens + extra)
            step = torch.tensor([ids])
            for _ in range(max_new_tokens + extra):
                if cache_each_step:                              # no reuse: the whole sequence every step
                    cache, step = KVCache(model.config, 1, len(ids) + 1), torch.tensor([ids])
                next_id = int(model(step, cache)[0, -1].argmax())
                ids.append(next_id)
                if stop and next_id in stop_ids:
                    new += [next_id] if keep_stop else []
                    break
                new.append(next_id)
                step = torch.tensor([[next_id]])
            return new
        return generate

    assert check_greedy_generate.run(loop(), TinyGemma).passed
    for wrong, phrase in [(loop(cache_each_step=True), "re-ran the whole sequence"),
                          (loop(keep_stop=False), "stop id itself"), (loop(stop=False), "did not stop"),
                          (loop(extra=1), "run the prompt once")]:
        result = check_greedy_generate.run(wrong, TinyGemma)
        assert not result.passed and phrase in result.message, result.message


def test_geglu_mistakes():
    from minigemma.grading import check_geglu, check_geglu_fused, check_gelu_tanh
    fails_with(check_gelu_tanh, lambda x: F.gelu(x), "exact (erf) GELU")
    fails_with(check_gelu_tanh, lambda x: x * torch.sigmoid(1.702 * x), "sigmoid")
    fails_with(check_gelu_tanh, lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * x)), "cubic")
    tanh = lambda x: F.gelu(x, approximate="tanh")          # noqa: E731
    fails_with(check_geglu, lambda x, g, u, d: (F.gelu(x @ g.T) * (x @ u.T)) @ d.T, "exact (erf) GELU")
    fails_with(check_geglu, lambda x, g, u, d: (tanh(x @ u.T) * (x @ g.T)) @ d.T, "gate projection")
    fails_with(check_geglu, lambda x, g, u, d: (F.silu(x @ g.T) * (x @ u.T)) @ d.T, "SwiGLU")
    fails_with(check_geglu_fused, lambda x, gu, d: (tanh(x @ gu.T).chunk(2, -1)[1] * (x @ gu.T).chunk(2, -1)[0]) @ d.T,
               "swapped")
    fails_with(check_geglu_fused, lambda x, gu, d: (tanh(x @ gu[0::2].T) * (x @ gu[1::2].T)) @ d.T, "contiguous")


def test_decoder_mistakes(solution):
    from minigemma.grading import check_decoder_block, check_gemma_forward, check_hf_names

    def post_norm(block, h, rope, mask):
        h = block.attn_norm(h + block.attn(h, rope, mask))
        return block.mlp_norm(h + block.mlp(h))

    def parallel(block, h, rope, mask):
        return h + block.attn(block.attn_norm(h), rope, mask) + block.mlp(block.mlp_norm(h))

    fails_with(check_decoder_block, post_norm, "post-norm")
    fails_with(check_decoder_block, parallel, "parallel")

    def forward(model, ids, final_norm=True, causal=True):
        from minigemma.attention import causal_mask
        from minigemma.rope import rope_angles
        positions = torch.arange(ids.shape[1])
        mask = causal_mask(positions, positions) if causal else torch.ones(len(positions), len(positions)).bool()
        h = model.embed(ids)
        for block in model.layers:
            h = block(h, rope_angles(positions, model.config.head_dim), mask)
        return model.embed.logits(model.norm(h) if final_norm else h)

    fails_with(check_gemma_forward, lambda m, ids: forward(m, ids, final_norm=False), "final RMSNorm")
    fails_with(check_gemma_forward, lambda m, ids: forward(m, ids, causal=False), "causal mask")
    right = solution["to_hf_name"]
    fails_with(check_hf_names, lambda n: right(n).replace("post_attention_layernorm", "pre_feedforward_layernorm"),
               "Gemma 3")
    fails_with(check_hf_names, lambda n: right(n)[len("model."):], "start with 'model.'")


def test_kv_cache_and_sampling_mistakes(solution):
    from minigemma.grading import check_kv_cache, check_rolling_kv_cache, check_temperature_top_k, check_top_p
    base = solution["KVCache"]

    class LateByOne(base):
        def update(self, layer, k, v):
            start, end = self.length + 1, self.length + 1 + k.shape[2]
            self.keys[layer, :, :, start:end], self.values[layer, :, :, start:end] = k, v
            return self.keys[layer, :, :, :end - 1], self.values[layer, :, :, :end - 1]

    class OnlyNew(base):
        def update(self, layer, k, v):
            super().update(layer, k, v)
            return k, v

    class WholeBuffer(base):
        def update(self, layer, k, v):
            super().update(layer, k, v)
            return self.keys[layer], self.values[layer]

    fails_with(check_kv_cache, LateByOne, "off by one")
    fails_with(check_kv_cache, OnlyNew, "only the new keys")
    fails_with(check_kv_cache, WholeBuffer, "whole pre-allocated buffer")
    rolling = solution["RollingKVCache"]

    class StorageOrder(rolling):
        def append(self, k, v):
            super().append(k, v)
            n = min(self.length, self.window)
            return self.keys[:, :, :n], self.values[:, :, :n]

    fails_with(check_rolling_kv_cache, StorageOrder, "time order")
    probs = solution["next_token_probs"]
    fails_with(check_temperature_top_k, lambda logits, t, k=None: probs(logits, 1.0, k) / t, "before the softmax")
    fails_with(check_temperature_top_k, lambda logits, t, k=None: probs(logits, t, k + 1 if k else k), "off by one")
    keep = solution["top_p_filter"]

    def drops_crossing_token(logits, top_p):
        ordered, order = logits.sort(-1, descending=True)
        drop = ordered.softmax(-1).cumsum(-1) > top_p
        return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))

    fails_with(check_top_p, drops_crossing_token, "includes it")
    fails_with(check_top_p, lambda logits, top_p: logits.clone(), "nothing was filtered")
    fails_with(check_top_p, lambda logits, top_p: keep(logits, top_p) * 2, "unchanged")


def test_vram_mistakes(solution):
    from minigemma.grading import check_kv_cache_bytes, check_max_context, check_parameter_count
    count = solution["count_parameters"]
    fails_with(check_parameter_count, lambda c: count(c) + c.vocab_size * c.hidden_size, "ties the output head")
    fails_with(check_parameter_count, lambda c: count(c.replace(num_kv_heads=c.num_heads)), "num_kv_heads")

    def derived_head_dim(c):                          # head_dim = hidden / heads: true for many models, not Gemma
        d, head_dim = c.hidden_size, c.hidden_size // c.num_heads
        attention = d * head_dim * 2 * (c.num_heads + c.num_kv_heads)
        return c.vocab_size * d + c.num_layers * (attention + 3 * d * c.intermediate_size + 2 * d) + d

    fails_with(check_parameter_count, derived_head_dim, "never derive head_dim")
    kv = solution["kv_cache_bytes"]
    fails_with(check_kv_cache_bytes, lambda c, b, s, d: kv(c, b, s, d) // 2, "both K and V")
    fails_with(check_kv_cache_bytes, lambda c, b, s, d: kv(c.replace(num_kv_heads=c.num_heads), b, s, d),
               "only the KV heads")
    fails_with(check_kv_cache_bytes, lambda c, b, s, d: kv(c, b, s, d) * 8, "bits")
    context = solution["max_context"]
    fails_with(check_max_context, lambda c, m, b, d: min(m // kv(c, b, 1, d), c.max_seq_len), "weights take memory")
    fails_with(check_max_context, lambda c, m, b, d: context(c.replace(max_seq_len=10**9), m, b, d), "max_seq_len")


# ---- messages and limits ------------------------------------------------------------------------------------------

def test_a_check_stops_an_endless_function(monkeypatch):
    from minigemma.grading import check_gelu_tanh
    monkeypatch.setenv(core.TIME_LIMIT_ENV, "0.5")

    def endless(x):
        while True:
            pass

    result = check_gelu_tanh.run(endless)
    assert not result.passed and "stopped after 0.5 s" in result.message and result.seconds < 5


def test_errors_say_where_the_learners_code_failed():
    from minigemma.grading import check_gelu_tanh, CheckFailed

    def broken(x):
        return x[100000]

    result = check_gelu_tanh.run(broken)
    assert "your code raised IndexError" in result.message and "of broken" in result.message
    assert "should return a torch.Tensor" in check_gelu_tanh.run(lambda x: x.tolist()).message
    assert "returned shape" in check_gelu_tanh.run(lambda x: x[:3]).message
    assert "pass the function itself" in check_gelu_tanh.run(3).message
    with pytest.raises(CheckFailed) as failure:
        check_gelu_tanh(F.gelu)
    assert "tanh approximation" in failure.value._render_traceback_()[0]
    passed = check_gelu_tanh(lambda x: F.gelu(x, approximate="tanh"))
    bundle = passed._repr_mimebundle_()
    assert bundle["text/plain"].startswith("✓ geglu-gelu") and bundle[core.GRADE_MIME]["passed"] is True


def test_quantization_mistakes(solution):
    from minigemma.grading import check_dequantize_q4_k, check_dequantize_q8_0, check_quantize_int8
    from minigemma.quant.ggml_blocks import f16
    quantize = solution["quantize_int8"]

    def per_tensor(w):
        scale = w.abs().max() / 127
        return torch.round(w / scale).to(torch.int8), scale.reshape(1, 1)

    def per_column(w):
        scale = w.abs().amax(dim=0, keepdim=True) / 127                  # (1, in_features)
        return torch.round(w / scale).to(torch.int8), scale

    fails_with(check_quantize_int8, per_tensor, "per-tensor")
    fails_with(check_quantize_int8, lambda w: (per_tensor(w)[0], per_tensor(w)[1].expand(w.shape[0], 1)),
               "per-tensor")
    fails_with(check_quantize_int8, per_column, "input columns")
    fails_with(check_quantize_int8, lambda w: ((w / quantize(w)[1]).to(torch.int8), quantize(w)[1]), "truncates")
    fails_with(check_quantize_int8, lambda w: (quantize(w)[0].float(), quantize(w)[1]), "torch.int8")
    fails_with(check_quantize_int8, lambda w: (quantize(w)[0], quantize(w)[1] * 127), "absmax itself")
    fails_with(check_quantize_int8, lambda w: (quantize(w)[0] // 2, quantize(w)[1]), "differs from round")
    q8 = solution["dequantize_q8_0"]
    fails_with(check_dequantize_q8_0, lambda b: f16(b[:, :2]) * b[:, 2:].float(), "unsigned")
    fails_with(check_dequantize_q8_0, lambda b: b[:, 2:].contiguous().view(torch.int8).float(), "scale d")
    fails_with(check_dequantize_q8_0, lambda b: q8(b) * 2, "differ from Q8_0")
    q4 = solution["dequantize_q4_k"]

    def q4_k_with(nibbles, zero_sign=-1.0):
        def decoder(blocks):
            from minigemma.quant.ggml_blocks import q4_k_scales_and_mins
            n = blocks.shape[0]
            scales, mins = q4_k_scales_and_mins(blocks[:, 4:16])
            chunks = blocks[:, 16:].reshape(n, 4, 32)
            q = nibbles(chunks & 0x0F, chunks >> 4).reshape(n, 8, 32).float()
            w = (f16(blocks[:, 0:2]) * scales).unsqueeze(-1) * q
            return (w + zero_sign * (f16(blocks[:, 2:4]) * mins).unsqueeze(-1)).reshape(n, 256)
        return decoder

    in_order = lambda low, high: torch.stack((low, high), dim=2)          # noqa: E731
    check = check_dequantize_q4_k
    fails_with(check, q4_k_with(lambda low, high: torch.stack((low, high), dim=-1)), "interleaved")
    fails_with(check, q4_k_with(lambda low, high: torch.stack((high, low), dim=2)), "low nibbles (bits 0-3) come")
    fails_with(check, q4_k_with(in_order, zero_sign=0.0), "zero point")
    fails_with(check, q4_k_with(in_order, zero_sign=1.0), "not added")
    fails_with(check, lambda b: q4(b)[:, :128], "returned shape")
    assert check.run(q4_k_with(in_order)).passed                           # the same helper, right: accepted
