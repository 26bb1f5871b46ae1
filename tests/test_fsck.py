"""`scistack fsck` finds corrupt and missing objects, refs to missing objects, dangling
calls and unreadable journal lines, and exits with 1 when it does."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from click.testing import CliRunner

from scistack.index.journal import Journal
from scistack import BaseVariable, configure_database, lineage_fcn
from scistack.errors import IndexDamagedError
from scistack.cli import main
from scistack.fsck import fsck, reindex
from scistack.index import utc_now
from tests.helpers import fold_before_key_values


class FsckRaw(BaseVariable):
    pass


class FsckOut(BaseVariable):
    pass


@lineage_fcn
def fsck_double(x):
    return x * 2


def build(project):
    FsckRaw.save(np.arange(100.0), subject=1, session="pre")
    FsckRaw.save({"a": np.arange(3), "b": "text"}, subject=2, session="pre")
    FsckOut.save(fsck_double(FsckRaw.load(subject=1, session="pre")), subject=1, session="pre")
    project.sync()


def cli(project, *args):
    return CliRunner().invoke(main, ["--db", str(project.path), "fsck", *args])


def writable(path):
    os.chmod(path, 0o644)  # objects are read-only
    return path


def test_clean_project_is_ok(project):
    build(project)
    report = fsck(project)
    assert report.ok and report.objects_checked == len(list(project.store.iter_oids()))
    result = cli(project)
    assert result.exit_code == 0 and result.stdout.strip().endswith("ok")


def test_look_alike_key_values_saved_before_they_were_refused_are_a_warning(tmp_path, monkeypatch):
    """A project saved before "1" beside 1 was refused (4d916b1) may hold both: fsck names
    the key, the values and their refs, and the way to keep one type (not damage: exit 0),
    from the fold as written then and as migrated in place from layout 17."""
    import scistack.database as database_module
    from scistack.index import Index

    monkeypatch.chdir(tmp_path)
    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    with monkeypatch.context() as before:  # (as test_export's project saved before the refusal)
        before.setattr(Index, "_check_key_value", lambda *args: None)
        FsckRaw.save(1.0, subject=1, session="pre")
        FsckRaw.save(2.0, subject=1, session="post")
        FsckRaw.save(2.5, subject=1, session="post")  # (a second version: one record, one ref)
        FsckOut.save(3.0, subject="1", session="pre")
        FsckRaw.save(4.0, subject=2, session=2.5)
        FsckOut.save(5.0, subject=2, session="2.5")
        FsckRaw.save(8.0, subject=4, session=True)
        FsckOut.save(9.0, subject=4, session="true")
        FsckRaw.save(6.0, subject=3, session="pre")  # a look-alike since deleted: nothing to say
        FsckOut.save(7.0, subject="3", session="pre")
        FsckOut.delete(subject="3")
    subject = ("schema key subject holds values of different types that the SQL views and where= both show "
               "as 1 (saved before such a save was refused): subject=1 (a number) in 2 refs of FsckRaw; "
               "subject='1' (text) in 1 ref of FsckOut. A query, a join or where=\"subject = '1'\" can return "
               "one's records for the other's; loads tell them apart (load(subject=1), load(subject='1')). To "
               "keep one type, delete the others' records (`scistack rm FsckOut --subject \"'1'\"`) and save "
               "or compute them again as subject=1")
    try:
        report = fsck(db)
        assert report.ok and len(report.warnings) == 3
        assert report.warnings[2].startswith(subject)
        assert "session=2.5 (a float) in 1 ref of FsckRaw; session='2.5' (text) in 1 ref of FsckOut" in report.warnings[0]
        assert "session=True (a bool) in 1 ref of FsckRaw; session='true' (text) in 1 ref of FsckOut" in report.warnings[1]
        assert "`scistack rm FsckOut --session \"'true'\"`" in report.warnings[1]
        result = CliRunner().invoke(main, ["--db", str(db.path), "fsck"])
        assert result.exit_code == 0 and f"\nwarning: {subject}" in result.stdout
        assert result.stdout.strip().endswith("ok")
    finally:
        db.close()
        database_module._current = None
    fold_before_key_values(tmp_path)
    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    try:
        assert fsck(db).warnings == report.warnings
    finally:
        db.close()
        database_module._current = None


def test_version_key_look_alikes_saved_before_they_were_refused_are_a_warning(tmp_path, monkeypatch):
    """A variable saved before note="1" beside note=1 was refused may hold both: fsck names
    the variable, the version key, the values with their records, and the way to keep one
    type (not damage: exit 0). Another variable's look-alike, and one since deleted, are fine."""
    import scistack.database as database_module
    from scistack.index import Index

    monkeypatch.chdir(tmp_path)
    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    with monkeypatch.context() as before:
        before.setattr(Index, "_check_vkey_value", lambda *args, **kwargs: None)
        FsckRaw.save(1.0, subject=1, session="pre", note=1)
        FsckRaw.save(1.5, subject=1, session="pre", note=1)  # (a second version: one record)
        FsckRaw.save(2.0, subject=2, session="pre", note=1)
        FsckRaw.save(3.0, subject=1, session="pre", note="1")
        FsckRaw.save(4.0, subject=1, session="pre", rep=True)
        FsckRaw.save(5.0, subject=1, session="pre", rep="true")
        FsckOut.save(6.0, subject=1, session="pre", note="1")  # another variable's column: fine
        FsckOut.save(7.0, subject=1, session="pre", gain=2.5)
        FsckOut.save(8.0, subject=1, session="pre", gain="2.5")
        FsckOut.delete(subject=1, gain="2.5")  # since deleted: nothing to say
    note = ("version key note of FsckRaw holds values of different types that its SQL views and where= both "
            "show as 1 (saved before such a save was refused): note=1 (a number) in 2 records; note='1' (text) "
            "in 1 record. where=\"note = '1'\" returns both; loads tell them apart (load(note=1), load(note='1')). "
            "To keep one type, delete the others' records (`scistack rm FsckRaw --note \"'1'\"`) and save or "
            "compute them again as note=1")
    try:
        report = fsck(db)
        assert report.ok and len(report.warnings) == 2, report.warnings
        assert report.warnings[0].startswith(note)
        assert report.warnings[1].startswith("version key rep of FsckRaw holds values of different types that its "
                                             "SQL views and where= both show as true")
        assert "rep=True (a bool) in 1 record; rep='true' (text) in 1 record" in report.warnings[1]
        result = CliRunner().invoke(main, ["--db", str(db.path), "fsck"])
        assert result.exit_code == 0 and f"\nwarning: {note}" in result.stdout
        assert result.stdout.strip().endswith("ok")
        result = CliRunner().invoke(main, ["--db", str(db.path), "rm", "FsckRaw", "--note", "'1'", "-y"])
        assert result.exit_code == 0, result.output
        assert fsck(db).warnings == report.warnings[1:]  # (the fix it names)
    finally:
        db.close()
        database_module._current = None


