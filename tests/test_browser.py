"""Notebooks 04, 08 and 09 in a real JupyterLab, driven through headless Chromium as a learner would use them.

JupyterLab is started by the test on 127.0.0.1 (a free port, a random token, its own settings and workspaces),
on a copy of notebooks/, and shut down afterwards. Each notebook: opens unmodified, runs all cells with no error,
shows its widget chart at the size it was drawn with the chart's bottom on a 1000 px screen, labels in full, and a
slider move redraws the chart (the image bytes differ). Screenshots go to build/screenshots/.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from chromium import WINDOW, chromium_driver, save_png

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("04_rope.ipynb", "08_kv_cache_generation.ipynb", "09_vram.ipynb")

NOTEBOOK_STATE = """
if (!window.jupyterapp) return null;                                   // the page is still starting JupyterLab
const panel = window.jupyterapp.shell.currentWidget;
if (!panel || !panel.context || !panel.sessionContext.session || !panel.sessionContext.session.kernel) return null;
const all = panel.model.cells, cells = Array.from({length: all.length}, (_, i) => all.get(i)).filter(c => c.type === 'code');
return {kernel: panel.sessionContext.session.kernel.status, dirty: panel.context.model.dirty,
        unrun: cells.filter(c => c.executionCount === null).length,
        errors: cells.flatMap(c => c.outputs.toJSON()).filter(o => o.output_type === 'error')
                     .map(o => o.ename + ': ' + o.evalue)};
"""
WIDGET = "return [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .widget-vbox')].filter(v => v.querySelector('img')).pop();"
TRUNCATED_LABELS = "return [...arguments[0].querySelectorAll('.widget-label')].filter(l => l.scrollWidth > l.clientWidth + 1).map(l => l.textContent);"
CHART = """
const v = arguments[0], img = v.querySelector('img');
v.scrollIntoView({block: 'start'});
const box = img.getBoundingClientRect();
return {natural: img.naturalWidth, shown: box.width, bottom: box.bottom, screen: window.innerHeight, src: img.src};
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(base URL, token) of a JupyterLab serving a copy of notebooks/; stopped after the module."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        chromium_driver()                                                      # skips with the reason
    home = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", home / "notebooks", ignore=shutil.ignore_patterns("src", "*.py"))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={home / 'notebooks'}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(home / "lab.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if server.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {server.returncode}: {(home / 'lab.log').read_text()}")
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise TimeoutError(f"JupyterLab did not answer on port {port} within 60 s")
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def driver(lab):
    browser = chromium_driver()
    yield browser
    browser.quit()


def wait_for(driver, condition, what: str, timeout: float = 180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}")


def open_notebook(driver, lab, name: str) -> dict:
    base, token = lab
    driver.get(f"{base}/lab/workspaces/{name[:2]}/tree/{name}?reset&token={token}")
    state = wait_for(driver, lambda: driver.execute_script(NOTEBOOK_STATE), f"{name} to open with a kernel", 90)
    time.sleep(2)                                  # the kernel name is reconciled once the session is up
    return wait_for(driver, lambda: (s := driver.execute_script(NOTEBOOK_STATE)) and s["kernel"] == "idle" and s,
                    f"{name}'s kernel to be idle", 90) or state


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_its_widget_redraws(driver, lab, name):
    from selenium.webdriver.common.action_chains import ActionChains

    problems = []
    if open_notebook(driver, lab, name)["dirty"]:
        problems.append("opened marked as modified (its kernelspec differs from the installed kernel)")
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    state = wait_for(driver, lambda: (s := driver.execute_script(NOTEBOOK_STATE)) and s["kernel"] == "idle"
                     and (s["unrun"] == 0 or s["errors"]) and s, f"{name} to run all cells")
    assert state["errors"] == [] and state["unrun"] == 0, state

    widget = wait_for(driver, lambda: driver.execute_script(WIDGET), f"{name}'s widget")
    chart = wait_for(driver, lambda: (c := driver.execute_script(CHART, widget))["natural"] and c, "the chart")
    if abs(chart["shown"] - chart["natural"]) > 1:          # drawn at the size it is shown (1 px for rounding)
        problems.append(f"chart drawn {chart['natural']} px wide, shown stretched to {chart['shown']:.0f} px")
    if chart["bottom"] > chart["screen"]:
        problems.append(f"chart bottom at {chart['bottom']:.0f} px, below the {chart['screen']} px window")
    problems += [f"label cut off: {label!r}" for label in driver.execute_script(TRUNCATED_LABELS, widget)]

    image = widget.find_element("css selector", "img")
    before, widget_before = image.screenshot_as_png, widget.screenshot_as_png
    handle = widget.find_element("css selector", ".noUi-handle")
    ActionChains(driver).click_and_hold(handle).move_by_offset(60, 0).release().perform()
    wait_for(driver, lambda: driver.execute_script(CHART, widget)["src"] != chart["src"], "the chart to redraw", 30)
    after = image.screenshot_as_png
    if after == before:
        problems.append("moving the slider did not change the chart")
    if name.startswith("08"):                                     # sliders and chart, for a reviewer to look at
        save_png("widget_08_before.png", widget_before)
        save_png("widget_08_after.png", widget.screenshot_as_png)
    assert not problems, f"{name}: " + "; ".join(problems)
