"""The readable views: one per variable (newest version per address), `<Var>_all` (every
version), `<Var>_branches` (newest version per address and lineage parameters), `<Var>_rows` (DataFrame values, one row per frame row), `scistack_variables` and
`scistack_runs`.

A variable's columns depend on its data: schema keys, version keys and lineage parameters
typed from their JSON values, the value as a real SQL type (from `scistack.vals`, the inline
rows the sync got from the layer that reads objects), then shape, dtype, kind, summary, fn,
version, created_at and oid. The shapes of all touched variables come from one grouped query,
so a sync after a large run scans the touched rows once, however many variables it touched.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)


# JSON value types (json_group_structure) -> the SQL type of a column holding them
_NUMERIC = {"BIGINT": "BIGINT", "UBIGINT": "BIGINT", "HUGEINT": "BIGINT", "DOUBLE": "DOUBLE",
            "BOOLEAN": "BOOLEAN"}
# a frame column's integers beyond BIGINT stay whole (they were NULL); see `_typed_frame_columns`
_ROW_NUMERIC = {**_NUMERIC, "UBIGINT": "UBIGINT", "HUGEINT": "HUGEINT"}
_SCALAR_COLUMN = {"BIGINT": "v.i", "DOUBLE": "v.d", "BOOLEAN": "v.b", "VARCHAR": "v.s",
                  "BIGINT[]": "v.li", "DOUBLE[]": "v.ld", "BOOLEAN[]": "v.lb", "VARCHAR[]": "v.ls",
                  "JSON": "CAST(v.j AS JSON)", "TIMESTAMP": "TRY_CAST(v.s AS TIMESTAMP)",
                  "INTERVAL": "TRY_CAST(v.s AS INTERVAL)",  # numpy times, as text (`inline._time`)
                  "TIMESTAMP[]": "TRY_CAST(v.ls AS TIMESTAMP[])", "INTERVAL[]": "TRY_CAST(v.ls AS INTERVAL[])"}
_NO_VALUE = {None, "NULL", "LARGE", "OPAQUE", "UNREADABLE", "TABLE"}
# the inline columns a JSON value column is made of (`json_value`), the JSON text first
JSON_PARTS = ("j", "i", "d", "b", "s", "li", "ld", "lb", "ls")
STATIC_VIEWS = ("scistack_variables", "scistack_runs")
# a variable's views besides its own: `<Var>_all`, `<Var>_branches`, `<Var>_rows` (what each shows)
VIEW_SUFFIXES = {"_all": "every version", "_branches": "the newest version per address and lineage parameters",
                 "_rows": "each DataFrame row"}
# a journal time ('2026-12-06T21:10:03.123456Z') as an instant: as text, `created_at > now() -
# INTERVAL 1 DAY` failed and `> '2026-12-06 23:59:59'` compared letters ('T' after ' '). TIMESTAMPTZ,
# not TIMESTAMP: it is compared with now() exactly, and the DuckDB CLI and DBeaver show it (and
# read a literal like '2026-12-06 23:59') in the user's own time zone
SAVED_AT = "TRY_CAST({} AS TIMESTAMPTZ)"


def quote(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def shown_as_text(value):
    """A scalar as a view shows it in a text column (a schema key, version key or lineage
    parameter whose values mix types): a str as itself, None as NULL, a bool as `true`/`false`,
    an int or float as Python and DuckDB both write it (`1`, `1.0`, `1e+100`), NaN and the
    infinities as `nan`, `inf`, `-inf`. The one rendering of the schema key columns in
    `scistack.refs` (which these views show as they are), of `_json_text` and of the text
    columns of `where=`: `where="subject = 'true'"` finds what the view finds."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return str(value)


@dataclass(frozen=True)
class Shape:
    """What a variable's records hold, as far as its views' columns depend on it."""

    addr: dict[str, str]      # schema key -> JSON type of its values
    vkeys: dict[str, str]
    params: dict[str, str]
    sqltypes: frozenset


