"""Records as columns, and `where=` SQL predicates over them, without touching the DuckDB file.

`record_columns` lays records out with the views' column names (schema keys, version keys,
lineage parameters as `low_hz`/`bandpass_low_hz`, fn, version, created_at, oid), so the
same predicate works in `scistack sql` and in `load_all(where=...)`. `matching_rows` checks a
predicate token by token (identifiers must be known columns or a few SQL words and
functions; no `;`, comments or subqueries; values are bound as `?` parameters) and evaluates
it in a private in-memory DuckDB with external access off: it cannot read or write a file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Sequence
from typing import Any

from scistack.errors import QueryError
from scistack.index import RefRecord
from scistack.index.views import JSON_PARTS, json_value, param_columns, quote, shown_as_text, value_type
from scistack.inline import INLINE_LIMIT, inline_row, sql_type
from scistack.lazy_import import lazy_module
from scistack.objects.store import ObjectStore
from scistack.records import call_tree, function_name_of

duckdb = lazy_module("duckdb", globals(), "duckdb")
pa = lazy_module("pyarrow", globals(), "pa")

FIXED = ("fn", "version", "created_at", "oid")
_WORDS = {"and", "or", "not", "in", "is", "null", "between", "like", "ilike", "true", "false",
          "case", "when", "then", "else", "end", "cast", "try_cast", "as", "bigint", "double", "varchar",
          "boolean", "integer", "date", "timestamp", "escape"}
_FUNCTIONS = {"abs", "round", "floor", "ceil", "lower", "upper", "length", "coalesce", "starts_with",
              "ends_with", "contains", "least", "greatest", "regexp_matches", "substr", "isnan",
              "isinf", "isfinite",
              # a JSON value column's (dicts, lists): json_extract_string(value, '$.label') = 'a'
              "json_extract", "json_extract_string", "json_value", "json_exists", "json_type",
              "json_array_length", "json_keys", "json_contains"}
_TOKEN = re.compile(r"""
    (?P<space>\s+) | (?P<number>\d+(\.\d*)?([eE][-+]?\d+)?|\.\d+) | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")+") | (?P<name>[A-Za-z_][A-Za-z0-9_]*) | (?P<param>\?)
  | (?P<op><>|!=|<=|>=|==|->>|->|::|\|\||[=<>(),+\-*/%.\[\]])