def test_flipped_byte_is_reported_as_corrupt(project):
    build(project)
    oid = FsckRaw.load(subject=1, session="pre").oid
    path = writable(project.store.path_of(oid))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    problems = fsck(project).problems
    assert [(p.kind, p.oid) for p in problems] == [("corrupt", oid)]
    result = cli(project)
    assert result.exit_code == 1 and f"corrupt: {oid[:12]}" in result.stdout
    assert "1 problem(s) found" in result.stdout


def flip(store, oid):
    """Flip a byte of an object where it lies: its loose file, else its pack record."""
    try:
        path = writable(store.path_of(oid))
    except FileNotFoundError:
        path = None
    if path is not None and path.exists():
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x01
        path.write_bytes(bytes(data))
        return
    name, offset, length = store.packs.locate(oid)
    with open(writable(store.packs.directory / f"{name}.pack"), "r+b") as handle:
        handle.seek(offset + length - 3)
        byte = handle.read(1)
        handle.seek(offset + length - 3)
        handle.write(bytes([byte[0] ^ 0x01]))


def test_a_corrupt_line_says_what_the_object_is_and_what_to_do(project):
    """'corrupt: fa9c15e19683 its content hashes to ...' said neither which value it was nor
    what to do (the error's fix was cut off): each line names the values it is, the values whose
    lineage it records, what else names it, or that nothing does, and ends with the fix."""
    build(project)
    direct = FsckRaw.load(subject=1, session="pre")
    computed = FsckOut.load(subject=1, session="pre")
    holder = FsckRaw.load(subject=2, session="pre").oid
    child = json.loads(bytes(project.store.get(holder).payload))["a"]["$ref"]
    orphan = project.store.put("bytes", [b"nobody names me" * 400])
    for oid in (direct.oid, computed.oid, computed.record.call, child, orphan):
        flip(project.store, oid)
    told = {p.oid: p.detail for p in fsck(project).problems if p.kind == "corrupt"}
    assert set(told) == {direct.oid, computed.oid, computed.record.call, child, orphan}
    assert told[direct.oid].endswith(
        "; it is FsckRaw at subject=1, session='pre' version 1: run `scistack fsck --repair` to set it "
        "aside, then save it again from its source")
    assert "; it is FsckOut at subject=1, session='pre' version 1: " in told[computed.oid]
    assert told[computed.oid].endswith("then rerun the step that computed it")
    assert "it is the call record (lineage) of FsckOut at subject=1, session='pre' version 1" in \
        told[computed.record.call] and told[computed.record.call].endswith("to record its lineage anew")
    assert f'no saved value is it; it is the value["a"] of json object {holder[:12]}' in told[child]
    assert told[orphan].endswith("no saved value, lineage or cache entry names it: `scistack gc` removes it "
                                 "(or `scistack fsck --repair` sets it aside now)")
    result = cli(project)
    assert f"corrupt: {direct.oid[:12]} its content hashes to" in result.stdout
    assert "version 1: run `scistack fsck --repair` to set it aside, then save it again from its source" \
        in result.stdout
    repaired = fsck(project, repair=True).repaired
    assert any(line.startswith(f"moved damaged object {direct.oid[:12]}") and
               line.endswith("(it is FsckRaw at subject=1, session='pre' version 1)") for line in repaired)