def refresh_views(con: duckdb.DuckDBPyConnection, schema_keys: list[str], variables: Iterable[str]) -> None:
    """(Re-)create the views of each variable, then the project-wide ones."""
    import duckdb  # noqa: PLC0415 - `import scistack` loads no DuckDB

    spellings: dict[str, str] = {}  # a name ignoring case -> the variable whose views it names
    held = [name for (name,) in con.execute("SELECT DISTINCT var FROM scistack.refs ORDER BY var").fetchall()]
    for name in held:
        spellings.setdefault(name.lower(), name)
    all_vars = set(spellings)
    names = sorted({spellings.get(v.lower(), v) for v in variables})
    # saved before such names were refused; not one whose records are all deleted (`Emg`
    # deleted and `EMG` saved, in one sync: Emg has no views to show, none is missing)
    for var in sorted((set(variables) - set(names)) & set(held)):
        _warn_once("variable %s has no SQL views: its name differs from %s's only by case, and "
                   "SQL names ignore case; load it from Python", var, spellings[var.lower()])
    tables = {r[0].lower() for r in con.execute(  # a user's own tables in the file (DBeaver...)
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_catalog = current_database() AND table_type = 'BASE TABLE'").fetchall()}

    def blocked(name: str) -> bool:  # a table of the user's holds the name: never replaced,
        if name.lower() in tables:   # and no error (failing here froze every later sync)
            _warn_once("the view %s is not made: a table of your own in the DuckDB file has that "
                       "name (SQL names ignore case); rename the table to see the view", name)
            return True
        return False

    def yields(name: str, var: str | None = None) -> bool:  # an extra view's name held by a
        if blocked(name):                                    # table or by a variable
            return True
        if name.lower() in all_vars:
            if var is not None:  # saved before such names were refused (`Index._check_new_variable`)
                _warn_once("the view %s of %s is not made: the variable %s has that name, and its own "
                           "view is %s; load %s's versions from Python, or save them to a variable of "
                           "another name", name, var, spellings[name.lower()], name, var)
            return True
        return False

    shapes = _shapes(con, names)
    made: set[str] = set()
    for var, shape in shapes.items():
        if blocked(var):  # (its other views, made before the table came, keep answering)
            made.update(var + suffix for suffix in VIEW_SUFFIXES)
            continue
        columns = view_columns(schema_keys, shape)
        con.execute(_view_sql(var, schema_keys, shape, columns, newest=True))
        made.add(var)
        if not yields(f"{var}_all", var):
            con.execute(_view_sql(var, schema_keys, shape, columns, newest=False))
            made.add(f"{var}_all")
        if not yields(f"{var}_branches", var):
            con.execute(_view_sql(var, schema_keys, shape, columns, newest=True, per_branch=True))
            made.add(f"{var}_branches")
        if "TABLE" in shape.sqltypes and not yields(f"{var}_rows", var):
            try:  # built from the frames' own column names: whatever they are, never a sync
                con.execute(_rows_sql(con, var, schema_keys, columns))  # that fails each time
                made.add(f"{var}_rows")
            except duckdb.Error as exc:
                log.warning("the view %s_rows could not be made (%s); %s and its other views are "
                            "there", var, str(exc).strip().splitlines()[0][:160], var)
    _drop_stale(con, names, made, all_vars)
    for name, sql in _STATIC.items():
        if not yields(name):
            con.execute(sql)


def _drop_stale(con: duckdb.DuckDBPyConnection, names: list[str], made: set[str], all_vars: set[str]) -> None:
    """Drop the views of `names` this sync did not make again: those of a variable whose every
    record was deleted (`ls` and `scistack_variables` no longer list it, and a rebuild from the
    journal would not make them; `undelete` brings its records, and so its views, back), and
    `<Var>_rows` once no frame of the variable is left. Only views scistack made (`_ours`): a
    view or table of the user's own is never touched (`Score_rows` made by hand over a
    variable of numbers), nor a view named after another variable (its own view), nor a view
    of a variable not touched by this sync."""
    views = {name.lower(): sql for name, sql in con.execute(  # (0.5 ms; information_schema took 2.8)
        "SELECT view_name, sql FROM duckdb_views() WHERE schema_name = 'main' "
        "AND database_name = current_database() AND NOT internal").fetchall()}
    kept = {name.lower() for name in made} | all_vars | {name.lower() for name in STATIC_VIEWS}
    for var in names:
        for name in (var, *(var + suffix for suffix in VIEW_SUFFIXES)):
            sql = views.get(name.lower())
            if sql is not None and name.lower() not in kept and _ours(sql):
                con.execute(f"DROP VIEW main.{quote(name)}")


def _ours(sql: str) -> bool:
    """Whether a view's SQL (as DuckDB keeps it) is one `_view_sql` or `_rows_sql` wrote: only
    they read the call names (`scistack.call_info`) or number a frame's rows from
    `scistack.frame_rows`. (DuckDB keeps neither comments nor a COMMENT ON through CREATE OR
    REPLACE, so the SQL itself is the mark.)"""
    return "scistack.call_info" in sql or ("scistack.frame_rows" in sql and " AS row_n" in sql)


_warned: set[tuple] = set()


def _warn_once(message: str, *args: str) -> None:
    """A lasting condition is said once a process, not at every background sync."""
    if (message, *args) not in _warned:
        _warned.add((message, *args))
        log.warning(message, *args)


def add_shapes(con: duckdb.DuckDBPyConnection, source: str, variables: list[str] | None = None,
               types: str = "scistack.vals") -> None:
    """Keep in `scistack.shapes` one ref of `source` (new refs, or every ref of `variables`)
    per variable and shape not kept yet. JSON structures merge as a union, so the structure
    of these few refs is that of all: a sync after one save no longer scans every ref of the
    variable (1.7 s for one of 300k refs). `types`: a table of (oid, sqltype) holding at least
    the oids of `source` (by default every inline row)."""
    where = "WHERE n.var IN (SELECT unnest(CAST(? AS VARCHAR[])))" if variables is not None else ""
    params = _UNTAGGED.format("n.params")
    con.execute(
        "INSERT INTO scistack.shapes SELECT var, addr, vkeys, params, sqltype FROM ("
        " SELECT n.var, any_value(n.addr) AS addr, any_value(n.vkeys) AS vkeys,"
        f" any_value({params}) AS params,"
        " v.sqltype, json_structure(CAST(n.addr AS JSON)) AS sa, json_structure(CAST(n.vkeys AS JSON)) AS sv,"
        f" json_structure(CAST({params} AS JSON)) AS sp"
        f" FROM {source} n LEFT JOIN {types} v ON v.oid = n.oid {where}"
        " GROUP BY n.var, sa, sv, sp, v.sqltype) c"
        " WHERE NOT EXISTS (SELECT 1 FROM scistack.shapes s WHERE s.var = c.var"
        " AND json_structure(CAST(s.addr AS JSON)) = c.sa AND json_structure(CAST(s.vkeys AS JSON)) = c.sv"
        " AND json_structure(CAST(s.params AS JSON)) = c.sp AND s.sqltype IS NOT DISTINCT FROM c.sqltype)",
        [variables] if variables is not None else [])


# A parameter that is NaN or an infinity is tagged in JSON ({"$float": "inf"}); its shape is
# kept as a number's, so the column stays DOUBLE (`_typed_json` reads the tag). In a JSON
# string the quotes would be escaped: only a tag matches.
_UNTAGGED = ("CASE WHEN contains({0}, '{{\"$float\":') THEN regexp_replace({0}, "
             "'\\{{\"\\$float\":\"(nan|inf|-inf)\"\\}}', '0.0', 'g') ELSE {0} END")


def _shapes(con: duckdb.DuckDBPyConnection, names: list[str]) -> dict[str, Shape]:
    if not names:
        return {}
    rows = con.execute(
        "SELECT var, json_group_structure(CAST(addr AS JSON)), json_group_structure(CAST(vkeys AS JSON)), "
        "json_group_structure(CAST(params AS JSON)), list(DISTINCT sqltype) FROM scistack.shapes "
        "WHERE var IN (SELECT unnest(CAST(? AS VARCHAR[]))) GROUP BY var", [names]).fetchall()
    return {var: Shape(_structure(a), _structure(k), _structure(p), frozenset(t))
            for var, a, k, p, t in rows}


def _structure(text: str | None) -> dict[str, str]:
    found = json.loads(text) if text else {}
    return {k: v if isinstance(v, str) else "JSON" for k, v in found.items()} if isinstance(found, dict) else {}


@dataclass(frozen=True)
class Column:
    name: str
    expr: str


def view_columns(schema_keys: list[str], shape: Shape) -> dict[str, list[Column]]:
    """The columns of a variable's views, by group: keys, vkeys, params, fixed.

    DuckDB identifiers are case-insensitive, so names are kept unique ignoring case: keys
    first, then version keys, then scistack's columns (`shape`, `dtype`, `fn` take a `value_`
    prefix if a version key took them), then lineage parameters: qualified as
    `bandpass_low_hz`, and bare (`low_hz`) when only one function has that parameter.
    """
    taken: set[str] = set()

    def take(name: str) -> bool:
        if name.lower() in taken:
            return False
        taken.add(name.lower())
        return True

    keys = [Column(k, _typed_key(k, shape.addr.get(k))) for k in schema_keys if take(k)]
    vkeys = [Column(k, _typed_json("r.vkeys", k, t, text=_json_text)) for k, t in sorted(shape.vkeys.items())
             if _safe_key(k) and take(k)]
    fixed = [Column("value", _value_expr(shape.sqltypes))]
    take("value")
    for name, expr in (("shape", "v.shape"), ("dtype", "v.dtype"), ("kind", "r.kind"),
                       ("summary", "r.summary"), ("fn", "c.fn_name"), ("version", "r.version"),
                       ("created_at", SAVED_AT.format("r.created_at")), ("oid", "r.oid")):
        fixed.append(Column(name if take(name) else _fresh("value_" + name, take), expr))
    params = [Column(column, _typed_json("r.params", name, shape.params[name], text=_json_text))
              for name, column in param_columns(shape.params, take)]
    return {"keys": keys, "vkeys": vkeys, "params": params, "fixed": fixed}


def param_columns(names: Iterable[str], take) -> list[tuple[str, str]]:
    """(parameter, column) pairs: `bandpass.low_hz` as `bandpass_low_hz`, and as `low_hz` too
    when only one function has a `low_hz`; `take(column)` says whether the name is still free.
    The one naming rule of the views, `load_all(as_df=True)`, `where=` and `join`."""
    names = sorted(n for n in names if _safe_key(n))
    bare_count: dict[str, int] = {}
    for name in names:
        bare = name.rsplit(".", 1)[-1].lower()
        bare_count[bare] = bare_count.get(bare, 0) + 1
    pairs = []
    for name in names:
        bare = name.rsplit(".", 1)[-1]
        if bare != name and bare_count[bare.lower()] == 1 and take(bare):
            pairs.append((name, bare))
        column = name.replace(".", "_")
        if take(column):
            pairs.append((name, column))
    return pairs


def _fresh(name: str, take) -> str:
    n = 2
    candidate = name
    while not take(candidate):
        candidate, n = f"{name}{n}", n + 1
    return candidate


def _safe_key(name: str) -> bool:
    return all(ch not in name for ch in "\"'\\")


def _typed_key(key: str, json_type: str | None) -> str:
    column = "r." + quote(key)
    sql_type = _NUMERIC.get(json_type or "")
    return f"TRY_CAST({column} AS {sql_type})" if sql_type else column


def _typed_json(column: str, name: str, json_type: str | None, numeric: dict[str, str] = _NUMERIC,
                text=None) -> str:
    """A JSON member as a typed column; `text(column, name)`, if given, writes a column of
    mixed types (one left as text)."""
    path = literal(f'$."{name}"')
    sql_type = numeric.get(json_type or "")
    if not sql_type and text is not None:
        return text(column, name)
    as_text = f"json_extract_string({column}, {path})"
    if sql_type == "DOUBLE":  # NaN and the infinities are tagged (see `_UNTAGGED`)
        tag = literal(f'$."{name}"."$float"')
        as_text = f"COALESCE(json_extract_string({column}, {tag}), {as_text})"
    return f"TRY_CAST({as_text} AS {sql_type})" if sql_type else as_text


def _json_text(column: str, name: str) -> str:
    """A parameter or version key of mixed types, as text written as `shown_as_text` writes each
    value (and as the schema key columns are): a float as Python writes it (JSON's own text
    had `1e100` where a key showed `1e+100`), NaN or an infinity as `nan`/`inf`/`-inf` (it
    had shown its tag, `{"$float":"nan"}`)."""
    path, tag = literal(f'$."{name}"'), literal(f'$."{name}"."$float"')
    text = f"json_extract_string({column}, {path})"
    return (f"CASE json_type({column}, {path}) WHEN 'DOUBLE' THEN CAST(TRY_CAST({text} AS DOUBLE) AS VARCHAR) "
            f"WHEN 'OBJECT' THEN COALESCE(json_extract_string({column}, {tag}), {text}) ELSE {text} END")


# the inline rows' types of a single value; a variable mixing only these is text (`value_type`)
SCALAR_TYPES = frozenset({"BIGINT", "DOUBLE", "BOOLEAN", "VARCHAR"})
# a variable's values mixing scalar types, each written as `shown_as_text` writes it (DuckDB's own
# text of a double is Python's: 1.0, 1e+100, nan, inf; of a bool true/false)
_AS_TEXT = "COALESCE(v.s, CAST(v.b AS VARCHAR), CAST(v.i AS VARCHAR), CAST(v.d AS VARCHAR))"


def value_type(sqltypes: Iterable[str | None]) -> str | None:
    """The SQL type of a variable's `value` column from its records' inline types: one type for
    the whole variable, None when no record has a value SQL shows. Ints beside floats are
    DOUBLE; any other mix of scalars (text, true/false, numbers) is TEXT, each value as
    `shown_as_text` writes it, the rule of the key columns (`value = 'a'` finds "a", `value =
    '1'` the 1 and the "1", a number is compared after `TRY_CAST(value AS DOUBLE)`); JSON had
    refused `value = 'a'` and cast each value to the other side's type, so `value = 2` found
    1.5 and 2.5 beside true. A mix with lists, dicts or arrays is JSON. `where=` types a value
    column by this too (`where.matching_rows`), from the types of the whole variable."""
    types = {t for t in sqltypes if t not in _NO_VALUE}
    if not types:
        return None
    if len(types) == 1:
        return next(iter(types))
    if types == {"BIGINT", "DOUBLE"}:
        return "DOUBLE"
    if types == {"BIGINT[]", "DOUBLE[]"}:
        return "DOUBLE[]"
    return "TEXT" if types <= SCALAR_TYPES else "JSON"


def _value_expr(sqltypes: frozenset) -> str:
    """The `value` column: one SQL type for the whole variable (`value_type`)."""
    kind = value_type(sqltypes)
    if kind is None:
        return "CAST(NULL AS VARCHAR)"
    if len({t for t in sqltypes if t not in _NO_VALUE}) == 1:
        if kind in _SCALAR_COLUMN:
            return _SCALAR_COLUMN[kind]
        return f"TRY_CAST(v.j AS {kind})"  # an N-D array: nested lists
    if kind == "DOUBLE":
        return "COALESCE(v.d, CAST(v.i AS DOUBLE))"
    if kind == "DOUBLE[]":
        return "COALESCE(v.ld, CAST(v.li AS DOUBLE[]))"
    if kind == "TEXT":
        return _AS_TEXT
    return json_value(lambda part: f"v.{part}")


def json_value(column: Callable[[str], str]) -> str:
    """A JSON value column made of the inline columns `JSON_PARTS` (`column(part)` names each):
    the view's, and `where=`'s of the values at hand (`where.matching_rows`), alike."""
    return "COALESCE(" + ", ".join(f"CAST({column(p)} AS JSON)" if p == "j" else f"to_json({column(p)})"
                                   for p in JSON_PARTS) + ")"


def _select(columns: dict[str, list[Column]]) -> str:
    ordered = columns["keys"] + columns["vkeys"] + columns["params"] + columns["fixed"]
    return ", ".join(f"{c.expr} AS {quote(c.name)}" for c in ordered)


def _view_sql(var: str, schema_keys: list[str], shape: Shape, columns: dict[str, list[Column]], *,
              newest: bool, per_branch: bool = False) -> str:
    """`<Var>` (newest version per address), `<Var>_all` (every version) or, `per_branch`,
    `<Var>_branches`: the newest version per address and lineage parameters, so that `WHERE
    low_hz = 20` on it finds the low_hz=20 value of every address, as load_all(where=...) does
    (on `<Var>` the WHERE comes after the newest is taken: a newer low_hz=10 hid it)."""
    order = ", ".join(quote(c.name) for c in columns["keys"])
    version = next(c.name for c in columns["fixed"] if c.expr == "r.version")
    source = (
        "scistack.refs r LEFT JOIN scistack.vals v ON v.oid = r.oid "
        "LEFT JOIN scistack.call_info c ON c.call = r.call"
    )
    if newest:
        source = (
            f"(SELECT * FROM scistack.refs WHERE var = {literal(var)} QUALIFY row_number() OVER "
            f"(PARTITION BY addr, vkeys{', params' if per_branch else ''} ORDER BY version DESC) = 1) r "
            "LEFT JOIN scistack.vals v ON v.oid = r.oid LEFT JOIN scistack.call_info c ON c.call = r.call"
        )
        name, order_by = (f"{var}_branches", f"{order}, {quote(version)}") if per_branch else (var, order)
    else:
        name, order_by = f"{var}_all", f"{order}, {quote(version)}"
    return (f"CREATE OR REPLACE VIEW main.{quote(name)} AS SELECT {_select(columns)} FROM {source} "
            f"WHERE r.var = {literal(var)} ORDER BY {order_by}")


def _rows_sql(con: duckdb.DuckDBPyConnection, var: str, schema_keys: list[str],
              columns: dict[str, list[Column]]) -> str:
    """`<Var>_rows`: each DataFrame row of the current records, with the keys alongside."""
    structure = con.execute(
        "SELECT json_group_structure(CAST(f.row AS JSON)) FROM scistack.frame_rows f "
        "WHERE f.oid IN (SELECT oid FROM scistack.refs WHERE var = ?)", [var]).fetchone()[0]
    frame_cols = _typed_frame_columns(con, var, _structure(structure))
    carried = columns["keys"] + columns["vkeys"] + columns["params"]
    taken = {c.name.lower() for c in carried} | {"row_n", "version", "oid"}
    parts = [f"m.{quote(c.name)}" for c in carried] + ["f.row_n AS row_n"]
    def take(alias: str) -> bool:
        if alias.lower() in taken:
            return False
        taken.add(alias.lower())
        return True

    for name, kind in frame_cols.items():
        if not name or not _safe_key(name):  # (a JSON path cannot name "")
            continue
        alias = name if name.strip() and take(name) else _fresh(f"row_{name.strip() or 'column'}", take)
        parts.append(f"{_row_cell(name, kind)} AS {quote(alias)}")
    version = next(c.name for c in columns["fixed"] if c.expr == "r.version")
    oid = next(c.name for c in columns["fixed"] if c.expr == "r.oid")
    parts += [f"m.{quote(version)} AS version", f"m.{quote(oid)} AS oid"]
    order = ", ".join(f"m.{quote(c.name)}" for c in columns["keys"])
    return (f"CREATE OR REPLACE VIEW main.{quote(var + '_rows')} AS SELECT {', '.join(parts)} "
            f"FROM main.{quote(var)} m JOIN scistack.frame_rows f ON f.oid = m.{quote(oid)} "
            f"ORDER BY {order}, f.row_n")


def _row_cell(name: str, kind: str) -> str:
    """A frame column's cell in `<Var>_rows`, typed by `kind` (its JSON type, or a time type
    `_typed_frame_columns` found)."""
    if kind == "INTERVAL":  # pandas' ISO duration, which DuckDB does not read, in its words
        words = f"regexp_replace({_typed_json('f.row', name, None)}, {literal(_PANDAS_TIMES['INTERVAL'])}, " \
                "'\\1 days \\2 hours \\3 minutes \\4 seconds')"
        return f"TRY_CAST({words} AS INTERVAL)"
    if kind in _PANDAS_TIMES:
        return f"TRY_CAST({_typed_json('f.row', name, None)} AS {kind})"
    return _typed_json("f.row", name, kind, _ROW_NUMERIC)


# A DataFrame's times as pandas writes them (`inline._pandas_json`, to the nanosecond; tz-aware
# ones in UTC), so a text column only of such values is a time column in `<Var>_rows`
_PANDAS_TIMES = {"TIMESTAMP": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}",
                 "TIMESTAMPTZ": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z",
                 "INTERVAL": r"P(-?\d+)DT(\d+)H(\d+)M(\d+(\.\d+)?)S"}


def _typed_frame_columns(con: duckdb.DuckDBPyConnection, var: str, frame_cols: dict[str, str]) -> dict[str, str]:
    """The frame columns' types, from one scan of the variable's frame rows (one each had cost
    ~0.05 s at 200k rows, in every sync that touched the variable):
    - a text column is TIMESTAMP, TIMESTAMPTZ or INTERVAL when every value in it is a time as
      pandas writes one (JSON has no time type: they were VARCHAR);
    - a UBIGINT one (JSON's type for any integers >= 0) stays so only when a value is beyond
      BIGINT, else BIGINT (the type a pandas int column has)."""
    texts = [name for name, kind in frame_cols.items() if kind == "VARCHAR" and name and _safe_key(name)]
    unsigned = [name for name, kind in frame_cols.items() if kind == "UBIGINT" and name and _safe_key(name)]
    if not texts and not unsigned:
        return frame_cols
    checks = [f"coalesce(bool_and(regexp_full_match({_typed_json('f.row', name, None)}, {literal(pattern)})), false)"
              for name in texts for pattern in _PANDAS_TIMES.values()]
    paths = [literal(f'$."{name}"') for name in unsigned]
    checks += [f"coalesce(max(TRY_CAST(json_extract_string(f.row, {path}) AS UBIGINT)) "
               "> 9223372036854775807, false)" for path in paths]
    found = con.execute(f"SELECT {', '.join(checks)} FROM scistack.frame_rows f "
                        "WHERE f.oid IN (SELECT oid FROM scistack.refs WHERE var = ?)", [var]).fetchone()
    kinds, per_text = list(_PANDAS_TIMES), len(_PANDAS_TIMES)
    typed = {}
    for n, name in enumerate(texts):
        matched = [kind for kind, hit in zip(kinds, found[n * per_text:(n + 1) * per_text]) if hit]
        if matched:
            typed[name] = matched[0]
    wide = found[len(texts) * per_text:]
    return {**frame_cols, **typed, **{n: "UBIGINT" if big else "BIGINT" for n, big in zip(unsigned, wide)}}


def _count(name: str) -> str:
    """A run's count of `name`: 0 where the run report leaves a zero out (`skipped`), so that
    `sum(skipped)` is a number, not NULL."""
    return f"COALESCE(TRY_CAST(json_extract(entry, '$.counts.{name}') AS BIGINT), 0) AS {name}"


_STATIC = {
    "scistack_variables": (
        "CREATE OR REPLACE VIEW main.scistack_variables AS SELECT r.var AS variable, "
        "count(DISTINCT (r.addr, r.vkeys)) AS records, count(*) AS versions, "
        f"sum(v.nbytes) AS value_bytes, greatest(max({SAVED_AT.format('r.created_at')}), "
        f"any_value({SAVED_AT.format('d.deleted_at')})) AS last_change "  # a delete is a change too (as `ls`)
        "FROM scistack.refs r LEFT JOIN scistack.vals v ON v.oid = r.oid LEFT JOIN (SELECT var, max(deleted_at) AS deleted_at "
        "FROM scistack.deleted GROUP BY var) d ON d.var = r.var GROUP BY r.var ORDER BY r.var"
    ),
    "scistack_runs": (
        f"CREATE OR REPLACE VIEW main.scistack_runs AS SELECT run_id, {SAVED_AT.format('created_at')} AS created_at, "
        "json_extract_string(entry, '$.function') AS function, "
        "CAST(json_extract(entry, '$.outputs') AS VARCHAR[]) AS outputs, "
        f"{_count('ran')}, {_count('cached')}, {_count('failed')}, {_count('skipped')}, "
        f"{_count('missing')}, TRY_CAST(json_extract(entry, '$.duration') AS DOUBLE) AS duration, "
        "TRY_CAST(json_extract(entry, '$.dry_run') AS BOOLEAN) AS dry_run "
        "FROM scistack.runs ORDER BY created_at"
    ),
}


# The JSON types of a schema key's values that `doubles_sql` reads: ints (as BIGINT; one
# beyond it is NULL there and the caller reads the fold) or strings, never the two mixed
_PLAIN_KEY_TYPES = ({"BIGINT", "UBIGINT"}, {"VARCHAR"})


def doubles_sql(con: duckdb.DuckDBPyConnection, var: str, schema_keys: list[str]) -> tuple[str, list[str]] | None:
    """The query of every record of `var` with its inlined value, in address then version order,
    and the address keys, for `load_all(as_df=True)` in one statement: None unless every
    record of the variable (by its kept shapes, each checked alone: a union of structures
    hides a mix) has a DOUBLE value, no version keys or lineage parameters, and the same
    address keys, each all ints or all strings (so the key columns tell addresses apart, and
    the last row of each address is its newest version). Columns: the address keys, `value`,
    `plain`, `call`, `version`, `created_at`, `oid`. `plain` is false on a row a frame would
    not show as this double: not JSON (a 0-d array), not inlined, a key that is no BIGINT,
    or an int beyond 64 bits (inlined as DOUBLE: `inline._scalar`). Every version rather than
    the newest by a window: the window cost ~0.13 s of CPU at 300k refs, dropping the older
    versions from the ordered rows next to nothing."""
    rows = con.execute("SELECT CAST(json_structure(CAST(addr AS JSON)) AS VARCHAR), vkeys, params, sqltype "
                       "FROM scistack.shapes WHERE var = ?", [var]).fetchall()
    if not rows or any(v != "{}" or p != "{}" or t != "DOUBLE" for _, v, p, t in rows):
        return None
    structures = [_structure(a) for a, _, _, _ in rows]
    keys = [k for k in schema_keys if k in structures[0]]
    if not keys or any(set(s) != set(keys) for s in structures) or len(keys) != len(structures[0]):
        return None
    typed = []
    for key in keys:
        found = {s[key] for s in structures}
        if not any(found <= plain for plain in _PLAIN_KEY_TYPES):
            return None
        typed.append(_typed_key(key, "BIGINT") if "VARCHAR" not in found else "r." + quote(key))
    selected = ", ".join(f"{expr} AS {quote(key)}" for expr, key in zip(typed, keys))
    plain = " AND ".join([
        "r.kind = 'json'", "v.sqltype IS NOT DISTINCT FROM 'DOUBLE'", "v.d IS NOT NULL",
        "NOT (isfinite(v.d) AND abs(v.d) >= 9223372036854775808.0)", *(f"{e} IS NOT NULL" for e in typed)])
    order = ", ".join(str(n + 1) for n in range(len(keys)))
    return (f"SELECT {selected}, v.d AS value, {plain} AS plain, r.call, r.version, r.created_at, r.oid "
            f"FROM scistack.refs r LEFT JOIN scistack.vals v ON v.oid = r.oid WHERE r.var = {literal(var)} "
            f"ORDER BY {order}, r.version"), keys
