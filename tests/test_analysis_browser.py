"""report.html in a real headless browser (Debian's chromium): it loads without script or
resource errors, refers to nothing outside itself, and every figure decodes to an image."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from test_analysis import records_from
from test_analysis_stats import planted, write_predictions

from latent_traits.analysis.report import write_report
from latent_traits.analysis.run import AnalysisOptions, BootstrapOptions, analyze_records
from latent_traits.eval.records import BASE_ADAPTER_ID

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (`apt-get install -y chromium`; "
    "`make test` installs it where apt is available)")

# Injected into a copy of the page: records script errors, failed resource loads and each
# image's decoded width into the DOM once the page has loaded.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.target.src)),
                        true);
window.addEventListener('load', () => {
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({
    errors: window.__errors,
    images: Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]),
    title: document.title});
  document.body.appendChild(out);
});
</script>"""


def test_report_html_renders_in_headless_chromium(tmp_path):
    deltas, _ = planted(n_adapters=6)
    base = np.full(deltas.shape[1], 0.5)
    frame = (deltas + base).rename_axis("adapter")
    frame.loc[BASE_ADAPTER_ID] = base
    records = records_from(frame)
    write_predictions(records, tmp_path, np.random.default_rng(0), n=100)
    a = analyze_records(records, AnalysisOptions(bootstrap=BootstrapOptions(50)))
    html = write_report(a, tmp_path / "report", meta={"records_dir": "x"})
    page = html.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # self-contained
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    profile = tmp_path / "profile"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"the page did not finish loading: {proc.stdout[:500]} {proc.stderr[-1000:]}"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["errors"] == []
    assert probe["title"].startswith("Latent traits report")
    names = sorted(name for name, _, _ in probe["images"])
    assert names == sorted(p.name for p in html.parent.glob("*.png")) and len(names) == 7
    assert all(complete and width > 100 for _, complete, width in probe["images"]), probe
