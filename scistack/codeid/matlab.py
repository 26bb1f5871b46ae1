"""A MATLAB function's identity: its normalised `.m` text (and its listed helpers').

Pure (no store, no index): `for_each`'s plan and commit, the Thunk bridge, and `status` / `why`
(which read the recorded `.m` files again) all compute it here, so there is one definition.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scistack.codeid.script_path import recorded_path, script_path
from scistack.errors import LineageError
from scistack.objects.canonical_json import dumps_canonical
from scistack.objects.hashing import hash_bytes, hash_object


# -- the function: normalised source and identity -----------------------------------------
def normalise_matlab_source(text: str) -> str:
    """The text a MATLAB function's identity is computed from.

    Removes `%` (and Octave `#`) comments outside strings, the text after a `...`
    continuation, `%{ ... %}` block comments (nested, each marker alone on its line), blank
    lines and trailing whitespace; line ends become `\\n`. Indentation and everything else
    count. A string delimiter the scanner cannot classify keeps the rest of its line, so an
    uncertain case changes identity (a re-run) rather than hiding an edit.
    """
    out = []
    depth = 0
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        marker = line.strip()
        if marker in ("%{", "#{"):
            depth += 1
            continue
        if depth:
            if marker in ("%}", "#}"):
                depth -= 1
            continue
        code = _strip_comment(line).rstrip()
        if code.strip():
            out.append(code)
    return "".join(line + "\n" for line in out)


def _strip_comment(line: str) -> str:
    quote = ""
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == quote:
                if line[i + 1 : i + 2] == quote:
                    i += 2
                    continue
                quote = ""
        elif c in "%#":
            return line[:i]
        elif c == "." and line.startswith("...", i):
            return line[: i + 3]
        elif c == '"':
            quote = c
        elif c == "'":
            prev = line[i - 1] if i else ""
            if not (prev.isalnum() or prev in "_)]}.'"):  # else: the transpose operator
                quote = c
        i += 1
    return line


@dataclass(frozen=True, slots=True)
class MatlabSource:
    """One `.m` file: its label (`+pkg/name.m`), normalised text, digest and code oid."""

    label: str
    path: str
    text: str
    digest: str
    code: str


@dataclass(frozen=True, slots=True)
class MatlabFunction:
    """A MATLAB function as lineage sees it."""

    name: str
    main: MatlabSource
    helpers: tuple[MatlabSource, ...]
    identity: str
    params: tuple[str, ...]

    @property
    def module(self) -> str:
        return f"matlab:{self.main.label}"

    def deps(self) -> list[list[str]]:
        return sorted([f"helper:matlab:{h.label}", h.digest] for h in self.helpers)


def matlab_source(path: str | os.PathLike) -> MatlabSource:
    """Read and normalise one `.m` file."""
    file = Path(path)
    if file.suffix != ".m":
        raise LineageError(
            f"{file} is not a MATLAB .m file; for_each needs a function defined in a .m file"
        )
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise LineageError(f"cannot read the MATLAB function file {file}: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # MATLAB's default on many systems
    normal = normalise_matlab_source(text)
    data = normal.encode("utf-8")
    return MatlabSource(
        label_of(file), str(file), normal, hash_bytes(data), hash_object("code", [data])
    )


def label_of(file: Path) -> str:
    """`bandpass.m`, or `+lab/bandpass.m` / `@Filter/apply.m` inside package/class folders."""
    parts = [file.name]
    for parent in file.parents:
        if parent.name.startswith(("+", "@")):
            parts.insert(0, parent.name)
        else:
            break
    return "/".join(parts)


def matlab_function(
    file: str | os.PathLike, helpers: list[str] | tuple[str, ...] = ()
) -> MatlabFunction:
    """The identity of the function in `file` (and the helper files it depends on)."""
    main = matlab_source(file)
    deps = tuple(sorted((matlab_source(h) for h in helpers), key=lambda s: s.label))
    if deps:
        identity = hash_bytes(
            dumps_canonical(
                {
                    "deps": sorted([f"helper:matlab:{h.label}", h.digest] for h in deps),
                    "source": main.digest,
                }
            )
        )
    else:
        identity = main.digest
    name, params = signature_of(main)
    return MatlabFunction(name, main, deps, identity, params)


_FUNCTION_LINE = re.compile(
    r"^\s*function\b\s*(?:(?:\[[^\]]*\]|[A-Za-z]\w*)\s*=\s*)?([A-Za-z][\w.]*)\s*(?:\(([^)]*)\))?"
)


def signature_of(source: MatlabSource) -> tuple[str, tuple[str, ...]]:
    """Function name and parameter names, from the first `function` line of the file."""
    joined = re.sub(r"\.\.\.\n", " ", source.text)
    for line in joined.split("\n"):
        match = _FUNCTION_LINE.match(line)
        if match:
            params = tuple(p.strip() for p in (match.group(2) or "").split(",") if p.strip())
            return match.group(1), params
        if line.strip():
            break
    raise LineageError(
        f"{source.path} is not a function file (its first statement is not `function ...`): "
        "for_each runs functions; wrap a script in a function"
    )




def identity_now(
    file: str | None, helpers: list[str] | tuple[str, ...] = ()
) -> tuple[str | None, str]:
    """(identity, "") of the function in the recorded `.m` file (and helper files) as they are
    on disk now, or (None, why) when one cannot be read: then nothing can be compared."""
    if not file:
        return None, "the call record names no .m file (recorded before scistack kept it)"
    try:
        return matlab_function(file, list(helpers)).identity, ""
    except LineageError as exc:
        return None, str(exc)


def recorded_files(
    function: Any, root: str | os.PathLike | None = None, projects: Any = ()
) -> tuple[str | None, list[str] | None]:
    """The `.m` file and helper files a MATLAB call record (its `FunctionInfo`) names, in this
    checkout of the project (folder `root`, project ids `projects`: `Database.project_ids`):
    each is where `script_path` finds a Python script. A file recorded inside the project's
    folder (`project_file`, relative to it) by this project (`function.project`) is read
    under `root`: a lab colleague's checkout, or a moved or copied project, judges its own
    copy, not the absolute path of the folder that computed the value (another's file, or
    none); one imported from another project is read at its absolute path (this project's
    file of that name is another function). Helpers None when one of them has no recorded
    path (a record from before they were kept)."""
    made = getattr(function, "project", None)
    helpers = [
        recorded_path(h.extra.get("file"), h.extra.get("project_file"), made, root, projects)
        for _, h in sorted(function.helpers.items())
    ]
    file = script_path(function, root, projects)
    return file, (helpers if all(isinstance(f, str) for f in helpers) else None)


def is_matlab_module(module: str) -> bool:
    """A MATLAB function's records name their module `matlab:<label>`."""
    return module.startswith("matlab:")
