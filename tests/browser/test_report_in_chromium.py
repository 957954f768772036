"""The HTML report in a real browser: headless Chromium at 1366x768, and printed to PDF.

With CI=true the test is required (a missing browser fails it); elsewhere it runs when Chromium and
pdftotext (poppler-utils) are installed and is skipped, with the reason, when they are not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cbacheck import cli

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "report.png"
WIDTH, HEIGHT = 1366, 768
APP_NAME = "Exchange automation (CBA)"  # the demo-broken scenario's app

# Runs in the page once pytest-html's script has drawn the rows: where the verdict and the app's name
# sit, and whether each failing row shows its evidence. The answer is written into the DOM for --dump-dom.
PROBE = """
<script>
window.addEventListener("load", () => setTimeout(() => {
  const bottom = (el) => el ? el.getBoundingClientRect().bottom : null;
  const appCell = [...document.querySelectorAll(".cba-subject tr")]
    .find((row) => row.querySelector("th")?.textContent === "App")?.querySelector("td");
  const failing = [...document.querySelectorAll("#results-table tbody")]
    .filter((body) => body.querySelector(".col-result")?.textContent.startsWith("failed"));
  const probe = {
    verdict_bottom: bottom(document.querySelector(".cba-verdict")),
    verdict_text: document.querySelector(".cba-verdict")?.textContent,
    app_bottom: bottom(appCell),
    app_text: appCell?.textContent,
    failing_rows: failing.length,
    failing_with_evidence: failing.filter((body) => {
      const extras = body.querySelector(".extras-row");
      const block = extras?.querySelector(".cba-evidence");
      const id = body.querySelector(".col-requirement").textContent;
      return block && block.offsetHeight > 0 && block.textContent.includes(id);
    }).length,
    viewport: [window.innerWidth, window.innerHeight],
  };
  const out = document.createElement("pre");
  out.id = "cba-probe";
  out.textContent = JSON.stringify(probe);
  document.body.appendChild(out);
}, 0));
</script>
"""


def _tool(*names: str) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    browser = _tool("chromium", "chromium-browser", "google-chrome")
    pdftotext = _tool("pdftotext")
    missing = [name for name, found in (("chromium", browser), ("pdftotext (poppler-utils)", pdftotext)) if not found]
    if missing:
        message = f"{' and '.join(missing)} not installed (Debian: apt-get install chromium poppler-utils)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser test is required in CI: {message}")
        pytest.skip(message)
    assert browser is not None
    return browser


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's HTML report (demo-broken: failing rows, passed rows, a fix plan)."""
    folder = tmp_path_factory.mktemp("reports")
    assert cli.main(["demo", "--report-dir", str(folder)]) == 0
    return next(folder.glob("cbacheck-*.html"))


def run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        browser,
        "--headless",
        "--no-sandbox",  # root in CI containers
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def test_verdict_and_app_are_on_the_first_screen_and_failing_rows_show_evidence(
    chromium: str, report: Path, tmp_path: Path
) -> None:
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = run_chromium(chromium, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="cba-probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the probe did not run: {result.stderr[-2000:]}"
    probe = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert probe["viewport"][0] == WIDTH  # the layout width; positions are from the top of the page
    assert probe["verdict_text"].startswith("FAIL")
    assert 0 < probe["verdict_bottom"] <= HEIGHT
    assert APP_NAME in probe["app_text"]
    assert 0 < probe["app_bottom"] <= HEIGHT
    assert probe["failing_rows"] > 0
    assert probe["failing_with_evidence"] == probe["failing_rows"]


def test_printing_keeps_the_fix_plan_and_the_passed_evidence(chromium: str, report: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    result = run_chromium(
        chromium,
        tmp_path / "profile",
        "--virtual-time-budget=5000",
        "--no-pdf-header-footer",
        f"--print-to-pdf={pdf}",
        report.as_uri(),
    )
    assert pdf.is_file() and pdf.stat().st_size > 0, result.stderr[-2000:]
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    document = json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))
    assert "Fix plan" in text
    for action in document["fixes"]["plan"]:
        assert action["id"] in text
    # The evidence block of a passed requirement opens "<ID> <title> — passed"; passed rows start collapsed.
    passed = [r for r in document["requirements"] if r["outcome"] == "passed"]
    assert passed and len(re.findall(r"—\s*passed", text)) == len(passed)
    assert "Run details" in text


def test_screenshot_for_the_readme(chromium: str, report: Path, tmp_path: Path) -> None:
    """The README's picture of the report; refreshed in docs/ only when asked, so a test run leaves the tree clean."""
    shot = tmp_path / "report.png"
    run_chromium(chromium, tmp_path / "profile", "--virtual-time-budget=5000", f"--screenshot={shot}", report.as_uri())
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("UPDATE_README_SCREENSHOT") == "1":
        SCREENSHOT.write_bytes(shot.read_bytes())
