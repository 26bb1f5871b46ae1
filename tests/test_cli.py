"""Every `scistack` command, through click's runner, on a real project built here.

The pipeline's functions live in a module written to the project folder (as a user's
`pipeline.py` would), so `status` and `why` can import them and compare their code.
"""

from __future__ import annotations

import shlex
import importlib
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from scistack import BaseVariable, for_each, lineage_fcn
from scistack.cli import main
from scistack.cli.args import AddressError, convert, parse_address
from scistack.address import value_text

PIPELINE = """
import numpy as np
from scistack import lineage_fcn

GAIN = 2.0


@lineage_fcn
def bandpass(signal, low_hz):
    return signal * GAIN + low_hz


@lineage_fcn
def peak(signal):
    if signal.size < 5:
        raise ValueError("signal too short")
    return float(np.max(signal))
"""


class CliRaw(BaseVariable):
    pass


class CliFiltered(BaseVariable):
    pass


class CliPeak(BaseVariable):
    pass


class CliTable(BaseVariable):
    pass


@pytest.fixture
def built(project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Raw data for 3 subjects x 2 sessions, filtered and peaked; subject 3 fails `peak`;
    then (subject 1, pre) is re-recorded, so its downstream values are stale."""
    name = f"clipipe_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(PIPELINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    rng = np.random.default_rng(0)
    for subject in (1, 2, 3):
        for session in ("pre", "post"):
            CliRaw.save(
                rng.normal(size=3 if subject == 3 else 50), subject=subject, session=session
            )
    CliTable.save(pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}), subject=1)
    combos = {"subject": [1, 2, 3], "session": ["pre", "post"]}
    for_each(
        module.bandpass, inputs={"signal": CliRaw, "low_hz": 20}, outputs=[CliFiltered], **combos
    )
    for_each(module.peak, inputs={"signal": CliFiltered}, outputs=[CliPeak], **combos)
    CliRaw.save(np.ones(50), subject=1, session="pre")
    project.sync()
    yield SimpleNamespace(
        db=project, path=tmp_path / "gait.duckdb", module=module, name=name, root=tmp_path
    )
    sys.modules.pop(name, None)


def run(built, *args: str, input: str | None = None):
    return CliRunner().invoke(main, ["--db", str(built.path), *args], input=input)


def ok(result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def assert_fits(text: str, width: int = 80) -> None:
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, too_long


# -- ls ----------------------------------------------------------------------------------
def test_ls_lists_variables_with_counts_sizes_and_fits_80_columns(built):
    out = ok(run(built, "ls"))
    assert_fits(out)
    lines = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert set(lines) == {"CliFiltered", "CliPeak", "CliRaw", "CliTable"}
    assert lines["CliRaw"][1:3] == ["6", "7"]  # 6 current values, 7 versions
    assert lines["CliPeak"][1:3] == ["4", "4"]  # subject 3 failed
    data = json.loads(ok(run(built, "ls", "--json")))
    raw = next(d for d in data if d["name"] == "CliRaw")
    assert raw["values"] == 6 and raw["versions"] == 7 and raw["size_bytes"] > 50 * 8 * 6


# -- log ---------------------------------------------------------------------------------
def test_log_shows_every_version_newest_first_with_its_call(built):
    out = ok(run(built, "log", "CliRaw", "--subject", "1", "--session", "pre"))
    assert_fits(out)
    blocks = out.strip().split("\n\n")
    assert len(blocks) == 2
    assert "Version:   2" in blocks[0] and "(current)" in blocks[0]
    assert "Version:   1" in blocks[1] and "(current)" not in blocks[1]
    assert "no lineage" in blocks[1]

    out = ok(run(built, "log", "CliFiltered", "--subject", "1"))
    assert_fits(out)
    assert out.count("value ") == 2
    assert "Function:  bandpass" in out and "Constants: low_hz=20" in out
    old_raw = built.db.index.versions_at("CliRaw", '{"session":"pre","subject":1}')[0]
    assert f"signal=CliRaw@{old_raw.oid[:12]}" in out


def test_log_json_limit_and_address_types(built):
    entries = json.loads(ok(run(built, "log", "CliFiltered", "-n", "3", "--json")))
    assert len(entries) == 3
    assert [e["created_at"] for e in entries] == sorted(
        (e["created_at"] for e in entries), reverse=True
    )
    first = entries[0]
    assert first["call"]["function"] == "bandpass" and first["call"]["constants"] == {"low_hz": 20}
    assert first["current"] is True and len(first["oid"]) == 64
    # subject was saved as the int 1: "1" matches it, the string "'1'" does not
    assert ok(run(built, "log", "CliFiltered", "--subject", "1", "--json")) != "[]"
    result = run(built, "log", "CliFiltered", "--subject", "'1'")
    assert result.exit_code == 2 and "no record matching" in result.stderr
    assert run(built, "log", "CliFiltered", "--subject", "1", "--str").exit_code == 2


def test_log_json_lists_address_keys_in_schema_order(built):
    """`log --json` gave each address (and each input's, and the --graph nodes') keys
    alphabetically, session before subject: now in the schema's order, as the table and
    `status --json` give them."""
    for args in (["CliFiltered"], [], ["CliFiltered", "--graph"]):
        entries = json.loads(ok(run(built, "log", *args, "-n", "2", "--json")))
        entries = [e["entry"] for e in entries] if "--graph" in args else entries
        assert entries and all(list(e["addr"]) == ["subject", "session"] for e in entries)
    filtered = json.loads(ok(run(built, "log", "CliFiltered", "-n", "1", "--json")))[0]
    assert [list(i["addr"]) for i in filtered["call"]["inputs"]] == [["subject", "session"]]
    graph = json.loads(ok(run(built, "log", "CliPeak", "-n", "1", "--graph", "--json")))[0]["lineage"]
    assert list(graph["addr"]) == list(graph["children"][0]["addr"]) == ["subject", "session"]


def test_log_without_a_variable_is_what_the_project_saved_lately(built):
    """As `git log`: every variable's versions, newest first, 20 unless -n says; an address
    (given with no variable before it) narrows it, and one that matches nothing anywhere is an error."""
    entries = json.loads(ok(run(built, "log", "--json")))
    assert len(entries) == 18  # every version: 7 raw, 1 table, 6 filtered, 4 peaks
    stamps = [(e["created_at"], e["version"]) for e in entries]
    assert stamps == sorted(stamps, reverse=True)
    assert entries[0]["var"] == "CliRaw" and entries[0]["version"] == 2  # the re-recording came last
    assert {e["var"] for e in entries} == {"CliRaw", "CliTable", "CliFiltered", "CliPeak"}
    for subject in (2, 3, 4):
        CliTable.save(pd.DataFrame({"a": [subject]}), subject=subject)
    entries = json.loads(ok(run(built, "log", "--json")))
    assert len(entries) == 20 and [e["addr"]["subject"] for e in entries[:3]] == [4, 3, 2]
    assert len(json.loads(ok(run(built, "log", "-n", "3", "--json")))) == 3

    every = json.loads(ok(run(built, "log", "--subject", "2", "--session", "post", "-n", "100", "--json")))
    assert sorted(e["var"] for e in every) == ["CliFiltered", "CliPeak", "CliRaw"]
    # an address written `key=value`, with no variable before it, is the same address
    assert json.loads(ok(run(built, "log", "subject=2", "session=post", "-n", "100", "--json"))) == every
    assert json.loads(ok(run(built, "log", "CliRaw", "subject=2", "session=post", "--json"))) == [
        e for e in every if e["var"] == "CliRaw"]
    assert all(e["addr"] == {"subject": 2, "session": "post"} for e in every)
    low = json.loads(ok(run(built, "log", "--low_hz", "20", "-n", "100", "--json")))  # one step's parameter
    assert {e["var"] for e in low} == {"CliFiltered", "CliPeak"}
    text = ok(run(built, "log", "-n", "1"))
    assert text.startswith("value ") and "CliTable subject=4  (current)" in text

    result = run(built, "log", "--subject", "9")
    assert result.exit_code == 2 and "no variable has a record matching subject=9" in result.stderr
    assert "CliRaw" in result.stderr and "scistack status" in result.stderr
    result = run(built, "log", "--sesion", "pre")  # a key no variable has: which keys there are
    assert result.exit_code == 2 and "no metadata key 'sesion'" in result.stderr
    assert "did you mean 'session'" in result.stderr


def test_log_names_array_constants_and_prints_numpy_numbers_as_numbers(built):
    CliRaw.save(np.ones(50), subject=5, session="pre")
    for_each(built.module.bandpass, inputs={"signal": CliRaw, "low_hz": np.zeros(50)},
             outputs=[CliFiltered], subject=[5], session=["pre"])
    out = ok(run(built, "log", "CliFiltered", "--subject", "5", "--graph"))
    assert "low_hz=<constant>@" in out and "low_hz: <constant>@" in out and "result of call" not in out
    for_each(built.module.bandpass, inputs={"signal": CliRaw, "low_hz": np.int64(7)},
             outputs=[CliFiltered], subject=[5], session=["pre"])
    out = ok(run(built, "log", "CliFiltered", "--subject", "5", "-n", "1", "--graph"))
    assert "Constants: low_hz=7\n" in out and "<- bandpass(low_hz=7)" in out


def test_log_graph_draws_lineage_down_to_raw_inputs(built):
    out = ok(run(built, "log", "CliPeak", "--subject", "2", "--session", "post", "--graph"))
    assert_fits(out)
    tree = out.split("\n\n")[-1].splitlines()
    assert tree[0].startswith("CliPeak@") and "<- peak()" in tree[0]
    assert tree[1].startswith("└── signal: CliFiltered@") and "bandpass(low_hz=20)" in tree[1]
    assert tree[2].startswith("    └── signal: CliRaw@") and tree[2].endswith("[raw]")
    data = json.loads(
        ok(run(built, "log", "CliPeak", "--subject", "2", "--session", "post", "--graph", "--json"))
    )
    assert data[0]["lineage"]["children"][0]["children"][0]["note"] == "raw"


# -- show --------------------------------------------------------------------------------
def test_show_array_by_address_and_by_oid_prefix(built):
    out = ok(run(built, "show", "CliRaw", "--subject", "1", "--session", "pre"))
    assert "ndarray float64 [50]" in out and "min 1  max 1  mean 1" in out
    assert "first: 1.0, 1.0" in out
    record = CliFiltered.load(subject=2, session="pre").record
    out = ok(run(built, "show", record.oid[:10]))
    assert f"object {record.oid}" in out and "Function:  bandpass" in out
    shown = json.loads(ok(run(built, "show", record.oid, "--json")))
    assert shown["value"]["shape"] == [50] and shown["call"]["oid"] == record.call
    assert [list(ref["addr"]) for ref in shown["refs"]] == [["subject", "session"]]  # schema order (was sorted)
    out = ok(run(built, "show", record.call[:8]))
    assert "Kind:      call" in out and "Inputs:    signal=CliRaw@" in out


def test_show_names_the_versions_there_by_address_and_every_name_by_oid(built):
    """By address, the versions at that address holding the value (every name would scan
    every ref: 0.17 s and 0.3 GB at 1M refs); by oid, every name it has."""
    CliTable.save(7.5, subject=3)
    CliTable.save(8.5, subject=3)
    CliTable.save(7.5, subject=3)  # the first value again: version 3
    CliPeak.save(7.5, subject=9, session="pre")  # the same content under another name
    refs = [line.split() for line in ok(run(built, "show", "CliTable", "subject=3")).splitlines()
            if line.startswith("Ref:")]
    assert [r[-1] for r in refs] == ["3", "1"] and all(r[1] == "CliTable" for r in refs)
    oid = CliPeak.load(subject=9, session="pre").record.oid
    named = {line.split()[1] for line in ok(run(built, "show", oid[:12])).splitlines() if line.startswith("Ref:")}
    assert named == {"CliTable", "CliPeak"}


def test_showing_a_number_imports_no_table_library(built):
    """`scistack show` of a float imported pandas and pyarrow to describe it (0.37 s)."""
    script = ("import sys; from scistack.cli import main; "
              "main(['--db', sys.argv[1], 'show', 'CliPeak', 'subject=1', 'session=post'], standalone_mode=False); "
              "print(sorted({'pandas', 'pyarrow'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", script, str(built.path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Value:     float" in done.stdout and done.stdout.strip().splitlines()[-1] == "[]"


def test_show_code_object_and_version_keys_in_log(built):
    call = built.db.call_record(CliFiltered.load(subject=2, session="pre").call)
    out = ok(run(built, "show", call["code"][:8]))
    assert "Kind:      code" in out and "def bandpass(signal, low_hz):" in out
    CliTable.save(pd.DataFrame({"a": [9]}), subject=2, note="recal")
    out = ok(run(built, "log", "CliTable", "--subject", "2"))
    assert "Keys:      note=recal" in out


def test_show_dataframe_head_and_older_version(built):
    out = ok(run(built, "show", "CliTable", "--subject", "1"))
    assert "DataFrame 3x2" in out and "a  b" in out and "2  3  z" in out
    out = ok(run(built, "show", "CliRaw", "--subject", "1", "--session", "pre", "--version", "1"))
    assert "min 1  max 1" not in out


def _strict_json(text: str):
    """JSON as `jq` or a browser reads it: the bare words NaN and Infinity are refused."""
    def refuse(word: str):
        raise ValueError(f"{word} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # (numpy warned to the terminal: inf + -inf)
def test_json_output_is_strict_json_for_nan_and_infinity(built):
    CliRaw.save(np.array([1.0, np.nan, np.inf, -np.inf]), subject=7, session="pre")
    CliPeak.save(float("nan"), subject=7, session="pre")
    shown = _strict_json(ok(run(built, "show", "CliRaw", "--subject", "7", "--json")))
    assert shown["value"]["head"] == [1.0, None, None, None]  # as the web view shows them
    assert shown["value"]["dtype"] == "float64" and shown["value"]["mean"] is None
    scalar = _strict_json(ok(run(built, "show", "CliPeak", "--subject", "7", "--json")))
    assert scalar["refs"][0]["summary"] == "nan"
    for args in (["log", "CliPeak", "--json"], ["ls", "--json"], ["status", "--json"]):
        _strict_json(ok(run(built, *args)))


def test_show_errors_are_one_line(built):
    for args in (["show", "zz"], ["show", "0000000000"], ["show", "CliRaw", "--subject", "1"]):
        result = run(built, *args)
        assert result.exit_code == 2
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_show_and_why_of_a_whole_variable_are_refused_from_the_counts(built, monkeypatch):
    """`scistack show EMG` (no address) read all 300k records to say that many match: the
    index's counts say it now, no record read (6 current values of CliRaw, 7 versions)."""
    import scistack.report.history as history
    import scistack.report.why as why

    def no_records(*args, **kwargs):
        raise AssertionError("every record was read to refuse")

    monkeypatch.setattr(history, "select_records", no_records)
    monkeypatch.setattr(why, "select_records", no_records)
    result = run(built, "show", "CliRaw")
    assert result.exit_code == 2 and "CliRaw: 6 records match everything; give the full address" in result.stderr
    result = run(built, "why", "CliPeak")
    assert result.exit_code == 2 and "why needs one value but 4 records of CliPeak match everything" in result.stderr
    monkeypatch.undo()
    assert "CliTable" in ok(run(built, "show", "CliTable"))  # one value: shown without an address


# -- status and why ----------------------------------------------------------------------
def test_status_grid_done_stale_failed_missing(built):
    out = ok(run(built, "status"))
    assert_fits(out)
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in out.splitlines()[1:7]}
    header = out.splitlines()[0].split()
    assert header == ["subject", "session", "CliFiltered", "CliPeak", "CliRaw", "CliTable"]
    assert rows[("1", "pre")] == ["STALE", "STALE", "done", "done"]
    assert rows[("2", "post")] == ["done", "done", "done", "-"]
    assert rows[("3", "pre")] == ["done", "FAILED", "done", "-"]
    problems = ok(run(built, "status", "--problems", "CliFiltered", "CliPeak"))
    assert [line.split()[:2] for line in problems.splitlines()[1:4]] == [
        ["1", "pre"],
        ["3", "post"],
        ["3", "pre"],
    ]
    assert problems.splitlines()[4] == ""
    data = json.loads(ok(run(built, "status", "CliPeak", "--json")))
    assert data["counts"]["CliPeak"] == {
        "done": 3,
        "stale": 1,
        "unknown": 0,
        "failed": 2,
        "missing": 0,
    }
    failed = [c for c in data["cells"] if c["status"] == "failed"]
    assert all("signal too short" in c["reason"] for c in failed)


