"""The web view in a real headless Chromium (Debian's `chromium`, driven by Playwright's
Python package): the graph's node states, a click from the graph into a grid and into a
value (with its plot, or its `why` diff), a failure's traceback, and a save by another
process appearing without a restart.

`make test` installs chromium (like Octave). In CI (the CI variable is set) a missing browser
or Playwright is a failure; elsewhere these tests are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # reported by _chromium(): a skip, or a failure in CI
    expect = None

from tests import ui_project
from tests.test_ui_api import start_ui, stop_ui

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT = 20_000  # ms: an upper bound for slow shared machines, never a speed assertion


def _chromium() -> str:
    found = os.environ.get("SCISTACK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    problem = None
    if not Path(found).exists():
        problem = "Debian's chromium is not installed (`make test` installs it: apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed (pip install -e '.[test]')"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem + "; CI must run the browser tests")
        pytest.skip(problem)
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("uibrowser")
    env = ui_project.python_env()
    process, url = start_ui(ui_project.build(root, env), env)
    profile = tempfile.mkdtemp(prefix="scistack-chromium-")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                profile, executable_path=executable, headless=True, args=ARGS,
                viewport={"width": 1200, "height": 800},
            )
            try:
                yield browser, url, root, env
            finally:
                browser.close()
    finally:
        stop_ui(process)
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(site):
    browser, url, _, _ = site
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.set_default_timeout(WAIT)
    expect.set_options(timeout=WAIT)
    yield tab
    tab.close()
    assert errors == []  # no script error on any page


def test_graph_shows_each_node_with_its_state(site, page):
    page.goto(site[1])
    page.wait_for_selector("svg.graph g.node")
    states = page.eval_on_selector_all("svg.graph g.node", "ns => ns.map(n => [n.dataset.id, n.dataset.state])")
    assert dict(states) == {
        "var:Raw": "current", "var:Info": "current", "fn:smooth": "current", "var:Smoothed": "current",
        "fn:peak": "stale", "var:Peak": "stale", "fn:spectrogram": "failed", "var:Spectrogram": "failed",
    }
    stroke = page.eval_on_selector('g.node[data-id="fn:peak"] rect', "r => getComputedStyle(r).stroke")
    assert stroke == "rgb(224, 138, 0)"  # drawn in the stale colour
    assert page.locator("svg.graph path.edge").count() == 6
    assert "6 stale" in page.text_content('g.node[data-id="var:Peak"] text.counts')


def test_click_from_graph_into_grid_and_a_value_with_its_plot(site, page):
    page.goto(site[1])
    page.click('g.node[data-id="var:Smoothed"]')
    page.wait_for_selector("table.grid td.cell")
    assert page.locator("table.grid td.s-done").count() == 6
    page.click('td.cell[data-addr=\'{"subject":2,"session":"post"}\'], td.cell[data-addr=\'{"session":"post","subject":2}\']')
    page.wait_for_selector("svg.plot polyline")
    assert page.inner_text("#value-title") == 'Smoothed(subject=2, session="post")'
    assert page.inner_text("#value-status") == "current"
    assert page.get_attribute("svg.plot polyline", "points").count(",") == 512
    page.click("text=Raw(subject=2, session=\"post\")")  # provenance links to the input
    expect(page.locator("#value-title")).to_have_text('Raw(subject=2, session="post")')


def test_stale_value_shows_why_with_the_diff(site, page):
    page.goto(site[1] + "#/node/var%3APeak")
    page.wait_for_selector("td.s-stale")
    page.fill("#grid-filter", "subject=3")  # filtered by the server
    expect(page.locator("table.grid tbody tr")).to_have_count(2)
    expect(page.locator("#grid-pages")).to_have_text("1–2 of 2 addresses (6 in all) ")
    page.locator("td.s-stale").first.click()
    page.wait_for_selector("#why pre.diff")
    assert page.inner_text("#value-status") == "stale"
    assert page.inner_text("#why pre.diff .add") == "+    return float(np.max(signal)) + 0.0"


def test_image_and_table_previews(site, page):
    page.goto(site[1] + "#/node/var%3ASpectrogram")
    page.wait_for_selector("td.s-failed")
    page.uncheck('input[data-status="done"]')  # filter: only the failures
    expect(page.locator("table.grid tbody tr")).to_have_count(2)
    page.locator("td.s-failed").first.click()  # a failure opens its run, with the traceback
    expect(page.locator("pre.traceback")).to_have_count(2)
    page.go_back()
    page.check('input[data-status="done"]')
    expect(page.locator("table.grid tbody tr")).to_have_count(6)
    page.locator("td.s-done").first.click()
    page.wait_for_selector("canvas.plot")
    painted = page.eval_on_selector("canvas.plot", "c => c.getContext('2d').getImageData(0, 0, 1, 1).data[3]")
    assert painted == 255
    page.goto(site[1] + '#/value?var=Info&addr={"subject":3}')
    page.wait_for_selector("table.preview-table")
    assert page.inner_text("table.preview-table tr:nth-child(3)").split() == ["2", "right"]
    # user strings are text, never markup
    assert page.inner_text("table.preview-table tr:nth-child(4) td:nth-child(2)").startswith("<img src=x")
    assert page.locator("table.preview-table img").count() == 0 and page.title() == "scistack"


def test_failure_traceback_on_the_runs_page(site, page):
    page.goto(site[1] + "#/runs")
    page.wait_for_selector("table.runs")
    page.locator("table.runs tr", has_text="spectrogram").locator("a").click()
    page.wait_for_selector("pre.traceback")
    assert page.locator("pre.traceback").count() == 2
    assert "ValueError: signal too short for a spectrogram: 40 samples" in page.inner_text("pre.traceback >> nth=0")
    assert page.inner_text("#run-pages").strip() == "1–6 of 6 combinations"  # one page: no buttons
    rows = page.locator("table.run-items tr")
    assert rows.count() == 7 and "signal too short" in rows.nth(1).inner_text()


def test_a_save_by_another_process_appears_without_restart(site, page):
    _, url, root, env = site
    page.goto(url + "#/node/var%3ARaw")
    page.wait_for_selector("td.s-done")
    rows = page.locator("table.grid tbody tr").count()
    ui_project.save_raw_from_another_process(root, env, subject=7)
    expect(page.locator("table.grid tbody tr")).to_have_count(rows + 1)
    assert page.locator("table.grid tbody tr", has_text="7").count() == 1
    page.goto(url)
    page.wait_for_selector('g.node[data-id="var:Raw"]')
    assert "7 done" in page.text_content('g.node[data-id="var:Raw"] text.counts')


def test_unreadable_journal_lines_are_warned_of_above_every_page(site, page):
    """(Last: it leaves a bad line in the module's project.) `status`'s warning of journal
    lines no reader can take is shown under the header, as text."""
    _, url, root, env = site
    page.goto(url)
    page.wait_for_selector("svg.graph g.node")
    assert page.locator("#warning").is_hidden()
    with open(root / ".scistack" / "refs.log", "ab") as journal:
        journal.write(b'{"op":"put","var":"Raw"}\n')  # another writer's malformed line
    ui_project.save_raw_from_another_process(root, env, subject=8)  # the index folds past it
    page.goto(url)
    expect(page.locator("#warning")).to_be_visible()
    expect(page.locator("#warning")).to_contain_text("1 journal line could not be read")
