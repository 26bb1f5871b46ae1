"""The bundle's README.md: what was exported, and how to load it with and without scistack."""

from __future__ import annotations

from typing import Any

LISTED = 100  # selected values the README names one by one (a bundle may hold 300k)

TEMPLATE = """# {title}

Exported by {producer} on {date}: {n_selected} selected value(s) and their full lineage
({n_values} value record(s), {n_calls} call(s), {n_objects} object(s)).

## Selected values

{selected}

{unwritten}## What is here

- `<Variable>/<key>=<value>/....npy|.parquet|.json|.bin`: every value, as an open file
  (NumPy arrays as `.npy`, tables as Parquet (a pandas Series as a table of one column named
  as the Series, or after its variable, beside its index), scalars/dicts/lists as JSON with NaN and
  infinities as `null`, as pandas and MATLAB write them, bytes as `.bin`,
  arrays stored in chunks as Zarr v3 folders `.zarr/`, which `zarr.open_array(path)` reads).
  A dict or list holding arrays or tables is a folder `.parts/`: `value.json` holds it, each
  array or table replaced by `{{"$ref": "<file>"}}`, a file beside it in the folder
  (`emg.npy`, `trials.0.npy`, `table.parquet`).
- `objects/<oid>.<kind>`: the same values, their call records, function source and git diffs in
  scistack's own object format (`<oid>` is the blake3 hash of the object).
- `scistack-bundle.json`: the manifest: schema keys {schema}, every saved record, the call-cache
  entries, and the blake3 oid and sha256 of every file.{raw}
- `ro-crate-metadata.json`: an RO-Crate 1.1 Process Run Crate (profile 0.5): one CreateAction
  per call, one File per value.
- `provenance.json`: the same graph as W3C PROV-JSON.

## Load it without scistack

```python
import json, numpy as np, pandas as pd
manifest = json.load(open("scistack-bundle.json"))
for f in manifest["files"]:
    print(f["var"], f["addr"], f["path"])
array = np.load("{example}")          # .npy files
# table = pd.read_parquet("Var/subject=1.parquet");  json.load(open("Var/subject=1.json"))
```

Check a file: `sha256sum <file>` equals its `sha256` in the manifest.

## Load it with scistack

```
scistack import path/to/this/folder      # into the project found from the working directory
```

or `db.import_bundle("path/to/this/folder")`. The values, versions, lineage and call cache are
restored under the same oids and merged with what the project has; running the same code
there again finds every call in the cache. The project must have the schema keys {schema}.
"""


def where(record: dict[str, Any], keys: list[str]) -> str:
    """Schema keys in schema order, then version keys: variants at one address read apart."""
    addr, vkeys = record["addr"], record["vkeys"]
    return ", ".join([f"{k}={addr[k]}" for k in keys if k in addr]
                     + [f"{k}={v}" for k, v in sorted(vkeys.items())]) or "(no address)"


def render(manifest: dict[str, Any], *, title: str, producer: str, date: str) -> str:
    keys = manifest["schema_keys"]
    shown = manifest["selected"][:LISTED]
    selected = "\n".join(
        f"- `{r['var']}` at {where(r, keys)}"
        f" (version {r['version']}, blake3 `{r['oid'][:16]}...`)" for r in shown)
    if len(manifest["selected"]) > len(shown):
        selected += (f"\n- ... and {len(manifest['selected']) - len(shown):,} more "
                     "(`scistack-bundle.json` lists every one under `selected`)")
    example = next((f["path"] for f in manifest["files"] if (f["path"] or "").endswith(".npy")),
                   "Var/subject=1/session=post.npy")
    return TEMPLATE.format(
        title=title, producer=producer, date=date, n_selected=len(manifest["selected"]),
        n_values=len(manifest["refs"]), n_calls=len(manifest["call_records"]),
        n_objects=len(manifest["objects"]), selected=selected, schema=manifest["schema_keys"],
        example=example, raw=_raw_text(manifest), unwritten=_unwritten_text(manifest, keys))


def _unwritten_text(manifest: dict[str, Any], keys: list[str]) -> str:
    """The README's section on values no open file holds (in objects/ only), each named."""
    missing = [f for f in manifest["files"] if f.get("no_open_file")]
    if not missing:
        return ""
    lines = [f"- `{f['var']}` at {where(f, keys)} (version {f['version']}): {f['no_open_file']}"
             for f in missing[:LISTED]]
    if len(missing) > LISTED:
        lines.append(f"- ... and {len(missing) - LISTED:,} more (`no_open_file` in `scistack-bundle.json`)")
    return ("## Values without an open file\n\n" + "\n".join(lines) + "\n\n")


def _raw_text(manifest: dict[str, Any]) -> str:
    """The README's line on raw files, when the export copied them (`--with-raw`)."""
    raw = manifest.get("raw_files")
    if raw is None:
        return ""
    if not raw:
        return "\n- No raw files: no call in this lineage read one (`PathInput`)."
    copied = [r for r in raw if r.get("path")]
    example = f" (`{copied[0]['path']}` was read as `{copied[0]['read_as']}`)" if copied else ""
    text = (f"\n- `raw/`: the {len(copied)} raw file(s) the calls read (`PathInput`), each under the "
            f"path it was read as{example}; `raw_files` in the manifest lists where each was read, its "
            "blake3 oid and sha256. `scistack import <this folder> --raw-to <the folder the pipeline "
            "runs from>` puts each back where it was read (or copy what `raw/` holds there) and the "
            "same code finds every call in the cache.")
    moved = [r for r in raw if r.get("path") and r["path"] != f"raw/{r['read_as']}"]
    if moved:
        text += ("\n  Elsewhere (read from outside the run folder, named as another file or a folder but "
                 "for case, or a name Windows or macOS refuses; `--raw-to` puts it back under its own): "
                 + "; ".join(f"`{r['path']}` (read as `{r['read_as']}`)" for r in moved) + ".")
    missing = [r for r in raw if not r.get("path")]
    if missing:
        text += "\n  Not copied: " + "; ".join(f"`{r['read_as']}` ({r['missing']})" for r in missing) + "."
    return text
