"""Headless Chromium for the browser tests: Debian's `chromium` + `chromium-driver`, driven by Selenium.

No browser is downloaded: when either binary is missing, the tests skip with the reason and the install command
(.ci/run installs both when it runs as root).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(os.environ.get("MINIGEMMA_SCREENSHOTS", ROOT / "build" / "screenshots"))
WINDOW = (1280, 1000)                     # the "1000 px screen"


def chromium_driver():
    """A headless Chromium WebDriver with the console log kept; skips the test when there is no Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_binary = shutil.which("chromedriver")
    if not browser or not driver_binary:
        pytest.skip("no system Chromium (need `chromium` and `chromedriver` on PATH: "
                    "apt-get install chromium chromium-driver; .ci/run does this as root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the `site` extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_binary))
    driver.set_page_load_timeout(60)
    return driver


def console_errors(driver) -> list[str]:
    """The console's errors since the last call (reading the log empties it)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def save_png(name: str, png: bytes) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    path.write_bytes(png)
    return path
