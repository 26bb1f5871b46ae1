"""Object ids: 64 lowercase hex characters of a blake3 digest.

An oid is validated before it is ever turned into a path, so a malformed or hostile string
(`../../etc`, upper case, a short prefix) can never reach the file system.
"""

from __future__ import annotations

import re
from typing import NewType

from scistack.errors import InvalidOidError

Oid = NewType("Oid", str)

_OID_RE = re.compile(r"[0-9a-f]{64}")


def is_valid_oid(text: object) -> bool:
    """Whether `text` is a well-formed oid (64 lowercase hex characters)."""
    return isinstance(text, str) and _OID_RE.fullmatch(text) is not None


def validate_oid(text: object) -> Oid:
    """Return `text` as an `Oid`, or raise `InvalidOidError` saying what is wrong."""
    if not is_valid_oid(text):
        raise InvalidOidError(
            f"{text!r} is not an object id: an oid is exactly 64 lowercase hex characters "
            "(as printed by `scistack log`); check for a truncated or mistyped id"
        )
    return Oid(text)  # type: ignore[arg-type]


def oid_relpath(oid: Oid) -> str:
    """The object's path below the objects directory: ``ab/cdef…`` (git's fan-out)."""
    return f"{oid[:2]}/{oid[2:]}"
