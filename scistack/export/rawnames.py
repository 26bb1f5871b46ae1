"""Where a raw file goes in a bundle (`export --with-raw`): a path every file system can unpack.

A raw file is read as a path on the exporting machine (`raw/sub 3/s_pre.csv`); the bundle
keeps it under `raw/` + that path (`raw_path`), so that, copied back, the same template finds
the same keys. But a bundle is unpacked on Windows and macOS too, where some of those names
cannot be: Windows refuses device names (`CON`, `aux.txt`), names ending in a dot or a space,
and `<>:"|?*`; both compare names ignoring case (and macOS Unicode normalisation), so `raw/A`
(a file) and `raw/a/x.csv` (a file in a folder) would need one name for a file and a folder,
and `raw/A.csv` beside `raw/a.csv` one name for two files. `BundlePlaces.place` maps each part
that cannot be to a safe name (a character replaced by `_`, a device name or a clash given
`~2`, `~3`... before its extension); the manifest keeps the path as read (`restore_as`), so
an import puts each file back where it was read.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

_CONTROL = re.compile(r"[\x00-\x1f]")
_REFUSED = re.compile(r'[\x00-\x1f<>:"|?*\\]')  # by Windows in a name (`/` separates parts)
_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
            *(f"{dev}{n}" for dev in ("COM", "LPT") for n in (*"0123456789", "¹", "²", "³"))}


def raw_path(read_as: str) -> PurePosixPath:
    """Where a raw file read as `read_as` would go in a bundle: `raw/` + that path as it was
    read (spaces and any script kept, so copied back the same template finds the same keys),
    less what would leave `raw/` (a root or drive, `.` and `..` parts) and control characters.
    `BundlePlaces.place` makes it safe to unpack anywhere."""
    parts = [p for p in PurePosixPath(read_as.replace("\\", "/")).parts
             if p not in ("..", ".") and p.strip("/")]  # (a root: `/`, or `//` of a UNC path)
    if parts and re.fullmatch(r"[A-Za-z]:", parts[0]):  # a Windows drive
        parts = parts[1:]
    rel = PurePosixPath("raw", *[_CONTROL.sub("_", p) for p in parts])
    assert rel.parts[0] == "raw" and not rel.is_absolute(), rel  # (every part that would leave raw/ is gone)
    return rel


def restore_path(read_as: str) -> str:
    """Where an import puts back a raw file read as `read_as`, relative to the folder it is
    restored into (the manifest's `restore_as`): `raw_path` less its `raw/`. An import derives
    it again and refuses a manifest whose `restore_as` differs (an edit planting a file)."""
    return PurePosixPath(*raw_path(read_as).parts[1:]).as_posix()


# never restored: code Python would import from the folder (it is usually the one the pipeline
# runs from, first on sys.path), and the folders of scistack and git
_CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd", ".pyw", ".so", ".dylib", ".dll", ".pth")
_PRIVATE_FOLDERS = (".scistack", ".git")


def unrestorable(restore_as: str) -> str | None:
    """Why a raw file must not be written at `restore_as` (None when it may), as a
    case-insensitive file system sees the name (`PANDAS.PY`, `.Git/`)."""
    parts = [_key(PurePosixPath(p)).rstrip(". ") for p in PurePosixPath(restore_as).parts]
    if any(p in _PRIVATE_FOLDERS for p in parts):
        return "it is inside a .scistack/ or .git/ folder"
    if parts and parts[-1].endswith(_CODE_SUFFIXES):
        return "it is a Python module or library, which would run when the pipeline imports that name"
    return None


def same_name_key(restore_as: str) -> str:
    """One key for the restore paths macOS and Windows take as one file (case, normalisation)."""
    return _key(PurePosixPath(restore_as))


def safe_name(part: str) -> tuple[str, bool]:
    """`part` as Windows and macOS take a name: characters they refuse, and trailing dots
    and spaces (Windows drops them), replaced by `_`; and whether it is a device name
    (`CON`, `aux.txt`: Windows opens the device instead), which needs a `~n` to be a file."""
    name = _REFUSED.sub("_", part)
    stripped = name.rstrip(". ")
    name = stripped + "_" * (len(name) - len(stripped))
    head = name.split(".", 1)[0].rstrip(" ").upper()
    return name, head in _DEVICES


def numbered(name: str, n: int) -> str:
    """`name` with `~n` before its extension (from its first dot: `aux~2.txt`, not a device)."""
    dot = name.find(".", 1)
    return f"{name}~{n}" if dot < 0 else f"{name[:dot]}~{n}{name[dot:]}"


def _key(path: PurePosixPath) -> str:
    """One key for the names macOS and Windows take as one (case, Unicode normalisation)."""
    return unicodedata.normalize("NFC", path.as_posix()).casefold()


class BundlePlaces:
    """The bundle paths given so far, as a case-insensitive file system sees them: a folder
    keeps the first spelling it was given (`raw/A/` and `raw/a/` are one folder there), and
    no file has a path another file or a folder has."""

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._folders: dict[str, PurePosixPath] = {}

    def place(self, wanted: PurePosixPath) -> PurePosixPath:
        """Where the file `wanted` (`raw_path`) goes: each part safe, apart from every other."""
        at = PurePosixPath(wanted.parts[0])
        for part in wanted.parts[1:-1]:
            at = self._folder(at, *safe_name(part))
        return self._file(at, *safe_name(wanted.parts[-1]))

    def _folder(self, parent: PurePosixPath, name: str, device: bool) -> PurePosixPath:
        n = 2 if device else 1
        while True:
            folder = parent / (numbered(name, n) if n > 1 else name)
            if _key(folder) not in self._files:  # (a file there: this folder moves aside)
                return self._folders.setdefault(_key(folder), folder)
            n += 1

    def _file(self, parent: PurePosixPath, name: str, device: bool) -> PurePosixPath:
        n = 2 if device else 1
        while True:
            path = parent / (numbered(name, n) if n > 1 else name)
            if _key(path) not in self._files and _key(path) not in self._folders:
                self._files.add(_key(path))
                return path
            n += 1
