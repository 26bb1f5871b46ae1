"""What an address value is: one rule for save, load, for_each and the index.

Schema-key values (and version-key values) are plain scalars: int, str, finite float or bool
(numpy scalars are unwrapped first). They keep their type: `1`, `"1"` and `True` are three
addresses, while `1` and `1.0` are one number: a whole float is saved and looked up as the int
(`address_value`), as MATLAB's client sends its doubles, so a subject read from a pandas
column of floats is the same subject as `subject=1`.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from scistack.errors import InvalidMetadataError

ADDRESS_TYPES = (bool, int, float, str)


def plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar it holds; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def address_value(value: Any) -> Any:
    """`plain(value)`, and a whole float as the int it equals (`1.0` -> `1`, within 2**53 where
    a float is exact): one number, one address. (Addresses saved as `1.0` before this rule
    stay as they are, found by partial queries, where 1 and 1.0 always met.)"""
    value = plain(value)
    if type(value) is float and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def query_value(value: Any) -> Any:
    """A value to match with (load, Fixed, delete...): a numpy scalar unwrapped, a whole float
    as its int; several values (a list, tuple or set, meaning any of) as a list of such
    values, and so is a 1-D numpy array (`subject=np.arange(3)`); a range stays a range."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return address_value(value.item())
        return [address_value(v) for v in value.tolist()] if value.ndim == 1 else value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [address_value(v) for v in value]
    return address_value(value)


MAX_TEXT = 1024
"""Characters an address or version-key string may have: values are labels, and every
message, listing and status grid echoes them (long text belongs in a variable's value)."""


def is_address_value(value: Any) -> bool:
    """Whether `value` (already `plain`) can be an address value."""
    return address_problem(value) is None


def address_problem(value: Any) -> str | None:
    """Why `value` (already `plain`) cannot be an address value, as the end of a sentence
    that starts with the key and the value (None when it can)."""
    if isinstance(value, float) and not math.isfinite(value):
        why = "NaN never equals itself" if value != value else "an address is JSON, which has no infinity"
        return (f"is a float, but not a finite one ({why}, so nothing saved under it could be found "
                "again); use a finite number, or a string such as 'nan'")
    if not isinstance(value, ADDRESS_TYPES):
        return (f"is a {type(value).__name__}; address values are single ints, strs, finite floats "
                "or bools")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return "is an int beyond 64 bits; address values are labels: use a string for a longer number"
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return (f"is a string of {len(value):,} characters; address values are labels of at most "
                f"{MAX_TEXT:,} characters: save long text as the value of a variable of its own")
    if isinstance(value, str) and not is_text(value):
        return f"is not text: {NOT_TEXT}"
    return None


NOT_TEXT = (
    "it holds a lone surrogate (such as '\\udce9'), which is how Python reads a byte of a file "
    "name that is not UTF-8 (os.listdir, glob and PathInput give a Latin-1 name such as "
    "'caf\\udce9.csv' so); no UTF-8 file or database can hold it. Rename the file to a UTF-8 "
    "name, or convert the text first: name.encode('utf-8', 'surrogateescape').decode('latin-1') "
    "reads the bytes as Latin-1 ('café.csv')")
"""The end of the refusal of a str that cannot be UTF-8 (`is_text`): why, and the way out."""