def test_a_label_with_a_line_break_keeps_each_address_on_one_line(built):
    """A string label may hold a line break (read from a file's header, say): printed as it
    is, it split a status row and a log header in two."""
    CliRaw.save(np.ones(5), subject="left\nfoot", session="pre")
    status = ok(run(built, "status", "CliRaw"))
    assert "'left\\nfoot'  pre" in status
    assert not any(line.startswith("foot") for line in status.splitlines())
    log = ok(run(built, "log", "CliRaw", "-n", "1"))
    assert log.splitlines()[0].endswith("CliRaw subject='left\\nfoot' session=pre  (current)")


def test_labels_printed_bare_that_would_not_read_back_are_quoted(built):
    """`status` printed a label with a space at either end (' x') bare, indistinguishable from
    `x` and not to be typed back; one in quotes of its own ("'a'") read back without them.
    Each printed form, given back to the command line, must find that very value."""
    labels = [" x", "y ", "'a'", '"b"', "", "03", "plain", " C:\\data", "a'b\" "]  # (repr'd: a backslash, both quotes)
    for label in labels:
        CliRaw.save(np.ones(5), subject=label, session="pre")
    built.db.sync()
    status = ok(run(built, "status", "CliRaw"))
    assert "' x'" in status and "'y '" in status and "\"'a'\"" in status and "'\"b\"'" in status
    assert "\nplain " in status  # a plain label stays bare
    assert convert("'C:\\data'") == "C:\\data"  # (a typed quoted path that is no literal's repr)
    for label in labels:
        printed = value_text(label)
        assert convert(printed) == label, (label, printed)
        assert convert(shlex.split(f"--subject {shlex.quote(printed)}")[1]) == label  # (fsck's commands)
        assert printed in status, (label, status)
        shown = ok(run(built, "show", "CliRaw", "--subject", printed, "--session", "pre"))
        assert f"subject={printed} session=pre" in shown, shown
    log = ok(run(built, "log", "CliRaw", "--subject", "' x'"))
    assert "CliRaw subject=' x' session=pre" in log


