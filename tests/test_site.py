"""The course website (docs/build_site.py) and the notebook conventions a browser sees.

Static checks on the committed notebooks (kernel name, widget outputs), the site's structure, then every page of
the built site in headless Chromium: no console errors, no raw `$...$`, every image loaded, every internal link
resolving. JupyterLab itself is tested in tests/test_browser.py.
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import re
import threading
import time
import urllib.parse
from pathlib import Path

import nbformat
import pytest

from chromium import chromium_driver, console_errors, save_png

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "exercises" / "solutions").glob("[0-9][0-9]_*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def load_builder():
    spec = importlib.util.spec_from_file_location("build_site", ROOT / "docs" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the committed notebooks -------------------------------------------------------------------------------------

def installed_kernel() -> dict:
    """What `python -m ipykernel install --sys-prefix --name python3` (tasks.py's set-up) put in kernel.json."""
    from jupyter_client.kernelspec import KernelSpecManager
    spec = KernelSpecManager().get_kernel_spec("python3")
    return {"display_name": spec.display_name, "language": spec.language, "name": "python3"}


def widget_text_outputs(path: Path) -> list[int]:
    """Indices of the cells whose widget output also stores the widget's text form (shown in a fresh notebook)."""
    nb = nbformat.read(path, as_version=4)
    return [i for i, cell in enumerate(nb.cells) for out in cell.get("outputs", [])
            if WIDGET_VIEW in out.get("data", {}) and "text/plain" in out["data"]]


@pytest.mark.parametrize("path", NOTEBOOKS + EXERCISES + SOLUTIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_notebook_names_the_installed_kernel(path):
    # a different display name makes JupyterLab rewrite the metadata and mark the untouched notebook modified
    assert nbformat.read(path, as_version=4).metadata.kernelspec == installed_kernel()


def test_builders_write_the_installed_kernel():
    for builder in (ROOT / "notebooks" / "nbbuild.py", ROOT / "exercises" / "build.py"):
        assert load_script(builder).KERNEL == installed_kernel(), builder


def test_kernel_check_catches_the_old_display_name():
    old = {"display_name": "Python 3", "language": "python", "name": "python3"}   # what the notebooks stored
    assert old != installed_kernel()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_widgets_store_no_text_form(path):
    assert widget_text_outputs(path) == [], f"{path.name}: display the widget with exclude={{'text/plain'}}"


def test_widget_text_check_catches_a_stored_text_form(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
        "display_data", data={WIDGET_VIEW: {"model_id": "abc"}, "text/plain": "VBox(children=(FloatSlider("})])])
    nbformat.write(nb, tmp_path / "08_x.ipynb")
    assert widget_text_outputs(tmp_path / "08_x.ipynb") == [0]


# --- the site's structure ----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    return load_builder().build_site(tmp_path_factory.mktemp("site") / "site")


def test_site_has_every_lesson_exercise_stub_and_api_page(site):
    for path in NOTEBOOKS:
        assert (site / "lessons" / path.stem / "index.html").exists(), path.name
    for path in EXERCISES:
        page = (site / "exercises" / path.stem / "index.html").read_text()
        assert "NotImplementedError" in page, f"{path.name}: the site must show the stub"
    assert not any("solutions" in p.parts for p in site.rglob("*")), "solutions must stay off the site"
    for module in (ROOT / "minigemma").glob("[a-z]*.py"):
        assert 'class="doc doc-heading"' in (site / "api" / module.stem / "index.html").read_text(), module.name
    assert (site / "search" / "search_index.json").exists()
    assert "Build Google's" in (site / "index.html").read_text()                  # README is the landing page


