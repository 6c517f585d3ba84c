"""`dvc plots show` works offline: its page (.dvc/plots/page.html, built by scripts/plots_page.py) inlines Vega,
Vega-Lite and Vega-Embed at the versions DVC's own page loads from a CDN, and opens on the run's own plots."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DVC = str(Path(sys.executable).with_name("dvc"))
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_the_plots_page_inlines_the_libraries_dvc_would_fetch(root):
    from dvc_render.vega import VegaRenderer

    assert "html_template = plots/page.html" in (root / ".dvc/config").read_text()
    page = (root / ".dvc/plots/page.html").read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN tags have nowhere to go
    assert not re.search(r"<script[^>]+src=", page)
    for name, version in re.findall(r"npm/([a-z-]+)@([\d.]+)", VegaRenderer.SCRIPTS):
        assert f"<script>/*! {name}@{version}\n" in page, name


def test_the_runs_own_plots_come_first_and_the_study_last(root):
    names = [next(iter(p)) for p in yaml.safe_load((root / "dvc.yaml").read_text())["plots"]]
    assert names[0] == "gold_reward" and names[-1].startswith("study")
    assert not any(n.startswith("study") for n in names[:-1])


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium here (apt install chromium) to render the page")
def test_dvc_plots_show_renders_every_plot_in_a_browser_without_network(root, tmp_path):
    """The committed plots, rendered by `dvc plots show` and opened in headless Chromium with every host
    unresolvable: each declared plot draws its marks (DVC's own page draws none offline)."""
    subprocess.run([DVC, "plots", "show", "-o", str(tmp_path / "out")], cwd=root, check=True, capture_output=True)
    dom = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
                          "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000", "--dump-dom",
                          (tmp_path / "out" / "index.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    declared = [next(iter(p)) for p in yaml.safe_load((root / "dvc.yaml").read_text())["plots"]]
    assert re.findall(r'<div id="([^"]+)"', dom) == declared
    assert dom.count('class="marks"') == len(declared)
