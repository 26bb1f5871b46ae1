"""`fsck`: prove every object is what its id says, and every name points at something.

Checks, as `git fsck` does: every object file is re-read and re-hashed (corrupt objects);
every live ref's object and call record exist (refs to missing objects, dangling calls);
every call-cache entry's record and outputs exist (dangling calls); everything reachable
through lineage exists (missing objects); every journal line parses. `reindex` rebuilds the
DuckDB file from the journal, the record of truth.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any
from dataclasses import dataclass
from pathlib import Path

from scistack.address import value_text
from scistack.database import Database
from scistack.errors import (CorruptObjectError, DatabaseLockedError, IndexDamagedError, ObjectNotFoundError,
                             ScistackError)
from scistack.index import TYPE_WORDS, LookAlikes, VkeyLookAlikes, key_of
from scistack.index.journal import entry_problem, loads_line
from scistack.index.state import shown_as
from scistack.gc import fold_roots, live_entries, name_refs, ref_text, walk_reachable
from scistack.htmlrepr import ordered
from scistack.lineage.calls import record_call_key
from scistack.lineage.filecheck import cache_fn, files_of
from scistack.records import read_call
from scistack.objects.midx import NAME as MIDX_NAME
from scistack.objects.codec import child_oids
from scistack.objects.oid import is_valid_oid
from scistack.selection import cli_option


@dataclass(frozen=True, slots=True)
class FsckProblem:
    """One thing wrong: `kind` is corrupt, missing, missing-ref-object, dangling-call, journal,
    pack-index or index (the DuckDB file)."""

    kind: str
    oid: str | None
    detail: str
    line: int | None = None  # the journal line, for a journal problem


@dataclass(frozen=True, slots=True)
class FsckReport:
    """What fsck checked and found."""

    objects_checked: int
    bytes_checked: int
    refs_checked: int
    calls_checked: int
    problems: tuple[FsckProblem, ...]
    repaired: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # not damage: a merge of packs a killed process left half done
    warnings: tuple[str, ...] = ()  # not damage, but wrong answers to queries: look-alike key values

    @property
    def ok(self) -> bool:
        return not self.problems


def fsck(db: Database, *, repair: bool = False, quarantine: bool = False, local: bool = False) -> FsckReport:
    """Check the whole project (reads every object once, and lineage objects twice).

    `repair=True` first rebuilds every damaged pack index from its pack (packs describe
    themselves); a pack that cannot be read through is still reported. It finishes a merge of
    packs a killed process left half done (reported as a note otherwise). It also drops the
    call-cache entries whose call record or an output is lost (or the record damaged), so
    their next run computes them again, and moves damaged objects to `.scistack/quarantine/`
    (kept), so a save or a run of the same value stores a good copy. `quarantine=True`
    moves journal lines that cannot be read to `refs.log.quarantine` (kept, never deleted).

    A lab project's objects are checked in its bucket (every copy, streamed: this machine's
    cache had hidden damage there), and `repair` puts a good cached copy over a damaged one
    before it sets anything aside, or where the bucket lacks it. `local=True` checks only
    the copies cached here (no download; the time the bucket's check took is in the notes).
    """
    with nullcontext() if local else db.store.own_copies():
        return _fsck(db, repair, quarantine, local)


def _fsck(db: Database, repair: bool, quarantine: bool, local: bool) -> FsckReport:
    problems = _journal_problems(db)
    repaired: list[str] = []
    if quarantine and problems:
        numbers = {p.line for p in problems if p.line}
        for number, text in db.index.quarantine_journal(numbers, _bad_line):
            repaired.append(f"moved journal line {number} to {db.index.journal_path.name}.quarantine: {text[:60]!r}")
        problems = _journal_problems(db)
    db.index.counted_unreadable_journal_lines(len(problems))  # (what `status` warns of)
    problems += _index_problems(db)
    for name, problem in sorted(db.store.damaged_pack_indexes().items()):
        if repair:
            try:
                count = db.store.repair_pack_index(name)
            except ScistackError as exc:
                problems.append(FsckProblem("pack-index", None, f"{name}: not repaired: {exc}"))
                continue
            repaired.append(f"rebuilt {name} from the packs' own indexes ({count} objects)" if name == MIDX_NAME
                            else f"rebuilt {name}.idx from its pack ({count} objects)")
        else:
            problems.append(FsckProblem("pack-index", None, problem))
    notes = _interrupted_merges(db, repair, repaired)
    if repair and (restored := db.store.restore_set_aside()):
        repaired.append(f"put back {restored} object(s) a gc killed mid-delete had set aside")
    checked = size = 0
    corrupt = set()
    remote_only = local and db.store.remote
    began = time.monotonic()
    for oid in db.store.iter_oids():
        try:
            if remote_only and not db.store.verify_cached(oid):
                continue  # not cached here: `--local` downloads nothing
            checked += 1
            size += db.store.size_of(oid)
            if not remote_only:
                db.store.verify(oid)
        except CorruptObjectError as exc:
            corrupt.add(oid)
            problems.append(FsckProblem("corrupt", oid, str(exc).split(": ", 1)[-1].split(". ")[0]))
        except (ObjectNotFoundError, FileNotFoundError):
            continue  # deleted while we looked (a concurrent gc)
    if db.store.remote:
        notes.append(_remote_note(remote_only, checked, time.monotonic() - began))
    damaged = set(corrupt)
    moved_lines: dict[str, int] = {}  # an object set aside -> its line in `repaired`
    if repair and corrupt:
        problems, corrupt = _set_aside(db, corrupt, problems, repaired, moved_lines)
    refs, dangling = 0, []  # live refs, and those whose call record is lost
    naming: dict[str, list[dict]] = {}  # a damaged object (or a chunked value) -> the refs naming it
    recording: dict[str, list[dict]] = {}  # a damaged call record -> the refs it is the lineage of
    chunked: dict[str, list[dict]] = {}  # a chunked value -> the live refs naming it (a lost chunk names them)

    keys = db.schema_keys

    def check(e: dict) -> None:  # each live ref, as the journal is read (nothing kept per ref
        nonlocal refs           # but those naming damage)
        refs += 1
        if e.get("kind") == "chunked":
            chunked.setdefault(e["oid"], []).append(e)
        if damaged:
            if e["oid"] in damaged or e.get("kind") == "chunked":
                naming.setdefault(e["oid"], []).append(e)
            if e.get("call") in damaged:
                recording.setdefault(e["call"], []).append(e)
        if not db.store.contains(e["oid"]) and not _mended(db, e["oid"], repair, repaired):
            if e.get("call"):
                fix = "; `scistack fsck --repair`, then a rerun of the step that made it computes it again"
            elif db.store.can_heal(e["oid"]):  # (a lab: the bucket lost what this machine caches)
                fix = "; this machine holds a good copy: `scistack fsck --repair` puts it back in the object store"
            else:
                fix = "; it was saved directly: save it again from its source, or delete the ref"
            problems.append(FsckProblem("missing-ref-object", e["oid"], f"ref {ref_text(e, keys)} points to it{fix}"))
            reported.add(e["oid"])
        if e.get("call") and not db.store.contains(e["call"]) and not _mended(db, e["call"], repair, repaired):
            problems.append(FsckProblem("dangling-call", e["call"], f"call record of ref {ref_text(e, keys)} is missing; "))
            dangling.append((len(problems) - 1, e))
            reported.add(e["call"])

    reported = set(corrupt)
    roots, _ = fold_roots(db.index, check)
    for at, fix in zip([at for at, _ in dangling], _lost_lineage_fixes(db, [e for _, e in dangling])):
        problems[at] = FsckProblem("dangling-call", problems[at].oid, problems[at].detail + fix)
    unusable = []  # cache entries whose call record or an output is lost (or the record damaged)
    for key, entry in roots.calls.items():
        lost = [o for o in [entry["call"], *(entry.get("outs") or [])]
                if not db.store.contains(o) and not _mended(db, o, repair, repaired)]
        if repair and (lost or entry["call"] in corrupt):
            record_only = lost == [entry["call"]] or (not lost and entry["call"] in corrupt)
            unusable.append(_unusable(key, entry, record_only))
            continue
        for oid in lost:
            what = "call record" if oid == entry["call"] else "output"
            problems.append(
                FsckProblem(
                    "dangling-call", oid, f"{what} of call-cache entry {key[:12]} is missing; `scistack fsck "
                    "--repair` drops the entry, so the next run of the call computes it again"
                )
            )
            reported.add(oid)
    walk = walk_reachable(db.store, roots, watch=damaged)
    problems = [_name_chunk(p, walk.chunks) for p in problems]
    if damaged:
        whose = {oid: _whose(oid, walk, naming, recording, db.schema_keys) for oid in damaged}
        problems = [FsckProblem(p.kind, p.oid, f"{p.detail}; {whose[p.oid][0]}: {whose[p.oid][1]}")
                    if p.kind == "corrupt" and p.oid in whose else p for p in problems]
        for oid, i in moved_lines.items():
            repaired[i] = f"{repaired[i]} ({whose[oid][0]})"
    held = _holders(db, walk, reported)
    for oid, referrer in sorted(walk.missing.items()):
        if oid not in reported and not _mended(db, oid, repair, repaired):
            problems.append(FsckProblem("missing", oid, f"{held.get(oid, referrer)} needs it"
                                        f"{_lost_chunk_fix(oid, walk, chunked, keys)}"))
    if repair:  # (after the walk: an output whose chunk or array is lost or damaged is unusable too)
        spoilt = _damaged_outputs(db, roots.calls, walk, corrupt)
        for e in unusable:  # (computed again, not re-pointed to another record of the call)
            e["record_only"] = e["record_only"] and e["key"] not in spoilt
        known = {e["key"] for e in unusable}
        unusable += [_unusable(key, roots.calls[key], False) for key in spoilt if key not in known]
    if unusable:
        _repair_cache(db, unusable, corrupt, repaired)
    return FsckReport(checked, size, refs, len(roots.calls), tuple(problems), tuple(repaired), tuple(notes),
                      tuple(_look_alike_warning(found) for found in db.index.live_look_alikes())
                      + tuple(_vkey_look_alike_warning(found) for found in db.index.live_vkey_look_alikes()))


def _unusable(key: str, entry: dict, record_only: bool) -> dict[str, Any]:
    """A call-cache entry `--repair` drops or re-points (`_repair_cache`): its key, call record
    and outputs; `record_only`: only its call record is lost or damaged (its outputs are there)."""
    return {"key": key, "call": entry["call"], "outs": list(entry.get("outs") or []),
            "record_only": record_only}


def _repair_cache(db: Database, unusable: list[dict[str, Any]], corrupt: set[str],
                  repaired: list[str]) -> None:
    """Drop the `unusable` call-cache entries (`_unusable`), or re-point one to another record
    of its call, noting what was done in `repaired`."""
    # served from the cache, such a call would never be computed or recorded again (a
    # pipeline rerun said "cached" over a lost value, or over one whose chunk was set
    # aside); dropped, its next run computes it (and its save stores what was lost),
    # unless a saved value names another record of the call (`_other_record`)
    calls = _calls_naming(db, {e["outs"][0] for e in unusable if e["record_only"] and e["outs"]})
    others = [(e, _other_record(db, e, calls, corrupt)) for e in unusable]
    for e, other in others:
        if other is not None:
            db.index.put_call(e["key"], other[0], other[1], other[2], multi=other[3])
    moved = sum(other is not None for _, other in others)
    dropped = [e for e, other in others if other is None]
    db.index.drop_calls(dropped)
    if dropped:
        repaired.append(f"dropped {len(dropped)} call-cache entr{'y' if len(dropped) == 1 else 'ies'} whose "
                        "call record or output is lost or damaged (or a chunk or part of an output); the next "
                        "run of each call computes it again")
    if moved:
        repaired.append(f"{moved} call-cache entr{'y' if moved == 1 else 'ies'} whose call record is lost "
                        f"now name{'s' if moved == 1 else ''} another record of the call that a saved value "
                        "names (its outputs are there): the next run records the call again, computing "
                        "nothing")


def _calls_naming(db: Database, oids: set[str]) -> dict[str, set[str]]:
    """oid -> the call records the live refs naming it name, for `oids` (one pass over the
    journal, for the rare entries whose record is lost)."""
    found: dict[str, set[str]] = {}
    if oids:
        for e, live in live_entries(db.index):
            if live and e.get("op") == "put" and e.get("oid") in oids and e.get("call"):
                found.setdefault(e["oid"], set()).add(e["call"])
    return found


def _other_record(db: Database, entry: dict[str, Any], calls: dict[str, set[str]],
                  corrupt: set[str]) -> tuple | None:
    """(call, fn, outputs, multi) of a record of a call-cache entry's call other than the entry's,
    which is lost or damaged while its outputs are there: one a saved value names (another
    run of the same call, its inputs by content: a moved project's first record, kept by its
    refs while the entry named the record made where the raw files are now, or a record of
    raw files with the same bytes at another address), intact and naming the same outputs;
    None when there is none. Dropping the entry had made the next run compute the call again
    (the refs' own records are whole), and a kept ref was judged by its first record anyway.
    Its runtime files are checked at a hit as the entry's were (`cache_fn` of its own)."""
    if not entry["record_only"]:
        return None  # (an output lost: it must be computed again)
    found = calls.get(entry["outs"][0], set()) if entry["outs"] else set()
    for call_oid in sorted(c for c in found if c != entry["call"] and c not in corrupt):
        try:
            if not db.store.contains(call_oid):
                continue
            call = read_call(db.store, call_oid)
            key = record_call_key(db.index, call_oid, lambda: call)
        except (ScistackError, LookupError, TypeError):
            continue
        if key == entry["key"] and list(call.outputs) == entry["outs"]:
            fn = cache_fn(call.function.identity, files_of(call), split=bool(call.extra.get("split")))
            return call_oid, fn, list(call.outputs), bool(call.multi)
    return None
def _damaged_outputs(db: Database, calls: dict[str, dict], walk: Any, corrupt: set[str]) -> dict[str, None]:
    """The keys of the cache entries an output of which is or holds a lost or damaged object:
    a chunk of a chunked value (set aside by this repair, or lost), or a container's array.
    `contains` of the output (its manifest, its container) said it was there, so a rerun was
    "cached" over a value no load could read, and never stored the lost part again.

    Asked only when the walk found damage. The walk reached every object the outputs hold
    (each entry is a root) and noted each it found lost or damaged; the outputs' containers
    and manifests are read again for their children's oids (not the chunks: a manifest names
    leaves), each object once. A chunk shared by two values counts for both (the walk's
    `manifests` names only the first that reached it)."""
    broken = {oid for oid in walk.missing if not db.store.contains(oid)} | set(walk.corrupt) | corrupt
    if not broken:
        return {}
    judged: dict[str, bool] = {}

    def holds_damage(oid: str) -> bool:
        if oid in judged:
            return judged[oid]
        judged[oid] = bad = oid in broken
        if not bad:
            kind = db.store.kind_of(oid)
            if kind is None:
                bad = True  # lost (and not mended)
            elif kind in ("json", "chunked"):
                try:
                    children = [child for child, _ in child_oids(kind, db.store.get(oid).payload)]
                except (ObjectNotFoundError, CorruptObjectError, ValueError):
                    bad = True
                else:  # (a manifest names leaves only: the walk looked at each, so no read)
                    bad = any(child in broken if kind == "chunked" else holds_damage(child)
                              for child in children if is_valid_oid(child))
            judged[oid] = bad
        return bad

    return {key: None for key, entry in calls.items()  # (a dict: ordered, and a set to ask)
            if any(holds_damage(o) for o in entry.get("outs") or [] if is_valid_oid(o))}


def _look_alike_warning(found: LookAlikes) -> str:
    """What a project holding 1 and "1" for one schema key (saved before such a save was
    refused) should know: the values, how many live refs of which variables hold each, and
    how to keep one type (the one most refs have)."""
    key = found.key
    values: dict[tuple[str, Any], list[tuple[str, int]]] = {}  # (type, value): 1 and 1.0 are one dict key
    for value, var, n in found.holders:
        values.setdefault((type(value).__name__, value), []).append((var, n))
    order = sorted(values, key=lambda t: (-sum(n for _, n in values[t]), t[0]))
    held = "; ".join(f"{key}={v!r} ({TYPE_WORDS[kind]}) in {_refs_of(values[kind, v])}" for kind, v in order)
    keep = order[0][1]
    commands = [f"`scistack rm {var} {cli_option(key, v)}`" for kind, v in order[1:] for var, _ in values[kind, v]]
    more = f" and {len(commands) - 3} more" if len(commands) > 3 else ""
    return (f"schema key {key} holds values of different types that the SQL views and where= both show as "
            f"{found.text} (saved before such a save was refused): {held}. A query, a join or "
            f"where=\"{key} = '{found.text}'\" can return one's records for the other's; loads tell them apart "
            f"({', '.join(f'load({key}={v!r})' for _, v in order)}). To keep one type, delete the others' records "
            f"({', '.join(commands[:3])}{more}) and save or compute them again as {key}={keep!r}, or under a "
            "value that reads differently")


def _vkey_look_alike_warning(found: VkeyLookAlikes) -> str:
    """What a variable holding note=1 and note="1" (saved before such a save was refused)
    should know: the values, how many of its records hold each, and how to keep one type
    (the one most records have)."""
    var, key = found.var, found.key
    order = sorted(found.holders, key=lambda h: (-h[1], type(h[0]).__name__))
    held = "; ".join(f"{key}={v!r} ({TYPE_WORDS[shown_as(v)[0]]}) in {n} record{'s' if n != 1 else ''}"  # type: ignore[index]
                     for v, n in order)
    keep = order[0][0]
    commands = [f"`scistack rm {var} {cli_option(key, v)}`" for v, _ in order[1:]]
    return (f"version key {key} of {var} holds values of different types that its SQL views and where= both "
            f"show as {found.text} (saved before such a save was refused): {held}. where=\"{key} = "
            f"'{found.text}'\" returns both; loads tell them apart "
            f"({', '.join(f'load({key}={v!r})' for v, _ in order)}). To keep one type, delete the others' "
            f"records ({', '.join(commands)}) and save or compute them again as {key}={keep!r}, or under a "
            "value that reads differently")


def _refs_of(holders: list[tuple[str, int]]) -> str:
    """`3 refs of Raw`, or `5 refs (Raw 3, Peak 2)`."""
    total = sum(n for _, n in holders)
    refs = f"{total} ref{'s' if total != 1 else ''}"
    if len(holders) == 1:
        return f"{refs} of {holders[0][0]}"
    return f"{refs} ({', '.join(f'{var} {n}' for var, n in holders)})"


def _mended(db: Database, oid: str, repair: bool, repaired: list[str]) -> bool:
    """With `repair`, an object missing from a lab's bucket that this machine still caches, good,
    is uploaded again (`heal`); the cache had made it look present to fsck here."""
    try:
        if not (repair and db.store.heal(oid)):
            return False
    except ScistackError:
        return False  # (reported as missing, as before)
    repaired.append(f"put this machine's good copy of {oid[:12]}, missing from the object store, back there")
    return True


def _remote_note(local: bool, checked: int, seconds: float) -> str:
    if local:
        return (f"--local: checked the {checked} objects cached on this machine in {seconds:.1f} s, not the "
                "object store's copies (a colleague reads those); `scistack fsck` checks them")
    return (f"checked the object store's copies of {checked} objects in {seconds:.1f} s (each downloaded "
            "once); `scistack fsck --local` checks only those cached on this machine")


def _interrupted_merges(db: Database, repair: bool, repaired: list[str]) -> list[str]:
    """A merge of packs killed midway leaves `pack-<id>.replaces` (objects/pack.py): nothing is
    lost, objects may be stored twice. Named as a note; `repair` finishes (or rolls back) it
    now, as the next gc or closing writer would (after the pack indexes are rebuilt)."""
    left, notes = db.store.interrupted_merges(), []
    if repair and left:
        try:
            for side, state in db.store.finish_interrupted_merges().items():
                repaired.append(f"finished the merge of packs a killed process left half done ({side}): {state}")
        except ScistackError as exc:
            notes.append(f"interrupted merges not finished: {exc}")
        left = db.store.interrupted_merges()
    return notes + [f"{side}: a merge of packs that a killed process left half done; {state}. Nothing is lost: "
                    "`scistack fsck --repair`, the next gc, or a writer closing after it wrote packs finishes it"
                    for side, state in left.items()]


def _set_aside(db: Database, corrupt: set[str], problems: list[FsckProblem], repaired: list[str],
               moved_lines: dict[str, int]) -> tuple[list[FsckProblem], set[str]]:
    """Move damaged objects out of the store (kept in `.scistack/quarantine/`): a save or run
    of the same value found its oid present and wrote nothing, so the damage stayed. What
    named them is then reported as lost, with its fix, and cache entries naming them go.
    One the store can mend from a good copy it holds (a lab's bucket copy, from this machine's
    cache: `heal`) is mended instead. `moved_lines` gets each moved object's line in
    `repaired` (named once it is known)."""
    folder = db.scistack_dir / "quarantine"
    moved, failed = set(), {}
    for oid in sorted(corrupt):
        try:
            if db.store.heal(oid):
                moved.add(oid)
                repaired.append(f"put this machine's good copy of {oid[:12]} over the damaged one in the "
                                "object store")
        except ScistackError as exc:
            failed[oid] = str(exc)
    try:
        db.store.will_set_aside(sorted(corrupt - moved - set(failed)))
    except ScistackError:
        pass  # each set_aside below tries again, and names the failure
    for oid in sorted(corrupt - moved - set(failed)):
        try:
            kept = db.store.set_aside(oid, folder)
        except ScistackError as exc:
            failed[oid] = str(exc)
            continue
        moved.add(oid)
        moved_lines[oid] = len(repaired)
        repaired.append(f"moved damaged object {oid[:12]} to {kept.relative_to(db.root)}; save or compute "
                        "its value again to store a good copy")
    kept_problems = [p if p.oid not in failed or p.kind != "corrupt" else
                     FsckProblem(p.kind, p.oid, f"{p.detail}; not set aside: {failed[p.oid]}")
                     for p in problems if not (p.kind == "corrupt" and p.oid in moved)]
    return kept_problems, corrupt - moved


_SET_ASIDE = "run `scistack fsck --repair` to set it aside, then "


def _whose(oid: str, walk: Any, naming: dict[str, list[dict]], recording: dict[str, list[dict]],
           keys: list[str]) -> tuple[str, str]:
    """(what a damaged object is, what to do): the saved values it is (or is a chunk of), the
    values whose lineage it records, what else names it (a container, a call record, the call
    cache), or that nothing does."""
    if naming.get(oid):
        return f"it is {_places(naming[oid], keys)}", _SET_ASIDE + _remake(naming[oid])
    if recording.get(oid):
        return (f"it is the call record (lineage) of {_places(recording[oid], keys)}",
                _SET_ASIDE + "rerun the step that computed it to record its lineage anew")
    manifest = walk.manifests.get(oid)
    if manifest is not None and naming.get(manifest):
        return f"its value is {_places(naming[manifest], keys)}", _SET_ASIDE + _remake(naming[manifest])
    referrer = walk.referrers.get(oid) if manifest is None else walk.chunks.get(oid)
    if referrer is not None:
        return (f"no saved value is it; it is the {referrer}",
                _SET_ASIDE + "rerun the step that made it, or save again the value that holds it")
    return ("no saved value, lineage or cache entry names it",
            "`scistack gc` removes it (or `scistack fsck --repair` sets it aside now)")


def _holders(db: Database, walk: Any, reported: set[str]) -> dict[str, str]:
    """For each lost child of a json value (an array in a dict, a list...): where it was in
    which saved value, `value["emg"]["left"] of ref Trial at subject=1 version 1 (json object
    X)`: the walk knew only "child of json object X", which no command takes. The refs are
    read from the journal again, only when such a child is lost."""
    lost = {oid: held for oid, held in walk.lost_in.items() if oid in walk.missing and oid not in reported}
    if not lost:
        return {}
    named = name_refs(db.index, {parent for parent, _ in lost.values()}, db.schema_keys)
    return {oid: f"{where} of {named[parent]} (json object {parent[:12]})" for oid, (parent, where) in lost.items()
            if parent in named}


def _lost_chunk_fix(oid: str, walk: Any, chunked: dict[str, list[dict]], keys: list[str]) -> str:
    """For a lost chunk of a saved array: which values it belongs to, and what to do (the
    identical array saved again stores every chunk it lacks; a save of it is otherwise a no-op)."""
    manifest = walk.manifests.get(oid)
    if manifest is None:
        return ""
    refs = chunked.get(manifest)
    if not refs:
        return ("; no saved value is that chunked value itself (a container holds it): save again the value "
                "that holds it, or delete that value and run `scistack gc`")
    if any(e.get("call") for e in refs):  # (a computed value: its cache entry is what stands in the way)
        return (f"; it is part of the value of {_places(refs, keys)}: `scistack fsck --repair` drops the cache "
                "entry of the step that computed it, then a rerun of the step computes it again and stores the "
                "lost chunk (or save that array again), or delete the value (`scistack rm`) and run `scistack gc`")
    return (f"; it is part of the value of {_places(refs, keys)}: save that array again (the identical "
            "array stores the lost chunk), or delete the value (`scistack rm`) and run `scistack gc`")


def _places(refs: list[dict], keys: list[str]) -> str:
    named = ", ".join(ref_text(e, keys) for e in refs[:3])
    return named + (f" and {len(refs) - 3} more" if len(refs) > 3 else "")


def _remake(refs: list[dict]) -> str:
    ways = []
    if any(e.get("call") for e in refs):
        ways.append("rerun the step that computed it")
    if any(not e.get("call") for e in refs):
        ways.append("save it again from its source")
    return " or ".join(ways)


def _lost_lineage_fixes(db: Database, lost: list[dict]) -> list[str]:
    """What to do about each ref (a put entry) whose call record is lost: run its step again,
    or, once a newer version holds the same value with its record (that rerun), drop this
    version. The journal is read again for those refs' addresses only (fsck keeps no fold)."""
    if not lost:
        return []
    places = {(e["var"], key_of(e["addr"])) for e in lost}
    versions: dict[tuple[str, str], list[dict]] = {}
    for e, live in live_entries(db.index):
        if e["op"] == "put" and live and (e["var"], key_of(e["addr"])) in places:
            versions.setdefault((e["var"], key_of(e["addr"])), []).append(e)
    fixes = []
    for r in lost:
        healed = any(o["version"] > r["version"] and o["oid"] == r["oid"] and (o.get("vkeys") or {}) ==
                     (r.get("vkeys") or {}) and o.get("call") and db.store.contains(o["call"])
                     for o in versions.get((r["var"], key_of(r["addr"])), ()))
        if healed:
            keys = " ".join(f"--{k} {shlex.quote(value_text(v))}"  # (a command to paste into a shell)
                            for k, v in ordered(r["addr"], db.schema_keys).items())
            fixes.append(f"a newer version holds the same value with its lineage; drop this one with "
                         f"`scistack rm {r['var']} {keys} --version {r['version']}`")
        else:
            fixes.append("run the step that made it again (after `scistack fsck --repair`) to record its "
                         "lineage anew")
    return fixes


def _name_chunk(problem: FsckProblem, chunks: dict[str, str]) -> FsckProblem:
    """A corrupt chunk's problem also says which chunk of which value it is."""
    where = chunks.get(problem.oid or "")
    if problem.kind != "corrupt" or where is None:
        return problem
    return FsckProblem(problem.kind, problem.oid, f"{where}: {problem.detail}")


def _journal_problems(db: Database) -> list[FsckProblem]:
    path = db.index.journal_path
    problems = []
    for number, line in _journal_lines(path):
        if not line.strip():
            continue  # blank: a quarantined line's place
        try:
            problem = entry_problem(loads_line(line))  # as every reader reads it
        except ValueError:
            problem = "it cannot be parsed"
        if problem is not None:
            problems.append(
                FsckProblem("journal", None, f"{path.name} line {number} is skipped ({problem}): {line[:60]!r}"
                            " (fsck --quarantine moves it aside)", line=number)
            )
    return problems


_JOURNAL_BLOCK = 16 << 20  # journal bytes fsck reads at a time


def _journal_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(number, line) of every complete line of the journal, read a block at a time (whole,
    a 1M-ref journal and its list of lines held 0.7 GB); a torn last line is left out."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        number, rest = 0, b""
        while data := handle.read(_JOURNAL_BLOCK):
            data = rest + data
            end = data.rfind(b"\n") + 1
            rest = data[end:]
            for line in data[:end].split(b"\n")[:-1]:
                number += 1
                yield number, line


def _bad_line(line: bytes) -> bool:
    try:
        return entry_problem(loads_line(line)) is not None
    except ValueError:
        return True


def _index_problems(db: Database) -> list[FsckProblem]:
    """The DuckDB file, opened as a query would open it (it is derived: --reindex rebuilds it)."""
    try:
        db.index.check_duckdb()
    except IndexDamagedError as exc:
        return [FsckProblem("index", None, str(exc))]
    except DatabaseLockedError:
        return []  # held by a DuckDB CLI or DBeaver session: not damage
    return []


def reindex(db: Database) -> int:
    """Rebuild the fold and the DuckDB index from the journal; returns how many entries it applied."""
    return db.index.rebuild()
