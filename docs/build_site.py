"""Build the course website (MkDocs-Material + mkdocs-jupyter + mkdocstrings) from the committed notebooks.

    python docs/build_site.py            # -> site/ (static files, ready for any host); `python3 tasks.py site` runs this
    python docs/build_site.py OUT        # -> OUT/ instead (the tests build into a temporary folder)

The notebooks are rendered as they are committed, already executed: nothing is re-run. Pages are staged in
build/site-src/ and discovered by glob, so a new lesson or exercise appears without editing anything here:
README.md (the landing page, plus the Markdown files it links to), notebooks/NN_*.ipynb (lessons),
exercises/NN_*.ipynb (the stubs; never exercises/solutions/), and one API page per lesson module or subpackage,
generated from the docstrings. Live widgets need a kernel, so each widget output becomes its static fallback: the
widget's own chart at its starting settings, as stored in the notebook, with a note. Math is rendered by a
MathML at build time (latex2mathml), which browsers display natively: no MathJax, no CDN.

Not here: configuration shared by every build (theme, plugins, Markdown extensions: docs/mkdocs.yml) and publishing
(docs/README.md says how).
"""
from __future__ import annotations

import base64
import re
import shutil
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / "build" / "site-src"
SITE = ROOT / "site"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
NOTEBOOK_LINK = re.compile(r"\]\((?:\.\./notebooks/)?(\d\d_\w+)\.ipynb(#[^)]*)?\)")
EXERCISE_LINK = re.compile(r"\]\(\.\./exercises/(?:(\d\d_\w+)\.ipynb)?(#[^)]*)?\)")     # a lesson -> its exercise
HEADING = re.compile(r"^#{1,6} (.*`.*)$", re.M)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)                   # code spans and fences: no math inside
MATH = re.compile(r"\$\$(.+?)\$\$|\$([^$\n]+?)\$", re.S)
FALLBACK_NOTE = ("<p><em>Interactive widget: it needs a running kernel (open this notebook in JupyterLab to move "
                 "the controls). Its chart at the starting settings:</em></p>")


def notebook_title(nb) -> str:
    """'# 02 · Embeddings: lookup, the $\\sqrt{D}$ scale ...' -> '02 · Embeddings' (no math in the navigation)."""
    for cell in nb.cells:
        for line in cell.source.splitlines() if cell.cell_type == "markdown" else ():
            if line.startswith("# "):
                return line[2:].split(":")[0].replace("`", "").strip()
    raise ValueError(f"{nb.metadata.get('path', 'notebook')}: no '# ' title in any markdown cell")


def widget_pngs(state: dict, model_id: str) -> list[bytes]:
    """Every Image model's PNG bytes inside the widget `model_id` (children followed recursively)."""
    model = state.get(model_id)
    if model is None:
        return []
    if model["model_name"] == "ImageModel":
        return [base64.b64decode(b["data"]) for b in model.get("buffers", []) if b["path"] == ["value"]]
    children = model["state"].get("children", [])
    return [png for child in children for png in widget_pngs(state, child.removeprefix("IPY_MODEL_"))]


def static_fallback(output: dict, state: dict) -> dict:
    """A widget output -> an HTML output: the note and the widget's charts as stored in the notebook."""
    pngs = widget_pngs(state, output["data"][WIDGET_VIEW]["model_id"])
    images = "".join(f'<img alt="widget chart" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
                     for png in pngs)
    return nbformat.v4.new_output("display_data", data={"text/html": FALLBACK_NOTE + images})


def toc_anchors(markdown: str) -> str:
    """Give headings with `code` in them the anchor mkdocs-jupyter's table of contents links to.

    Its table of contents slugs the heading with the code spans removed ("## 4. Special tokens and `Tokenizer`"
    -> #4-special-tokens-and), while the page's heading id keeps them; an empty anchor makes both links work.
    """
    from markdown.extensions.toc import slugify

    def anchor(match):
        return f'<a id="{slugify(re.sub(r"`[^`]*`", "", match[1]).strip(), "-")}"></a>\n\n{match[0]}'
    return HEADING.sub(anchor, markdown)


