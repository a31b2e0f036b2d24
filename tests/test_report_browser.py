"""The report in a real browser: headless Chromium (driven through chromedriver with selenium) loads it from disk,
every image decodes (naturalWidth > 0), nothing is fetched and no console error occurs. A control page with a
broken image and a console error shows the check catches both.

Chromium and chromedriver are Debian's ``chromium`` / ``chromium-driver``: installed by
``scripts/install-test-deps.sh`` when missing and this runs as root with apt-get; otherwise the test is skipped
with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cryomine.report.build import build_report  # noqa: E402
from test_report import make_demo_folder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = REPO / "scripts" / "install-test-deps.sh"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,2000")
IMAGES_JS = ("return Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
             "width: i.naturalWidth, height: i.naturalHeight}));")
RESOURCES_JS = "return performance.getEntriesByType('resource').map(e => e.name);"


def _find_browser() -> tuple[str | None, str | None]:
    return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


def _browser_or_skip() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing them first where missing and possible, else skip."""
    chromium, driver = _find_browser()
    if chromium and driver:
        return chromium, driver
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium / chromedriver not installed, and they cannot be installed here (needs root and "
                    "apt-get: apt-get install chromium chromium-driver)")
    try:
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=False, timeout=900, capture_output=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"installing chromium with apt-get failed: {exc}")
    chromium, driver = _find_browser()
    if not (chromium and driver):
        pytest.skip("apt-get could not install chromium and chromium-driver")
    return chromium, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium session (selenium over Debian's chromedriver, no Selenium Manager download)."""
    chromium, driver_path = _browser_or_skip()
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a test dependency ('.[test]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path, log_output=subprocess.DEVNULL), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _render(driver, page: Path) -> tuple[list[dict], list[dict], list[str]]:
    """Load ``page``; its images' load state, the console messages and the resources fetched."""
    driver.get_log("browser")  # drop what earlier pages left
    driver.get(page.resolve().as_uri())
    return driver.execute_script(IMAGES_JS), driver.get_log("browser"), driver.execute_script(RESOURCES_JS)


def test_check_catches_broken_images_and_console_errors(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title></head><body>'
                    '<img alt="missing" src="missing.png"><script>console.error("boom")</script></body></html>')
    images, logs, _ = _render(browser, page)
    assert [(i["alt"], i["width"]) for i in images] == [("missing", 0)]
    severe = [entry["message"] for entry in logs if entry["level"] == "SEVERE"]
    assert any("boom" in m for m in severe) and any("missing.png" in m for m in severe), severe


def test_report_renders_in_chromium(browser, tmp_path):
    root = make_demo_folder(tmp_path / "demo")
    report = build_report(root)
    images, logs, resources = _render(browser, report)
    assert len(images) == report.read_text().count("<img ") == 10  # the images of test_report.py's demo folder
    broken = [i["alt"] for i in images if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    errors = [entry["message"] for entry in logs if entry["level"] == "SEVERE"]
    assert not errors, errors
    assert all(r.startswith("data:") for r in resources), resources  # nothing fetched from outside the file
    assert browser.title.startswith("cryomine report")
