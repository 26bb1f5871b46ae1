"""Address options: `--subject 1 --session pre` (or `subject=1 session=pre`) after the
variable name, parsed by hand.

Schema keys differ per project, so they cannot be declared as click options: commands
accept unknown options and this module turns them into metadata. A value that looks like an
integer or a float becomes a number (a value saved as `1` matches `--subject 1`), `true` and
`false` become booleans, and a value in quotes stays a string (`--subject "'1'"` is the
string "1"); `--str` keeps every value a string. Repeating a key matches any of its values.
"""

from __future__ import annotations

import ast
import re
import warnings
from typing import Any

_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?")
_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*=")  # `subject=1`: how scientists write an address

ADDRESS_HELP = (
    "Address the value with one option per schema key (or version key or lineage parameter) "
    "after the variable: --subject 1 --session pre (or subject=1 session=pre). Numbers become numbers (but 03 stays text) and true/false "
    "booleans; quote a value to keep it a string (--subject \"'1'\"), or give --str. Repeat "
    "a key to match any of several values."
)


# Options of `scistack` itself, typed after the command by mistake (`scistack log X --db p`):
# read as an address key they reached the library as a clashing `db=` keyword (a TypeError).
_MAIN_OPTIONS = {
    "db": "--db is an option of scistack itself: give it before the command "
    "(scistack --db PATH log ...), or set SCISTACK_DB",
    "debug": "--debug is an option of scistack itself: give it before the command "
    "(scistack --debug log ...)",
}


class AddressError(ValueError):
    """Extra arguments that are not `--key value` pairs."""


def is_address_word(word: str) -> bool:
    """Whether a command-line word starts an address (`--subject`, `subject=1`) rather than
    naming a variable (a class name never holds `=`)."""
    return word.startswith("-") or bool(_BARE.match(word))


def parse_address(args: list[str], *, as_str: bool = False) -> dict[str, Any]:
    """`["--subject", "1", "--session=pre"]` (or `["subject=1", "session=pre"]`) ->
    `{"subject": 1, "session": "pre"}`."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if _BARE.match(token):
            key, text = token.split("=", 1)
            i += 1
        elif not token.startswith("--") or len(token) < 3:
            raise AddressError(
                f"unexpected argument {token!r}: address values are given as "
                "--key value or key=value, after the variable name"
            )
        elif "=" in token:
            key, text = token[2:].split("=", 1)
            i += 1
        else:
            if token[2:] in _MAIN_OPTIONS:
                raise AddressError(_MAIN_OPTIONS[token[2:]])
            if i + 1 >= len(args):
                raise AddressError(f"option {token} needs a value, e.g. {token} 1")
            key, text = token[2:], args[i + 1]
            i += 2
        key = key.replace("-", "_")
        if key in _MAIN_OPTIONS:
            raise AddressError(_MAIN_OPTIONS[key])
        value = text if as_str else convert(text)
        if key in out:
            previous = out[key] if isinstance(out[key], list) else [out[key]]
            out[key] = [*previous, value]
        else:
            out[key] = value
    return out


def _unquoted(text: str) -> str:
    r"""A quoted value: the string whose repr it is (how `address.value_text` prints a label
    holding a backslash, both quotes or a control character: `' C:\\data'`), else the text
    inside the quotes (a typed `'C:\data'` keeps its backslash)."""
    try:
        with warnings.catch_warnings():  # ('C:\data': an invalid escape, warned of by Python)
            warnings.simplefilter("ignore")
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text[1:-1]
    return value if isinstance(value, str) and repr(value) == text else text[1:-1]


def convert(text: str) -> Any:
    """A command-line value as the type it most likely was saved with."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return _unquoted(text)
    if _INT.fullmatch(text):  # "03" stays text, as PathInput discovers it (a file "03/..." is "03")
        return int(text) if str(int(text)) == text.lstrip("+") else text
    if _FLOAT.fullmatch(text):
        return float(text)
    if text in ("true", "false"):
        return text == "true"
    return text
