"""The one exception hierarchy of scistack.

Every error a user can meet is a `ScistackError`. Each subclass also inherits the
builtin a caller would naturally catch (`LookupError`, `TypeError`, `ValueError`...),
and every message says what happened *and* what to do about it.
"""

from __future__ import annotations

import errno


class ScistackError(Exception):
    """Root of every error raised by scistack."""


class UnreadableJournalWarning(UserWarning):
    """Opening a project whose index folded past journal lines no reader can take (torn, or
    of the wrong shape): what they held is in no view. `scistack fsck` names them."""


class MixedKeyTypesWarning(UserWarning):
    """A `PathInput` found one key's values in file names both as ints ("10") and as
    zero-padded text ("01", kept a str so that it reads back the same): one key, two types."""


class NoOpenFileWarning(UserWarning):
    """An export wrote no open file for a selected value JSON has no type for (a complex
    number, bytes inside a dict or list): it is in the bundle's objects/ only, which an
    import restores; the README and manifest (`no_open_file`) name each."""


class GcLockLeftWarning(UserWarning):
    """A lab gc could not remove its lock (`gc.lock` in the bucket) at its end: the next gc
    on the same machine takes it over; one on another machine is refused until it is deleted."""


class UnsavedVariableWarning(UserWarning):
    """`load_all` of a variable never saved in this project (a step not run yet, or a misspelt
    class) gives an empty result, as for one whose values were all deleted; this says which."""


class UnsupportedValueError(ScistackError, TypeError):
    """A value cannot be stored canonically (no pickle fallback, ever)."""


class InvalidOidError(ScistackError, ValueError):
    """A string that is not a 64-character lowercase hex object id."""


class ObjectNotFoundError(ScistackError, LookupError):
    """An object id that the store does not hold."""

    def __init__(self, oid: str, hint: str = "") -> None:
        self.oid = oid
        msg = f"object {oid} is not in the object store"
        msg += f"; {hint}" if hint else (
            "; run `scistack fsck`: it names what points to lost objects and how to get each back")
        super().__init__(msg)


class CorruptObjectError(ScistackError, ValueError):
    """An object's bytes no longer hash to its id, or cannot be decoded."""

    def __init__(self, oid: str, problem: str, *, actual: str | None = None) -> None:
        self.oid = oid
        self.expected = oid
        self.actual = actual
        super().__init__(
            f"object {oid} is corrupt: {problem}. Its file must not be trusted; run "
            "`scistack fsck --repair` (it lists every damaged object and sets them aside), then "
            "save the value again or rerun the step that computed it (or restore the file from a backup)"
        )


