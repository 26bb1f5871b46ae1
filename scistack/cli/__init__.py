"""The `scistack` command line: a thin click shell, one library call per command.

The project is found like git finds its repository: `--db PATH` (the .duckdb file or a folder
inside the project), else `$SCISTACK_DB`, else the nearest `.scistack/` above the working
directory. Every command renders library data as text, or as JSON with `--json`. Errors
print one red line on stderr and exit with status 2 (`--debug` shows the traceback);
`fsck` exits with 1 when it finds problems.
"""

from __future__ import annotations

import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

import click

from scistack.version import __version__
from scistack.cli import render
from scistack.cli.args import ADDRESS_HELP, AddressError, is_address_word, parse_address
from scistack.errors import ScistackError

ADDRESS = {"ignore_unknown_options": True, "allow_extra_args": True}


class _Project:
    """The project, opened on first use (so `--help` never needs one) and closed at exit."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._db: Any = None

    @property
    def db(self) -> Any:
        if self._db is None:
            from scistack.errors import UnreadableJournalWarning
            from scistack.report.history import open_database

            with warnings.catch_warnings():  # `status` and `ls` say it, as a line of their own
                warnings.simplefilter("ignore", UnreadableJournalWarning)
                self._db = open_database(self.path)
            if str(self._db.root) not in sys.path:  # so `status`/`why` can import the pipeline,
                sys.path.insert(0, str(self._db.root))  # first, as a script there saw it (its
                # `test.py` was the standard library's `test` package, never the pipeline)
        return self._db

    def close(self) -> None:
        from scistack.database import current_database

        if self._db is not None and self._db is not current_database():  # not ours to close
            self._db.close()


class _Group(click.Group):
    """The one error boundary: any error becomes one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary: never a traceback unless --debug
            if ctx.params.get("debug"):
                traceback.print_exc()
            text = str(exc) if isinstance(exc, ScistackError) else f"{type(exc).__name__}: {exc}"
            first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            hint = "" if ctx.params.get("debug") else " (--debug shows the traceback)"
            click.secho(
                f"error: {first}" + ("" if isinstance(exc, ScistackError) else hint),
                fg="red",
                err=True,
            )
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_path",
    envvar="SCISTACK_DB",
    metavar="PATH",
    help="The project's .duckdb file or a folder inside it (default: found upward from here).",
)
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.version_option(__version__, prog_name="scistack")
@click.pass_context
def main(ctx: click.Context, db_path: str | None, debug: bool) -> None:
    """Inspect and maintain a scistack project (versioned, lineage-tracked data)."""
    ctx.obj = _Project(db_path)
    ctx.call_on_close(ctx.obj.close)


def json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)


def str_option(fn: Any) -> Any:
    return click.option("--str", "as_str", is_flag=True, help="Keep every address value a string.")(
        fn
    )


def _address(ctx: click.Context, as_str: bool) -> dict[str, Any]:
    return _address_of(ctx, ctx.args, as_str)


def _address_of(ctx: click.Context, words: list[str], as_str: bool) -> dict[str, Any]:
    try:
        return parse_address(words, as_str=as_str)
    except AddressError as exc:
        raise click.UsageError(str(exc), ctx) from None


def _emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(render.to_json(data) if as_json else text)


@main.command("ls")
@json_option
@click.pass_obj
def ls(project: _Project, as_json: bool) -> None:
    """List variables: values, versions, size on disk, last change."""
    from scistack.report.history import list_variables

    _warn_of_unreadable_journal_lines(project.db)
    summaries = list_variables(project.db)
    _emit(as_json, summaries, render.render_ls(summaries))


def _warn_of_unreadable_journal_lines(db: Any) -> None:
    """The overviews (`ls`, `status`) say when journal lines could not be read: on stderr,
    so their report on stdout (JSON too) stays as it is."""
    from scistack.report.status import journal_warning

    warning = journal_warning(db)
    if warning is not None:
        click.echo(warning, err=True)


