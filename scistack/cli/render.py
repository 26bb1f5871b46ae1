"""Text and JSON for the `scistack` commands: plain functions from library data to strings.

Everything fits 80 columns: tables shrink their widest columns (cutting cells with "…"),
the status grid splits its variables into blocks, long lines are cut (or wrapped, where the
end of the line is its point: a reason, an address).
"""

from __future__ import annotations

import json
import textwrap
import unicodedata
from typing import Any

import numpy as np

from scistack.address import value_text
from scistack.foreach.report import counts_text
from scistack.index import RefRecord
from scistack.index.sql import result_frame
from scistack.report.json_ready import json_ready

WIDTH = 80
SHORT = 12


# -- JSON --------------------------------------------------------------------------------
def to_json(data: Any) -> str:
    """Library results (dataclasses, lists, records) as indented JSON (strict: no NaN)."""
    return json.dumps(json_ready(data), indent=2, allow_nan=False)


# -- small pieces ------------------------------------------------------------------------
def display_width(text: str) -> int:
    """The terminal columns `text` takes: a wide or full-width (East Asian) character two, a
    combining mark none (tables padded by `len` pushed a row with CJK text out of line)."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def pad(text: str, width: int) -> str:
    """`text.ljust(width)` by terminal columns (`display_width`)."""
    return text + " " * (width - display_width(text))


def cut(text: str, width: int = WIDTH) -> str:
    """`text` cut to `width` terminal columns, ending in "…" when cut."""
    if display_width(text) <= width:
        return text
    kept, used = [], 0
    for c in text:
        used += display_width(c)
        if used > width - 1:
            break
        kept.append(c)
    return "".join(kept) + "…"


def addr_text(addr: dict[str, Any], keys: list[str] | None = None) -> str:
    """`subject=1 session=pre`, in schema order."""
    order = [k for k in (keys or []) if k in addr] + [k for k in addr if k not in (keys or [])]
    return " ".join(f"{k}={value_text(addr[k])}" for k in order)


def when(timestamp: str) -> str:
    """`2026-11-21T06:15:32.123Z` -> `2026-11-21 06:15:32`."""
    return timestamp[:19].replace("T", " ") if timestamp else "?"


def size_text(n: int) -> str:
    """Bytes in a short human unit."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def table(headers: list[str], rows: list[list[Any]], width: int = WIDTH, *, whole: tuple[int, ...] = ()) -> str:
    """Left-aligned columns that fit `width` (the widest columns shrink first; those numbered
    in `whole` never do: a line may then be longer than `width`)."""
    cells = [[str(c) for c in headers]] + [
        ["" if c is None else str(c) for c in row] for row in rows
    ]
    widths = [max(display_width(r[i]) for r in cells) for i in range(len(headers))]
    while sum(widths) + 2 * (len(widths) - 1) > width:
        shrinkable = [w if i not in whole else 0 for i, w in enumerate(widths)]
        if max(shrinkable) <= 6:
            break
        widths[shrinkable.index(max(shrinkable))] -= 1
    lines = ["  ".join(pad(cut(c, w), w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- commands ----------------------------------------------------------------------------
def render_ls(summaries: list[Any]) -> str:
    if not summaries:
        return "no variables yet"
    rows = [
        [s.name, s.values, s.versions, size_text(s.size_bytes), when(s.last_change)]
        for s in summaries
    ]
    return table(["VARIABLE", "VALUES", "VERSIONS", "SIZE", "LAST CHANGE (UTC)"], rows)


def call_lines(call: Any, label_width: int = 11) -> list[str]:
    """The call record of a value, as `log` and `show` print it."""
    if call is None:
        return []
    pad = lambda label: f"{label + ':' if label else '':<{label_width}}"  # noqa: E731
    consts = constants_text(call.constants)
    # the code's own object, which `scistack show` prints (the identity, which also digests
    # what the code reads, is no object: it had been printed here, and `show` could not follow it)
    code = f"code {call.code[:SHORT]}" if call.code else f"identity {call.identity[:SHORT]}"
    lines = [cut(f"{pad('Function')}{call.function} ({call.module})  {code}")]
    if consts:
        lines.append(cut(f"{pad('Constants')}{consts}"))
    for i, item in enumerate(call.inputs):
        lines.append(cut(f"{pad('Inputs' if i == 0 else '')}{input_text(item)}"))
    if call.git_commit:
        dirty = (
            " (dirty, diff " + call.git_diff[:SHORT] + ")"
            if call.git_dirty and call.git_diff
            else " (dirty)"
            if call.git_dirty
            else ""
        )
        lines.append(f"{pad('Git')}{call.git_commit[:SHORT]}{dirty}")
    lines.append(
        f"{pad('Call')}{call.oid[:SHORT]}  ran {when(call.started)}, {call.duration:.3g} s"
    )
    return lines


def constants_text(constants: dict[str, Any]) -> str:
    """`low_hz=20, order=4`: a numpy scalar as its number (numpy 2 prints np.int64(20))."""
    return ", ".join(f"{k}={(v.item() if getattr(v, 'shape', None) == () else v)!r}"
                     for k, v in constants.items())


def input_text(item: Any) -> str:
    """`signal=RawEMG@76fae8006c5a`, or an aggregate / merge / earlier result."""
    if item.members:
        return f"{item.name}={item.var}[{len(item.members)} records at {addr_text(item.addr) or 'all'}]"
    if item.merge:
        return f"{item.name}=merge({' + '.join(str(m.get('var', '?')) for m in item.merge)})"
    if item.var:
        return f"{item.name}={item.var}@{item.oid[:SHORT]}"
    if item.call:
        return f"{item.name}=<result of call {item.call[:SHORT]}>@{item.oid[:SHORT]}"
    if item.raw_file:  # a PathInput: the file it read (its oid is of content never stored)
        return f"{item.name}=file {item.raw_file[0]}@{item.oid[:SHORT]}"
    return f"{item.name}=<constant>@{item.oid[:SHORT]}"  # an array or long constant, stored by oid


def render_log(entries: list[Any], keys: list[str]) -> str:
    blocks = []
    for e in entries:
        head = f"value {e.oid[:SHORT]}  {e.var} {addr_text(e.addr, keys)}"
        head = cut(head + ("  (current)" if e.current else ""))
        lines = [head, f"{'Version:':<11}{e.version}  {when(e.created_at)} UTC"]
        if e.vkeys:
            lines.append(cut(f"{'Keys:':<11}{addr_text(e.vkeys)}"))
        lines.append(cut(f"{'Value:':<11}{e.kind} {e.summary}"))
        lines += (
            call_lines(e.call) if e.call else [f"{'Function:':<11}(saved directly, no lineage)"]
        )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else "no versions"


def render_log_graph(entries: list[Any], trees: list[Any], keys: list[str]) -> str:
    """Each log entry followed by its lineage tree."""
    blocks = [
        render_log([e], keys) + "\n\n" + render_graph(t, keys) for e, t in zip(entries, trees)
    ]
    return "\n\n".join(blocks) or "no versions"


def render_graph(node: Any, keys: list[str]) -> str:
    lines: list[str] = []

    def walk(n: Any, prefix: str, last: bool, top: bool, parent_addr: Any = None) -> None:
        label = f"{n.param}: " if n.param else ""
        what = n.note if n.note.startswith("file ") else "<constant>" if n.note == "constant" else "<result>"
        label += f"{n.var or what}@{n.oid[:SHORT]}"
        if n.addr and n.addr != parent_addr:  # an input at the same address says nothing new
            label += " " + addr_text(n.addr, keys)
        if n.call is not None:
            consts = constants_text(n.call.constants)
            label += f" <- {n.call.function}({consts})"
        if n.note and n.note != "constant" and not n.note.startswith("file "):
            label += f" [{n.note}]"
        lines.append(cut(prefix + ("" if top else "└── " if last else "├── ") + label))
        child_prefix = prefix + ("" if top else "    " if last else "│   ")
        for i, child in enumerate(n.children):
            walk(child, child_prefix, i == len(n.children) - 1, False, n.addr)

    walk(node, "", True, True)
    return "\n".join(lines)


def render_show(result: Any, keys: list[str]) -> str:
    lines = [
        f"object {result.oid}",
        f"{'Kind:':<11}{result.kind}, {size_text(result.size_bytes)} on disk",
    ]
    for r in result.refs[:10]:
        lines.append(
            cut(f"{'Ref:':<11}{r.var} {addr_text({**r.addr, **r.vkeys}, keys)} version {r.version}")
        )
    if len(result.refs) > 10:
        lines.append(f"{'':<11}... and {len(result.refs) - 10} more refs")
    value = result.value
    if value.get("type") == "ndarray":
        shape = "x".join(map(str, value["shape"])) or "scalar"
        lines.append(f"{'Value:':<11}ndarray {value['dtype']} [{shape}]")
        if "min" in value:
            lines.append(
                f"{'':<11}min {value['min']:.6g}  max {value['max']:.6g}  mean {value['mean']:.6g}"
            )
        lines.append(cut(f"{'':<11}first: {', '.join(repr(x) for x in value['head'])}"))
    elif value.get("type") == "chunked array":
        shape, chunk = ("x".join(map(str, value[k])) for k in ("shape", "chunk_shape"))
        lines.append(f"{'Value:':<11}chunked array {value['dtype']} [{shape}], "
                     f"{value['chunks']} chunks of [{chunk}], {size_text(value['bytes'])}")
    elif value.get("type") == "chunked table":
        lines.append(f"{'Value:':<11}chunked table, {value['rows']} rows x {len(value['columns'])} "
                     f"columns in {value['row_groups']} row groups")
        lines.append(cut(f"{'':<11}columns: {', '.join(map(str, value['columns']))}"))
    elif "head" in value:
        lines.append(f"{'Value:':<11}{value['type']} {'x'.join(map(str, value['shape']))}")
        lines += [cut("  " + line) for line in value["head"].splitlines()]
    elif "text" in value:
        lines.append(f"{'Value:':<11}{value['type']}, {len(value['text'].splitlines())} lines")
        lines += ["", value["text"].rstrip("\n")]
    elif value.get("type") != "call record":
        text = value.get("repr", "")
        lines.append(
            f"{'Value:':<11}{value['type']}" + (f" of {value['len']}" if "len" in value else "")
        )
        lines += [cut("  " + line) for line in text.splitlines()]
    lines += call_lines(result.call)
    return "\n".join(lines)


STATUS_WORDS = {
    "done": "done",
    "stale": "STALE",
    "unknown": "?",
    "failed": "FAILED",
    "missing": "-",
}


def render_status(grid: Any, keys: list[str], *, problems_only: bool = False) -> str:
    if not grid.addresses:
        return "\n".join(f"{v}: {grid.empty[v]}" for v in grid.variables if v in grid.empty) or "nothing saved yet"
    if problems_only:
        keep = [i for i, row in enumerate(grid.grid) if any(c and c.status != "done" for c in row)]
        grid = type(grid)(
            grid.variables, [grid.addresses[i] for i in keep], [grid.grid[i] for i in keep], grid.empty
        )
        if not keep:
            return "everything is done"
    key_cols = [k for k in keys if any(k in a for a in grid.addresses)]
    key_widths = [
        max(len(k), *(display_width(value_text(a.get(k, ""))) for a in grid.addresses)) for k in key_cols
    ]
    key_width = sum(w + 2 for w in key_widths)
    var_width = {v: min(max(len(v), 6), 16) for v in grid.variables}
    blocks, block, used = [], [], key_width
    for var in grid.variables:
        if block and used + var_width[var] + 2 > WIDTH:
            blocks.append(block)
            block, used = [], key_width
        block.append(var)
        used += var_width[var] + 2
    blocks.append(block)
    out = []
    for block in blocks:
        head = "".join(k.ljust(w + 2) for k, w in zip(key_cols, key_widths))
        head += "  ".join(cut(v, var_width[v]).ljust(var_width[v]) for v in block)
        lines = [head.rstrip()]
        for addr, cells in zip(grid.addresses, grid.grid):
            row = "".join(
                pad(value_text(addr[k]), w + 2) if k in addr else " " * (w + 2)
                for k, w in zip(key_cols, key_widths)
            )
            for var in block:
                cell = cells[grid.variables.index(var)]
                row += (STATUS_WORDS[cell.status] if cell else "").ljust(var_width[var] + 2)
            lines.append(row.rstrip())
        out.append("\n".join(lines))
    legend = (
        "done = up to date, STALE = code or inputs changed, ? = code not checkable here,\n"
        "FAILED = last run failed, - = missing"
    )
    counts = grid.counts()
    summary = [
        cut(f"{v}: " + (", ".join(f"{n} {s}" for s, n in counts[v].items() if n) or grid.empty.get(v, "")))
        for v in grid.variables
    ]
    return "\n\n".join(out) + "\n\n" + "\n".join(summary) + "\n\n" + legend


def render_status_summary(summary: Any, limit: int) -> str:
    """Counts per variable and the first cells that are not done: a project of a million values
    answers in a screenful (the whole grid is `status --all`)."""
    if not summary.variables:
        return "nothing saved yet"
    heads = ["VARIABLE", *(STATUS_WORDS[s] if s != "missing" else "missing" for s in summary.counts[summary.variables[0]])]
    rows = [[var, *summary.counts[var].values()] for var in summary.variables]
    out = [table(heads, rows)]
    if summary.problems:
        out.append(f"Not done (up to {limit} per variable; `scistack status --all` shows the whole grid):")
        # wrapped, not cut: the reason (`code, module data or packages of scale changed`, a
        # failed run's error) lost its end at 80 columns; continued as `why` continues it
        lines = []
        for c in summary.problems:
            text = f"{c.var:<16} {pad(addr_text(c.addr), 32)} {STATUS_WORDS[c.status]:<6} {c.reason}"
            lines += textwrap.wrap(text, WIDTH, initial_indent="  ", subsequent_indent="      ")
        out.append("\n".join(lines))
    else:
        out.append("everything is done")
    return "\n\n".join(out)


def render_why(report: Any) -> str:
    where = addr_text(report.address)
    head = f"{report.variable} {where} is {report.status}"
    if report.function:
        head += f" (computed by {report.function})"
    lines = textwrap.wrap(head, WIDTH, subsequent_indent="    ")
    for r in report.reasons:
        lines += textwrap.wrap(
            f"- {r.kind} {r.name}: {r.detail}", WIDTH, initial_indent="  ", subsequent_indent="    "
        )
    for r in report.reasons:
        if r.diff:
            lines += ["", r.diff.rstrip("\n")]
    return "\n".join(lines)


def render_plan(
    plan: list[RefRecord], keys: list[str], orphans: list[Any] = (), *, cascade: bool = False
) -> str:
    """The refs `rm` deletes, each with its full address (never cut: this is what is lost)."""
    rows = [[r.var, r.version, r.oid[:SHORT], when(r.created_at)] for r in plan]
    lines = table(["VARIABLE", "VERSION", "OID", "SAVED (UTC)"], rows).splitlines()
    out = lines[:2]
    for line, r in zip(lines[2:], plan):
        out.append(line)
        address = addr_text({**r.addr, **r.vkeys}, keys) or "(no address)"
        step = WIDTH - 6  # cut by characters, not at spaces: every character is shown as it is
        out += [("    " if i == 0 else "      ") + address[i:i + step] for i in range(0, len(address), step)]
    if orphans:
        fate = "dropped now" if cascade else "`scistack gc` drops them"
        out.append(f"orphans {len(orphans)} cached calls ({fate}):")
        for entry in orphans[:10]:
            out.append(cut(f"    {entry['call'][:SHORT]}  {entry.get('fn') or '?'}"))
        if len(orphans) > 10:
            out.append(f"    ... and {len(orphans) - 10} more")
    return "\n".join(out)


def render_gc(stats: Any, keys: list[str] | None = None) -> str:
    verb = "would delete" if stats.dry_run else "deleted"
    lines = []
    if stats.versions_dropped:
        lines.append(
            f"retention {'would drop' if stats.dry_run else 'dropped'} "
            f"{len(stats.versions_dropped)} old versions:"
        )
        for v in stats.versions_dropped[:20]:
            where = addr_text({**v["addr"], **v["vkeys"]}, keys)
            lines.append(cut(f"    {v['var']} version {v['version']} ({when(v['created_at'])})  {where}"))
        if len(stats.versions_dropped) > 20:
            lines.append(f"    ... and {len(stats.versions_dropped) - 20} more")
    lines += [
        f"{stats.objects_scanned} objects scanned, {stats.objects_reachable} reachable",
        f"{verb} {stats.objects_deleted} objects and {stats.temp_files_removed} temporary files, "
        f"{'would free' if stats.dry_run else 'freed'} {stats.bytes_freed} bytes "
        f"({size_text(stats.bytes_freed)})",
    ]
    if stats.calls_dropped:
        lines.append(
            f"{'would drop' if stats.dry_run else 'dropped'} {stats.calls_dropped} cached calls "
            "whose outputs are no longer named"
        )
    if stats.objects_kept_by_grace:
        lines.append(
            f"kept {stats.objects_kept_by_grace} unreachable objects younger than the grace period"
        )
    if stats.grace_note:
        lines.append(stats.grace_note)
    if stats.packs_merged:
        lines.append(
            f"{'would merge' if stats.dry_run else 'merged'} {stats.packs_merged} small packs into "
            f"{stats.packs_written} ({size_text(stats.merged_bytes)})"
        )
    if stats.merge_note:
        lines.append(stats.merge_note)
    if stats.packs_left_whole:
        names = ", ".join(stats.packs_left_whole[:5]) + (" ..." if len(stats.packs_left_whole) > 5 else "")
        lines.append(
            f"left {len(stats.packs_left_whole)} pack(s) whole, their unreachable objects not deleted: "
            f"the index does not match the records ({names}); run `scistack fsck --repair` to rebuild "
            "it from the pack, then gc again"
        )
    if stats.roots:
        lines.append("what each root keeps alive (objects first reached from it):")
        rows = [[u.root, u.objects, size_text(u.bytes)] for u in stats.roots]
        lines += ["  " + line for line in table(["ROOT", "OBJECTS", "SIZE"], rows, WIDTH - 2).splitlines()]
    return "\n".join(lines)


def render_fsck(report: Any) -> str:
    lines = [
        f"checked {report.objects_checked} objects ({size_text(report.bytes_checked)}), "
        f"{report.refs_checked} refs, {report.calls_checked} cached calls"
    ]
    lines += [f"repaired: {what}" for what in report.repaired]
    for p in report.problems:
        oid = p.oid[:SHORT] + " " if p.oid else ""
        lines.append(f"{p.kind}: {oid}{p.detail}")  # whole: the detail ends in what to do
    lines += [f"note: {note}" for note in report.notes]
    lines += [f"warning: {warning}" for warning in report.warnings]
    lines.append("ok" if report.ok else f"{len(report.problems)} problem(s) found")
    return "\n".join(lines)


SQL_ROWS = 40  # rows `scistack sql` prints (as the DuckDB CLI does; --all prints every one)


def render_frame(result: Any, *, limit: int | None = None) -> str:
    """A query's result (an Arrow table) as a table: its first `limit` rows, and how many
    there are. A NULL is blank and a NaN is `NaN`: in pandas both are NaN in a float column
    (and were both printed blank), so the cells are read from Arrow."""
    if not result.num_rows:
        return "(no rows)" if result.num_columns else "(no result)"
    shown = result if limit is None else result.slice(0, limit)
    # (cells as Arrow gives them: pandas made an int column holding a NULL floats, 3 -> 3.0)
    columns = [_timely(column.to_pylist()) if _has_times(column.type) else column.to_pylist()
               for column in shown.columns]
    rows = [["NaN" if _is_nan(c) else c for c in row] for row in zip(*columns)]
    more = result.num_rows - shown.num_rows
    tail = (f"{result.num_rows:,} rows; the first {shown.num_rows} shown: --all prints every one"
            if more else f"{result.num_rows} rows")
    return table([str(c) for c in result.column_names], rows) + f"\n({tail})"


def _has_times(type_: Any) -> bool:
    """Whether an Arrow type is an INTERVAL or a list (at any depth) of times or intervals:
    their Python cells print as reprs (`MonthDayNano(...)`, `[datetime.datetime(...)]`)."""
    import pyarrow as pa  # noqa: PLC0415 - the result is an Arrow table: pyarrow is loaded

    if pa.types.is_interval(type_):
        return True
    while pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_):
        type_ = type_.value_type
        if pa.types.is_temporal(type_) or pa.types.is_interval(type_):
            return True
    return False


class _Shown(str):
    """Text that prints as itself inside a list (a str's repr would quote it)."""

    def __repr__(self) -> str:
        return str(self)


def _timely(cells: list) -> list:
    """Cells holding times as DuckDB prints them: an interval `1 day 02:00:00`, a list
    `[2024-01-01 00:00:00, NULL]`; a NULL cell stays None (blank)."""
    def shown(value: Any) -> Any:
        if isinstance(value, list):
            return _Shown("[" + ", ".join("NULL" if v is None else str(shown(v)) for v in value) + "]")
        if type(value).__name__ == "MonthDayNano":  # (pyarrow's, a tuple)
            return _Shown(_interval_text(value.months, value.days, value.nanoseconds))
        return value if value is None else _Shown(str(value))
    return [shown(c) for c in cells]


def _interval_text(months: int, days: int, nanoseconds: int) -> str:
    """An INTERVAL as DuckDB writes it: `1 year 2 months`, `-2 days 03:00:00`, `00:00:00.0015`
    (years and months, days, then the time to the microsecond, its zeros left off)."""
    years, months = _toward_zero(months, 12)
    parts = [f"{n} {unit}{'' if abs(n) == 1 else 's'}"
             for n, unit in ((years, "year"), (months, "month"), (days, "day")) if n]
    micros = _toward_zero(nanoseconds, 1000)[0]
    if micros or not parts:
        hours, rest = divmod(abs(micros), 3_600_000_000)
        minutes, rest = divmod(rest, 60_000_000)
        seconds, fraction = divmod(rest, 1_000_000)
        clock = f"{'-' if micros < 0 else ''}{hours:02d}:{minutes:02d}:{seconds:02d}"
        parts.append(clock + (f".{fraction:06d}".rstrip("0") if fraction else ""))
    return " ".join(parts)


def _toward_zero(n: int, d: int) -> tuple[int, int]:
    """`divmod` as C++ divides: the quotient cut toward zero, the remainder of `n`'s sign."""
    q, r = divmod(abs(n), d)
    return (-q, -r) if n < 0 else (q, r)


def _is_nan(cell: Any) -> bool:
    """Whether a cell is a float NaN (float64 or float32), not an array holding one."""
    return isinstance(cell, (float, np.floating)) and cell != cell


def result_records(result: Any) -> list[dict[str, Any]]:
    """A query's result (an Arrow table) as JSON records: NULL and NaN are both null, as JSON
    has no NaN (`to_json` writes NaN as null everywhere); integers stay integers."""
    frame = result_frame(result)
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


# -- runs and graph ----------------------------------------------------------------------
def render_runs(runs: list[Any]) -> str:
    if not runs:
        return "no for_each runs yet"
    rows = [[r.run_id[:SHORT], r.t[:19].replace("T", " "), r.function,
             counts_text(r.counts, skip_zero=True) or "nothing",
             f"{r.duration:.2f} s"] for r in runs]
    # the counts are what a run is looked up for: never cut ("5 cached, 1 missing, 2 r…")
    return table(["run", "started (UTC)", "function", "counts", "duration"], rows, whole=(0, 1, 3, 4))


RUN_LINES = 20  # combinations `scistack runs RUN_ID` lists (a run can have 100k; --all lists them)


def render_run(run: Any, items: list[Any], keys: list[str], *, limit: int | None = None) -> str:
    """A run's summary and its combinations (the first `limit`: `items` come failures first)."""
    counts = counts_text(run.counts)  # as for_each's summary line says them
    lines = [f"run {run.run_id}: for_each({run.function})",
             cut(f"{run.t[:19].replace('T', ' ')} UTC: {counts} in {run.duration:.2f} s")]
    for item in items if limit is None else items[:limit]:
        order = sorted(item.combo, key=lambda k: keys.index(k) if k in keys else len(keys))
        where = ", ".join(f"{k}={value_text(item.combo[k])}" for k in order)
        lines.append(cut(f"  {item.status:<8} {where}  ({item.duration:.3f} s)"))
        if item.status == "failed":
            lines.append(f"    {item.error}")
            lines += ["    " + line for line in (item.traceback or "").rstrip().splitlines()]
    left = items[limit:] if limit is not None else []
    if left:
        failed = sum(1 for item in left if item.status == "failed")
        lines.append(f"  ... and {len(left):,} more combinations{f' ({failed:,} failed)' if failed else ''}: "
                     f"`scistack runs {run.run_id[:SHORT]} --all` lists every one")
    return "\n".join(lines)


def render_pipeline(pipeline: Any) -> str:
    if not pipeline.nodes:
        return "nothing saved yet"
    lines = []
    raw_ids = {n.id for n in pipeline.nodes if n.kind == "raw"}
    for node in pipeline.nodes:
        counts = ", ".join(f"{n} {s}" for s, n in node.counts.items() if n) or node.note or "no values"
        if node.kind == "function":
            inputs = sorted(a[4:] for a, b in pipeline.edges if b == node.id)  # (raw: "raw files: ...")
            inputs = [f"raw files: {a}" if f"raw:{a}" in raw_ids else a for a in inputs]
            lines.append(f"{node.name}({', '.join(inputs)}) -> {', '.join(node.outputs)}: "
                         f"{node.state} ({counts})")
    raw = [n for n in pipeline.nodes if n.kind == "variable"
           and not any(b == n.id for _, b in pipeline.edges)]
    lines += [f"{n.name} (raw): {n.state} ({', '.join(f'{c} {s}' for s, c in n.counts.items() if c) or n.note})"
              for n in raw]
    return "\n".join(lines)