def test_status_and_why_see_a_code_change_with_a_diff(built):
    source = PIPELINE.replace(
        "return signal * GAIN + low_hz", "return signal * GAIN + low_hz + 1.0"
    )
    (built.root / f"{built.name}.py").write_text(source)
    importlib.invalidate_caches()
    importlib.reload(built.module)
    out = ok(run(built, "status", "CliFiltered"))
    assert [line.split()[2] for line in out.splitlines()[1:7]] == ["STALE"] * 6
    out = ok(run(built, "why", "CliFiltered", "--subject", "2", "--session", "post"))
    assert "is stale" in out and "code bandpass" in out
    assert (
        "-    return signal * GAIN + low_hz" in out
        and "+    return signal * GAIN + low_hz + 1.0" in out
    )


def test_why_current_stale_and_upstream(built):
    out = ok(run(built, "why", "CliFiltered", "--subject", "2", "--session", "pre"))
    assert_fits(out)
    assert "is current" in out
    out = ok(run(built, "why", "CliFiltered", "--subject", "1", "--session", "pre"))
    assert "is stale" in out and "input signal" in out
    report = json.loads(
        ok(run(built, "why", "CliPeak", "--subject", "1", "--session", "pre", "--json"))
    )
    assert report["status"] == "stale" and report["reasons"][-1]["detail"].startswith("upstream ")
    result = run(built, "why", "CliFiltered", "--subject", "1")
    assert result.exit_code == 2 and "needs one value" in result.stderr