PROJECT_LOG = 20  # versions `log` prints unless -n or --all says (--json of a variable: all)


@main.command(context_settings=ADDRESS, epilog=ADDRESS_HELP)
@click.argument("words", nargs=-1, type=click.UNPROCESSED, metavar="[VARIABLE]")
@click.option("-n", "--max-count", "n", type=click.IntRange(min=1),
              help=f"Show at most N versions (default: {PROJECT_LOG}; with VARIABLE and --json: all).")
@click.option("-a", "--all", "whole", is_flag=True, help="Show every version.")
@click.option(
    "--graph", is_flag=True, help="Draw each version's upstream lineage down to raw inputs."
)
@json_option
@str_option
@click.pass_context
def log(
    ctx: click.Context, words: tuple[str, ...], n: int | None, whole: bool, graph: bool, as_json: bool,
    as_str: bool
) -> None:
    """History of VARIABLE, newest first: one entry per saved version. Without VARIABLE, of
    every variable: what the project saved lately (an address narrows either)."""
    from scistack.report.history import lineage_graph, log_entries

    # the variable is optional and the address follows it: a first word that is not an
    # option is the variable (click would bind `9` of `--subject 9` to an optional argument)
    variable = words[0] if words and not is_address_word(words[0]) else None
    address = _address_of(ctx, list(words[variable is not None:]), as_str)
    db = ctx.obj.db
    # a variable of 300k addresses printed 1.5M lines: the newest few unless asked
    cut_short = n is None and not whole and not (as_json and variable is not None)
    if cut_short:
        n = PROJECT_LOG
    entries = log_entries(db, variable, n=n + 1 if cut_short else n, **address)
    older = "\n... older versions: `-n N` shows N, `--all` every one" if entries[n:] and cut_short else ""
    entries = entries[:n] if n else entries
    if not graph:
        return _emit(as_json, entries, render.render_log(entries, db.schema_keys) + older)
    trees = [lineage_graph(db, e) for e in entries]
    data = [{"entry": e, "lineage": t} for e, t in zip(entries, trees)]
    _emit(as_json, data, render.render_log_graph(entries, trees, db.schema_keys) + older)


@main.command(context_settings=ADDRESS, epilog=ADDRESS_HELP)
@click.argument("target", metavar="OID|VARIABLE")
@click.option(
    "--version", "version", type=int, help="A specific version (default: the current one)."
)
@json_option
@str_option
@click.pass_context
def show(ctx: click.Context, target: str, version: int | None, as_json: bool, as_str: bool) -> None:
    """Show a value (summary statistics, table head) and the call that made it.

    TARGET is an object id (or a unique prefix of at least 4 characters), or a variable
    name followed by its address.
    """
    from scistack.report.history import show as show_value

    db = ctx.obj.db
    result = show_value(db, target, version=version, **_address(ctx, as_str))
    _emit(as_json, result, render.render_show(result, db.schema_keys))


GRID_ROWS = 200         # addresses up to which `status` prints the grid
SUMMARY_PROBLEMS = 20   # cells not done listed per variable above that


@main.command()
@click.argument("variables", nargs=-1)
@click.option("-p", "--problems", is_flag=True, help="Only rows where something is not done.")
@click.option("-a", "--all", "whole", is_flag=True,
              help=f"The whole grid, however many addresses (default: up to {GRID_ROWS}, else counts).")