class CorruptPackIndexError(ScistackError, ValueError):
    """A pack's index is truncated or has a bad magic, or its pack cannot be rebuilt from."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"pack index {path} is damaged: {problem}. The objects of its pack cannot be found "
            "through it (the other packs are unaffected); run `scistack fsck --repair` to rebuild "
            "the index from its pack"
        )


class ConfigurationError(ScistackError, ValueError):
    """A setting (an environment variable, a configuration value) cannot be understood."""


class ObjectTooLargeError(ScistackError, MemoryError):
    """A genuine object is larger than the configured load limit: it cannot be loaded whole."""

    def __init__(self, oid: str, size: int, limit: int) -> None:
        self.oid, self.size, self.limit = oid, size, limit
        super().__init__(
            f"object {oid} is too large to load whole ({size:,} bytes; the load limit is "
            f"{limit:,}): load it lazily (a chunked value), or raise the limit with "
            "SCISTACK_MAX_LOAD_BYTES if this machine has the memory. The object is intact"
        )


class NotARepositoryError(ScistackError, LookupError):
    """No scistack project was found (no database configured or discovered)."""


class SchemaMismatchError(ScistackError, ValueError):
    """A database was re-opened with different schema keys than it was created with."""


class IndexSchemaError(ScistackError, RuntimeError):
    """The index was written by an incompatible version of scistack."""


class InvalidNameError(ScistackError, ValueError):
    """A variable or metadata key name that is reserved or cannot be an SQL identifier."""


class InvalidMetadataError(ScistackError, ValueError):
    """Metadata given to save/load has the wrong shape or type."""


class VariableNotFoundError(ScistackError, LookupError):
    """No saved record matches a load."""


NotFoundError = VariableNotFoundError


class EmptyVariableError(ScistackError, ValueError):
    """A variable instance with no data (neither saved nor loaded) used as a value."""


class UnknownMetadataKeyError(VariableNotFoundError, InvalidMetadataError):
    """A load names a key that is no schema key, version key or lineage parameter (a typo)."""


class AmbiguousVersionError(ScistackError, LookupError):
    """Several version-key variants match one address and no selector chose among them."""


class AmbiguousParamError(ScistackError, LookupError):
    """A bare parameter name matches parameters of more than one upstream function."""


class DuplicateVariableError(ScistackError, TypeError):
    """Two different classes were declared with the same variable name."""


class DatabaseLockedError(ScistackError, TimeoutError):
    """Another process held the index too long."""


class IndexDamagedError(ScistackError, OSError):
    """The DuckDB file is unreadable; `scistack fsck --reindex` moves it aside and rebuilds it
    from the journal (which holds every name)."""


class LineageError(ScistackError, RuntimeError):
    """Lineage could not be recorded or resolved."""


class ForEachError(ScistackError, RuntimeError):
    """A for_each run stopped on a failed combination (on_error="raise")."""

    def __init__(self, message: str, failures: list | None = None) -> None:
        self.failures = failures or []
        super().__init__(message)


class AtomicBatchError(ScistackError, RuntimeError):
    """An atomic batch (`db.batch(atomic=True)`) was asked to do what would break its all or
    nothing: journal its held writes before it ends, or be nested in another batch."""


class GarbageCollectionError(ScistackError, RuntimeError):
    """gc refused to run because the project cannot be read completely."""


class RetentionError(ScistackError, ValueError):
    """A retention rule for old versions that cannot be applied (gc --keep-versions)."""


class QueryError(ScistackError, ValueError):
    """A SQL query on the index failed (syntax, unknown table, or an attempted write)."""


class CorruptRecordError(CorruptObjectError):
    """A stored record (a call record) decodes, but its fields do not have the documented shape."""

    def __init__(self, oid: str | None, problem: str) -> None:
        self.oid = oid or ""
        self.expected = self.oid
        self.actual = None
        self.problem = problem
        where = f"call record {oid}" if oid else "a call record"
        ScistackError.__init__(
            self,
            f"{where} is malformed: {problem}. It does not have the shape of docs/format.md 1.5; "
            "run `scistack fsck` to list damaged objects, and recompute the values it produced",
        )


class RunNotFoundError(ScistackError, LookupError):
    """No journalled for_each run has the id asked for."""


class WebViewError(ScistackError, ValueError):
    """The web view cannot start (port taken, not loopback) or was asked something it refuses."""


class ChunkReadError(CorruptObjectError):
    """One chunk of a chunked value is missing or damaged; the other chunks stay readable."""

    def __init__(self, chunk_oid: str, index: tuple, array_oid: str, problem: str) -> None:
        self.oid = self.expected = chunk_oid
        self.actual = None
        self.index = index
        self.array_oid = array_oid
        ScistackError.__init__(
            self,
            f"chunk {list(index)} (object {chunk_oid}) of chunked value {array_oid} {problem}. "
            "The other chunks are still readable: load with lazy=True and slice around it; run "
            "`scistack fsck --repair` (it lists every damaged chunk, sets them aside and drops the "
            "cache entries of the steps that computed them), then save the value again or rerun the "
            "step that computed it"
            + (" (or, if the value's records were deleted after it was loaded, gc has collected it: "
               "load it again from where it is still saved)" if problem.startswith("is missing") else ""),
        )


class ReadOnlyProjectError(ScistackError, PermissionError):
    """The project's folder cannot be written (a read-only mount, another user's folder):
    it is opened for reading only, and a save, delete or gc is refused before touching it."""


class LazyValueError(ScistackError, AttributeError):
    """A numpy array's method asked of a lazy array (which reads only what is indexed)."""


class ExportError(ScistackError, ValueError):
    """An export or import cannot be done as asked (empty selection, target folder not empty)."""


class BundleDamagedError(ScistackError, ValueError):
    """A bundle's file does not match the hash its manifest records; nothing was imported."""