# -- rm ----------------------------------------------------------------------------------
def test_rm_asks_first_and_cascades_through_call_records(built):
    result = run(built, "rm", "CliRaw", "--subject", "2", input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    assert len(list(CliRaw.load(subject=2))) == 2
    out = ok(
        run(built, "rm", "CliRaw", "--subject", "2", "--session", "post", "--cascade", "--yes")
    )
    assert_fits(out)
    assert "deleted 3 refs" in out
    built.db.index.refresh()
    assert [
        r.addr["session"]
        for r in built.db.index.records("CliFiltered")
        if r.addr["subject"] == 2
    ] == ["pre"]
    assert not any(
        r.addr == {"subject": 2, "session": "post"} for r in built.db.index.records("CliPeak")
    )
    data = json.loads(ok(run(built, "rm", "CliTable", "--subject", "1", "--yes", "--json")))
    assert data["deleted"] == 1 and data["refs"][0]["var"] == "CliTable"


def test_rm_without_cascade_keeps_downstream(built):
    ok(run(built, "rm", "CliRaw", "--subject", "1", "--session", "pre", "--version", "1", "--yes"))
    built.db.index.refresh()
    assert [
        r.version
        for r in built.db.index.versions_at("CliRaw", '{"session":"pre","subject":1}')
    ] == [2]
    assert CliFiltered.load(subject=1, session="pre") is not None


def test_rm_naming_no_address_deletes_nothing_unless_all_is_asked(built):
    """`rm VAR --yes` deleted every record of VAR, and `rm VAR --version 1 --yes` version 1 at
    every address, where `VAR.delete()` refuses both: the shell now needs --all as the library
    needs all=True."""
    before = len(CliRaw.list_versions())
    for extra in ([], ["--version", "1"]):
        result = run(built, "rm", "CliRaw", *extra, "--yes")
        assert result.exit_code == 2, result.output
        assert "names no address" in result.stderr and "--all" in result.stderr
    built.db.index.refresh()
    assert len(CliRaw.list_versions()) == before  # nothing deleted
    out = ok(run(built, "rm", "CliTable", "--all", "--yes"))
    assert "deleted 1 refs" in out and not list(CliTable.load_all())


def test_rm_of_a_version_prints_an_undo_that_brings_it_back(built):
    out = ok(run(built, "rm", "CliRaw", "--subject", "1", "--session", "pre", "--version", "1", "--yes"))
    line = next(line for line in out.splitlines() if line.startswith("undo (until gc): "))
    assert line.endswith("scistack undelete CliRaw --subject 1 --session pre --version 1"), line
    back = ok(run(built, "undelete", *line.split("scistack undelete ")[1].split()))
    assert back.strip() == "1 record(s) back", back


def test_undelete_brings_back_what_rm_removed_with_its_lineage(built):
    before = CliFiltered.load(subject=2, session="post")
    out = ok(run(built, "rm", "CliFiltered", "--subject", "2", "--session", "post", "--yes"))
    assert "undo (until gc): scistack undelete CliFiltered --subject 2 --session post" in out
    out = ok(run(built, "undelete", "CliFiltered", "--subject", "2", "--session", "post"))
    assert out.strip() == "1 record(s) back"
    built.db.index.refresh()
    again = CliFiltered.load(subject=2, session="post")
    assert (again.oid, again.record.call, again.record.params) == (before.oid, before.record.call,
                                                                    before.record.params)
    assert again.version == before.version + 1
    assert "is current" in ok(run(built, "why", "CliFiltered", "--subject", "2", "--session", "post"))
    data = json.loads(ok(run(built, "undelete", "CliFiltered", "--subject", "2", "--json")))
    assert (data["back"], len(data["already_back"]), data["taken"]) == ([], 1, [])  # brought back once
    out = ok(run(built, "undelete", "CliFiltered", "--subject", "2", "--session", "post"))
    assert out.startswith("0 record(s) back; 1 back already (brought back or saved again since the delete")
    result = run(built, "undelete", "CliFiltered", "--subject", "9")
    assert result.exit_code != 0 and "no deleted record matching subject=9" in result.output


# -- gc, fsck, sql -----------------------------------------------------------------------
def test_gc_reports_objects_and_bytes(built):
    orphan = built.db.store.put_value(np.arange(1000.0))
    size = built.db.store.size_of(orphan)
    out = ok(run(built, "gc", "--dry-run", "--prune=now"))
    assert f"would free {size} bytes" in out and "would delete 1 objects" in out
    assert built.db.store.contains(orphan)
    kept = json.loads(ok(run(built, "gc", "--json")))
    assert kept["objects_deleted"] == 0 and kept["objects_kept_by_grace"] == 1
    stats = json.loads(ok(run(built, "gc", "--prune", "now", "--json")))
    assert stats["objects_deleted"] == 1 and stats["bytes_freed"] == size
    assert not built.db.store.contains(orphan)
    result = run(built, "gc", "--prune", "yesterday")
    assert result.exit_code == 2 and "N.UNIT.ago" in result.output


def test_fsck_clean_project(built):
    out = ok(run(built, "fsck"))
    assert out.strip().endswith("ok")
    report = json.loads(ok(run(built, "fsck", "--reindex", "--json")))
    assert report["ok"] is True and report["reindexed"] > 0


def test_sql_prints_a_table_and_refuses_writes(built):
    out = ok(
        run(built, "sql", "SELECT subject, session, value FROM CliPeak ORDER BY subject, session")
    )
    assert_fits(out)
    assert out.splitlines()[0].split() == ["subject", "session", "value"] and "(4 rows)" in out
    rows = json.loads(
        ok(run(built, "sql", "SELECT count(*) AS n FROM refs WHERE var = 'CliRaw'", "--json"))
    )
    assert rows == [{"n": 7}]
    result = run(built, "sql", "DELETE FROM refs")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "read-only" in result.stderr


def test_sql_says_an_empty_query_is_empty(built):
    # '', ';' and a comment alone ran nothing, and reading the missing result raised an
    # AttributeError ('NoneType' object has no attribute 'fetch_arrow_table')
    for query in ("", ";", "-- just a comment"):
        result = run(built, "sql", "--", query)
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
        assert "is empty" in result.stderr and "SELECT" in result.stderr
        assert "AttributeError" not in result.stderr


def test_sql_shows_each_statements_result_in_order(built):
    """`SELECT 1; SELECT 2` printed only the last statement's result (DuckDB returns that one):
    each is printed, in order, as the DuckDB CLI does; --json gives a list of each one's rows;
    a failing statement is named."""
    script = "SELECT 1 AS a; SELECT count(*) AS n FROM refs WHERE var = 'CliRaw'"
    out = ok(run(built, "sql", script))
    assert out.split("\n\n")[0].splitlines() == ["a", "-", "1", "(1 rows)"]
    assert out.split("\n\n")[1].splitlines() == ["n", "-", "7", "(1 rows)"]
    assert json.loads(ok(run(built, "sql", script, "--json"))) == [[{"a": 1}], [{"n": 7}]]
    assert json.loads(ok(run(built, "sql", "SELECT 1 AS a;", "--json"))) == [{"a": 1}]  # one: its rows
    result = run(built, "sql", "SELECT 1 AS a; SELECT nope FROM CliRaw")
    assert result.exit_code == 2 and "statement 2 of 2" in result.stderr and "nope" in result.stderr


def test_sql_prints_the_first_rows_of_a_long_result_unless_all(built, monkeypatch):
    """`SELECT * FROM EMG` at 300k rows printed all of them (23 s, 1.1 GB): the first few
    now, as the DuckDB CLI does, and how many there are; `--all` and `--json` give every row."""
    from scistack.cli import render

    monkeypatch.setattr(render, "SQL_ROWS", 3)
    query = "SELECT version, subject, session FROM CliRaw_all ORDER BY subject, session, version"
    out = ok(run(built, "sql", query))
    assert [line.split()[:2] for line in out.splitlines()[2:5]] == [["1", "1"], ["1", "1"], ["2", "1"]]
    assert out.splitlines()[5:] == ["(7 rows; the first 3 shown: --all prints every one)"]
    every = ok(run(built, "sql", query, "--all"))
    assert len(every.splitlines()) == 2 + 7 + 1 and every.splitlines()[-1] == "(7 rows)"
    assert len(json.loads(ok(run(built, "sql", query, "--json")))) == 7


def test_sql_shows_nan_apart_from_null(project, tmp_path):
    """A NaN value and a NULL (here the missing side of a LEFT JOIN) were both printed blank:
    pandas holds both as NaN in a float column. NaN is printed `NaN`, NULL stays blank; JSON
    has no NaN, so --json gives null for both."""
    CliPeak.save(float("nan"), subject=1, session="pre")
    CliPeak.save(2.5, subject=2, session="pre")
    CliRaw.save(3.0, subject=2, session="pre")
    project.sync()
    query = ("SELECT p.subject, p.value AS peak, r.value AS raw FROM CliPeak p "
             "LEFT JOIN CliRaw r USING (subject, session) ORDER BY p.subject")
    out = ok(CliRunner().invoke(main, ["--db", str(tmp_path / "gait.duckdb"), "sql", query]))
    lines = out.splitlines()
    assert lines[0].split() == ["subject", "peak", "raw"]
    assert lines[2].split() == ["1", "NaN"]  # raw is NULL: blank
    assert lines[3].split() == ["2", "2.5", "3.0"]
    ints = ok(CliRunner().invoke(main, ["--db", str(tmp_path / "gait.duckdb"), "sql",
                                        "SELECT r.subject FROM CliPeak p LEFT JOIN CliRaw r USING (subject, session) "
                                        "ORDER BY p.subject"]))
    assert [line.strip() for line in ints.splitlines()[2:4]] == ["", "2"]  # an int column with a NULL: not 2.0
    rows = json.loads(ok(CliRunner().invoke(
        main, ["--db", str(tmp_path / "gait.duckdb"), "sql", query, "--json"])))
    assert rows[0] == {"subject": 1, "peak": None, "raw": None}


def test_sql_prints_intervals_and_lists_of_times_as_duckdb_does(project, tmp_path):
    """An INTERVAL was printed `MonthDayNano(months=0, days=0, nanoseconds=90000000000)` and a
    TIMESTAMP[] `[datetime.datetime(2024, 1, 1, 0, 0), None]`."""
    CliPeak.save(np.timedelta64(90, "s"), subject=1, session="pre")
    CliRaw.save(np.array(["2024-01-01T00:00", "NaT"], dtype="datetime64[m]"), subject=1, session="pre")
    project.sync()

    def cells(query: str) -> list[str]:
        out = ok(CliRunner().invoke(main, ["--db", str(tmp_path / "gait.duckdb"), "sql", query]))
        return [line.rstrip() for line in out.splitlines()[2:-1]]

    assert cells("SELECT value FROM CliPeak") == ["00:01:30"]
    assert cells("SELECT value FROM CliRaw") == ["[2024-01-01 00:00:00, NULL]"]
    intervals = ("(VALUES (to_seconds(-90)), (to_days(1) + to_hours(2)), (to_months(14)), (to_months(-13)), "
                 "(to_microseconds(1500)), (to_days(-2) + to_hours(3)), (to_seconds(0)), (to_hours(26)), "
                 "(to_months(1) + to_days(-1) + to_microseconds(-1500000)), (to_microseconds(-1))) t(i)")
    assert cells(f"SELECT i FROM {intervals}") == cells(f"SELECT CAST(i AS VARCHAR) FROM {intervals}")
    assert cells("SELECT [to_days(1), NULL] AS l") == ["[1 day, NULL]"]


def test_sql_json_keeps_an_int_column_with_a_null_exact(project, tmp_path):
    """pandas made an int column holding a NULL floats: 2**53 + 1 came out as 2**53 (a float)."""
    CliPeak.save(2**53 + 1, subject=1, session="pre")
    CliPeak.save(5, subject=2, session="pre")
    project.sync()
    query = "SELECT subject, CASE WHEN subject = 1 THEN value END AS big FROM CliPeak ORDER BY subject"
    rows = json.loads(ok(CliRunner().invoke(
        main, ["--db", str(tmp_path / "gait.duckdb"), "sql", query, "--json"])))
    assert rows == [{"subject": 1, "big": 2**53 + 1}, {"subject": 2, "big": None}]
    assert isinstance(rows[0]["big"], int)


# -- errors, discovery, parsing ----------------------------------------------------------
def test_errors_are_one_line_and_debug_shows_the_traceback(built):
    result = run(built, "log", "NoSuchVariable")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: NoSuchVariable has no saved values in this project")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    debug = CliRunner().invoke(main, ["--db", str(built.path), "--debug", "log", "NoSuchVariable"])
    assert debug.exit_code == 2 and "Traceback" in debug.stderr
    result = run(built, "log", "CliRaw", "stray")
    assert result.exit_code == 2 and "--key value" in result.output


def test_project_is_found_upward_and_missing_project_is_one_line(built, tmp_path, monkeypatch):
    sub = tmp_path / "analysis" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    out = CliRunner().invoke(main, ["ls"])
    assert out.exit_code == 0 and "CliRaw" in out.stdout
    out = CliRunner().invoke(main, ["--db", str(tmp_path), "ls"])
    assert out.exit_code == 0 and "CliRaw" in out.stdout
    out = CliRunner(env={"SCISTACK_DB": str(built.path)}).invoke(main, ["ls"])
    assert out.exit_code == 0 and "CliRaw" in out.stdout
    empty = tmp_path.parent / f"empty-{uuid.uuid4().hex[:6]}"
    empty.mkdir()
    monkeypatch.chdir(empty)
    result = CliRunner().invoke(main, ["ls"])
    assert result.exit_code == 2 and "no scistack project" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_address_parsing():
    assert parse_address(["--subject", "1", "--session=pre", "--speed", "1.5", "--ok", "true"]) == {
        "subject": 1,
        "session": "pre",
        "speed": 1.5,
        "ok": True,
    }
    assert parse_address(["--subject", "'1'", "--trial-type", '"2"']) == {
        "subject": "1",
        "trial_type": "2",
    }
    assert parse_address(["--subject", "1", "--subject", "2"]) == {"subject": [1, 2]}
    assert parse_address(["--subject", "1"], as_str=True) == {"subject": "1"}
    # `key=value`, as an address is written in a paper or a script's log
    assert parse_address(["subject=1", "trial-type=a=b", "--session", "pre"]) == {
        "subject": 1, "trial_type": "a=b", "session": "pre"}
    for wrong in (["1"], ["=1"], ["-s", "1"], ["1x=2"]):
        with pytest.raises(AddressError, match="--key value or key=value"):
            parse_address(wrong)
    assert convert("-3") == -3 and convert("1e3") == 1000.0 and convert("pre") == "pre"
    # a number written with leading zeros is text, as PathInput discovers a folder "03" (it
    # had become 3: `scistack why Force --subject 03` found nothing)
    assert convert("03") == "03" and convert("007") == "007" and convert("+3") == 3 and convert("0") == 0


def test_help_lists_every_command():
    out = CliRunner().invoke(main, ["--help"]).stdout
    for command in ("ls", "log", "show", "status", "why", "rm", "gc", "fsck", "sql"):
        assert f"  {command} " in out
    assert "--subject 1" in CliRunner().invoke(main, ["log", "--help"]).stdout


# -- the installed script ----------------------------------------------------------------
def test_installed_console_script_runs(built, python_env):
    script = Path(sys.executable).with_name("scistack")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "scistack"]
    built.db.sync()
    done = subprocess.run(
        [*command, "--db", str(built.path), "ls"],
        capture_output=True,
        text=True,
        env=python_env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "CliRaw" in done.stdout and "VARIABLE" in done.stdout
    done = subprocess.run(
        [*command, "--db", str(built.path), "log", "Nope"],
        capture_output=True,
        text=True,
        env=python_env,
        timeout=120,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_commands_open_and_close_the_project_themselves(built, tmp_path, monkeypatch):
    built.db.close()  # no current database: every command opens (and closes) its own
    for args in (
        ["ls"],
        ["status"],
        ["log", "CliRaw", "--subject", "2"],
        ["fsck"],
        ["gc", "--dry-run"],
    ):
        ok(run(built, *args))
    monkeypatch.chdir(tmp_path)
    assert "CliRaw" in ok(CliRunner().invoke(main, ["ls"]))


def test_init_creates_a_laptop_project_and_refuses_half_a_lab(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCISTACK_DB", raising=False)
    runner = CliRunner()
    made = runner.invoke(main, ["init", "gait.duckdb", "--keys", "subject, session"])
    assert made.exit_code == 0, made.output
    assert "schema keys subject, session" in made.output
    config = json.loads((tmp_path / ".scistack" / "config.json").read_text())
    assert config["schema_keys"] == ["subject", "session"] and "shared" not in config
    # (--shared alone joins a lab project with the objects URL it records; --objects alone is half)
    half = runner.invoke(main, ["init", "other/x.duckdb", "--keys", "subject", "--objects", "s3://bucket/gait"])
    assert half.exit_code == 2 and "shared=" in half.output, half.output
    assert not (tmp_path / "other" / ".scistack").exists()
    # no --keys for a new project: the command to give, not the Python call
    bare = runner.invoke(main, ["init", "new/new.duckdb"])
    assert bare.exit_code == 2 and "`scistack init new/new.duckdb --keys subject,session`" in bare.output, bare.output
    assert "configure_database" not in bare.output


def test_log_prints_the_newest_versions_unless_all(built, monkeypatch):
    """`log EMG` at 300k addresses printed 1.5M lines: the newest few now (with a hint when
    there are older ones); `-n`, `--all` and `--json` (a script's) say otherwise."""
    import scistack.cli as cli

    def values(out: str) -> int:
        return sum(line.startswith("value ") for line in out.splitlines())

    monkeypatch.setattr(cli, "PROJECT_LOG", 3)
    out = ok(run(built, "log", "CliRaw"))
    assert values(out) == 3 and out.splitlines()[-1] == "... older versions: `-n N` shows N, `--all` every one"
    assert values(ok(run(built, "log", "CliRaw", "--all"))) == 7
    out = ok(run(built, "log", "CliRaw", "-n", "5"))
    assert values(out) == 5 and "older versions" not in out
    assert len(json.loads(ok(run(built, "log", "CliRaw", "--json")))) == 7
    out = ok(run(built, "log", "CliRaw", "subject=1", "session=pre"))  # 2 versions: all of them
    assert values(out) == 2 and "older versions" not in out
    assert values(ok(run(built, "log"))) == 3  # the project's log, as before


# -- runs --------------------------------------------------------------------------------
def test_runs_of_a_function_with_none_names_the_functions_that_ran(built):
    """`runs --function nope` said "no for_each runs yet" in a project full of runs."""
    result = run(built, "runs", "--function", "nope")
    assert result.exit_code == 2 and "no for_each run of 'nope'; the runs are of " in result.stderr
    assert "peak" in result.stderr


def test_a_runs_counts_read_as_the_for_each_summary_line(built):
    """`scistack runs RUN_ID` said "0 cached, 2 failed, 0 missing, 4 ran" (the stored record's
    key order) where for_each's summary says "4 ran, 0 cached, 0 missing, 2 failed"."""
    run_id = json.loads(ok(run(built, "runs", "--json")))[0]["run_id"]  # newest: peak (it failed twice)
    summary = ok(run(built, "runs", run_id[:8])).splitlines()[1]
    assert re.search(r"UTC: \d+ ran, \d+ cached, \d+ missing, [1-9]\d* failed in ", summary), summary
    listed = ok(run(built, "runs")).splitlines()
    assert any(re.search(r"\d+ ran, [1-9]\d* failed", line) for line in listed), listed


def test_a_runs_combinations_are_cut_short_unless_all(built, monkeypatch):
    """A run of 100k combinations printed 100k lines: the first few now (failures first,
    with their tracebacks), and how many more there are; `--all` lists every one."""
    from scistack.cli import render

    run_id = json.loads(ok(run(built, "runs", "--json")))[0]["run_id"]  # newest: peak
    monkeypatch.setattr(render, "RUN_LINES", 3)
    out = ok(run(built, "runs", run_id[:8]))
    combos = [line for line in out.splitlines() if line.startswith(("  failed ", "  ran "))]
    assert [c.split()[0] for c in combos] == ["failed", "failed", "ran"]
    assert "ValueError: signal too short" in out
    assert out.splitlines()[-1] == f"  ... and 3 more combinations: `scistack runs {run_id[:12]} --all` lists every one"
    monkeypatch.setattr(render, "RUN_LINES", 1)
    assert ok(run(built, "runs", run_id[:8])).splitlines()[-1].startswith("  ... and 5 more combinations (1 failed): ")
    every = ok(run(built, "runs", run_id[:8], "--all"))
    assert len([line for line in every.splitlines() if line.startswith(("  failed ", "  ran "))]) == 6
    assert "more combinations" not in every
    assert len(json.loads(ok(run(built, "runs", run_id[:8], "--json")))["items"]) == 6  # scripts get all


# -- reports import the pipeline's modules ---------------------------------------------------
_PIPELINE_SCRIPT = """
from pathlib import Path
import numpy as np
from scistack import configure_database, BaseVariable, for_each, lineage_fcn
db = configure_database(Path(__file__).parent / "m.duckdb", ["subject"])
class ModA(BaseVariable): pass
class ModB(BaseVariable): pass
@lineage_fcn
def double(x):
    return np.asarray(x) * 2
ModA.save(np.random.rand(3), subject=1)
for_each(double, inputs={"x": ModA}, outputs=[ModB], subject=[1])
"""


def _scistack(folder, env, *args):
    """The CLI run from another folder (`python -m` puts its own folder first on the path)."""
    elsewhere = folder / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "scistack", "--db", str(folder / "m.duckdb"), *args],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)


def _pipeline_module(tmp_path, python_env, name="analysis", text=_PIPELINE_SCRIPT):
    (tmp_path / f"{name}.py").write_text(text)
    subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path, env=python_env, check=True, timeout=120)
    return tmp_path / ".scistack" / "refs.log"