@json_option
@click.pass_obj
def status(project: _Project, variables: tuple[str, ...], problems: bool, whole: bool, as_json: bool) -> None:
    """Completeness grid: each variable at each address is done, STALE (its code, an
    input, or something upstream changed), ? (its code cannot be compared here; `why`
    says why), FAILED (the last run failed there) or - (missing).

    Functions are imported from the modules that defined them (the project folder is
    on the import path); a function of a script run as __main__ is judged from the
    script's text, where that settles it.
    """
    from scistack.report.status import status_grid, status_summary

    _warn_of_unreadable_journal_lines(project.db)
    if not whole:
        summary = status_summary(project.db, list(variables) or None, limit=SUMMARY_PROBLEMS)
        rows = max((sum(c.values()) for c in summary.counts.values()), default=0)
        if rows > GRID_ROWS:
            data = {"variables": summary.variables, "counts": summary.counts, "problems": summary.problems}
            _emit(as_json, data, render.render_status_summary(summary, SUMMARY_PROBLEMS))
            return
    grid = status_grid(project.db, list(variables) or None)
    data = {
        "variables": grid.variables,
        "addresses": grid.addresses,
        "cells": grid.cells,
        "counts": grid.counts(),
        "empty": grid.empty,
    }
    _emit(as_json, data, render.render_status(grid, project.db.schema_keys, problems_only=problems))


@main.command(context_settings=ADDRESS, epilog=ADDRESS_HELP)
@click.argument("variable")
@json_option
@str_option
@click.pass_context
def why(ctx: click.Context, variable: str, as_json: bool, as_str: bool) -> None:
    """Why the value of VARIABLE at an address is stale or would be recomputed
    (with a source diff when its code changed)."""
    from scistack.report.why import why_where

    report = why_where(ctx.obj.db, variable, _address(ctx, as_str), cli=True)
    _emit(as_json, report, render.render_why(report))


@main.command(context_settings=ADDRESS, epilog=ADDRESS_HELP)
@click.argument("variable")
@click.option("--to", "to", required=True, type=click.Path(file_okay=False), help="Folder to write into.")
@json_option
@str_option
@click.pass_context
def checkout(ctx: click.Context, variable: str, to: str, as_json: bool, as_str: bool) -> None:
    """Write the files stored in VARIABLE (PathOutput or bytes values) under a folder."""
    from scistack.report.checkout import checkout as write_files

    written = write_files(ctx.obj.db, variable, to, **_address(ctx, as_str))
    _emit(as_json, written, "\n".join(written) + f"\n{len(written)} file(s) written")


@main.command("export", context_settings=ADDRESS, epilog=ADDRESS_HELP)
@click.argument("words", nargs=-1, metavar="VARIABLE [--KEY VALUE]...")
@click.option("--to", "to", required=True, type=click.Path(file_okay=False),
              help="New or empty folder to write the bundle into.")
@click.option("--all-current", is_flag=True,
              help="Export the current values of every VARIABLE named (several allowed).")
@click.option("--with-raw", is_flag=True,
              help="Copy the raw files the calls read (PathInput) into raw/, to run the pipeline again.")
@json_option
@str_option
@click.pass_context
def export_cmd(ctx: click.Context, words: tuple[str, ...], to: str, all_current: bool, with_raw: bool,
               as_json: bool, as_str: bool) -> None:
    """Write VARIABLE at an address (or with --all-current, every current value of each
    VARIABLE) and its whole lineage as a bundle: open files, scistack objects, an RO-Crate."""
    names = []
    for word in words:
        if is_address_word(word):
            break
        names.append(word)
    address = _address_of(ctx, list(words[len(names):]) + list(ctx.args), as_str)
    db = ctx.obj.db
    if all_current:
        report = db.export(to=to, all_current=names, raw_files=with_raw, **address)
    else:
        if len(names) != 1:
            raise click.UsageError("name one VARIABLE (or several with --all-current)", ctx)
        report = db.export(names[0], to=to, raw_files=with_raw, **address)
    _emit(as_json, report, f"{report.path}: {report.selected} selected value(s), {report.values} value "
          f"record(s), {report.calls} call(s), {report.objects} object(s), {report.files} open file(s)"
          + "".join(f"\nraw file not copied: {line}" for line in report.raw_missing)
          + "".join(f"\nno open file (in objects/ only): {line}" for line in report.no_open_file))


@main.command("import")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--raw-to", type=click.Path(file_okay=False),
              help="Put the bundle's raw files (--with-raw) back into this folder, each at the "
                   "path it was read as.")
