"""Small HTML tables for notebooks (`_repr_html_`): a variable, a list of versions, a run
report, a provenance record. Every cell is escaped and cut, so a long value or a hostile
string can neither flood the page nor inject markup."""

from __future__ import annotations

import html
from typing import Any

_CELL = 120


def cell(value: Any, limit: int = _CELL) -> str:
    """One escaped table cell's text, cut to `limit` characters."""
    text = "" if value is None else value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text)


def table(headers: list[str], rows: list[list[Any]], *, caption: str = "", more: int = 0) -> str:
    """An HTML table; `more` counts rows left out (said in a last line)."""
    head = "".join(f"<th style='text-align:left'>{cell(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{cell(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    title = f"<caption style='text-align:left'><b>{cell(caption, 200)}</b></caption>" if caption else ""
    tail = f"<p>… and {more} more</p>" if more else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{tail}"


def fields(pairs: list[tuple[str, Any]], *, caption: str = "") -> str:
    """A two-column table of (field, value) pairs."""
    return table(["field", "value"], [[k, v] for k, v in pairs], caption=caption)


def ordered(mapping: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """`mapping` with `keys` first, in that order (schema order), then the rest as they come."""
    if len(mapping) == len(keys):  # a full address (a cache hit orders its input's): one pass
        try:
            return {k: mapping[k] for k in keys}
        except KeyError:
            pass
    first = {k: mapping[k] for k in keys if k in mapping}
    return {**first, **{k: v for k, v in mapping.items() if k not in first}}