def test_a_report_importing_a_pipeline_module_never_runs_its_steps(tmp_path, python_env):
    """`status` and `why` import the module that defined a function to compare its code, so
    its top level ran: a module that saves and runs `for_each` when imported (a notebook's
    `from analysis import double`) got a new value and a new run from every `status`. Its
    steps are refused now (the project stays as it was) and the report says why it cannot tell."""
    journal = _pipeline_module(tmp_path, python_env)
    before = journal.read_bytes()
    status = _scistack(tmp_path, python_env, "status")
    told = _scistack(tmp_path, python_env, "why", "ModB", "--subject", "1")
    assert status.returncode == 0 and told.returncode == 0, (status.stderr, told.stderr)
    assert journal.read_bytes() == before
    assert "ran" not in status.stderr and "__name__" in " ".join(told.stdout.split())


@pytest.mark.parametrize("broken, said", [
    ("def double(x)\n    return x\n", "SyntaxError at line 1"),
    ("import sys\nsys.exit(3)\n", "SystemExit"),
    ("raise RuntimeError('half edited')\n", "RuntimeError: half edited"),
])
def test_a_report_on_a_module_that_fails_to_import_says_why_for_its_values_only(tmp_path, python_env, broken, said):
    """A module mid-edit (a syntax error), one that exits or raises at import: `status` had
    ended with that error (or silently, with the module's exit code). Its values are `?`, with
    the reason; the rest of the report stands."""
    _pipeline_module(tmp_path, python_env)
    (tmp_path / "analysis.py").write_text(broken)
    status = _scistack(tmp_path, python_env, "status")
    told = _scistack(tmp_path, python_env, "why", "ModB", "--subject", "1")
    assert status.returncode == 0 and told.returncode == 0, (status.stderr, told.stderr)
    assert "ModA: 1 done" in status.stdout and "ModB: 1 unknown" in status.stdout
    assert said in " ".join(told.stdout.split())


