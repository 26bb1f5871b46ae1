"""Raw files as `for_each` inputs and outputs: `PathInput`, `PathOutput`.

```python
for_each(load_csv, inputs={"path": PathInput("{subject}/s_{session}.csv", root="raw/")},
         outputs=[RawForce], subject=[], session=[])
```
The function receives the resolved path (a str). The input's identity in the call key and the
call record is the file's content hash (the oid the file would have as a `bytes` object), not
its path or mtime: editing a raw file re-runs exactly the combinations that read it, touching
it re-runs nothing. A file that is not there makes the combination "missing". The hash of a
file is remembered by (size, mtime, inode, ctime), in this process and in the project's memo
of files (`filestats`), so a re-run re-reads only what changed: the ctime, which no copy can
set, sees a file replaced in place by other content of the same size with its mtime kept
(``cp -p``, ``shutil.copy2``, ``rsync -t --inplace``, unzip). A stat taken within 2 s of the
file's mtime or ctime is *racy* (`codeid.files.racy_stat`: a rewrite of the same size in the
same timestamp tick, or through a dirty mapped page, keeps it): its hash is not remembered,
so a file just written is hashed on each use until then.

`PathOutput("{subject}/fig.png", root="figs/")` hands the function a path to write; after the
call the written file is stored as a `bytes` value of the next output variable.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Any

from scistack.address import is_text, shown, shown_address
from scistack.codeid.script_path import project_relative
from scistack.errors import InputFileError, InvalidMetadataError
from scistack.lineage.calls import BoundInput
from scistack.objects.canonical_json import dumps_canonical
from scistack.foreach.filestats import FileStats, content_oid
from scistack.objects.hashing import hash_bytes


class _Template:
    """A path template over schema keys, under a root folder."""

    def __init__(self, template: str, root: str | os.PathLike = ".") -> None:
        if not isinstance(template, str) or not template:
            raise InvalidMetadataError(
                f"a path template must be a non-empty str such as \"{{subject}}/s_{{session}}.csv\", got {template!r}")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            raise InvalidMetadataError(f"path template {template!r} is malformed ({exc}); write keys as "
                                       "{subject}, a literal brace as {{ or }}") from None
        bad = [f for f in fields if not f.isidentifier()]
        if bad:
            raise InvalidMetadataError(f"path template {template!r}: {bad} are not key names; write "
                                       "each key as {name}, e.g. {subject}")
        if os.path.isabs(template):
            raise InvalidMetadataError(f"path template {template!r} is absolute; give it relative to root=")
        self.template = template
        self.keys = list(dict.fromkeys(fields))
        self.root_shown = os.fspath(root)
        self.root = os.path.abspath(self.root_shown)

    def check_keys(self, schema_keys: list[str], iterated: list[str], what: str,
                   alternatives: tuple[str, ...] = ()) -> None:
        """Refuse a template naming a key that is not in the schema, or that is not iterated;
        a PathOutput may also name an `EachOf` parameter (`alternatives`: its label goes there)."""
        unknown = [k for k in self.keys if k not in schema_keys and k not in alternatives]
        if unknown:
            also = f" nor EachOf parameters {list(alternatives)}" if alternatives else ""
            raise InvalidMetadataError(
                f"{what} template {self.template!r} names {unknown}, which are not schema keys "
                f"{schema_keys}{also}; name only schema keys in the template")
        missing = [k for k in self.keys if k not in iterated and k not in alternatives]
        if missing:
            raise InvalidMetadataError(
                f"{what} template {self.template!r} needs {missing} at every combination: iterate "
                f"them (for_each(..., {missing[0]}=[...]); [] takes the values found on disk)")

    def locate(self, combo: dict[str, Any]) -> tuple[str, str]:
        """(absolute path, the path as shown: root joined with the rendered template)."""
        try:
            rendered = self.template.format(**{k: combo[k] for k in self.keys})
        except KeyError as exc:
            raise InvalidMetadataError(
                f"path template {self.template!r} needs {exc.args[0]!r}, which this combination "
                f"({shown_address(combo)}) lacks; iterate it in for_each") from None
        full = os.path.normpath(os.path.join(self.root, rendered))
        if os.path.commonpath([full, self.root]) != self.root:
            raise InputFileError(
                f"path template {self.template!r} at {shown_address(combo)} gives {rendered!r}, which escapes the "
                f"root {self.root_shown!r}; use address values without '..' or '/'")
        shown = Path(self.root_shown, rendered).as_posix()
        return full, shown

    def discover(self) -> list[dict[str, Any]]:
        """Every combination of template keys whose file exists under the root, sorted."""
        if not os.path.isdir(self.root):
            raise InputFileError(f"{self!r}: the root {self.root_shown!r} is not a folder (from "
                                 f"{os.getcwd()}); give root= the folder holding the raw files")
        pattern = re.compile(self._regex())
        found: dict[str, dict[str, Any]] = {}
        for folder, _, files in os.walk(self.root):
            for name in files:
                rel = os.path.relpath(os.path.join(folder, name), self.root).replace(os.sep, "/")
                match = pattern.fullmatch(rel)
                if match:
                    found[rel] = {k: _typed(v) for k, v in match.groupdict().items()}
        # (refused, not skipped: a file left out would be a subject missing from the results
        # with only a warning to say so, and none of its values could be saved anyway)
        names = [rel for rel in sorted(found) if not is_text(rel)]
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            raise InputFileError(
                f"{self!r}: the file name {', '.join(shown(n) for n in names[:3])}{more} under "
                f"{self.root_shown!r} is not UTF-8 (a Latin-1 name from an older system, read "
                "with each byte that is not UTF-8 as a lone surrogate such as '\\udce9'): it "
                "cannot be an address value or be saved, so for_each runs nothing while it is there. "
                "Rename it to a UTF-8 name first, e.g. in Python: os.rename(os.path.join(root, name), "
                "os.path.join(root, name.encode('utf-8', 'surrogateescape').decode('latin-1')))")
        return [found[rel] for rel in sorted(found)]

    def _regex(self) -> str:
        parts, seen = [], set()
        for literal, field, _, _ in string.Formatter().parse(self.template):
            parts.append(re.escape(literal))
            if field is None:
                continue
            parts.append(f"(?P={field})" if field in seen else f"(?P<{field}>[^/]+?)")
            seen.add(field)
        return "".join(parts)


def _typed(text: str) -> Any:
    """A key value read from a file name: an int when it reads back the same ("3", not "03")."""
    return int(text) if text.isdigit() and str(int(text)) == text else text


class PathInput(_Template):
    """A raw file per combination: `PathInput("{subject}/s_{session}.csv", root="raw/")`."""

    def __repr__(self) -> str:
        return f"PathInput({self.template!r}, root={self.root_shown!r})"

    def bound(self, name: str, combo: dict[str, Any], stats: FileStats | None = None,
              project: str | os.PathLike | None = None) -> BoundInput | None:
        """The lineage view of the file at `combo` (None when it is not there); `stats`: the
        project's memo of files, which spares hashing one whose stat it remembers. `project`:
        the project's folder; a file inside it is also named by its path relative to it
        (`project_path`), its place (`lineage.calls.same_place`): the absolute path is where
        this machine found it, and two lab machines, or a moved project, hold it elsewhere."""
        full, shown = self.locate(combo)
        oid = file_oid(full, shown, stats)
        if oid is None:
            return None
        record = {"oid": oid, "path": shown, "file": full}
        if project is not None:
            top = self._in_project(project)
            if top is not None:  # (`full` lies under the root: `locate`)
                rel = os.path.relpath(full, self.root).replace(os.sep, "/")
                record["project_path"] = f"{top}/{rel}" if top else rel
        return BoundInput(name, full, oid, record)

    def _in_project(self, project: str | os.PathLike) -> str | None:
        """The root relative to the project's folder ("" when it is that folder), None when
        outside it; found once per project (`project_relative`, links resolved too)."""
        known = self.__dict__.setdefault("_project_roots", {})
        key = os.fspath(project)
        if key not in known:
            known[key] = "" if os.path.abspath(self.root) == os.path.abspath(key) else \
                project_relative(self.root, key)
        return known[key]


class PathOutput(_Template):
    """A file the function writes per combination, stored as a `bytes` value of an output."""

    def check_outputs_apart(self, varying: list[str], what: str, alternatives: tuple[str, ...] = ()) -> None:
        """The template names every key iterated over several values and every `EachOf`
        parameter (`alternatives`): else two combinations or two alternatives write one file
        (each overwrote the other's, and with workers a result could be stored from the other
        combination's file)."""
        shared = [k for k in [*varying, *alternatives] if k not in self.keys]
        if shared:
            kind = "EachOf alternative" if shared[0] in alternatives else shared[0]
            raise InvalidMetadataError(
                f"{what} template {self.template!r} does not name {shared}, so every {kind} of "
                f"an address would write the same file; name each iterated key and EachOf parameter, e.g. "
                f"{self._naming(shared)!r}")

    def _naming(self, more: list[str]) -> str:
        """The template with `more` keys added before its extension: "fig/{subject}_{session}.png"."""
        stem, ext = os.path.splitext(self.template)
        return stem + "".join(f"_{{{k}}}" for k in more) + ext

    def with_labels(self, labels: dict[str, str]) -> PathOutput:
        """This output with the `EachOf` parameters it names filled in with the alternative's
        label (`labels`: parameter -> label); the schema keys stay to fill per combination."""
        if not any(k in labels for k in self.keys):
            return self
        parts = []
        for literal, field, spec, conversion in string.Formatter().parse(self.template):
            parts.append(literal.replace("{", "{{").replace("}", "}}"))
            if field is None:
                continue
            if field in labels:
                parts.append(labels[field].replace("{", "{{").replace("}", "}}"))
            else:
                parts.append("{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}")
        return PathOutput("".join(parts), root=self.root_shown)

    def __repr__(self) -> str:
        return f"PathOutput({self.template!r}, root={self.root_shown!r})"

    def bound(self, name: str, combo: dict[str, Any]) -> BoundInput:
        """Keyed by the rendered template (where the file goes), not by the root."""
        full, shown = self.locate(combo)
        rel = os.path.relpath(full, self.root).replace(os.sep, "/")
        oid = hash_bytes(dumps_canonical({"writes": rel}))
        return BoundInput(name, full, oid, {"oid": oid, "writes": rel, "file": full})


def file_oid(path: str, shown: str | None = None, stats: FileStats | None = None) -> str | None:
    """The oid of a file's content as a `bytes` object; None when there is no such file
    (`filestats.content_oid`: `stats`, the project's memo of files, answers for a file whose
    whole stat it remembers, and remembers what is hashed here)."""
    try:
        return content_oid(path, stats)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputFileError(f"cannot read {shown or path}: {exc.strerror}; make it a readable file "
                             "(check its permissions and links), or move it out of the template's "
                             "reach") from None


def written_file(path: str) -> bytes:
    """The bytes a function wrote to its `PathOutput` path (refused when it wrote nothing)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise InputFileError(f"the function was given {path} to write (PathOutput) but did not "
                             "write it; write the file there, or drop the PathOutput") from None
