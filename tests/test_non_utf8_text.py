"""Text that is not UTF-8: a str holding a lone surrogate, as os.listdir, glob and PathInput read
a file name with a byte that is not UTF-8 ('caf\\udce9.csv' for a Latin-1 'café.csv').

JSON escapes such a str, but no UTF-8 file or database takes it: a save journalled it and then
failed, and from then on every process failed to open the project. Saves refuse it before
anything is written; a journal that already holds it still opens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from scistack import BaseVariable, InputFileError, InvalidMetadataError, PathInput, ScistackError, for_each
from scistack.errors import UnsupportedValueError
from tests.helpers import journal_size

NAME = "caf\udce9.csv"  # os.fsdecode(b"caf\xe9.csv")


class Scan(BaseVariable):
    pass


@pytest.mark.parametrize("case, error", [
    ("value", UnsupportedValueError),
    ("in_list", UnsupportedValueError),
    ("in_tuple", UnsupportedValueError),
    ("dict_value", UnsupportedValueError),
    ("dict_key", UnsupportedValueError),
    ("numpy_str", UnsupportedValueError),
    ("str_array", UnsupportedValueError),
    ("str_array_2d", UnsupportedValueError),
    ("str_array_0d", UnsupportedValueError),
    ("object_column", UnsupportedValueError),
    ("label", InvalidMetadataError),
    ("version_key", InvalidMetadataError),
])
def test_a_save_of_text_that_is_not_utf8_is_refused_naming_it_and_the_fix_and_writes_nothing(project, case, error):
    Scan.save(1.0, subject=1, session="pre")
    before = journal_size(project)
    value, meta = 2.0, {"subject": 2, "session": "pre"}
    if case == "label":
        meta["subject"] = "caf\udce9"
    elif case == "version_key":
        meta["file"] = NAME
    else:
        value = {"value": NAME, "in_list": [NAME, "b"], "in_tuple": ("a", NAME), "dict_value": {"f": NAME},
                 "dict_key": {NAME: 1}, "numpy_str": np.str_(NAME), "str_array": np.array(["a.csv", NAME]),
                 "str_array_2d": np.array([["a", "b"], ["c", NAME]]), "str_array_0d": np.array(NAME),
                 "object_column": pd.DataFrame({"f": pd.Series(["a.csv", NAME], dtype=object)})}[case]
    with pytest.raises(error) as caught:
        Scan.save(value, **meta)
    message = str(caught.value)
    assert "caf\\udce9" in message and "lone surrogate" in message, message
    assert "encode('utf-8', 'surrogateescape').decode('latin-1')" in message, message
    assert journal_size(project) == before
    project.close()
    # the project opens, and its SQL views are up to date
    code = ("import scistack; db = scistack.configure_database('gait.duckdb', ['subject', 'session'])\n"
            "print(db.sql('SELECT count(*) AS n FROM Scan')['n'].tolist())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0 and done.stdout.split() == ["[1]"], done.stdout + done.stderr
    assert "not brought up to date" not in done.stderr, done.stderr


def test_a_str_array_is_refused_naming_its_first_such_item_in_c_order_whatever_its_layout():
    """npy.refuse_lone_surrogates is public (MATLAB's staged arrays are checked with it, Fortran
    ordered as decoded): a Fortran-ordered, strided or big-endian array names the same item."""
    from scistack.address import has_surrogate_escape
    from scistack.objects.npy import refuse_lone_surrogates

    grid = np.array([["a", "b\udce8"], ["c\udce9", "d"]])
    for arr in (grid, np.asfortranarray(grid), grid.astype(">U2"), grid.T.copy().T):
        with pytest.raises(UnsupportedValueError, match=r"b\\udce8"):
            refuse_lone_surrogates(arr)
    refuse_lone_surrogates(np.asfortranarray(np.array([["a", "é"], ["c", "d"]])).astype(">U1"))
    refuse_lone_surrogates(np.array([], dtype="U3"))
    assert has_surrogate_escape(b'"caf\\udce9"') and has_surrogate_escape('"caf\\uDCE9"')
    assert not has_surrogate_escape('"caf\u00e9"') and not has_surrogate_escape(b"plain")


def test_valid_text_beyond_ascii_is_saved_as_before(project):
    Scan.save({"f": "café.csv", "g": "😀"}, subject=1, session="pré", note="naïve 😀")
    Scan.save(np.array(["café", "😀"]), subject=2, session="pre")
    assert Scan.load(subject=1, session="pré").data == {"f": "café.csv", "g": "😀"}
    assert Scan.load(subject=2, session="pre").data.tolist() == ["café", "😀"]


def test_a_journal_that_holds_such_text_still_opens(tmp_path, monkeypatch):
    """Lines journalled before saves refused it (a summary, a version key, a label): the fold,
    the SQL views, `ls` and `fsck` read each lone surrogate as its escape, and saves go on."""
    monkeypatch.chdir(tmp_path)
    code = ("import scistack; db = scistack.configure_database('p.duckdb', ['subject'])\n"
            "class Scan(scistack.BaseVariable): pass\n")
    run = lambda *args: subprocess.run([sys.executable, *args], capture_output=True, text=True,  # noqa: E731
                                       timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    # values saved before, holding such text (in a list, a dict, a str array): stored as then
    done = run("-c", code + "Scan.save(1.0, subject=1)\n"
               "from scistack.objects.npy import npy_header; import numpy as np\n"
               "print(db.store.put('json', b'[\"caf\\\\udce9.csv\", \"b\"]'))\n"
               "print(db.store.put('json', b'{\"f\": \"caf\\\\udce9.csv\"}'))\n"
               "print(db.store.put('npy', npy_header('<U8', (1,)) + np.array([%r]).tobytes()))" % NAME)
    assert done.returncode == 0, done.stderr
    in_list, in_dict, in_array = done.stdout.split()
    log = tmp_path / ".scistack" / "refs.log"
    entry = json.loads(log.read_text().splitlines()[0])
    lines = [json.dumps({**entry, "addr": addr, "vkeys": vkeys, "summary": summary, **more}, sort_keys=True,
                        separators=(",", ":"))
             for addr, vkeys, summary, more in [
                 ({"subject": 2}, {}, NAME, {}), ({"subject": 3}, {"file": NAME}, "1.0", {}),
                 ({"subject": "caf\udce9"}, {}, "1.0", {}), ({"subject": 6}, {}, "list[2]", {"oid": in_list}),
                 ({"subject": 7}, {}, "dict[1]", {"oid": in_dict}),
                 ({"subject": 8}, {}, "<U8[1]", {"oid": in_array, "kind": "npy"})]]
    assert "\\udce9" in lines[0]  # (as json writes it: an escape)
    with open(log, "a") as out:
        out.write("\n".join(lines) + "\n")
    done = run("-c", code + "Scan.save(5.0, subject=5)\n"
               "print(sorted((repr(r.metadata), r.record.summary) for r in Scan.load_all()))\n"
               "print(Scan.load(subject='caf\\\\udce9').data)\n"
               "print(sorted(map(str, db.sql('SELECT * FROM Scan')['subject'])))\n"
               "print(Scan.load(subject=6).data, Scan.load(subject=7).data, Scan.load(subject=8).data)")
    assert done.returncode == 0, done.stderr
    assert "not brought up to date" not in done.stderr, done.stderr
    shown, label, subjects, values = done.stdout.splitlines()
    assert shown == repr(sorted([("{'subject': 1}", "1.0"), ("{'subject': 2}", "caf\\udce9.csv"),
                                 ("{'subject': 3, 'file': 'caf\\\\udce9.csv'}", "1.0"),
                                 ("{'subject': 'caf\\\\udce9'}", "1.0"), ("{'subject': 5}", "5.0"),
                                 ("{'subject': 6}", "list[2]"), ("{'subject': 7}", "dict[1]"),
                                 ("{'subject': 8}", "<U8[1]")]))
    assert label == "1.0"
    assert subjects == repr(sorted(["1", "2", "3", "5", "6", "7", "8", "caf\\udce9"]))
    assert values == "['caf\\udce9.csv', 'b'] {'f': 'caf\\udce9.csv'} ['caf\\udce9.csv']"  # (as saved)
    for command in (["ls"], ["fsck"]):
        done = run("-m", "scistack", *command)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Scan" in done.stdout or "ok" in done.stdout, done.stdout


def test_a_path_input_over_a_file_name_that_is_not_utf8_is_refused_before_anything_runs(project, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "1.csv").write_text("1")
    with open(os.path.join(os.fsencode(raw), b"caf\xe9.csv"), "w") as out:  # a Latin-1 name
        out.write("2")
    calls = []

    def read(path):
        calls.append(path)
        return float(open(path).read())

    before = journal_size(project)
    with pytest.raises(InputFileError) as caught:
        for_each(read, inputs={"path": PathInput("{subject}.csv", root="raw/")}, outputs=[Scan],
                 subject=[], session=["pre"])
    message = str(caught.value)
    assert "'caf\\udce9.csv'" in message and "not UTF-8" in message and "os.rename" in message, message
    assert isinstance(caught.value, ScistackError)
    assert calls == [] and journal_size(project) == before


def test_a_duckdb_row_an_older_version_inlined_with_such_text_names_fsck_reindex(tmp_path, monkeypatch):
    """An older scistack inlined a dict holding a lone surrogate into DuckDB as JSON text with
    its escape; DuckDB's JSON refuses it, so every SELECT over that variable's value failed
    with "Malformed JSON ... invalid high surrogate" and the advice to use `scistack ls`.
    The error (a query's, or any other statement's) now names `scistack fsck --reindex`,
    which rebuilds the rows (such a value is shown by its summary) and the query works."""
    import duckdb
    from click.testing import CliRunner

    from scistack import QueryError, configure_database
    from scistack.cli import main
    from scistack.errors import IndexDamagedError

    monkeypatch.chdir(tmp_path)
    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    Scan.save({"f": "a.csv"}, subject=1)
    Scan.save({"f": "b.csv"}, subject=2)
    assert len(db.sql("SELECT * FROM Scan")) == 2
    db.close()
    with duckdb.connect(str(tmp_path / "p.duckdb")) as con:  # the row as the older version wrote it
        con.execute("UPDATE scistack.vals SET j = ? WHERE j = ?", ['{"f":"caf\\udce9.csv"}', '{"f":"a.csv"}'])
    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    try:
        with pytest.raises(QueryError) as caught:
            db.sql("SELECT * FROM Scan")
        assert "not UTF-8" in str(caught.value) and "`scistack fsck --reindex`" in str(caught.value), caught.value
        with pytest.raises(IndexDamagedError, match=r"not UTF-8.*`scistack fsck --reindex`"):
            with db.index._sql.connect() as con:
                con.execute("SELECT CAST(j AS JSON) FROM scistack.vals").fetchall()
        result = CliRunner().invoke(main, ["--db", str(tmp_path / "p.duckdb"), "fsck", "--reindex"])
        assert result.exit_code == 0, result.output
        assert sorted(db.sql("SELECT subject FROM Scan")["subject"]) == [1, 2]
        assert len(db.sql("SELECT * FROM Scan")) == 2
        assert Scan.load(subject=1).data == {"f": "a.csv"}
    finally:
        db.close()