@json_option
@click.pass_context
def import_cmd(ctx: click.Context, bundle: str, raw_to: str | None, as_json: bool) -> None:
    """Merge a bundle written by `scistack export` into this project (checked whole first)."""
    report = ctx.obj.db.import_bundle(bundle, raw_to)
    text = (f"imported {bundle}: {report.objects} new object(s), {report.refs} value record(s) added "
            f"({report.skipped_refs} already here), {report.calls} call-cache entr(ies)")
    if report.superseded:
        var, addr, vkeys = report.superseded[0]
        keys = ctx.obj.db.schema_keys
        example = render.addr_text({**addr, **vkeys}, keys)  # (as the command line takes it)
        text += (f"\n{len(report.superseded)} value(s) of this project are no longer current: the bundle's "
                 f"value at that address is (yours stay as earlier versions; e.g. scistack log {var} {example})")
    text += "".join(f"\nnote: {note}" for note in report.notes)
    _emit(as_json, report, text)


@main.command("add-key")
@click.argument("name")
@click.pass_context
def add_key(ctx: click.Context, name: str) -> None:
    """Add NAME as a finer schema key (a level under the others, e.g. trial under session);
    the values saved so far keep their addresses, at the coarser level."""
    keys = ctx.obj.db.add_schema_key(name)
    click.echo(f"schema keys: {', '.join(keys)}")


@main.command()
@click.option("--to", "to", required=True, type=click.Path(file_okay=False),
              help="New or empty folder for the lab checkout.")
@click.option("--shared", required=True, metavar="URL", help="A new lab journal: postgresql://host/db.")
@click.option("--objects", required=True, metavar="URL", help="The lab's object store: s3://bucket/prefix.")
@json_option
@click.pass_context
def share(ctx: click.Context, to: str, shared: str, objects: str, as_json: bool) -> None:
    """Copy this laptop project whole (every version, lineage, cache, objects) into a new lab
    project, with a lab checkout in --to; this project stays as it is. Run again, it resumes
    a copy that stopped, or brings what was saved here since (while only the copy is there)."""
    report = ctx.obj.db.share(to=to, shared=shared, objects=objects)
    _emit(as_json, report, f"{report.path}: {report.entries} journal entr(ies) and {report.objects} "
          f"object(s) copied; colleagues join with scistack init {Path(report.path).name} --shared URL "
          f"--objects {objects}")


@main.command(context_settings=ADDRESS, epilog=ADDRESS_HELP)
@click.argument("variable")
@click.option("--version", "version", type=int, help="Delete only this version.")
@click.option("--cascade", is_flag=True, help="Also delete everything computed from these values.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--all", "everything", is_flag=True,
              help="Mean every address: needed to delete with no address, or --version N everywhere.")
@json_option
@str_option
@click.pass_context
def rm(
    ctx: click.Context,
    variable: str,
    version: int | None,
    cascade: bool,
    yes: bool,
    everything: bool,
    as_json: bool,
    as_str: bool,
) -> None:
    """Delete the refs of VARIABLE at an address (every version unless --version).

    Objects stay in the store until `scistack gc` removes them. The cached calls whose
    outputs lose their last name are shown; --cascade drops them too (else gc does).
    Naming no address (every record, or --version N at every address) needs --all.
    """
    from scistack.report.removal import orphaned_calls, removal_plan, remove
    from scistack.variables import refuse_addressless_delete

    db = ctx.obj.db
    address = _address(ctx, as_str)
    plan = removal_plan(db, variable, cascade=cascade, version=version, **address)
    if not everything:
        refuse_addressless_delete(db, variable, address, version,
                                  sum(r.var == variable for r in plan), shell=True)
    orphans = orphaned_calls(db, plan)
    click.echo(
        render.to_json({"refs": plan, "orphaned_calls": orphans})
        if as_json
        else render.render_plan(plan, db.schema_keys, orphans, cascade=cascade),
        err=as_json,
    )
    if not yes:
        where = render.addr_text(address, db.schema_keys) or "every address"
        which = f"version {version}" if version is not None else "every version"
        click.confirm(
            f"Delete {len(plan)} refs ({variable} at {where}, {which}"
            + (", and what was computed from them" if cascade else "")
            + ")?",
            abort=True,
            err=True,
        )
    deleted = remove(db, plan, orphans if cascade else [])
    dropped = f", dropped {len(orphans)} cached calls" if cascade and orphans else ""
    _emit(
        as_json,
        {"deleted": deleted, "refs": plan, "calls_dropped": len(orphans) if cascade else 0},
        f"deleted {deleted} refs{dropped}; `scistack gc` frees their objects\n"
        f"undo (until gc): scistack undelete {'--cascade ' if cascade else ''}"
        f"{' '.join([variable, *ctx.args, *([f'--version {version}'] if version is not None else [])])}",
    )


