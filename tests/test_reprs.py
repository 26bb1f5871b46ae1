"""What a notebook and a terminal show: HTML tables for a variable, its versions, a run
report and a provenance record; metadata in schema order; short oids; no stray lines."""

from __future__ import annotations

import html

import numpy as np
from click.testing import CliRunner

from scistack import BaseVariable, for_each, lineage_fcn
from scistack.cli import main


class RpRaw(BaseVariable):
    pass


class RpBase(BaseVariable):
    pass


class RpOut(BaseVariable):
    pass


@lineage_fcn
def rp_minus(signal, baseline):
    return signal - baseline


def _saved(project):
    RpRaw.save(np.arange(4.0), subject=1, session="pre")
    RpBase.save(np.ones(4), subject=1, session="pre")
    return for_each(rp_minus, inputs={"signal": RpRaw, "baseline": RpBase}, outputs=[RpOut],
                    subject=[1, 2], session=["pre"], verbose=False)


def test_metadata_follows_the_schema_order(project):  # the schema is [subject, session]
    loaded = RpRaw.save(np.arange(3.0), subject=1, session="pre", note="x")
    assert list(RpRaw.load(subject=1, session="pre", note="x").metadata) == ["subject", "session", "note"]
    assert repr(loaded).startswith("RpRaw(subject=1, session='pre', note='x'")


def test_html_of_a_variable_versions_report_and_provenance(project):
    report = _saved(project)
    value = RpOut.load(subject=1, session="pre")
    page = value._repr_html_()
    assert "<table>" in page and "RpOut" in page and value.oid[:12] in page and value.oid not in page
    assert page.index("subject") < page.index("session")
    RpRaw.save(np.arange(5.0), subject=1, session="pre")
    versions = RpRaw.list_versions(subject=1, session="pre")
    assert [v.version for v in versions] == [1, 2]
    text = repr(versions)
    assert versions[0].oid[:12] in text and versions[0].oid not in text
    assert "subject=1, session='pre'" in text
    assert html.escape("subject=1, session='pre'") in versions._repr_html_()
    page = report._repr_html_()
    assert "1 ran" in page and "missing" in page and "signal, baseline" in page
    provenance = project.get_provenance(RpOut, subject=1, session="pre")
    assert provenance["function_name"] == "rp_minus"  # still a dict
    page = provenance._repr_html_()
    assert "input signal" in page and "rp_minus" in page


def test_html_escapes_and_cuts_what_it_shows(project):
    RpRaw.save("<script>alert(1)</script>" * 20, subject=1, session="<b>")
    page = RpRaw.load(subject=1, session="<b>")._repr_html_()
    assert "<script>" not in page and "<b>" not in page.replace("<b>RpRaw</b>", "")


def test_load_all_without_as_df_is_a_list(project):
    _saved(project)
    everything = RpRaw.load_all()
    assert isinstance(everything, list) and len(everything) == 1


def test_log_has_no_stray_colon_line(project):
    _saved(project)
    result = CliRunner().invoke(main, ["--db", str(project.root / "gait.duckdb"), "log", "RpOut"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert not any(line.startswith(":") for line in lines), result.stdout
    assert any("baseline=RpBase@" in line for line in lines)


def test_provenance_shows_its_inputs_addresses_in_schema_order(project):
    """The inputs' addresses were in alphabetical order (session before subject): a long
    session cut the subject off the cell."""
    session = "a-rather-long-session-label-" * 3
    RpRaw.save(np.arange(4.0), subject=1, session=session)
    RpBase.save(np.ones(4), subject=1, session=session)
    for_each(rp_minus, inputs={"signal": RpRaw, "baseline": RpBase}, outputs=[RpOut],
             subject=[1], session=[session], verbose=False)
    page = project.get_provenance(RpOut, subject=1, session=session)._repr_html_()
    assert html.escape(f"subject=1, session='{session[:10]}") in page