def math_to_mathml(markdown: str) -> str:
    """`$...$` and `$$...$$` outside code -> MathML elements."""
    from latex2mathml.converter import convert

    def mathml(match):
        return convert(match[1], display="block") if match[1] else convert(match[2])
    pieces = re.split(f"({CODE.pattern})", markdown, flags=re.S)            # odd pieces are code, kept as is
    return "".join(p if i % 2 else MATH.sub(mathml, p) for i, p in enumerate(pieces))


def page_links(markdown: str) -> str:
    """Links between notebooks -> links between their pages (every page is lessons/NN_name/ or exercises/NN_name/)."""
    markdown = EXERCISE_LINK.sub(lambda m: f"](../../exercises/{m[1] + '/' if m[1] else ''}{m[2] or ''})", markdown)
    return NOTEBOOK_LINK.sub(r"](../\1/\2)", markdown)


def stage_notebook(source: Path, target: Path) -> str:
    """Copy one notebook for the site: widgets -> static fallbacks, links to notebooks -> links to pages."""
    nb = nbformat.read(source, as_version=4)
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = math_to_mathml(toc_anchors(page_links(cell.source)))
        for i, output in enumerate(cell.get("outputs", [])):
            if WIDGET_VIEW in output.get("data", {}):
                cell.outputs[i] = static_fallback(output, state)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return notebook_title(nb)


def stage_readme() -> list:
    """README.md -> index.md, with the Markdown files it links to (e.g. benchmarks/results.md)."""
    text = (ROOT / "README.md").read_text()
    (STAGE / "index.md").write_text(text)
    pages = []
    for link in sorted(set(re.findall(r"\]\(([\w/.-]+\.md)\)", text))):
        (STAGE / link).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / link, STAGE / link)
        pages.append({Path(link).stem: link})
    return pages


def api_modules() -> list[str]:
    """Lesson modules in the order the notebooks first export from them, then the rest and the subpackages."""
    package = ROOT / "minigemma"
    names = sorted(p.stem for p in package.glob("*.py") if not p.stem.startswith("_"))
    names += sorted(p.name for p in package.iterdir() if (p / "__init__.py").exists())
    first_export = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            for dotted in cell.metadata.get("minigemma", {}).get("export", []):
                first_export.setdefault(dotted.split(".")[1], len(first_export))
    return sorted(names, key=lambda name: (first_export.get(name, len(first_export)), name))


def stage_api() -> list:
    pages = []
    for name in api_modules():
        page = f"api/{name}.md"
        (STAGE / page).parent.mkdir(parents=True, exist_ok=True)
        (STAGE / page).write_text(f"# minigemma.{name}\n\n::: minigemma.{name}\n")
        pages.append({name: page})
    return pages


def stage_mathjax() -> None:
    """mkdocs-jupyter always adds a MathJax <script>; point it at an empty file (the math is MathML already)."""
    (STAGE / "assets").mkdir(exist_ok=True)
    (STAGE / "assets" / "no-mathjax.js").write_text("// math is rendered to MathML when the site is built\n")


def stage() -> list:
    """Lay out STAGE and return the navigation, in course order."""
    shutil.rmtree(STAGE, ignore_errors=True)
    STAGE.mkdir(parents=True)
    nav = [{"Home": "index.md"}]
    readme_pages = stage_readme()
    for folder, section in (("notebooks", "Lessons"), ("exercises", "Exercises")):
        sources = sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb"))          # solutions/ is not matched
        if not sources:
            raise FileNotFoundError(f"{ROOT / folder}: no NN_*.ipynb notebooks to put on the site")
        section_folder = "lessons" if folder == "notebooks" else folder
        pages = [{stage_notebook(s, STAGE / section_folder / s.name): f"{section_folder}/{s.name}"} for s in sources]
        nav.append({section: pages})
    nav.append({"API reference": stage_api()})
    if readme_pages:
        nav.append({"More": readme_pages})
    stage_mathjax()
    return nav


def build_site(site: Path = SITE) -> Path:
    """Stage the pages and run MkDocs; returns the folder holding index.html."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    nav = stage()
    build(load_config(str(ROOT / "docs" / "mkdocs.yml"), docs_dir=str(STAGE), site_dir=str(site), nav=nav))
    return site


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: python docs/build_site.py [OUTPUT_FOLDER]   (default: site/)", file=sys.stderr)
        return 2
    site = build_site(Path(argv[0]).resolve() if argv else SITE)
    print(f"site built: {site / 'index.html'} ({sum(1 for _ in site.rglob('*.html'))} pages)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