@main.command(context_settings=ADDRESS, epilog=ADDRESS_HELP)
@click.argument("variable")
@click.option("--cascade", is_flag=True, help="Also bring back what `rm --cascade` removed with these values.")
@json_option
@str_option
@click.pass_context
def undelete(ctx: click.Context, variable: str, cascade: bool, as_json: bool, as_str: bool) -> None:
    """Undo, at each address matching the one given (every address without one), its last
    `rm` (or `delete`) of refs of VARIABLE: the refs it removed come back as new versions
    with their values and lineage, until gc frees them; an address's older deletes, and
    versions `gc --keep-versions/--older-than` dropped, stay (--version N brings back that
    deleted version). --cascade also brings back what `rm --cascade` removed with them."""
    from scistack.report.removal import undelete_with_dependents
    from scistack.variables import undelete_records

    address = _address(ctx, as_str)
    results = (undelete_with_dependents(ctx.obj.db, variable, address) if cascade
               else [undelete_records(ctx.obj.db, variable, address)])
    back = [r for result in results for r in result.back]
    notes = [result.note for result in results if result.note]
    _emit(as_json, {"back": back, "reclaimed": [r for result in results for r in result.reclaimed],
                    "taken": [r for result in results for r in result.taken],
                    "already_back": [r for result in results for r in result.again],
                    "older": [r for result in results for r in result.older],
                    "dropped": [r for result in results for r in result.dropped],
                    "earlier": [r for result in results for r in result.earlier],
                    "superseded": [r for result in results for r in result.superseded]},
          "; ".join(notes) if notes and len(results) == 1 else
          f"{len(back)} record(s) back" + "".join(f"\n  {n}" for n in notes))


