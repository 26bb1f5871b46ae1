"""Files of the MATLAB bridge: format version, names, JSON reads and writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scistack._atomic import write_atomic
from scistack.codeid.matlab import MatlabFunction, matlab_function
from scistack.database import Database
from scistack.errors import InvalidMetadataError, SchemaMismatchError
from scistack.objects.canonical_json import dumps_canonical

FORMAT = 1
PLAN_RESULT = "plan-result.json"
COMMIT_RESULT = "commit-result.json"
INLINE_MAX = 16  # like Python constants: scalars and containers of <= 16 items inline
ENV_KEYS = ("language", "matlab", "octave")


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidMetadataError(f"cannot read the MATLAB {what} request {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidMetadataError(
            f"{path}: format {data.get('format') if isinstance(data, dict) else None!r}; this scistack "
            f"reads {FORMAT} (update the MATLAB client or scistack so that they match)"
        )
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, dumps_canonical(data) + b"\n")


def check_schema(db: Database, req: dict[str, Any], path: Path) -> None:
    if list(req.get("schema_keys") or []) != db.schema_keys:
        raise SchemaMismatchError(
            f"{path} was written for schema keys {req.get('schema_keys')}, but the project has "
            f"{db.schema_keys}; configure MATLAB with scistack.configure_database(path, {db.schema_keys})"
        )


def open_request(db: Database, request_path: Path, what: str) -> tuple[dict[str, Any], MatlabFunction]:
    """A request MATLAB wrote (a plan, a Thunk call), checked against the project's schema
    keys, and its function as its files are now."""
    req = read_json(request_path, what)
    check_schema(db, req, request_path)
    return req, matlab_function(req["function"]["file"], req["function"].get("helpers") or [])