def test_deleted_objects_are_reported_with_who_needs_them(project):
    build(project)
    out = FsckOut.load(subject=1, session="pre")
    child = next(
        o
        for o in project.store.iter_oids()
        if project.store.get(o).kind == "npy"
        and o != out.oid
        and o != FsckRaw.load(subject=1, session="pre").oid
    )
    code = project.call_record(out.call)["code"]
    for oid in (out.oid, child, code):
        os.unlink(project.store.path_of(oid))
    kinds: dict[str, set[str]] = {}
    for p in fsck(project).problems:
        kinds.setdefault(p.oid, set()).add(p.kind)
    assert kinds[out.oid] == {"missing-ref-object", "dangling-call"}  # named by a ref and the cache
    assert kinds[child] == {"missing"} and kinds[code] == {"missing"}
    data = json.loads(cli(project, "--json").stdout)
    assert data["ok"] is False and len(data["problems"]) >= 3


def test_journalled_ref_to_a_missing_object(project):
    build(project)
    ghost = "ab" * 32
    entry = {
        "op": "put",
        "var": "FsckRaw",
        "addr": {"session": "post", "subject": 9},  # (not in schema order: the message puts it so)
        "vkeys": {},
        "version": 1,
        "oid": ghost,
        "kind": "npy",
        "call": None,
        "params": {},
        "summary": "float64[3]",
        "t": utc_now(),
    }
    Journal(project.index.journal_path).append([entry])
    report = fsck(project)
    assert [(p.kind, p.oid) for p in report.problems] == [("missing-ref-object", ghost)]
    assert "ref FsckRaw at subject=9, session='post' version 1 points to it" in report.problems[0].detail
    result = cli(project)
    assert result.exit_code == 1 and f"missing-ref-object: {ghost[:12]}" in result.stdout


def test_dangling_call_and_bad_journal_line(project):
    build(project)
    call = FsckOut.load(subject=1, session="pre").call
    os.unlink(project.store.path_of(call))
    with open(project.index.journal_path, "ab") as journal:
        journal.write(b"{not json\n")
    kinds = sorted(p.kind for p in fsck(project).problems)
    assert kinds == ["dangling-call", "dangling-call", "journal"]  # the ref's call and the cache's
    assert cli(project).exit_code == 1


def test_reindex_rebuilds_duckdb_from_the_journal(project):
    build(project)
    with project.index._sql.connect() as con:
        con.execute("DELETE FROM scistack.refs")
    assert project.sql("SELECT count(*) AS n FROM refs")["n"][0] == 0
    assert reindex(project) > 0
    assert project.sql("SELECT count(*) AS n FROM refs")["n"][0] == 3
    assert project.sql("SELECT count(*) AS n FROM FsckRaw")["n"][0] == 2


