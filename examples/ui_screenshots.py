"""Screenshots of each page of the web view for the README (docs/ui/*.png).

Builds the browser tests' small pipeline (tests/ui_project.py: one stale function, one that
fails on a subject) in a temporary folder, serves it with `scistack ui`, and photographs the
pages in Debian's chromium through Playwright. Run: .venv/bin/python examples/ui_screenshots.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import ui_project  # noqa: E402
from tests.test_ui_api import start_ui, stop_ui  # noqa: E402
from tests.test_ui_browser import ARGS  # noqa: E402

PAGES = {
    "graph": ("#/", "svg.graph g.node"),
    "grid": ("#/node/fn%3Aspectrogram", "table.grid td.cell"),
    "value-plot": ('#/value?var=Smoothed&addr={"subject":1,"session":"pre"}', "svg.plot polyline"),
    "value-stale": ('#/value?var=Peak&addr={"subject":1,"session":"pre"}', "#why pre.diff"),
    "runs": ("#/runs", "table.runs"),
}


def main() -> None:
    from playwright.sync_api import sync_playwright

    out = ROOT / "docs" / "ui"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scistack-shots-"))
    env = ui_project.python_env()
    process, url = start_ui(ui_project.build(work, env), env)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(work / "profile"), executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                headless=True, args=ARGS, viewport={"width": 1100, "height": 640})
            page = browser.new_page()
            for name, (path, selector) in PAGES.items():
                page.goto(url + path)
                page.wait_for_selector(selector)
                page.screenshot(path=str(out / f"{name}.png"))
                print(out / f"{name}.png")
            run = page.locator("table.runs tr", has_text="spectrogram").locator("a")
            run.click()
            page.wait_for_selector("pre.traceback")
            page.screenshot(path=str(out / "run-failure.png"))
            browser.close()
    finally:
        stop_ui(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