def test_site_shows_the_notebooks_without_re_executing(site):
    page = (site / "lessons" / "04_rope" / "index.html").read_text()
    nb = nbformat.read(ROOT / "notebooks" / "04_rope.ipynb", as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts and re.findall(r'InputArea-prompt">In\s\[(\d*)\]', page) == [str(c) for c in counts if c is not None]
    assert "Interactive widget: it needs a running kernel" in page                 # the widget's static fallback


def test_navigation_is_discovered_not_listed(tmp_path, monkeypatch):
    builder = load_builder()
    fake_root = tmp_path / "repo"
    for folder in ("notebooks", "exercises"):
        (fake_root / folder).mkdir(parents=True)
    (fake_root / "minigemma").mkdir()
    (fake_root / "minigemma" / "rope.py").write_text('"""RoPE."""\n')
    (fake_root / "README.md").write_text("# hello\n")
    for folder, name in (("notebooks", "11_new_lesson"), ("notebooks", "00_intro"), ("exercises", "11_new")):
        md = nbformat.v4.new_markdown_cell(f"# {name[:2]} · Title: with $x$ math")
        nbformat.write(nbformat.v4.new_notebook(cells=[md]), fake_root / folder / f"{name}.ipynb")
    monkeypatch.setattr(builder, "ROOT", fake_root)
    monkeypatch.setattr(builder, "STAGE", tmp_path / "stage")
    monkeypatch.setattr(builder, "stage_mathjax", lambda: None)
    nav = builder.stage()
    assert nav[1] == {"Lessons": [{"00 · Title": "lessons/00_intro.ipynb"},
                                  {"11 · Title": "lessons/11_new_lesson.ipynb"}]}
    assert nav[2] == {"Exercises": [{"11 · Title": "exercises/11_new.ipynb"}]}
    assert nav[3] == {"API reference": [{"rope": "api/rope.md"}]}


# --- the site in a browser ---------------------------------------------------------------------------------------

VISIBLE_TEXT = """
const copy = document.body.cloneNode(true);
copy.querySelectorAll('pre, code, script, style, .MathJax, .MathJax_Preview, .MJX_Assistive_MathML')
    .forEach(e => e.remove());
return copy.textContent;
"""
BROKEN_IMAGES = "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src.slice(0, 80));"
LINKS = "return [...document.querySelectorAll('a[href]')].map(a => a.href);"
SHOW_FIGURE = "document.querySelector('.jp-OutputArea-output img').scrollIntoView(); window.scrollBy(0, -420);"
MATH_SHOWN = "return [...document.querySelectorAll('math')].filter(m => m.getBoundingClientRect().width > 0).length;"
# $...$ left as text; `$MINIGEMMA_CACHE`-style environment variables in prose are not math
RAW_MATH = re.compile(r"\$\$.+?\$\$|\$(?![A-Z_]{2})[^$\s][^$\n]*?\$|\\\(.+?\\\)", re.S)


@pytest.fixture(scope="module")
def served(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def link_target(site: Path, base: str, url: str) -> str | None:
    """None when an internal link resolves (file, and anchor on that page), else what is missing."""
    parts = urllib.parse.urlsplit(url)
    path = site / urllib.parse.unquote(parts.path).lstrip("/")
    if path.is_dir() or parts.path.endswith("/"):
        path = path / "index.html"
    if not path.exists():
        return f"no file {path.relative_to(site)}"
    fragment = urllib.parse.unquote(parts.fragment)
    if fragment and path.suffix == ".html" and f'id="{fragment}"' not in path.read_text():
        return f"no id={fragment!r} in {path.relative_to(site)}"
    return None


def test_every_page_renders_cleanly(site, served):
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    problems, links = [], {}
    driver = chromium_driver()
    try:
        for page in pages:
            driver.get(served + page)
            math_shown = driver.execute_script(MATH_SHOWN)
            errors = console_errors(driver)
            raw = RAW_MATH.findall(driver.execute_script(VISIBLE_TEXT))
            broken = driver.execute_script(BROKEN_IMAGES)
            problems += [f"{page}: console: {e}" for e in errors]
            problems += [f"{page}: unrendered math {m[:60]!r}" for m in raw]
            problems += [f"{page}: image not loaded {b}" for b in broken]
            if page.startswith("lessons/0") and not math_shown:
                problems.append(f"{page}: no rendered math (every lesson has some)")
            links.update({url: page for url in driver.execute_script(LINKS) if url.startswith(served)})
            if page == "lessons/04_rope/index.html":                         # a figure and math in view
                driver.execute_script(SHOW_FIGURE)
                time.sleep(1)                                                    # the header finishes its title swap
            if page in ("index.html", "lessons/04_rope/index.html"):
                save_png(f"site_{page.split('/')[-2] if '/' in page else 'home'}.png", driver.get_screenshot_as_png())
        for url, page in sorted(links.items()):
            missing = link_target(site, served, url[len(served) - 1:])
            if missing:
                problems.append(f"{page}: link {url[len(served):]} -> {missing}")
    finally:
        driver.quit()
    assert not problems, "\n".join(problems)


def test_page_checks_catch_raw_math_and_broken_links(site):
    assert RAW_MATH.findall("the angle $(m - n)\\theta_i$ stays") and not RAW_MATH.findall("costs $5 or 6")
    assert not RAW_MATH.findall("in $MINIGEMMA_CACHE, else $HOME/.cache")
    assert link_target(site, "", "/lessons/04_rope/#no-such-heading").startswith("no id=")
    assert link_target(site, "", "/lessons/99_missing/").startswith("no file")
    assert link_target(site, "", "/lessons/04_rope/") is None