@pytest.mark.parametrize("damage", ["flipped block", "truncated", "not duckdb"])
def test_a_damaged_duckdb_file_is_named_then_moved_aside_and_rebuilt(project, damage):
    build(project)
    project.close()
    path = project.path
    size = path.stat().st_size
    with open(path, "r+b") as f:
        if damage == "flipped block":
            f.seek(4096)
            f.write(b"\xde\xad" * 2048)
        elif damage == "truncated":
            f.truncate(size // 3)
        else:
            f.write(b"this is not a database" * 100)
    db = configure_database(path)
    assert FsckRaw.load(subject=1, session="pre").data[-1] == 99.0  # names live in the journal
    with pytest.raises(IndexDamagedError, match="fsck --reindex"):
        db.sql("SELECT count(*) FROM FsckRaw")
    found = cli(db, "--json")
    assert found.exit_code == 1 and "index" in found.output and "damaged" in found.output
    fixed = cli(db, "--reindex")
    assert fixed.exit_code == 0, fixed.output
    assert "moved aside to gait.duckdb.damaged-" in fixed.output
    assert list(path.parent.glob("gait.duckdb.damaged-*"))
    assert db.sql("SELECT count(*) AS n FROM FsckRaw")["n"][0] == 2


def test_a_lost_call_record_is_recorded_again_by_the_next_run_after_repair(project):
    """A value whose call record is lost: fsck names it and the way out; --repair drops the
    cache entry; the next run computes the call again and the value names the new record
    (its identical value had been taken for the old call's, and the lineage stayed lost)."""
    from scistack import for_each, why

    def run():
        return for_each(fsck_double, inputs={"x": FsckRaw}, outputs=[FsckOut], subject=[1], session=["pre"],
                        progress=False, verbose=False)

    build(project)
    assert run().cached == 1
    lost = FsckOut.load(subject=1, session="pre").call
    os.unlink(project.store.path_of(lost))
    told = why(FsckOut, subject=1, session="pre")  # (it raised ObjectNotFoundError)
    assert told.status == "unknown" and "fsck --repair" in str(told)
    report = fsck(project)
    assert {p.kind for p in report.problems} == {"dangling-call"}
    assert any("fsck --repair" in p.detail for p in report.problems)
    repaired = fsck(project, repair=True)
    assert any("dropped 1 call-cache entry" in r for r in repaired.repaired)
    assert run().ran == 1
    healed = FsckOut.load(subject=1, session="pre")
    assert healed.call != lost and project.store.contains(healed.call) and healed.version == 2
    assert why(FsckOut, subject=1, session="pre").status == "current"
    (left,) = fsck(project).problems  # the old version still names the lost record: the fix is named
    command = left.detail.split("`")[1]
    assert command == "scistack rm FsckOut --subject 1 --session pre --version 1"
    result = CliRunner().invoke(main, ["--db", str(project.path), *command.split()[1:], "--yes"])
    assert result.exit_code == 0, result.output
    assert fsck(project).ok
    assert run().cached == 1 and FsckOut.load(subject=1, session="pre").call == healed.call


def test_a_lost_value_is_computed_again_by_the_next_run_after_repair(project):
    """A pipeline's output whose object is lost: a rerun used to say "cached" over it forever."""
    from scistack import for_each

    def run():
        return for_each(fsck_double, inputs={"x": FsckRaw}, outputs=[FsckOut], subject=[3, 4], session=["pre"],
                        progress=False, verbose=False)

    for subject in (3, 4):
        FsckRaw.save(np.arange(4.0) + subject, subject=subject, session="pre")
    assert run().ran == 2
    gone = FsckOut.load(subject=3, session="pre").oid
    project.store.delete_many([gone])
    (ref_problem,) = [p for p in fsck(project).problems if p.kind == "missing-ref-object"]
    assert "`scistack fsck --repair`, then a rerun of the step" in ref_problem.detail
    assert run().cached == 2  # (a plainly cached run trusts the cache: fsck is the check)
    result = cli(project, "--repair")
    assert "dropped 1 call-cache entry" in result.stdout
    assert run().ran == 1
    np.testing.assert_array_equal(FsckOut.load(subject=3, session="pre").data, (np.arange(4.0) + 3) * 2)
    assert FsckOut.load(subject=3, session="pre").version == 1  # the same value, its ref untouched
    assert fsck(project).ok


@lineage_fcn
def fsck_pair(x):
    return {"doubled": x * 2, "n": len(x)}


def test_a_value_whose_array_in_a_dict_is_lost_is_computed_again_after_repair(project):
    """A pipeline's output is a dict whose array (its own object) is lost: --repair kept the
    cache entry (the dict's object was there), so the rerun said "cached" over a value no
    load could read; the entry is dropped, and the rerun stores the array again."""
    from scistack import for_each
    from scistack.objects.codec import child_oids

    def run():
        return for_each(fsck_pair, inputs={"x": FsckRaw}, outputs=[FsckOut], subject=[5], session=["pre"],
                        progress=False, verbose=False)

    FsckRaw.save(np.arange(1000.0), subject=5, session="pre")
    assert run().ran == 1
    saved = FsckOut.load(subject=5, session="pre").oid
    ((array, _),) = child_oids("json", project.store.get(saved).payload)
    project.store.delete_many([array])
    assert [p.oid for p in fsck(project).problems] == [array]
    repaired = fsck(project, repair=True)
    assert any("dropped 1 call-cache entry" in r for r in repaired.repaired), repaired.repaired
    assert run().ran == 1
    np.testing.assert_array_equal(FsckOut.load(subject=5, session="pre").data["doubled"], np.arange(1000.0) * 2)
    assert FsckOut.load(subject=5, session="pre").version == 1 and fsck(project).ok


def test_a_lost_array_inside_a_dict_is_named_by_its_variable_address_and_place_in_the_value(project):
    """fsck named an array lost from inside a saved dict only as "child of json object X":
    no command takes that, and the value it belongs to had to be found by hand. It names the
    ref (variable, address, version) and where the array was in the value."""
    from scistack.objects.codec import child_oids

    FsckRaw.save({"emg": {"left": np.arange(300.0), "right": [np.ones(200), np.zeros(100)]}, "$note": "x"},
                 subject=4, session="pre")
    saved = FsckRaw.load(subject=4, session="pre").oid
    where = {what: oid for oid, what in child_oids("json", project.store.get(saved).payload)}
    assert set(where) == {'value["emg"]["left"]', 'value["emg"]["right"][0]', 'value["emg"]["right"][1]'}
    project.store.delete_many([where['value["emg"]["left"]'], where['value["emg"]["right"][1]']])
    problems = {p.oid: p.detail for p in fsck(project).problems}
    left, right = problems[where['value["emg"]["left"]']], problems[where['value["emg"]["right"][1]']]
    assert left.startswith('value["emg"]["left"] of ref FsckRaw at subject=4, session=\'pre\' version 1 '
                           f"(json object {saved[:12]}) needs it"), left
    assert right.startswith('value["emg"]["right"][1] of ref FsckRaw at subject=4'), right
    assert len(problems) == 2


def test_a_damaged_value_is_set_aside_and_a_save_or_run_stores_a_good_copy(project):
    """Saving a damaged value again wrote nothing (its oid was present), so the damage stayed
    whatever the user did; --repair keeps the bad bytes in .scistack/quarantine/ and takes
    them out of the store, and a save or a run stores a good copy."""
    from scistack import for_each

    def run():
        return for_each(fsck_double, inputs={"x": FsckRaw}, outputs=[FsckOut], subject=[1], session=["pre"],
                        progress=False, verbose=False)

    raw = np.arange(100.0)
    FsckRaw.save(raw, subject=1, session="pre")
    run()
    raw_oid, out_oid = FsckRaw.load(subject=1, session="pre").oid, FsckOut.load(subject=1, session="pre").oid
    loose = writable(project.store.path_of(raw_oid))  # a value saved alone: a loose file
    data = bytearray(loose.read_bytes())
    data[-3] ^= 0x01
    loose.write_bytes(bytes(data))
    name, offset, length = project.store.packs.locate(out_oid)  # a run's output: in a pack
    pack = writable(project.store.packs.directory / f"{name}.pack")
    with open(pack, "r+b") as handle:
        handle.seek(offset + length - 3)
        byte = handle.read(1)
        handle.seek(offset + length - 3)
        handle.write(bytes([byte[0] ^ 0x01]))
    FsckRaw.save(raw, subject=1, session="pre")  # (the same value again: its oid is there, nothing written)
    assert sorted((p.kind, p.oid) for p in fsck(project).problems) == sorted(
        [("corrupt", raw_oid), ("corrupt", out_oid)])
    result = cli(project, "--repair")
    for oid in (raw_oid, out_oid):
        assert f"moved damaged object {oid[:12]} to .scistack/quarantine/{oid}" in result.stdout
        assert (project.path.parent / ".scistack" / "quarantine" / oid).exists()
    after = fsck(project).problems
    assert {p.kind for p in after if p.oid == raw_oid} == {"missing-ref-object"}
    assert any("save it again" in p.detail for p in after if p.oid == raw_oid)
    FsckRaw.save(raw, subject=1, session="pre")
    assert run().ran == 1  # its cache entry went with the damaged output
    np.testing.assert_array_equal(FsckRaw.load(subject=1, session="pre").data, raw)
    np.testing.assert_array_equal(FsckOut.load(subject=1, session="pre").data, raw * 2)
    assert fsck(project).ok


@pytest.mark.parametrize("left", [0, 4096])
def test_a_duckdb_file_made_but_never_written_is_made_anew(project, left, caplog):
    """A full disk, or a process killed as DuckDB made its file, left it shorter than DuckDB's
    headers. DuckDB refuses such a file ("not a valid DuckDB database file"), so every sync
    failed until `fsck --reindex`, and a script's exit said the next process would catch up.
    It holds nothing: the next sync makes it anew. A file that young may be another process's,
    being made: left alone."""
    build(project)
    project.close()
    path = project.path
    path.write_bytes(b"\0" * left)
    db = configure_database(path)
    with pytest.raises(IndexDamagedError):
        db.sql("SELECT count(*) FROM FsckRaw")
    FsckRaw.save(3.0, subject=3, session="pre")
    db.close()  # its exit sync fails too, and says how to fix it, not that a later process will
    said = " ".join(r.getMessage() for r in caplog.records if "at exit" in r.getMessage())
    assert "fsck --reindex" in said and "catches up" not in said
    old = time.time() - 60
    os.utime(path, (old, old))
    db = configure_database(path)
    assert fsck(db).ok  # not damage: nothing was ever in it
    assert db.sql("SELECT count(*) AS n FROM FsckRaw")["n"][0] == 3
    assert fsck(db).ok
    assert not list(path.parent.glob("gait.duckdb.damaged-*"))  # nothing to keep


@lineage_fcn
def fsck_weighted_sum(parts):
    return sum(float(np.sum(p)) * w for p, w in parts)


def test_a_call_given_loaded_values_inside_a_list_names_nothing_the_store_lacks(project, tmp_path):
    """A list of loaded values (with a constant beside each) is keyed and recorded by its
    tree, the values as refs: the tree was never stored, so fsck called it missing and an
    export of the result failed. Now it is stored, constants and all (an array among them
    as its own object, which a gc then keeps)."""
    from scistack.gc import collect_garbage

    FsckRaw.save(np.ones(3), subject=1, session="pre")
    FsckRaw.save(np.ones(2), subject=2, session="pre")
    result = fsck_weighted_sum([(FsckRaw.load(subject=1, session="pre"), 0.5),
                                (FsckRaw.load(subject=2, session="pre"), np.array([2.0]))])
    FsckOut.save(result, subject=1, session="pre")
    project.sync()
    collect_garbage(project, grace_seconds=0)

    report = fsck(project)
    assert report.ok, report.problems
    np.testing.assert_array_equal(FsckOut.load(subject=1, session="pre").data, [5.5])
    from scistack.records import read_call
    container = read_call(project.store, result.call).arguments["parts"]
    tree = project.store.get(container.oid)
    assert tree.kind == "json" and b"0.5" in bytes(tree.payload) and b"$ref" in bytes(tree.payload)
    project.export(FsckOut, to=tmp_path / "out", subject=1, session="pre")


def test_a_call_record_from_before_containers_were_stored_is_not_damage(project, monkeypatch):
    """Call records written before the fix name a container tree the store never had: the
    values inside are what lineage needs, so fsck does not call the project damaged, nor
    does gc refuse. Such a record is told apart by its input lacking `refs` (which records
    since name, with the tree: one of those lost is damage, test_gc)."""
    from dataclasses import replace

    import scistack.lineage.calls as calls
    from scistack.gc import collect_garbage
    from scistack.records import read_call

    def as_before(name, value):  # the record an older version wrote: no `refs`
        b = describe_container(name, value)
        return replace(b, record={k: v for k, v in b.record.items() if k != "refs"})

    describe_container = calls._describe_container
    monkeypatch.setattr(calls, "_describe_container", as_before)
    FsckRaw.save(np.ones(3), subject=1, session="pre")
    result = fsck_weighted_sum([(FsckRaw.load(subject=1, session="pre"), 0.5)])
    FsckOut.save(result, subject=1, session="pre")
    container = read_call(project.store, result.call).arguments["parts"]
    assert container.items and not container.names_tree
    os.unlink(project.store.path_of(container.oid))  # as an older version left it
    assert not project.store.contains(container.oid)
    assert fsck(project).ok
    collect_garbage(project, grace_seconds=0)
    assert fsck(project).ok
