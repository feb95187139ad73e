"""A real browser: Chapter 1's *student* notebook in JupyterLab, Run All from the menu, as a learner does it.

Headless Chromium and its driver come from Debian packages (``apt-get install chromium chromium-driver``; ``.ci/run``
installs them when it runs as root), driven by selenium (the ``course`` extra). The test skips, saying why, when
any of them is missing. JupyterLab runs on a free port with a token, in a temporary folder holding a copy of the
notebook, with ``MEM_TUTORIAL_SELFCHECK=report`` (a learner's setting) and FAST mode.

It checks what no nbclient/nbval run sees: that *Run All* (menu Run → Run All Cells) reaches the last cell of an
untouched student notebook, that the content-addressing explorer widget renders and redraws when its β slider
moves, and that the first exercise's check tells the learner it has not passed yet.
"""

from __future__ import annotations

import json
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

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "01_memory_as_attention"
NOTEBOOK = ROOT / "notebooks" / CHAPTER / "memory_as_attention.ipynb"
RUN_ALL_TIMEOUT_S = 300  # FAST mode: ~12 s of cells on a quiet machine; generous for a loaded CI machine
WIDGET_TIMEOUT_S = 30

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[course]')")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _find("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = _find("chromedriver") or ("/usr/lib/chromium/chromedriver"
                                         if Path("/usr/lib/chromium/chromedriver").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium not found (Debian: apt-get install chromium chromium-driver; .ci/run does it as root)",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_settings(folder: Path) -> None:
    """User settings for the temporary JupyterLab: render every cell (no windowing), no news pop-up."""
    settings = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                             "checkForUpdates": False},
    }
    for rel, value in settings.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free port, rooted at a temporary copy of the student notebook."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    _write_settings(tmp_path / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "MEM_TUTORIAL_FAST": "1", "MEM_TUTORIAL_SELFCHECK": "report", "MEM_TUTORIAL_DEVICE": "cpu",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--expose-app-in-browser",
           "--ServerApp.open_browser=False", "--LabApp.news_url=None"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url, token, work
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# JavaScript over JupyterLab's application object (exposed by --expose-app-in-browser): the notebook's model says
# what ran, independently of what is on screen.
_STATE_JS = """
const app = window.jupyterapp;
const panel = app && app.shell.currentWidget;
if (!panel || !panel.content || !panel.content.model || !panel.sessionContext.session) { return null; }
const kernel = panel.sessionContext.session.kernel;
const cells = [];
for (const cell of panel.content.widgets) {
  const m = cell.model;
  if (m.type !== 'code') { continue; }
  const outs = m.outputs.toJSON();
  cells.push({
    count: m.executionCount,
    source: m.sharedModel.getSource().slice(0, 400),
    grade: !!((m.getMetadata('nbgrader') || {}).grade),
    text: outs.map(o => (o.text || '') + (o.ename ? o.ename + ': ' + o.evalue : '')
                        + ((o.data && o.data['text/plain']) || '')).join(''),
    widget: outs.some(o => o.data && o.data['application/vnd.jupyter.widget-view+json']),
  });
}
return {status: kernel ? kernel.status : 'none', cells: cells};
"""


def _state(driver):
    return driver.execute_script(_STATE_JS)


def _wait(predicate, timeout, what, interval=0.5):
    """Poll ``predicate`` until it returns something true. An element JupyterLab re-rendered between finding it
    and reading it (a figure the widget just redrew) counts as "not yet", not as a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _run_all_from_menu(driver):
    """Click Run → Run All Cells in the menu bar, as a learner does."""
    for item in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item"):
        if item.text.strip() == "Run":
            item.click()
            break
    else:
        pytest.fail("no Run menu in JupyterLab's menu bar")

    def entry():
        return [i for i in driver.find_elements(By.CSS_SELECTOR, ".lm-Menu-item")
                if i.get_attribute("data-command") in ("runmenu:run-all", "notebook:run-all-cells")
                and i.text.strip().startswith("Run All Cells")]

    _wait(entry, 10, "the Run All Cells menu entry")[0].click()


def test_run_all_in_jupyterlab_reaches_the_end_and_the_explorer_reacts(lab, browser):
    url, token, work = lab
    browser.get(f"{url}/lab/tree/{NOTEBOOK.name}?token={token}")
    _wait(lambda: (s := _state(browser)) and s["status"] == "idle" and s["cells"], 120,
          "the notebook to open with an idle kernel")
    _run_all_from_menu(browser)

    # done when the kernel has been idle for 3 s in a row after at least one cell ran
    quiet_since = [None]

    def finished():
        s = _state(browser)
        busy = s is None or s["status"] != "idle" or not any(c["count"] for c in s["cells"])
        if busy:
            quiet_since[0] = None
            return None
        quiet_since[0] = quiet_since[0] or time.monotonic()
        return s if time.monotonic() - quiet_since[0] > 3 else None

    state = _wait(finished, RUN_ALL_TIMEOUT_S, "Run All to finish")
    cells = state["cells"]
    first_test = next(c for c in cells if c["grade"])
    assert first_test["count"] is not None, "the first exercise's check did not run"
    assert "not passed yet" in first_test["text"] and "cosine_similarity" in first_test["text"], first_test["text"]
    ran = [c["count"] is not None for c in cells]
    assert all(ran), f"Run All stopped: code cells not run: {[i for i, r in enumerate(ran) if not r]}"
    errors = [c["text"][-300:] for c in cells if "Traceback" in c["text"] or "Error: " in c["text"]]
    assert not [e for e in errors if "not passed yet" not in e], errors

    explorer = next(i for i, c in enumerate(cells) if "content_addressing_explorer(" in c["source"])
    assert cells[explorer]["widget"], "the explorer did not produce a widget"

    # the rendered widget: its β slider redraws the figure
    view = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .widget-vbox"), WIDGET_TIMEOUT_S,
                 "the explorer widget to render")[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", view)

    def figure():
        imgs = view.find_elements(By.CSS_SELECTOR, "img")
        return imgs[0].get_attribute("src") if imgs else None

    before = _wait(figure, WIDGET_TIMEOUT_S, "the explorer's figure")
    readout = view.find_element(By.CSS_SELECTOR, ".widget-readout").text
    handle = view.find_element(By.CSS_SELECTOR, ".noUi-handle")
    handle.click()
    for _ in range(6):
        handle.send_keys(Keys.ARROW_RIGHT)
    _wait(lambda: view.find_element(By.CSS_SELECTOR, ".widget-readout").text != readout, WIDGET_TIMEOUT_S,
          "the β slider to move")
    _wait(lambda: (src := figure()) and src != before, WIDGET_TIMEOUT_S, "the figure to redraw after the slider moved")