class StorageFullError(ScistackError, OSError):
    """The disk (or a quota or file-size limit) refused a write; nothing was named."""


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_FULL_TEXTS = {"disk is full": errno.ENOSPC, "No space left": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
               "File too large": errno.EFBIG}


def storage_full(exc: BaseException, what: str, consequence: str = "") -> StorageFullError | None:
    """A `StorageFullError` for `exc` when it is a full disk, quota or file-size limit (or
    SQLite's "database or disk is full", DuckDB's "File too large"); None for any other failure. `what` names the file
    or folder that could not grow."""
    if isinstance(exc, StorageFullError):
        return exc
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        code, reason = exc.errno, exc.strerror
    elif (code := next((c for text, c in _FULL_TEXTS.items() if text in str(exc)), None)) is not None:
        reason = str(exc).strip().splitlines()[0][:200]  # (DuckDB's errors name the OS's reason in text)
    else:
        return None
    consequence = consequence or ("This save was not recorded; every value saved before it "
                                  "is intact and loads")
    return StorageFullError(
        code, f"{what} could not grow ({reason}): the disk, a quota or a file-size limit is "
        f"full. {consequence}. Free space (`scistack gc` reclaims unnamed objects) and retry")


class SharedServiceError(ScistackError, ConnectionError):
    """Lab mode: the shared journal (PostgreSQL) or object store (S3) cannot be reached or
    refused the credentials; nothing acknowledged is lost."""


class SharedAccessError(ScistackError, PermissionError):
    """Lab mode: the shared journal or object store allows this user to read but not write."""


class InputFileError(ScistackError, OSError):
    """A raw file named by `PathInput`/`PathOutput` cannot be used: it escapes its root, cannot
    be read, or was not written."""


class DataBaseKeyError(ScistackError, TypeError):
    """A dictionary-style database key that is not a str, an int or a tuple of them."""


class NoSuchColumnError(ScistackError, KeyError):
    """Columns asked of a lazily loaded table (`LazyTable.read(columns=...)`) that it does not
    have (or asked twice, or not as a list: `what` says which)."""

    def __init__(self, missing: list, columns: list, fix: str = "", *, what: str = "") -> None:
        import difflib

        self.missing, self.columns = list(missing), list(columns)
        names = ", ".join(repr(c) for c in self.missing)
        close = [m for c in self.missing if isinstance(c, str)
                 for m in difflib.get_close_matches(c, [str(n) for n in self.columns], n=1)]
        fix = fix or ((f"did you mean {close[0]!r}? " if close else "") +
                      "ask for some of those columns, or read() it whole")
        what = what or (f"no column {names} in this table" if self.missing else "no column is asked for")
        super().__init__(f"{what}; its columns are {self.columns}: {fix}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class KeyNotInDataBaseError(ScistackError, KeyError):
    """`db[key]` for a key the dictionary-style database does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


__all__ = [
    "ScistackError",
    "LazyValueError",
    "ReadOnlyProjectError",
    "ExportError",
    "BundleDamagedError",
    "InputFileError",
    "DataBaseKeyError",
    "KeyNotInDataBaseError",
    "NoSuchColumnError",
    "UnsupportedValueError",
    "InvalidOidError",
    "ObjectNotFoundError",
    "CorruptObjectError",
    "NotARepositoryError",
    "SchemaMismatchError",
    "IndexSchemaError",
    "InvalidNameError",
    "InvalidMetadataError",
    "VariableNotFoundError",
    "UnknownMetadataKeyError",
    "UnsavedVariableWarning",
    "EmptyVariableError",
    "AmbiguousVersionError",
    "AmbiguousParamError",
    "DuplicateVariableError",
    "DatabaseLockedError",
    "LineageError",
    "ForEachError",
    "GarbageCollectionError",
    "RetentionError",
    "QueryError",
    "CorruptRecordError",
    "RunNotFoundError",
    "WebViewError",
    "CorruptPackIndexError",
    "ObjectTooLargeError",
    "ConfigurationError",
    "ChunkReadError",
    "StorageFullError",
    "IndexDamagedError",
    "SharedServiceError",
    "SharedAccessError",
]
