"""The layout promised by the package docstring and the README: lesson modules at the top, the rest in subpackages,
and Gemma 1's modules free of Gemma 3."""
import ast
import re
from pathlib import Path

import minigemma

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minigemma"
LESSON_MODULES = {"config", "tokenizer", "bpe", "embedding", "rmsnorm", "rope", "attention", "mlp", "block",
                  "model", "kv_cache", "generate", "gemma3", "loss", "lora"}
GEMMA1_MODULES = ("attention.py", "block.py", "model.py", "config.py")
GEMMA3_WORDS = r"qk_norm|sandwich|layer_types|is_local|is_gemma3|sliding|local|query_pre_attn|gemma3|Gemma3"


def test_top_level_holds_only_the_lesson_modules():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert top == LESSON_MODULES, f"not a lesson module: {sorted(top - LESSON_MODULES)}"


def test_package_docstring_and_readme_name_every_module_and_subpackage():
    doc, readme = minigemma.__doc__, (ROOT / "README.md").read_text()
    modules = {p.relative_to(PACKAGE).with_suffix("").as_posix() for p in PACKAGE.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    for module in sorted(modules):
        leaf = module.rsplit("/", 1)[-1]
        assert re.search(rf"\b{leaf}\b", doc), f"the package docstring does not name {module}"
    for folder in sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()):
        assert f"{folder}/" in doc and f"{folder}/" in readme, f"{folder}/ is missing from the map"


def test_gemma1_modules_have_no_gemma3_branch():
    for name in GEMMA1_MODULES:
        body = code_without_docstrings((PACKAGE / name).read_text())
        assert not re.search(GEMMA3_WORDS, body), f"{name} mentions Gemma 3: {re.findall(GEMMA3_WORDS, body)}"


def code_without_docstrings(source: str) -> str:
    """The code of a module, comments and docstrings left out (they may say what Gemma 3 changes)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def test_the_gemma3_check_can_fail():
    old_attention = 'class A:\n    """QK-norm is Gemma 3."""\n    def f(self, config):\n        if config.qk_norm:\n            pass'
    assert re.search(GEMMA3_WORDS, code_without_docstrings(old_attention))
    assert not re.search(GEMMA3_WORDS, code_without_docstrings('"""Not here: Gemma 3."""\nx = 1'))