def test_a_pipeline_module_named_like_a_standard_module_is_the_projects(tmp_path, python_env):
    """The project folder came last on the path, so the CLI's `import test` found the standard
    library's package: a value made by `test.double` was `?` forever, even after an edit."""
    _pipeline_module(tmp_path, python_env, "test", _PIPELINE_SCRIPT.split("ModA.save")[0]
                     + "ModA.save(np.arange(3.0), subject=1)\nfor_each(double, inputs={'x': ModA}, "
                     "outputs=[ModB], subject=[1])\n")
    (tmp_path / "test.py").write_text("import numpy as np\nfrom scistack import lineage_fcn\n"
                                      "@lineage_fcn\ndef double(x):\n    return np.asarray(x) * 3\n")
    status = _scistack(tmp_path, python_env, "status")
    assert status.returncode == 0 and "ModB: 1 stale" in status.stdout, status.stdout


_UNNAMED_STEPS = """
import numpy as np
from scistack import lineage_fcn
from deco import logged

GAIN = 2


def make(k):
    @lineage_fcn
    def scaled(x):
        return np.asarray(x) * k
    return scaled


scaled = make(GAIN)
shifted = lambda x: np.asarray(x) + 1


@logged
def halved(x):
    return np.asarray(x) / 2
"""

_UNNAMED_RUN = """
from pathlib import Path
import numpy as np
from scistack import configure_database, BaseVariable, for_each
import steps, twins
db = configure_database(Path(__file__).parent / "m.duckdb", ["subject"])
class ModA(BaseVariable): pass
class Scaled(BaseVariable): pass
class Shifted(BaseVariable): pass
class Halved(BaseVariable): pass
class Twin(BaseVariable): pass
ModA.save(np.arange(3.0), subject=1)
for fn, out in ((steps.scaled, Scaled), (steps.shifted, Shifted), (steps.halved, Halved),
                (twins.minus_one, Twin)):
    for_each(fn, inputs={"x": ModA}, outputs=[out], subject=[1])
"""