""", re.VERBOSE)
_fn_names: dict[str, str] = {}  # call oid -> function name (a call record never changes)
_READ_BATCH = 4096  # call records read at once


def record_columns(schema_keys: Sequence[str], records: list[RefRecord], store: ObjectStore, *,
                   fn: bool = True) -> dict[str, list[Any]]:
    """Metadata columns of `records`, named as in the SQL views: every schema key, all None
    where none holds it (records saved at a coarser level), so a frame's columns do not
    depend on the data and `where="session IS NULL"` means what it means in `scistack sql`."""
    taken: set[str] = set()

    def take(name: str) -> bool:
        if name.lower() in taken:
            return False
        taken.add(name.lower())
        return True

    columns: dict[str, list[Any]] = {}
    addrs = [r.addr for r in records]
    for key in schema_keys:
        if take(key):
            columns[key] = [a.get(key) for a in addrs]
    with_vkeys = [r for r in records if r.vkeys_key != "{}"]  # (most have none: no dict to read)
    for name in sorted({k for r in with_vkeys for k in r.vkeys}):
        if take(name):
            columns[name] = [r.vkeys.get(name) for r in records]
    taken |= set(FIXED) | {"value", "data"}
    with_params = [r for r in records if r.has_params]
    for name, column in param_columns({k for r in with_params for k in r.params}, take):
        columns[column] = [r.params.get(name) for r in records]
    if fn:
        names = function_names(store, [r.call for r in records if r.call is not None])
        columns["fn"] = [None if r.call is None else names.get(r.call) for r in records]
    columns["version"] = [r.version for r in records]
    columns["created_at"] = [r.created_at for r in records]
    columns["oid"] = [r.oid for r in records]
    return columns


def function_names(store: ObjectStore, calls: list[str]) -> dict[str, str | None]:
    """The name of the function of each call record in `calls` (each read once per process,
    `_READ_BATCH` at a time: one by one, the `fn` column of 100k computed values took 5 s).
    A damaged or absent record has no name (fsck reports it) and is read again next time."""
    todo = [c for c in dict.fromkeys(calls) if c not in _fn_names]
    if len(_fn_names) + len(todo) > 200_000:
        _fn_names.clear()
        todo = list(dict.fromkeys(calls))
    found: dict[str, str | None] = {}
    for start in range(0, len(todo), _READ_BATCH):
        batch = todo[start:start + _READ_BATCH]
        for call, obj in zip(batch, store.get_many(batch)):
            if isinstance(obj, Exception) or obj.kind != "call":
                found[call] = None
                continue
            try:
                found[call] = _fn_names[call] = function_name_of(call_tree(obj.payload, call), call)
            except Exception:  # noqa: BLE001 - damaged: the column says nothing, fsck reports it
                found[call] = None
    return {c: _fn_names[c] if c in _fn_names else found.get(c) for c in dict.fromkeys(calls)}


def check_predicate(where: str, columns: Sequence[str], *, params: Sequence[Any] = (),
                    shown: str | None = None, unread: Sequence[str] = ()) -> str:
    """`where` if every token is allowed and every identifier a known column, else a `QueryError`
    naming the offending token and what is allowed, and quoting `shown`, the condition as the
    user wrote it, when `where` was made of its parts (a join's). `unread`: columns too, left
    out of `columns` as `where` does not name them (`value`, read only then)."""
    if not isinstance(where, str) or not where.strip():
        raise QueryError(f"where= must be a non-empty SQL condition string, got {where!r}")
    known = {c.lower() for c in columns}
    tokens = _tokens(where)  # (a part of a condition has the tokens of the whole: `conjuncts` checked them)
    written = where if shown is None else shown
    for name in _names(tokens):
        if name.lower() not in known:
            listed = [*columns, *(c for c in unread if c.lower() not in known)]
            close = difflib.get_close_matches(name.lower(), [c.lower() for c in listed], n=1, cutoff=0.6)
            guess = f"did you mean {next(c for c in listed if c.lower() == close[0])!r}? " if close else ""
            raise QueryError(
                f"where={written!r}: {name!r} is not a column here; {guess}the columns are "
                f"{', '.join(listed)} (strings need single quotes: 'pre')")
    placeholders = sum(kind == "param" for kind, _, _ in tokens)
    if placeholders != len(params):
        raise _miscount(written, placeholders, len(params))
    return where


def _miscount(where: str, placeholders: int, given: int) -> QueryError:
    return QueryError(f"where={where!r} has {placeholders} ? placeholder(s) but {given} value(s) were given; "
                      "pass where=(condition, [values])")


def conjuncts(where: str | tuple) -> list[tuple[str, list[Any], set[str]]]:
    """`where` cut at its top-level ANDs: (condition, its ? values, the columns it names in
    lower case) for each part, so that a join can hand each part to the variables that have
    its columns (`low_hz = 20` to the one computed with a `low_hz`). BETWEEN's own AND and
    anything inside parentheses stay whole; with an OR at the top level it is one part (AND
    binds tighter: `a AND b OR c` is no AND of `a` and `b OR c`)."""
    sql, params = (where[0], list(where[1])) if isinstance(where, tuple) else (where, [])
    if not isinstance(sql, str) or not sql.strip():
        raise QueryError(f"where= must be a non-empty SQL condition string, got {sql!r}")
    parts: list[list[tuple[str, str, int]]] = [[]]
    depth, between = 0, set()  # depths at which a BETWEEN still waits for its AND
    tokens = _tokens(sql)
    for token in tokens:
        kind, text, _ = token
        word = text.lower() if kind == "name" else None
        depth += kind == "op" and text in ("(", "[")  # (value[...] too)
        depth -= kind == "op" and text in (")", "]")
        if word == "or" and depth == 0:  # AND binds tighter: `a AND b OR c` is `(a AND b) OR c`,
            parts = [list(tokens)]  # no AND of parts (cut there, `b OR c` had lost c's records)
            break
        if word == "between":
            between.add(depth)
        elif word == "and" and depth in between:
            between.discard(depth)
        elif word == "and" and depth == 0:
            parts.append([])
            continue
        parts[-1].append(token)
    found, used = [], 0
    for part in parts:
        if not part:
            raise QueryError(f"where={sql!r}: an AND with nothing on one side")
        text = sql[part[0][2]:part[-1][2] + len(part[-1][1])]
        count = sum(kind == "param" for kind, _, _ in part)
        found.append((text, params[used:used + count], {n.lower() for n in _names(part)}))
        used += count
    if used != len(params):  # (a join's parts had taken their values and dropped the rest in silence)
        raise _miscount(sql, used, len(params))
    return found


_WHOLE = 2 ** 53  # (whole numbers a double holds exactly: compared alike in SQL and Python)


def equal_values(sql: str, params: Sequence[Any] = ()) -> tuple[str, list[int | str]] | None:
    """(column, values) when the condition `sql` (one of `conjuncts`) is `column = v`, `v =
    column` or `column IN (v, ...)` of whole numbers and 'text' (literals or ? values), so
    that the addresses it can hold for are looked up by those values (`load_all(where=
    "subject = 1")` had decoded every address of the variable); else None. As SQL compares
    them: a caller must know the column holds numbers alone (for numbers) or text alone."""
    tokens = [t[:2] for t in _tokens(sql)]
    bound = iter(params)
    values: list[int | str] = []

    def value(token: tuple[str, str]) -> bool:
        kind, text = token
        if kind == "number" and text.isdigit() and int(text) <= _WHOLE:
            values.append(int(text))
        elif kind == "string":
            values.append(text[1:-1].replace("''", "'"))
        elif kind == "param" and (type(one := next(bound, None)) is str
                                  or type(one) is int and abs(one) <= _WHOLE):
            values.append(one)
        else:
            return False
        return True

    def column(token: tuple[str, str]) -> str | None:
        kind, text = token
        if kind == "quoted":
            return text[1:-1].replace('""', '"')
        return text if kind == "name" and text.lower() not in _WORDS else None

    if len(tokens) == 3 and tokens[1] == ("op", "="):
        if (name := column(tokens[0])) is not None and value(tokens[2]):
            return name, values
        if (name := column(tokens[2])) is not None and value(tokens[0]):
            return name, values
        return None
    if (len(tokens) >= 5 and len(tokens) % 2 == 1 and (name := column(tokens[0])) is not None
            and tokens[1][0] == "name" and tokens[1][1].lower() == "in" and tokens[2] == ("op", "(")
            and tokens[-1] == ("op", ")") and all(t == ("op", ",") for t in tokens[4:-1:2])
            and all(value(t) for t in tokens[3:-1:2])):
        return name, values
    return None


_OPENS = {")": "(", "]": "["}


def _tokens(where: str) -> list[tuple[str, str, int]]:
    """(kind, text, offset) of each token but spaces; a `QueryError` at anything not allowed."""
    pos, opened, tokens = 0, [], []
    while pos < len(where):
        m = None if where.startswith(("--", "/*"), pos) else _TOKEN.match(where, pos)  # (a comment:
        if m is None:  # its text had passed as operators, and a cut at an AND inside it broke it)
            raise QueryError(
                f"where={where!r}: {where[pos:pos + 10]!r} is not allowed here; a condition uses "
                "column names, numbers, 'quoted text', ? parameters, comparisons, AND/OR/NOT, IN, "
                "BETWEEN, LIKE, IS NULL, casts (value::INTEGER) and a JSON value's fields, value->>'label' "
                "(no ';', comments or subqueries)")
        kind, text = m.lastgroup, m.group()
        if kind != "space":
            tokens.append((kind, text, pos))
        pos = m.end()
        if kind == "op" and text in ("(", "["):
            opened.append(text)
        elif kind == "op" and text in (")", "]"):
            if not opened or opened[-1] != _OPENS[text]:
                raise QueryError(f"where={where!r}: a {text!r} closes "
                                 f"{'nothing' if not opened else 'a ' + repr(opened[-1])}")
            opened.pop()
    if opened:
        raise QueryError(f"where={where!r}: a {opened[-1]!r} is not closed")
    for i, (kind, text, _) in enumerate(tokens):  # `value.label`: a field of a JSON value, as DuckDB reads it
        if (kind, text) != ("op", "."):
            continue
        field = tokens[i + 1] if i + 1 < len(tokens) else None
        if (i == 0 or tokens[i - 1][0] not in ("name", "quoted") or field is None
                or field[0] not in ("name", "quoted")):
            raise QueryError(f"where={where!r}: a '.' takes a field of a JSON value (value.label, or "
                             "value->>'label' for its text); anything else is not allowed here")
        if i + 2 < len(tokens) and tokens[i + 2][:2] == ("op", "("):
            raise QueryError(f"where={where!r}: {text}{field[1]}(...) calls a function, which is not allowed "
                             f"here; write it as {field[1]}(...) if it is one of {', '.join(sorted(_FUNCTIONS))}")
    return tokens


def _names(tokens: list[tuple[str, str, int]]) -> list[str]:
    """The column names among `tokens` (SQL words, allowed functions and the fields of a JSON
    value, `value.label`, left out)."""
    names = []
    for i, (kind, text, _) in enumerate(tokens):
        if kind not in ("name", "quoted") or (i and tokens[i - 1][:2] == ("op", ".")):
            continue
        if kind == "name" and i and (tokens[i - 1][:2] == ("op", "::") or (  # a type: value::INT,
                tokens[i - 1][1].lower() == "as" and tokens[i - 1][0] == "name")):  # CAST(value AS INT)
            continue
        name = text[1:-1].replace('""', '"') if kind == "quoted" else text
        calls = i + 1 < len(tokens) and tokens[i + 1][:2] == ("op", "(")
        if kind == "name" and (name.lower() in _WORDS or (calls and name.lower() in _FUNCTIONS)):
            continue
        names.append(name)
    return names


def _plain(param: Any) -> Any:
    """A numpy scalar bound to a ? as the Python number it holds, as `load(subject=np.int64(1))`
    takes it (DuckDB refused it: "Unable to transform python value of type numpy.int64")."""
    return param.item() if getattr(param, "ndim", None) == 0 and hasattr(param, "item") else param


def matching_rows(columns: dict[str, list[Any]], where: str | tuple, n_rows: int, *,
                  values: Collection[str] = ("value", "data"),
                  types: dict[str, Collection[str | None]] | None = None, shown: str | None = None,
                  unread: Sequence[str] = ()) -> list[int]:
    """Indices of the rows for which the predicate holds (NULL counts as false). `values`
    names the columns of saved values (`value`, a join's `Score`); the others are keys and
    parameters, a bool beside numbers among them text, as in the views. `types` gives, by
    value column, the inline types (`inline.sql_type`) of every record of its variable, so
    that the column has the type of its view (`views.value_type`: text when the variable
    mixes text, true/false and numbers) whichever records are at hand; a value column not in
    `types` is typed from its own values. `shown`: the condition as the user wrote it, quoted
    in errors, when `where` is made of its parts; `unread`: columns an error lists too
    (`check_predicate`)."""
    sql, params = (where[0], list(where[1])) if isinstance(where, tuple) else (where, [])
    check_predicate(sql, list(columns), params=params, shown=shown, unread=unread)
    params = [_plain(p) for p in params]
    texts: list[str] = []  # columns mixing text and numbers, compared as text
    jsons: list[str] = []  # value columns mixing scalars with lists or dicts: JSON, as in the views
    arrays: dict[str, pa.Array] = {}
    for i, (k, v) in enumerate(columns.items()):
        kind = value_type({*_types_of(v), *((types or {}).get(k) or ())}) if k in values else None
        if kind == "JSON":  # each value in its inline column, JSON made of them by DuckDB below
            jsons.append(k)
            arrays.update({f"__{part}{i}": array for part, array in _json_parts(v).items()})
        elif kind == "TEXT":  # as `views._AS_TEXT` writes each value (an int beyond 64 bits is a double there)
            texts.append(k)
            arrays[k] = pa.array([shown_as_text(float(x) if _big(x) else x) for x in v], pa.string())
        elif kind is None and k in values and all(x is None for x in v):
            arrays[k] = pa.array(v, pa.string())  # (the views' `CAST(NULL AS VARCHAR)`: `value < 1` refused alike)
        elif kind == "DOUBLE" and (numbers := _doubles(v)) is not None:
            arrays[k] = numbers  # (ints beside floats elsewhere in the variable: doubles, as the view)
        else:
            arrays[k] = _arrow(v, k, texts, key=k not in values)
    table = pa.table({**arrays, "__row": pa.array(range(n_rows), pa.int64())})
    con = duckdb.connect(":memory:", config={"enable_external_access": False})
    try:
        # a filter pushed into the Arrow scan compares NaN as Arrow does (NaN > 1 false), where
        # DuckDB's own tables, the views, have NaN above every number: `value > 1` left out the
        # NaN records `scistack sql` returns
        con.execute("SET disabled_optimizers = 'filter_pushdown'")
        source = "__records"
        if jsons:  # (the views' `COALESCE(CAST(v.j AS JSON), to_json(v.i), ...)`: `views.json_value`)
            con.register("__parts", table)
            made = ", ".join(f"{json_value(lambda part: f'__{part}{i}')} AS {quote(k)}"  # noqa: B023 - called here
                             for i, k in enumerate(columns) if k in jsons)
            hidden = ", ".join(f"__{part}{i}" for i, k in enumerate(columns) if k in jsons for part in JSON_PARTS)
            con.execute(f"CREATE TEMP VIEW __records AS SELECT * EXCLUDE ({hidden}), {made} FROM __parts")
        else:
            con.register(source, table)
        try:
            rows = con.execute(f"SELECT __row FROM {source} WHERE ({sql}) ORDER BY __row", params).fetchall()
        except duckdb.Error as exc:
            named = [k for k in texts if re.search(rf"\b{re.escape(k)}\b", sql)]
            hint = (f"; {named[0]} holds text as well as numbers (some values were saved as strings, "
                    f"or as true/false beside numbers), so it is text, as in the views: compare it "
                    f"with text, e.g. {named[0]} = '5', or its numbers by TRY_CAST({named[0]} AS DOUBLE) > 5 "
                    f"(NULL for a text)") if named else ""
            named = [k for k in jsons if re.search(rf"\b{re.escape(k)}\b", sql)]
            hint = hint or (_json_hint(named[0], sql, columns[named[0]]) if named else "")
            words = _reserved_columns(con, [text for kind, text, _ in _tokens(sql) if kind == "name"])
            if words and not hint:
                hint = (f"; {words[0]} is an SQL word: write the column in double quotes, "
                        f"where='\"{words[0]}\" = ...' (as in `scistack sql`)")
            written = sql if shown is None else shown
            raise QueryError(f"where={written!r} failed: {str(exc).splitlines()[0]}{hint}") from None
    finally:
        con.close()
    return [r[0] for r in rows]


def _json_hint(column: str, sql: str, values: list[Any]) -> str:
    """What compares with a JSON value column (`values`: dicts, lists, either beside single
    values): a dict's field, the one `sql` names as `value.label` if any (JSON too, so
    `value.label = 'a'` casts 'a' to JSON and fails, in the views as here), and a single
    value's text and number."""
    field = re.search(rf"\b{re.escape(column)}\s*\.\s*(\w+|\"(?:[^\"]|\"\")+\")", _LITERAL.sub("''", sql))
    name = (field.group(1).strip('"') if field else "label").replace("'", "''")
    fields = (f"a dict's field as text by {column}->>'{name}' = 'a' ({column}.{name} is JSON, which text is "
              f"compared with only as JSON, {column}.{name} = '\"a\"'), as a number by "
              f"TRY_CAST({column}->>'{name}' AS DOUBLE) > 1")
    single = f"a single value's text by ({column}->>'$') = 'a', its number by TRY_CAST({column} AS DOUBLE) > 1"
    beside = any(isinstance(v, (int, float, str)) for v in values)
    held = "lists or dicts beside single values" if beside else "dicts or lists"
    return (f"; {column} holds {held}, so it is JSON, as in the views: "
            + (f"{fields}; {single}" if field or not beside else f"{single}; {fields}"))


_LITERAL = re.compile(r"'(?:[^']|'')*'")
_PLAIN_TYPES = {bool: "BOOLEAN", float: "DOUBLE", str: "VARCHAR", type(None): "NULL"}


def _types_of(values: list[Any]) -> set[str | None]:
    """The inline types (`inline.sql_type`) of a column's values, the common ones without a call
    each."""
    found: set[str | None] = set()
    for kind in {type(v) for v in values}:
        if kind is int:
            found |= {"DOUBLE" if _big(v) else "BIGINT" for v in values if type(v) is int}
        elif kind in _PLAIN_TYPES and kind is not str:
            found.add(_PLAIN_TYPES[kind])
        elif kind is str:  # (one beyond the inline limit is LARGE: NULL in the view)
            found |= {"VARCHAR" if len(v) <= INLINE_LIMIT else "LARGE" for v in values if type(v) is str}
        else:
            found |= {sql_type(v) for v in values if type(v) is kind}
    return found


def _big(value: Any) -> bool:
    """An int beyond 64 bits, which the inline rows hold as a double (`inline._scalar`)."""
    return type(value) is int and not -(1 << 63) <= value < (1 << 63)


_PART_TYPES = {"j": "string", "i": "int64", "d": "float64", "b": "bool_", "s": "string",
               "li": "int64", "ld": "float64", "lb": "bool_", "ls": "string"}


def _json_parts(values: list[Any]) -> dict[str, pa.Array]:
    """A JSON value column split into the inline columns `views.JSON_PARTS`, as a sync writes
    each value to `scistack.vals` (`inline.inline_row`: an int beyond 64 bits a double, a dict
    or a mixed list JSON text, a list of one type a list column, one beyond the inline limit
    nothing), so that `views.json_value` makes of them the view's JSON. The common single
    values without a call each."""
    parts: dict[str, list[Any]] = {part: [None] * len(values) for part in JSON_PARTS}
    for n, v in enumerate(values):
        kind = type(v)
        if v is None:
            continue
        if kind is int and not _big(v):
            parts["i"][n] = v
        elif kind is float or (kind is int and _big(v)):
            parts["d"][n] = float(v)
        elif kind is bool:
            parts["b"][n] = v
        elif kind is str and sql_type(v) == "VARCHAR":
            parts["s"][n] = v
        else:
            for part, item in inline_row(v).items():
                if part in parts and item is not None:
                    parts[part][n] = item.tolist() if hasattr(item, "tolist") else item
    return {part: pa.array(items, getattr(pa, _PART_TYPES[part])() if len(part) == 1
                           else pa.list_(getattr(pa, _PART_TYPES[part])()))
            for part, items in parts.items()}


def _reserved_columns(con, names: list[str]) -> list[str]:
    """The names among `names` that DuckDB reserves (`Group`, `Order`): unquoted, a column so
    named is a syntax error."""
    reserved = {r[0] for r in con.execute(
        "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'").fetchall()}
    return [n for n in dict.fromkeys(names) if n.lower() in reserved and n.lower() not in _WORDS]


def _arrow(values: list[Any], name: str, texts: list[str], *, key: bool = True) -> pa.Array:
    """A column as Arrow; mixed types (1 and 'a' under one key) become text (named in `texts`),
    numbers Arrow will not take as they are go to `_numbers`; created_at is an instant, as in the views.
    A `key` column (schema key, version key, lineage parameter) holding a bool beside numbers
    is text too, as its view shows it ('true', '1', '2.5'): Arrow guesses a column's type from
    its first value and made [2.5, True, 1] doubles, so `rep = 1` found rep=True as well
    (`load_all(rep=1)` and the view tell them apart); [True, 1] it refuses (text already)."""
    if name == "created_at":
        return pa.array(values).cast(pa.timestamp("us", tz="UTC"))
    try:
        column = pa.array(values)
        if not (key and pa.types.is_floating(column.type) and any(isinstance(v, bool) for v in values)):
            return column
    except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
        numbers = _numbers(values, name)
        if numbers is not None:
            return numbers
    texts.append(name)  # written as the views write such a column: True as 'true', not 'True'
    return pa.array([shown_as_text(v) for v in values], pa.string())


def _numbers(values: list[Any], name: str, *, floats: bool = False) -> pa.Array | None:
    """Numbers Arrow refuses as they are, compared exactly: integers beyond 64 bits as
    DECIMAL(38, 0), integers beside floats as doubles when each is one (2**62 beside 1.5 had
    made the column text), or as doubles whatever they are when `floats` (the view's type); None
    when not all are numbers. A QueryError names a value that SQL cannot hold exactly."""
    if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        return None
    floats = floats or any(isinstance(v, float) for v in values)
    for v in values:
        if isinstance(v, int) and not _exact(v, floats):
            raise QueryError(
                f"where= cannot compare {name}: it holds {v}, an integer that SQL cannot hold exactly "
                f"{'beside floats' if floats else '(beyond 38 digits)'}; filter in Python instead, "
                f"e.g. [r for r in Var.load_all() if r.data > 1]")
    if floats:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array(values, pa.decimal128(38, 0))


def _doubles(values: list[Any]) -> pa.Array | None:
    """A value column the view types DOUBLE, as the view holds it: each number as its double,
    an int the double does not hold exactly too (2**64 + 1: the view rounds it, and where= had
    refused the column where the view answered); None when not all are numbers."""
    if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        return None
    try:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    except OverflowError:  # (beyond a double's range: `_numbers` names it)
        return None


def _exact(value: int, as_double: bool) -> bool:
    """Whether an int is held exactly as a double (or, if not `as_double`, as DECIMAL(38, 0))."""
    return exact_as_double(value) if as_double else abs(value) < 10**38


def exact_as_double(value: int) -> bool:
    """Whether an int is the very value of the double it converts to (2**53 + 1 is not)."""
    try:
        return int(float(value)) == value
    except OverflowError:
        return False
