"""The review's inline charts parse and render: Mermaid (the library GitHub renders them with) in headless Chromium.

Needs Debian's `chromium` and `npm ci --prefix tests/browser` (both done by .ci/run); skipped elsewhere.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, TOOLS_REQUIRED
from tools import review as report

MERMAID = REPO / "tests" / "browser" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
CHROMIUM = shutil.which("chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        (not CHROMIUM or not MERMAID.exists()) and not TOOLS_REQUIRED,
        reason="needs chromium and tests/browser/node_modules (.ci/run installs both)",
    ),
]

# Renders every chart, then leaves one line of JSON in <pre id="result">: per chart, its SVG's line count or error.
PAGE = """<!doctype html><html><body><pre id="result"></pre>
<script src="{mermaid}"></script>
<script>
mermaid.initialize({{startOnLoad: false}});
(async () => {{
  const results = [];
  for (const [i, code] of {charts}.entries()) {{
    try {{
      const {{svg}} = await mermaid.render("chart" + i, code);
      document.body.insertAdjacentHTML("beforeend", svg);
      const lines = new DOMParser().parseFromString(svg, "image/svg+xml").querySelectorAll("[class*='line-plot-']");
      results.push({{lines: lines.length, svg: svg.length}});
    }} catch (error) {{
      results.push({{error: String(error)}});
    }}
  }}
  document.getElementById("result").textContent = JSON.stringify(results);
}})();
</script></body></html>
"""


def render(charts: list[str], tmp_path: Path, screenshot: Path | None = None) -> list[dict]:
    page = tmp_path / "charts.html"
    page.write_text(PAGE.format(mermaid=MERMAID.as_uri(), charts=json.dumps(charts)))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=20000",
        "--allow-file-access-from-files",
    ]
    action = [f"--screenshot={screenshot}", "--window-size=900,1000"] if screenshot else ["--dump-dom"]
    result = subprocess.run(
        [CHROMIUM, *flags, *action, page.as_uri()], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    if screenshot:
        return []
    found = re.search(r'<pre id="result">(.*?)</pre>', result.stdout, re.DOTALL)
    assert found and found.group(1), "the page did not finish rendering:\n" + result.stdout[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"'))


def code_of(chart: list[str]) -> str:
    """The Mermaid source inside the ```mermaid fence, as GitHub hands it to Mermaid."""
    return "\n".join(chart[1 : chart.index("```", 1)])


def test_the_reviews_charts_render_with_every_line(tmp_path):
    base = [0.84, 0.89, 0.905, 0.912, 0.918, 0.92, 0.924, 0.927, 0.929, 0.93, 0.931, 0.931]
    head = [0.85, 0.9, 0.913, 0.92, 0.925, 0.929]  # fewer epochs than the base
    series = {
        "base train": [v - 0.01 for v in base],
        "base validation": base,
        "head train": [v - 0.01 for v in head],
        "head validation": head,
    }
    loss = {"head validation": [0.5, 0.3]}
    charts = [code_of(report.mermaid_chart("Accuracy", series)), code_of(report.mermaid_chart("Loss", loss))]
    results = render(charts, tmp_path)
    assert [r.get("error") for r in results] == [None, None]
    assert [r["lines"] for r in results] == [4, 1]


def test_a_broken_chart_is_reported_so_the_render_check_can_fail(tmp_path):
    results = render(["xychart-beta\n  line [0.1, oops]"], tmp_path)
    assert "error" in results[0]


def test_the_readmes_pipeline_diagram_renders(tmp_path):
    """The README's `dvc dag --mermaid` block, as GitHub hands it to Mermaid: it parses and draws every stage."""
    charts = re.findall(r"```mermaid\n(.*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL)
    assert len(charts) == 1
    results = render(charts, tmp_path)
    assert results[0].get("error") is None, results[0]
    assert results[0]["svg"] > 1000