def test_a_closure_or_lambda_one_name_holds_is_judged_and_the_others_say_what_to_do(tmp_path, python_env):
    """A function made inside another (`scaled = make(2)`) or a lambda bound to a module name
    has no name to import it by: its values were `?` forever, "not defined in this process;
    import it", although its module imports. The one global holding it is found now; a
    decorator's wrapper without functools.wraps, or one of several lambdas, is `?` saying why
    and what to do."""
    (tmp_path / "steps.py").write_text(_UNNAMED_STEPS)
    (tmp_path / "deco.py").write_text("def logged(fn):\n    def wrapper(x):\n        return fn(x)\n"
                                      "    return wrapper\n")
    (tmp_path / "twins.py").write_text("minus_one = lambda x: x - 1\nminus_two = lambda x: x - 2\n")
    (tmp_path / "run.py").write_text(_UNNAMED_RUN)
    subprocess.run([sys.executable, "run.py"], cwd=tmp_path, env=python_env, check=True, timeout=120)

    def told(variable: str) -> str:
        done = _scistack(tmp_path, python_env, "why", variable, "--subject", "1")
        assert done.returncode == 0, done.stderr
        return " ".join(done.stdout.split())

    status = _scistack(tmp_path, python_env, "status").stdout
    assert "Scaled: 1 done" in status and "Shifted: 1 done" in status, status
    assert "Halved: 1 unknown" in status and "Twin: 1 unknown" in status, status
    assert "Scaled subject=1 is current" in told("Scaled")
    assert "was made inside logged() (a closure, or a decorator's wrapper without " \
           "functools.wraps)" in told("Halved") and "@functools.wraps(fn)" in told("Halved")
    assert "2 functions of twins are named <lambda> (minus_one, minus_two): which one made it " \
           "cannot be told by its name" in told("Twin")
    (tmp_path / "steps.py").write_text(_UNNAMED_STEPS.replace("GAIN = 2", "GAIN = 3")
                                       .replace("+ 1", "+ 5"))
    status = _scistack(tmp_path, python_env, "status").stdout
    assert "Scaled: 1 stale" in status and "Shifted: 1 stale" in status, status
    assert "2 -> 3" in told("Scaled")


class GraphForce(BaseVariable):
    pass


class GraphForce2(BaseVariable):
    pass


class GraphForce6(BaseVariable):
    pass


@lineage_fcn
def graph_scale(signal, k):
    return np.asarray(signal) * k


