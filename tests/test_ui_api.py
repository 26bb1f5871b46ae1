"""The web view's JSON, from a real `scistack ui` process serving a project that another
process built; and its refusals (Host header, writes, bad input, non-loopback binding)."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scistack import BaseVariable
from scistack.errors import WebViewError
from scistack.report.preview import preview
from scistack.ui.server import UiServer
from scistack.ui.layout import GAP_X, NODE_H, NODE_W, layout
from tests import ui_project


def start_ui(db_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`scistack ui --port 0` in its own process; returns it and the URL it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "scistack", "--db", str(db_path), "ui", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    line = process.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if not found:
        process.kill()
        raise AssertionError(f"no URL printed: {line!r} {process.stderr.read()}")
    return process, found.group(0)


def stop_ui(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=20)
    process.stdout.close()
    process.stderr.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("uiapi")
    env = ui_project.python_env()
    db_path = ui_project.build(root, env)
    process, url = start_ui(db_path, env)
    yield url, root, env
    stop_ui(process)


def get(url: str, path: str, **query: str) -> dict:
    full = url.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
    with urllib.request.urlopen(full, timeout=60) as response:
        return json.load(response)


def error_of(url: str, path: str, *, method: str = "GET", headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url.rstrip("/") + path, method=method, headers=headers or {})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=60)
    return info.value.code, info.value.read().decode()


def addr(**a) -> str:
    return json.dumps(a)


def test_graph_has_variables_functions_edges_and_states(served):
    url, _, _ = served
    g = get(url, "/api/graph")
    states = {n["id"]: n["state"] for n in g["nodes"]}
    assert states == {
        "var:Raw": "current", "var:Info": "current", "fn:smooth": "current", "var:Smoothed": "current",
        "fn:peak": "stale", "var:Peak": "stale", "fn:spectrogram": "failed", "var:Spectrogram": "failed",
    }
    assert sorted(map(tuple, g["edges"])) == sorted([
        ("var:Raw", "fn:smooth"), ("fn:smooth", "var:Smoothed"), ("var:Smoothed", "fn:peak"),
        ("fn:peak", "var:Peak"), ("var:Smoothed", "fn:spectrogram"), ("fn:spectrogram", "var:Spectrogram"),
    ])
    spectrogram = next(n for n in g["nodes"] if n["id"] == "var:Spectrogram")
    assert spectrogram["counts"]["done"] == 4 and spectrogram["counts"]["failed"] == 2
    x = {n["id"]: n["x"] for n in g["nodes"]}
    assert all(x[a] < x[b] for a, b in g["edges"])  # inputs left of outputs


def test_grid_is_what_scistack_status_computes(served):
    url, root, env = served
    grid = get(url, "/api/grid", node="fn:spectrogram")
    done = subprocess.run([sys.executable, "-m", "scistack", "--db", str(root / "gait.duckdb"), "status",
                           "Spectrogram", "--json"], capture_output=True, text=True, env=env, timeout=120)
    status = json.loads(done.stdout)
    assert grid["variables"] == status["variables"] == ["Spectrogram"]
    assert grid["addresses"] == status["addresses"]
    assert grid["counts"] == status["counts"]
    by_addr = {json.dumps(c["addr"], sort_keys=True): c["status"] for c in status["cells"]}
    for a, row in zip(grid["addresses"], grid["rows"]):
        assert row[0]["status"] == by_addr[json.dumps(row[0]["addr"], sort_keys=True)]
    assert {r[0]["status"] for a, r in zip(grid["addresses"], grid["rows"]) if a["subject"] == 3} == {"failed"}
    assert "signal too short" in grid["rows"][-1][0]["reason"]


def test_grid_pages_and_filters_on_the_server(served):
    """A grid is judged once and sent a page at a time, filtered by status and by address
    text on the server: at 300k addresses the whole grid was 46 MB of JSON, drawn as one table."""
    url, _, _ = served
    whole = get(url, "/api/grid", node="var:Raw")
    assert whole["total"] == whole["matching"] == len(whole["addresses"]) >= 6
    pages = [get(url, "/api/grid", node="var:Raw", offset=str(o), limit="4") for o in (0, 4)]
    assert len(pages[0]["addresses"]) == 4 and pages[0]["offset"] == 0 and pages[1]["offset"] == 4
    assert pages[0]["addresses"] + pages[1]["addresses"] == whole["addresses"]
    assert pages[0]["rows"] + pages[1]["rows"] == whole["rows"]
    assert all(p["counts"] == whole["counts"] and p["total"] == whole["total"] for p in pages)
    failed = get(url, "/api/grid", node="fn:spectrogram", statuses="failed")
    assert failed["matching"] == 2 and {a["subject"] for a in failed["addresses"]} == {3}
    assert failed["total"] > failed["matching"]
    unchecked = get(url, "/api/grid", node="fn:spectrogram", statuses="")
    assert unchecked["matching"] == 0 and unchecked["addresses"] == []
    post = get(url, "/api/grid", node="var:Raw", text='Session="POST"')
    assert post["matching"] == 3 and {a["session"] for a in post["addresses"]} == {"post"}
    assert get(url, "/api/grid", node="var:Raw", text="session='post'")["addresses"] == post["addresses"]  # as CLI prints it
    code, body = error_of(url, "/api/grid?node=var:Raw&statuses=late")
    assert code == 400 and "late" in body
    code, body = error_of(url, "/api/grid?node=var:Raw&limit=many")
    assert code == 400 and "limit 'many' must be a whole number" in body
    code, body = error_of(url, "/api/grid?node=var:Raw&limit=0")  # (it had served a full page)
    assert code == 400 and "limit 0 must be" in body


def test_value_previews_by_kind(served):
    url, _, _ = served
    line = get(url, "/api/value", var="Smoothed", addr=addr(subject=1, session="pre"))
    assert line["preview"]["kind"] == "line" and line["preview"]["n"] == 512 and line["current"]
    assert line["why"]["status"] == "current"
    inputs = line["provenance"]["inputs"]
    assert inputs[0]["var"] == "Raw" and inputs[0]["addr"] == {"subject": 1, "session": "pre"}
    assert line["provenance"]["constants"] == {"width": 5} and "def smooth" in line["provenance"]["code"]
    image = get(url, "/api/value", var="Spectrogram", addr=addr(subject=2, session="post"))
    assert image["preview"]["kind"] == "image" and image["preview"]["shape"] == [32, 9]
    table = get(url, "/api/value", var="Info", addr=addr(subject=1))
    assert table["preview"]["columns"] == ["trial", "side"] and table["preview"]["rows"][1] == [2, "right"]
    text = get(url, "/api/value", var="Peak", addr=addr(subject=2, session="pre"))
    assert text["preview"]["kind"] == "text" and float(text["preview"]["text"]) > 0


def test_stale_value_carries_the_why_diff(served):
    url, _, _ = served
    value = get(url, "/api/value", var="Peak", addr=addr(subject=1, session="post"))
    assert value["why"]["status"] == "stale"
    diff = value["why"]["reasons"][0]["diff"]
    assert "-    return float(np.max(signal))" in diff and "+    return float(np.max(signal)) + 0.0" in diff
    assert [v["version"] for v in value["versions"]] == [1]


def test_runs_with_counts_durations_and_tracebacks(served):
    url, _, _ = served
    runs = get(url, "/api/runs")["runs"]
    assert [r["function"] for r in runs] == ["spectrogram", "peak", "smooth"]  # newest first
    assert runs[0]["counts"]["failed"] == 2 and runs[0]["counts"]["ran"] == 4 and runs[0]["duration"] > 0
    detail = get(url, "/api/run", id=runs[0]["run_id"][:8])
    failed = detail["failures"]
    assert len(failed) == detail["failed"] == 2 and "ValueError: signal too short" in failed[0]["traceback"]
    assert detail["total"] == 6 and len(detail["items"]) == 6
    assert [i["combo"] for i in detail["items"][:2]] == [f["combo"] for f in failed]  # failures first
    assert "signal too short" in detail["items"][0]["error"] and "traceback" not in detail["items"][0]


def test_a_runs_combinations_come_a_page_at_a_time(served):
    """A run of 100k combinations was sent whole (13 MB, 100k table rows): pages now, and
    the tracebacks only of the failures shown above the table."""
    url, _, _ = served
    run_id = get(url, "/api/runs")["runs"][0]["run_id"]
    first = get(url, "/api/run", id=run_id, offset=0, limit=4)
    rest = get(url, "/api/run", id=run_id, offset=4, limit=4)
    assert (first["total"], first["offset"], first["limit"], len(first["items"])) == (6, 0, 4, 4)
    assert (rest["offset"], len(rest["items"])) == (4, 2)
    combos = [json.dumps(i["combo"], sort_keys=True) for i in first["items"] + rest["items"]]
    assert len(set(combos)) == 6 and [i["status"] for i in first["items"][:2]] == ["failed", "failed"]
    assert rest["failures"] == first["failures"] and len(first["failures"]) == 2
    assert error_of(url, f"/api/run?id={run_id}&offset=-1")[0] == 400


def test_refusals_name_the_problem(served):
    url, _, _ = served
    code, body = error_of(url, "/api/value?var=Peak&addr=%5B1%5D")
    assert code == 400 and "must be a JSON object" in body
    code, body = error_of(url, "/api/value?var=Nope&addr=%7B%7D")
    assert code == 400 and "Nope" in body
    code, body = error_of(url, "/api/grid?node=Peak")
    assert code == 400 and "var:NAME or fn:NAME" in body
    assert error_of(url, "/api/run?id=ffff")[0] == 400
    assert error_of(url, "/api/graph", method="POST")[0] == 405
    assert error_of(url, "/../../etc/passwd")[0] == 404
    code, _ = error_of(url, "/api/graph", headers={"Host": "evil.example:80"})
    assert code == 403


def test_page_and_assets_are_served_with_a_strict_policy(served):
    url, _, _ = served
    with urllib.request.urlopen(url, timeout=30) as response:
        page = response.read().decode()
        policy = response.headers["Content-Security-Policy"]
    assert '<script src="/app.js">' in page and "http" not in page.replace("http-equiv", "")
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    with urllib.request.urlopen(url + "app.js", timeout=30) as response:
        script = response.read().decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script  # user strings go in as text only
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", script)  # no CDN, nothing remote


def test_db_ui_serves_in_process_and_stops(project):
    server = project.ui()
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.url in server._repr_html_()
        assert get(server.url, "/api/project")["schema_keys"] == ["subject", "session"]
        assert get(server.url, "/api/project")["warning"] is None
        assert get(server.url, "/api/graph")["nodes"] == []
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "api/project", timeout=5)


class UiTrial(BaseVariable):
    pass


def test_value_variants_and_older_versions(project):
    UiTrial.save(np.arange(3.0), subject=1, session="pre", note="a")
    UiTrial.save(np.arange(4.0), subject=1, session="pre", note="b")
    UiTrial.save(np.arange(5.0), subject=1, session="pre", note="b")
    server = project.ui()
    try:
        both = get(server.url, "/api/value", var="UiTrial", addr=addr(subject=1, session="pre"))
        assert sorted(v["vkeys"]["note"] for v in both["variants"]) == ["a", "b"]
        newest = get(server.url, "/api/value", var="UiTrial", addr=addr(subject=1, session="pre", note="b"))
        assert newest["current"] and newest["preview"]["n"] == 5 and newest["why"]["status"] == "raw"
        assert [(v["version"], v["current"]) for v in newest["versions"]] == [(3, True), (2, False)]
        older = get(server.url, "/api/value", var="UiTrial", addr=addr(subject=1, session="pre", note="b"),
                    version="2")
        assert not older["current"] and older["preview"]["n"] == 4 and older["why"] is None
    finally:
        server.stop()


def test_a_variant_saved_without_version_keys_opens_from_the_variants_list(project):
    """Each variant the list links to opens, the one saved without version keys too (its
    link was the bare address, which lists the variants again): `note: null`, as
    `load(note=None)` takes it."""
    UiTrial.save(1.0, subject=2, session="pre")
    UiTrial.save(2.0, subject=2, session="pre", note="recal")
    server = project.ui()
    try:
        both = get(server.url, "/api/value", var="UiTrial", addr=addr(subject=2, session="pre"))
        opened = [get(server.url, "/api/value", var="UiTrial", addr=json.dumps(v["where"])) for v in both["variants"]]
        assert sorted((o["record"]["version"], o["record"]["vkeys"], o["why"]["status"]) for o in opened) == [
            (1, {}, "raw"), (2, {"note": "recal"}, "raw")]
    finally:
        server.stop()


class UiFailIn(BaseVariable):
    pass


class UiFailOut(BaseVariable):
    pass


def test_a_failed_cell_names_the_run_that_failed_there(project):
    """The page opens a failed cell's own run: a later run that failed at another address
    never covered it (the page had opened the newest run that failed anywhere)."""
    from scistack import for_each, lineage_fcn
    from scistack.ui import api

    @lineage_fcn
    def positive(a):
        if a < 0:
            raise ValueError(f"negative {a}")
        return a

    UiFailIn.save(-1, subject=1, session="pre")
    UiFailIn.save(-2, subject=2, session="pre")
    for subject in (1, 2):
        for_each(positive, inputs={"a": UiFailIn}, outputs=[UiFailOut], subject=[subject], session=["pre"],
                 progress=False)
    first = project.index.runs()[0].run_id  # (oldest first)
    cell = api.grid(project, "var:UiFailOut", text="subject=1")["rows"][0][0]
    assert cell["status"] == "failed" and cell["run"] == first
    assert "negative -1" in api.run(project, cell["run"])["failures"][0]["error"]


class UiFromFile(BaseVariable):
    pass


def test_a_raw_file_input_is_named_by_its_path(project, tmp_path):
    """A value read from a raw file (`PathInput`) names the file in its provenance, as
    `scistack show` does (`path=file raw/1/pre.csv@...`); the page showed only a hash."""
    from scistack import PathInput, for_each
    from scistack.ui import api

    (tmp_path / "raw" / "1").mkdir(parents=True)
    (tmp_path / "raw" / "1" / "pre.csv").write_text("1\n2\n")
    for_each(uiread, inputs={"path": PathInput("{subject}/{session}.csv", root="raw")},
             outputs=[UiFromFile], subject=[1], session=["pre"], progress=False)
    provenance = api.value(project, "UiFromFile", {"subject": 1, "session": "pre"})["provenance"]
    (given,) = provenance["inputs"]
    assert (given["name"], given["var"], given["file"]) == ("path", None, "raw/1/pre.csv")
    assert provenance["runtime"] == f"Python {platform.python_version()}"


def test_a_path_input_step_has_a_raw_files_source_in_the_graph(project, tmp_path):
    """A `PathInput` step was drawn with no inputs (in the web view and `scistack graph`,
    the same model): a "raw files: <pattern>" source node feeds it; it opens no grid."""
    from scistack import PathInput, for_each
    from scistack.ui import api

    for subject in (1, 2):
        (tmp_path / "raw" / f"s{subject}").mkdir(parents=True)
        for session in ("pre", "post"):
            (tmp_path / "raw" / f"s{subject}" / f"{session}.csv").write_text(f"{subject}\n")
    for_each(uiread, inputs={"path": PathInput("s{subject}/{session}.csv", root="raw")},
             outputs=[UiFromFile], subject=[1, 2], session=["pre", "post"], progress=False)
    g = api.graph(project)
    raw = next(n for n in g["nodes"] if n["kind"] == "raw")
    assert (raw["id"], raw["name"]) == ("raw:raw/s{subject}/{session}.csv", "raw files: raw/s{subject}/{session}.csv")
    assert sorted(map(tuple, g["edges"])) == [("fn:uiread", "var:UiFromFile"), (raw["id"], "fn:uiread")]
    x = {n["id"]: n["x"] for n in g["nodes"]}
    assert x[raw["id"]] < x["fn:uiread"]  # drawn left of the step it feeds
    from click.testing import CliRunner
    from scistack.cli import main

    text = CliRunner().invoke(main, ["--db", str(project.path), "graph"]).stdout
    assert "uiread(raw files: raw/s{subject}/{session}.csv) -> UiFromFile: current" in text, text


def uiread(path):
    return Path(path).read_text()


class UiGone(BaseVariable):
    pass


class UiFromGone(BaseVariable):
    pass


GONE_NOTE = "no values (every one deleted; `scistack undelete UiGone` brings them back, until gc)"


def test_every_node_the_graph_draws_opens_its_grid(project):
    """A variable whose every value was deleted is still drawn (its lineage names it): it
    says so, and its grid opens empty (it had been `UiGone has no records and no runs`)."""
    from scistack import for_each, lineage_fcn
    from scistack.ui import api

    @lineage_fcn
    def plus_one(a):
        return a + 1

    UiGone.save(1, subject=1, session="pre")
    for_each(plus_one, inputs={"a": UiGone}, outputs=[UiFromGone], subject=[1], session=["pre"], progress=False)
    UiGone.delete(subject=1, session="pre")
    nodes = {n["id"]: n for n in api.graph(project)["nodes"]}
    gone = nodes["var:UiGone"]
    assert (gone["state"], gone["note"]) == ("missing", GONE_NOTE)
    for node in nodes:
        api.grid(project, node)
    assert api.grid(project, "var:UiGone")["empty"] == {"UiGone": GONE_NOTE}


def test_only_loopback_and_a_free_port(project):
    with pytest.raises(WebViewError, match="loopback"):
        UiServer(project, host="0.0.0.0")
    first = UiServer(project)
    try:
        with pytest.raises(WebViewError, match="--port"):
            UiServer(project, port=first.port)
    finally:
        first.stop()


def test_layout_of_a_wide_pipeline_is_left_to_right_and_never_overlaps():
    nodes = [f"v{i}" for i in range(40)]
    edges = [(f"v{i}", f"v{i + 1}") for i in range(0, 39, 2)] + [(f"v{i}", f"v{i + 3}") for i in range(0, 36, 5)]
    edges.append(("v39", "v0"))  # a cycle does not hang or crash the layout
    pos = layout(nodes, edges)
    assert set(pos) == set(nodes)
    boxes = sorted(pos.values())
    for (x1, y1), (x2, y2) in zip(boxes, boxes[1:]):
        assert x1 != x2 or y2 - y1 >= NODE_H  # same column: stacked, not overlapping
    assert all(pos[a][0] < pos[b][0] for a, b in edges[:-1])
    assert all(x % (NODE_W + GAP_X) == 0 for x, _ in pos.values())


def test_preview_is_bounded_and_json_ready():
    long = preview(np.r_[np.zeros(50_000), 7.0, np.zeros(50_000)])
    assert len(long["x"]) <= 2000 and max(long["y"]) == 7.0 and long["n"] == 100_001
    image = preview(np.arange(1000 * 300, dtype=float).reshape(1000, 300))
    assert len(image["z"]) <= 120 and len(image["z"][0]) <= 120 and image["shape"] == [1000, 300]
    assert preview(np.array([1.0, np.nan, np.inf]))["y"] == [1.0, None, None]
    frame = preview(pd.DataFrame({"a": np.arange(100), "b": ["x"] * 100}))
    assert frame["kind"] == "table" and len(frame["rows"]) == 20 and frame["shape"] == [100, 2]
    assert preview({"k": [1, 2]}) == {"kind": "text", "text": "{'k': [1, 2]}"}
    assert preview(np.array(["a", "b"]))["kind"] == "text"


def test_cli_graph_and_runs_print_the_same_report(served):
    url, root, env = served

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "scistack", "--db", str(root / "gait.duckdb"), *args],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    text = cli("graph")
    assert "peak(Smoothed) -> Peak: stale (6 stale)" in text
    assert "spectrogram(Smoothed) -> Spectrogram: failed (4 done, 2 failed)" in text
    assert json.loads(cli("graph", "--json"))["edges"] == get(url, "/api/graph")["edges"]
    runs = cli("runs")
    assert runs.splitlines()[2].split()[3] == "spectrogram" and "4 ran, 2 failed" in runs
    run_id = get(url, "/api/runs")["runs"][0]["run_id"]
    detail = cli("runs", run_id[:10])
    assert "  failed   subject=3, session=pre  (" in detail
    assert "ValueError: signal too short for a spectrogram" in detail


# last: it changes the shared project
def test_generation_moves_when_another_process_saves(served):
    url, root, env = served
    before = get(url, "/api/generation")["generation"]
    assert get(url, "/api/generation")["generation"] == before
    ui_project.save_raw_from_another_process(root, env, subject=9)
    assert get(url, "/api/generation")["generation"] > before
    grid = get(url, "/api/grid", node="var:Raw")
    assert {"subject": 9, "session": "pre"} in grid["addresses"]
