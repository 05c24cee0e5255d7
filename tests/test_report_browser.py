"""The report opens in headless Chromium with networking off: every figure draws, hostile text stays text."""
import re
import shutil
import subprocess
from pathlib import Path

import plotly.offline
import pytest

from interp.outputs import atomic_write_text
from interp.report.render import render
from report_fixtures import XSS, tables

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def dump_dom(html_path: Path, tmp: Path) -> str:
    """The DOM after scripts ran, from headless Chromium with every network path shut."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium not installed: run `make browser` (apt-get install -y chromium)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
           "--disable-extensions", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
           f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=30000", "--dump-dom", html_path.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    html = render(tables(text=XSS), sources=[XSS])
    path = atomic_write_text(tmp / "index.html", html)
    return html, dump_dom(path, tmp)


def test_every_figure_draws(report):
    html, dom = report
    n_figures = html.count('class="plotly-graph-div"')
    assert n_figures >= 12                       # every section with data has its figure(s)
    # Plotly.newPlot builds a plot-container with its main-svg inside each graph div only when it draws
    drawn = re.findall(r'class="plotly-graph-div.*?(?=class="plotly-graph-div|$)', dom, flags=re.S)
    assert len(drawn) == n_figures
    assert all("main-svg" in chunk for chunk in drawn)
    assert dom.count("main-svg") >= n_figures


def test_hostile_text_is_text(report):
    html, dom = report
    assert "<script>document.body" not in html   # escaped in the source ...
    assert not re.search(r"<body[^>]*data-pwned", dom)  # ... and never ran
    assert not re.search(r"<img[^>]*onerror", dom)
    assert "&lt;script&gt;document.body.setAttribute" in dom  # shown as text


def test_plotly_inlined_once_and_no_network(report):
    html, _ = report
    assert html.count("Plotly.newPlot") >= 12
    assert html.count(plotly.offline.get_plotlyjs()[:300]) == 1
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']https?://", html)
    assert "default-src 'none'" in html          # CSP: the page may not fetch anything