def test_graph_draws_one_function_used_twice_as_two_steps_not_a_cycle(project):
    """`scale(Force) -> Force2`, then `scale(Force2) -> Force6`: one node per function had
    Force2 both in and out of it (a cycle, `scale(Force, Force2) -> Force2, Force6`)."""
    GraphForce.save(np.arange(3.0), subject=1, session="pre")
    for_each(graph_scale, inputs={"signal": GraphForce, "k": 2}, outputs=[GraphForce2], subject=[1], session=["pre"])
    for_each(graph_scale, inputs={"signal": GraphForce2, "k": 3}, outputs=[GraphForce6], subject=[1], session=["pre"])
    result = CliRunner().invoke(main, ["--db", str(project.path), "graph", "--json"])
    assert result.exit_code == 0, result.output
    edges = {tuple(e) for e in json.loads(result.stdout)["edges"]}
    assert edges == {("var:GraphForce", "fn:graph_scale(GraphForce)"), ("fn:graph_scale(GraphForce)", "var:GraphForce2"),
                     ("var:GraphForce2", "fn:graph_scale(GraphForce2)"),
                     ("fn:graph_scale(GraphForce2)", "var:GraphForce6")}
    text = CliRunner().invoke(main, ["--db", str(project.path), "graph"]).stdout
    assert "graph_scale(GraphForce2) -> GraphForce6" in text and "GraphForce, GraphForce2" not in text


def test_show_of_an_address_with_variants_names_them_and_the_way(project):
    """`show Raw --subject 1 --session pre` with a plain value and a `note="recal"` one there
    asked for the full address (given) and never named `--note`."""
    GraphForce.save(np.arange(3.0), subject=1, session="pre")
    GraphForce.save(np.arange(3.0) * 7, subject=1, session="pre", note="recal")
    result = CliRunner().invoke(main, ["--db", str(project.path), "show", "GraphForce", "--subject", "1",
                                       "--session", "pre"])
    assert result.exit_code == 2 and "--note recal -> version 2" in result.stderr
    assert "2 variants at subject=1, session='pre'" in result.stderr  # schema order (had been sorted)
    picked = CliRunner().invoke(main, ["--db", str(project.path), "show", "GraphForce", "--subject", "1",
                                       "--session", "pre", "--note", "recal"])
    assert picked.exit_code == 0 and "note=recal version 2" in picked.stdout


def test_why_of_an_address_with_variants_names_the_way_on_the_command_line(project):
    """`scistack why` said to pick one with `load(..., note='recal')` (Python) where `show`
    names `--note recal` and `--version N`."""
    GraphForce.save(np.arange(3.0), subject=1, session="pre")
    GraphForce.save(np.arange(3.0) * 7, subject=1, session="pre", note="recal")
    result = CliRunner().invoke(main, ["--db", str(project.path), "why", "GraphForce", "--subject", "1",
                                       "--session", "pre"])
    assert result.exit_code == 2 and "--note recal -> version 2" in result.stderr, result.output
    assert "--version N" in result.stderr and "load(" not in result.stderr
    assert "2 variants at subject=1, session='pre'" in result.stderr
    picked = CliRunner().invoke(main, ["--db", str(project.path), "why", "GraphForce", "--subject", "1",
                                       "--session", "pre", "--note", "recal"])
    assert picked.exit_code == 0 and "is raw" in picked.stdout, picked.output


def _read_csv(path):
    return np.loadtxt(path, delimiter=",")


def test_log_names_the_file_a_path_input_read(project, tmp_path):
    """A `PathInput` was printed as `path=<constant>@3b1dbec58445`, an oid of content that is
    never stored (`show` of it: not in the object store); the file it read is named now."""
    from scistack import PathInput

    (tmp_path / "raw" / "1").mkdir(parents=True)
    (tmp_path / "raw" / "1" / "pre.csv").write_text("1,2\n")
    for_each(lineage_fcn(_read_csv), inputs={"path": PathInput("{subject}/{session}.csv", root=str(tmp_path / "raw"))},
             outputs=[GraphForce], subject=[1], session=["pre"], progress=False)
    for extra in ([], ["--graph"]):
        result = CliRunner().invoke(main, ["--db", str(project.path), "log", "GraphForce", "--subject", "1",
                                           "--session", "pre", *extra])
        assert result.exit_code == 0 and "path" in result.stdout and "<constant>" not in result.stdout
        assert ("path=file " if not extra else "path: file ") in result.stdout


def test_the_code_log_prints_is_one_show_can_print(built):
    """`log` printed the function's identity after "code": a digest, not an object, so `show`
    of it said "not in the object store". It is the code object now: `show` prints its source."""
    out = ok(run(built, "log", "CliFiltered", "--subject", "1", "-n", "1"))
    code = next(line for line in out.splitlines() if line.startswith("Function:")).split("code ")[1].split()[0]
    shown = ok(run(built, "show", code))
    assert "def bandpass" in shown


def test_tables_line_up_cjk_text_by_its_width_on_screen(project):
    """Cells were padded by `len`: a CJK address value (two columns a character) pushed the
    rest of its row right in `status`, `ls` and `runs`."""
    import unicodedata

    def columns(text):
        return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
                   for c in text)

    GraphForce.save(1.0, subject="abcd", session="pre")
    GraphForce.save(2.0, subject="北京", session="pre")
    GraphForce.save(3.0, subject="e\u0301te", session="pre")  # a combining accent takes no column
    out = ok(CliRunner().invoke(main, ["--db", str(project.path), "status", "--all"]))
    rows = [line for line in out.splitlines() if "pre" in line and line.endswith("done")]
    assert len(rows) == 3 and len({columns(r[:r.index("done")]) for r in rows}) == 1, out
    from scistack.cli.render import table

    lines = table(["name", "n"], [["北京北京北京北京", 1], ["ab", 2]], width=12).splitlines()
    assert [columns(line[:line.index(str(n))]) for line, n in zip(lines[2:], (1, 2))] == [11, 11], lines
    assert max(columns(line) for line in lines) <= 12


def test_runs_never_cuts_the_counts():
    """`scistack runs` cut the counts at 80 columns ("5 cached, 1 missing, 2 r…")."""
    from types import SimpleNamespace as Run

    from scistack.cli.render import render_runs

    counts = {"cached": 5, "missing": 1, "ran": 2, "failed": 3, "skipped": 4}
    text = render_runs([Run(run_id="1a2b3c4d5e6f7788", t="2026-12-06T23:00:00.000001Z",
                            function="a_rather_long_function_name", counts=counts, duration=0.12)])
    assert "2 ran, 5 cached, 1 missing, 3 failed, 4 skipped  0.12 s" in text, text  # for_each's order
    assert "2026-12-06 23:00:00" in text


def test_db_or_debug_after_the_command_is_a_usage_error_naming_where_it_goes(built):
    # `scistack log X --db PATH` read --db as an address key and crashed with a TypeError.
    for extra in (["--db", str(built.path)], [f"--db={built.path}"], ["--debug"]):
        result = run(built, "log", "CliFiltered", *extra)
        assert result.exit_code == 2, result.output
        assert "give it before the command" in result.output
        assert "TypeError" not in result.output
    assert "version" in ok(run(built, "log", "CliFiltered", "--subject", "1")).lower()