def is_text(value: str) -> bool:
    """Whether the str `value` can be written as UTF-8: False when it holds a lone surrogate
    (what `os.fsdecode` makes of a file name's byte that is not UTF-8). Such a str encodes
    as JSON (an escape) but neither SQLite, DuckDB nor a UTF-8 file takes it, so one that
    reached the journal broke the fold of every later process."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def has_surrogate_escape(text: str | bytes) -> bool:
    """Whether the JSON `text` (a journal line, an inlined value's JSON) may hold the escape
    of a lone surrogate (`\\udce9`; JSON's hex digits may be upper case): the cheap test
    before a parsed tree is searched for one (`is_text` on its strs). True for a valid pair
    too, and for an escaped backslash followed by `ud`: the caller's search decides."""
    if isinstance(text, str):
        return "\\ud" in text or "\\uD" in text
    return b"\\ud" in text or b"\\uD" in text


def checked_label(value: Any, said: str, *, closing: str = "", none_ok: bool = False,
                  not_scalar: str = "", then: str = "") -> Any:
    """`address_value(value)` where an address can hold it (None too with `none_ok`: a version
    key's `note=None`), else the InvalidMetadataError that save, load, undelete, `Fixed`,
    for_each's values, save_from_dataframe's rows and staged values all give: what the user wrote (`said`, e.g. "EMG.save: subject"), the value,
    `closing`, why not, `not_scalar` where it is no scalar at all (a list where one value was
    meant), then `then`. (Each had its own copy of this, and load's skipped ints and strings.)"""
    value = address_value(value)
    problem = None if none_ok and value is None else address_problem(value)
    if problem is None:
        return value
    hint = "" if isinstance(value, ADDRESS_TYPES) else not_scalar
    raise InvalidMetadataError(f"{said}={shown(value)}{closing} {problem}{hint}{then}")


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters: what messages echo of a user's value."""
    if isinstance(value, int) and value.bit_length() > 4 * limit:  # repr would be long (or refused)
        return f"<int of {value.bit_length():,} bits>"
    text = repr(value) if not isinstance(value, str) or len(value) <= limit else repr(value[:limit])
    text = " ".join(text.split()) if "\n" in text else text  # (a Series' repr has lines)
    return text if len(text) <= limit + 2 else text[:limit] + "…"


def shown_address(addr: dict[str, Any], keys: list[str] | None = None) -> str:
    """`subject=1, session='pre'`: an address as Python messages and notebook tables write it,
    schema keys (`keys`) first in their order, then any others (`cli.render.addr_text` is the
    command line's form)."""
    order = [k for k in (keys or []) if k in addr] + [k for k in addr if k not in (keys or [])]
    return ", ".join(f"{k}={shown(addr[k])}" for k in order)


def typed(value: Any) -> tuple[str, Any]:
    """A hashable, type-aware form for matching: 1 and 1.0 meet; 1, "1" and True do not."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("num", value) if value == value else ("nan", None)  # a NaN parameter meets NaN
    if isinstance(value, (list, dict)):
        return ("json", repr(value))
    return (type(value).__name__, value)


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|inf|nan)")


def value_text(value: Any) -> str:
    """An address value as the command line takes it: strings that look like numbers quoted
    (the CLI prints addresses this way, and fsck's fixes name `scistack` commands with them);
    one holding a line break or another control character as its repr, so a table keeps its rows;
    empty, with a space at either end (`' x'` printed bare could not be told from `x`), or in
    quotes of its own (`--subject 'a'` reads back as `a`) quoted too, so that each can be typed back."""
    if isinstance(value, str):
        return (
            repr(value)
            if _NUMBER.fullmatch(value) or value in ("true", "false") or not value or not value.isprintable()
            or value != value.strip() or (len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"")
            else value
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def address_order(addr: dict[str, Any], keys: list[str]) -> tuple:
    """Where `addr` comes among addresses as they are listed (the status grid's rows, the
    first cells not done): by each schema key of `keys` in turn, numbers (by value) before
    text, an address without the key before those with it, so a coarse address comes before
    the finer ones it covers (`subject=2` before `subject=2, session=1`, as an outline lists
    them). (`fold.address_order_sql` is the same order in SQLite.)"""
    return tuple((k in addr, isinstance(addr.get(k), str), addr.get(k, 0)) for k in keys)


def coarser_addresses(addr: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The addresses a value saved at a coarser level than `addr` would have, most specific
    first (every subset of its keys, none empty): where a value that serves `addr` may sit
    (`for_each` takes the first that has one)."""
    keys = list(addr)
    for size in range(len(keys) - 1, 0, -1):
        for subset in itertools.combinations(keys, size):
            yield {k: addr[k] for k in subset}