def _grace(ctx: click.Context, param: Any, value: str) -> float:
    from scistack.gc import parse_prune

    try:
        return parse_prune(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _when(ctx: click.Context, param: Any, value: str | None) -> float | None:
    import time

    if value is None:
        return None
    seconds = _grace(ctx, param, value)
    if seconds == float("inf"):
        raise click.BadParameter("use a time such as 30.days.ago", ctx, param)
    return time.time() - seconds


@main.command()
@click.option("--dry-run", is_flag=True, help="Only report what would be deleted.")
@click.option(
    "--prune",
    "grace",
    default="2.weeks.ago",
    show_default=True,
    callback=_grace,
    metavar="WHEN",
    help="Delete unreachable objects older than WHEN: now, never, or N.UNIT.ago "
    "(seconds, minutes, hours, days, weeks). Under an hour (e.g. `now`) applies only when no "
    "other process that writes to the project is open; otherwise gc keeps an hour and says so.",
)
@click.option(
    "--keep-versions",
    type=click.IntRange(min=1),
    metavar="N",
    help="Retention: drop the names of versions older than the newest N of each variant.",
)
@click.option(
    "--older-than",
    callback=_when,
    metavar="WHEN",
    help="Retention: drop the names of old versions saved before WHEN (N.UNIT.ago); the "
    "newest version is always kept. With --keep-versions, both must allow a drop.",
)
@click.option("-y", "--yes", is_flag=True, help="Apply a retention rule without asking.")
@json_option
@click.pass_obj
def gc(
    project: _Project,
    dry_run: bool,
    grace: float,
    keep_versions: int | None,
    older_than: float | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete objects that no ref, cached call or lineage record reaches.

    A cached call whose outputs are no longer named is dropped from the cache. --dry-run
    changes nothing: it previews the versions a retention rule drops and shows what each
    group of roots keeps alive.
    """
    from scistack.gc import collect_garbage

    rule = {"keep_versions": keep_versions, "older_than": older_than}
    if not dry_run and not yes and (keep_versions is not None or older_than is not None):
        preview = collect_garbage(project.db, grace_seconds=grace, dry_run=True, **rule)
        if preview.versions_dropped:  # names are about to go: show them and ask, as rm does
            click.echo(render.render_gc(preview, project.db.schema_keys), err=True)
            click.confirm(
                f"Drop the names of these {len(preview.versions_dropped)} old versions?",
                abort=True,
                err=True,
            )
    stats = collect_garbage(project.db, grace_seconds=grace, dry_run=dry_run, **rule)
    _emit(as_json, stats, render.render_gc(stats, project.db.schema_keys))


@main.command()
@click.option("--reindex", is_flag=True, help="First rebuild the DuckDB index from the journal.")
@click.option("--repair", is_flag=True, help="Rebuild damaged pack indexes from their packs, finish a merge of packs "
              "a killed process left half done, put a good copy cached here over a damaged or missing one in a "
              "lab's object store, set other damaged objects aside (kept in .scistack/quarantine/), and drop call-cache entries whose record or output is lost "
              "(their next run computes them again; an entry whose record alone is lost names instead another "
              "record of the call that a saved value names).")
@click.option("--quarantine", is_flag=True,
              help="Move unreadable journal lines to refs.log.quarantine (kept) so the journal is clean.")
@click.option("--local", is_flag=True,
              help="Lab project: check only the copies cached on this machine, not the object store's "
              "(which fsck otherwise downloads once each, streamed, and says how long that took).")
@json_option
@click.pass_context
def fsck(ctx: click.Context, reindex: bool, repair: bool, quarantine: bool, local: bool, as_json: bool) -> None:
    """Re-hash every object; report corrupt and missing objects, refs to missing objects,
    dangling calls and unreadable journal lines. Exits with 1 when anything is wrong.

    In a lab project the object store's copies are checked (a good copy cached here does not
    hide a damaged or missing one there), and --repair puts a good cached copy over a damaged
    one, or back where it is missing."""
    from scistack.fsck import fsck as check
    from scistack.fsck import reindex as rebuild

    applied = rebuild(ctx.obj.db) if reindex else None
    report = check(ctx.obj.db, repair=repair, quarantine=quarantine, local=local)
    aside = ctx.obj.db.index.moved_aside if reindex else None
    text = render.render_fsck(report) + (
        f"\nreindexed {applied} journal entries" if reindex else ""
    ) + (f"\nthe damaged DuckDB file was moved aside to {aside.name}" if aside else "")
    _emit(as_json, {**render.json_ready(report), "ok": report.ok, "reindexed": applied}, text)
    ctx.exit(0 if report.ok else 1)


@main.command()
@click.argument("query")
@click.option("-a", "--all", "whole", is_flag=True,
              help=f"Print every row (default: the first {render.SQL_ROWS}; --json gives all).")
@json_option
@click.pass_obj
def sql(project: _Project, query: str, whole: bool, as_json: bool) -> None:
    """Run a read-only SQL QUERY on the index (one view per variable, plus refs and calls).

    Several statements (`SELECT 1; SELECT 2`) print each one's result in order; with --json,
    a list holding each one's rows."""
    from scistack.report.history import query_each

    results = query_each(project.db, query)
    if as_json:
        records = [render.result_records(result) for result in results]
        return _emit(True, records[0] if len(records) == 1 else records, "")
    click.echo("\n\n".join(render.render_frame(result, limit=None if whole else render.SQL_ROWS)
                            for result in results))


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--keys", metavar="K1,K2", help="Schema keys of a new project (a lab's come from its journal).")
@click.option("--shared", metavar="URL", help="The lab's PostgreSQL journal: postgresql://host/db.")
@click.option("--objects", metavar="URL", help="The lab's object store: s3://bucket/prefix (to join: the one "
              "the shared project records, when left out).")
def init(path: str, keys: str | None, shared: str | None, objects: str | None) -> None:
    """Create the project PATH (a .duckdb file), or join a lab's shared project on this machine.

    Passwords stay out of the project: PostgreSQL's come from ~/.pgpass or PGPASSWORD, S3's
    from the usual AWS_* environment."""
    import shlex

    from scistack.database import Database
    from scistack.errors import NotARepositoryError
    from scistack.index.pgjournal import redact

    schema = [k.strip() for k in keys.split(",") if k.strip()] if keys else None
    try:
        db = Database(path, schema, shared=shared, objects=objects)
    except NotARepositoryError:
        if schema is not None:
            raise
        # the library's message names configure_database(...): the shell user gets this command
        lab = f" --shared {shlex.quote(redact(shared))} --objects {shlex.quote(objects or 's3://bucket/prefix')}" \
            if shared else ""
        what = (f"the shared journal {redact(shared)} holds no project yet" if shared
                else f"{path} is not a scistack project yet")
        raise NotARepositoryError(
            f"{what}; create it with `scistack init {shlex.quote(path)}{lab} --keys subject,session` "
            "(its schema keys, coarsest first)") from None
    try:
        where = f" shared through {shared.split('@')[-1]} and {db.objects_url}" if shared else ""
        click.echo(f"{db.path.name}: schema keys {', '.join(db.schema_keys)}{where}")
    finally:
        db.close()


@main.command()
@click.argument("manifest", type=click.Path(exists=True))
@click.pass_obj
def ingest(project: _Project, manifest: str) -> None:
    """Record values staged by the MATLAB client; prints each item's oid, one per line.

    MANIFEST is `<project>/.scistack/staging/<id>/manifest.json`, or the queue folder
    `<project>/.scistack/queue` of MATLAB's deferred saves (all of them, oldest first; one it
    refuses is moved to `<project>/.scistack/rejected/` and named in a warning); its
    project is used unless --db says otherwise."""
    from scistack.ingest import ingest_manifest, ingest_queue, project_of_manifest

    if Path(manifest).is_dir():
        if project.path is None:
            project.path = str(Path(manifest).resolve().parents[1])
        rejected: list[str] = []
        oids = ingest_queue(project.db, manifest, rejected)
        for message in rejected:
            click.echo(f"warning: {message}", err=True)
    else:
        if project.path is None:
            project.path = str(project_of_manifest(manifest))
        oids = ingest_manifest(project.db, manifest)
    for oid in oids:
        click.echo(oid)


@main.command("matlab-plan")
@click.argument("plan", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def matlab_plan(project: _Project, plan: str) -> None:
    """Plan a MATLAB for_each: which combinations are cached, missing, or must run.

    PLAN is `<project>/.scistack/staging/<id>/plan.json` (written by scistack.for_each in
    MATLAB); the plan is written beside it as plan-result.json. Records nothing."""
    from scistack.ingest import project_of_manifest
    from scistack.matlab_bridge import plan as make_plan

    if project.path is None:
        project.path = str(project_of_manifest(plan))
    counts = make_plan(project.db, plan)["counts"]
    click.echo(", ".join(f"{n} {status}" for status, n in counts.items()))


@main.command("matlab-commit")
@click.argument("results", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def matlab_commit(project: _Project, results: str) -> None:
    """Record what a MATLAB for_each ran: outputs, call records, call cache, refs, run report.

    RESULTS is `<staging>/results.json` beside the plan.json and plan-result.json of the
    same run; commit-result.json is written beside it. All or nothing."""
    from scistack.ingest import project_of_manifest
    from scistack.matlab_bridge import commit

    if project.path is None:
        project.path = str(project_of_manifest(results))
    click.echo(commit(project.db, results)["summary"])


@main.command("matlab-thunk")
@click.argument("request", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def matlab_thunk(project: _Project, request: str) -> None:
    """Key one MATLAB Thunk call and look it up in the call cache (prints cached or run).

    REQUEST is `<staging>/thunk.json`; the answer is written beside it as thunk-result.json.
    Records nothing."""
    from scistack.ingest import project_of_manifest
    from scistack.matlab_bridge import thunk_lookup

    if project.path is None:
        project.path = str(project_of_manifest(request))
    click.echo(thunk_lookup(project.db, request)["status"])


@main.command("matlab-thunk-commit")
@click.argument("results", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def matlab_thunk_commit(project: _Project, results: str) -> None:
    """Record a MATLAB Thunk call that ran: outputs, call record, cache entry (prints the call).

    RESULTS is `<staging>/thunk-results.json` beside the thunk.json and thunk-result.json of
    the same call; thunk-commit.json is written beside it. All or nothing."""
    from scistack.ingest import project_of_manifest
    from scistack.matlab_bridge import thunk_commit

    if project.path is None:
        project.path = str(project_of_manifest(results))
    click.echo(thunk_commit(project.db, results)["call"])


@main.command("matlab-mirror")
@click.argument("oids", nargs=-1)
@click.pass_obj
def matlab_mirror(project: _Project, oids: tuple[str, ...]) -> None:
    """Lab project: bring .scistack/cache/refs.log (the shared journal, what MATLAB folds) up
    to date, and fetch the objects OIDS (with their children) into the local cache."""
    from scistack.matlab_bridge.lab import fetch_objects, mirror_journal

    _, added = mirror_journal(project.db)
    fetched = fetch_objects(project.db, oids)
    click.echo(f"{added} journal lines mirrored, {fetched} objects fetched")


@main.command()
@click.option("--function", "function", help="Only the runs of this function.")
@click.option("--all", "show_all", is_flag=True,
              help=f"With RUN_ID: every combination (default: the first {render.RUN_LINES}, failures first).")
@click.argument("run_id", required=False)
@json_option
@click.pass_obj
def runs(project: _Project, function: str | None, show_all: bool, run_id: str | None, as_json: bool) -> None:
    """History of for_each runs, newest first: counts and durations. With RUN_ID (or a
    prefix of it), that run's combinations, failures first with their tracebacks."""
    from scistack.report.runs import run_history, run_items

    if run_id:
        summary, items = run_items(project.db, run_id)
        shown = render.render_run(summary, items, project.db.schema_keys,
                                  limit=None if show_all else render.RUN_LINES)
        return _emit(as_json, {"run": summary, "items": items}, shown)
    history = run_history(project.db, function=function)
    _emit(as_json, history, render.render_runs(history))


@main.command()
@json_option
@click.pass_obj
def graph(project: _Project, as_json: bool) -> None:
    """The pipeline: each function with its input and output variables, and each node's
    state (current, stale, failed, missing) as `status` counts it."""
    from scistack.report.pipeline import pipeline_graph

    pipeline = pipeline_graph(project.db)
    data = {"nodes": pipeline.nodes, "edges": pipeline.edges}
    _emit(as_json, data, render.render_pipeline(pipeline))


@main.command()
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--open", "open_browser", is_flag=True, help="Also open the page in a browser.")
@click.pass_obj
def ui(project: _Project, port: int, open_browser: bool) -> None:
    """Serve a local web view of the project (pipeline graph, status grids, values, runs)
    on 127.0.0.1 until Ctrl-C. Read-only; it shows saves by other processes as they happen."""
    from scistack.ui.server import UiServer

    server = UiServer(project.db, port=port)
    click.echo(f"scistack web view of {project.db.path}: {server.url}  (Ctrl-C stops it)")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
