"""The notebooks: the committed files are what notebooks/make_notebooks.py writes, and every notebook runs in
JupyterLab, driven through headless Chromium (Playwright): all cells execute, every plotly figure draws, and no
cell writes to stderr (a warning, a traceback or a progress bar falling back to text would)."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run"]
TOKEN = "interp-notebook-test"
STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"  # stderr text and tracebacks
LAB_SETTINGS = {  # every cell in the DOM (no virtual scrolling), no news or update checks (no network)
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}


def test_committed_notebooks_equal_the_generator():
    out = subprocess.run([sys.executable, str(ROOT / "notebooks" / "make_notebooks.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "notebooks" / "make_notebooks.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert {p.name for p in NOTEBOOKS} == set(gen.notebooks())  # no notebook outside the generator


def test_notebooks_use_the_public_api_and_one_thread():
    for p in NOTEBOOKS:
        src = "\n".join(c.source for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code")
        assert "interp.report." not in src.replace("interp.report.build", ""), p.name  # no report internals
        assert "set_num_threads(1)" in src and "set_num_threads(2)" not in src, p.name
        assert "interp.zoo.build(" not in src, p.name  # a missing trained model is an error, not a stand-in


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of the notebooks (their outputs and files land in the temp folder)."""
    tmp = tmp_path_factory.mktemp("lab")
    work, settings = tmp / "notebooks", tmp / "settings"
    work.mkdir()
    for p in NOTEBOOKS:
        shutil.copy(p, work / p.name)
    for rel, value in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    port = _free_port()
    env = {**os.environ, "INTERP_NOTEBOOK_SMALL": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "JUPYTER_PLATFORM_DIRS": "1"}
    log = open(tmp / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.root_dir={work}", f"--IdentityProvider.token={TOKEN}",
         f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
         "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited: {(tmp / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start within 120 s")
    yield url, work
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium not installed: run `make browser` (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def _figures_expected(path: Path) -> int:
    cells = nbformat.read(path, as_version=4).cells
    return sum(len(re.findall(r"\.show\(\)", c.source)) for c in cells if c.cell_type == "code")


def _shutdown_kernels(url: str) -> None:
    with urllib.request.urlopen(f"{url}/api/kernels?token={TOKEN}") as r:
        kernels = json.load(r)
    for k in kernels:
        req = urllib.request.Request(f"{url}/api/kernels/{k['id']}?token={TOKEN}", method="DELETE")
        urllib.request.urlopen(req)


def _run_all(page) -> None:
    """Run > Run All Cells once the kernel is up and idle (the notebook toolbar says so)."""
    page.wait_for_function(
        """() => { const name = document.querySelector('.jp-NotebookPanel-toolbar .jp-KernelName');
                   const state = document.querySelector('.jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator');
                   return name && state && /ipykernel|Python/.test(name.textContent)
                          && state.getAttribute('data-status') === 'idle'; }""", timeout=300_000, polling=500)
    page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
    page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
    started = ("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]"
               ".some(p => /[*\\d]/.test(p.textContent))")
    try:
        page.wait_for_function(started, timeout=60_000)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError; say what the page showed instead
        dialog = page.locator(".jp-Dialog")
        pytest.fail("Run All Cells did not start the notebook" +
                    (f"; a dialog says: {dialog.first.inner_text()[:300]}" if dialog.count() else ""))


def _wait_until_run(page, n_code: int, path: Path, work: Path, limit_s: float = 900) -> None:
    """Until every code cell shows an execution count ("[3]:"; queued or running cells show "[*]:"), or nothing
    is queued any more and a cell wrote to stderr (an error stops Run All). On a time-out: a screenshot and the
    prompts in the failure message."""
    t0, prompts = time.monotonic(), []
    while time.monotonic() - t0 < limit_s:
        prompts = page.eval_on_selector_all(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt",
                                            "els => els.map(e => e.textContent)")
        if len(prompts) == n_code and all(re.search(r"\[\d+\]", p) for p in prompts):
            return
        if not any("*" in p for p in prompts) and page.locator(STDERR).count():
            return
        time.sleep(1)
    shot = work / f"{path.stem}-timeout.png"
    page.screenshot(path=str(shot), full_page=True)
    pytest.fail(f"{path.name} did not finish in {limit_s:.0f} s; prompts {prompts}; screenshot {shot}")


def run_in_lab(browser, url: str, path: Path, work: Path) -> tuple[list[str], int, int]:
    """Open `path` (in the lab's folder) in JupyterLab, Run All, and return (what the cells wrote to stderr,
    plotly figures shown, figures drawn with their traces)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # ?reset: a fresh workspace, so the previous notebook's tab (and kernel) is not restored
        page.goto(f"{url}/lab/tree/{path.name}?reset&token={TOKEN}", timeout=120_000)
        cells = nbformat.read(path, as_version=4).cells
        n_code = sum(c.cell_type == "code" for c in cells)
        page.wait_for_function("n => document.querySelectorAll('.jp-Notebook .jp-Cell').length === n",
                               arg=len(cells), timeout=120_000)  # the whole notebook is rendered
        _run_all(page)
        _wait_until_run(page, n_code, path, work)
        errors = page.locator(STDERR)
        stderr = [errors.nth(i).inner_text()[:500] for i in range(errors.count())]
        figs = page.locator(".jp-OutputArea-output .plotly-graph-div")
        drawn = 0
        for i in range(figs.count()):  # drawn: the figure holds plotted traces (svg groups of class "trace")
            try:
                figs.nth(i).locator(".main-svg g.trace").first.wait_for(state="attached", timeout=30_000)
                drawn += 1
            except Exception:  # noqa: BLE001 - playwright's TimeoutError: not drawn
                pass
        return stderr, figs.count(), drawn
    finally:
        page.close()
        _shutdown_kernels(url)


@pytest.mark.slow
def test_the_browser_check_sees_stderr_and_figures(lab, browser):
    """The check itself: a notebook that warns and draws one figure is seen doing both."""
    url, work = lab
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'import sys, plotly.express as px, plotly.io as pio\npio.renderers.default = "notebook"\n'
        'print("a warning", file=sys.stderr)\npx.line(x=[0, 1], y=[1, 2]).show()')])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, work / "zz_selfcheck.ipynb")
    stderr, shown, drawn = run_in_lab(browser, url, work / "zz_selfcheck.ipynb", work)
    assert len(stderr) == 1 and "a warning" in stderr[0]
    assert shown == drawn == 1


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_jupyterlab(path, lab, browser):
    if path.stem == "06_time_conditioning" and not (ROOT / "data" / "zoo" / "mdlm-tdln").is_dir():
        pytest.skip("data/zoo/mdlm-* are absent; notebook 06 needs them")
    url, work = lab
    stderr, shown, drawn = run_in_lab(browser, url, work / path.name, work)
    assert not stderr, f"{path.name} wrote to stderr:\n" + "\n---\n".join(stderr)
    assert shown == _figures_expected(path) >= 1, f"{path.name}: {shown} figures shown"
    assert drawn == shown, f"{path.name}: {shown - drawn} of {shown} figures did not draw"
