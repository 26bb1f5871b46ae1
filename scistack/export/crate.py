"""Describe a bundle as an RO-Crate 1.1 Process Run Crate (profile 0.5), and as PROV-JSON.

One CreateAction per call (instrument: the function as a SoftwareApplication with its code
hash and git commit; object: inputs and constants; result: outputs; start and end times;
environment: Python and package versions), one File per value. Built with the `rocrate`
and `prov` libraries rather than by hand, so the JSON-LD and PROV shapes are theirs.
"""

from __future__ import annotations

import json
import re
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from prov.model import ProvDocument
from rocrate.model.contextentity import ContextEntity
from rocrate.rocrate import ROCrate

from scistack.export.bundle import MANIFEST
from scistack.export.closure import Closure
from scistack.records import CallRecord
from scistack.version import __version__

PROFILE = "https://w3id.org/ro/wfrun/process/0.5"
PROV_FILE = "provenance.json"
LICENSE = "https://spdx.org/licenses/CC-BY-4.0"
_FORMATS = {".npy": "application/x-npy", ".parquet": "application/vnd.apache.parquet",
            ".json": "application/json", ".bin": "application/octet-stream",
            ".zarr": "application/vnd+zarr", ".parts": "application/json"}  # (.parts: its value.json)


def _file_ids(manifest: dict[str, Any]) -> dict[str, str]:
    """oid -> the bundle path that holds it best: an open file, else its scistack object."""
    ids = {o["oid"]: o["path"] for o in manifest["objects"]}
    ids |= {f["oid"]: f["path"] for f in reversed(manifest["files"]) if f["path"]}
    return ids


def write_crate(found: Closure, manifest: dict[str, Any], to: Path, title: str) -> None:
    """Write ro-crate-metadata.json into the bundle folder `to`."""
    with warnings.catch_warnings():  # File entities without a source: they are already in `to`
        warnings.simplefilter("ignore", UserWarning)
        _write_crate(found, manifest, to, title)


def _write_crate(found: Closure, manifest: dict[str, Any], to: Path, title: str) -> None:
    crate = ROCrate(version="1.1")
    # the Process Run Crate's term for an action's environment, defined inline (no fetch)
    crate.metadata.extra_terms["environment"] = "https://w3id.org/ro/terms/workflow-run#environment"
    crate.name = title
    crate.description = ("Values exported by scistack with their full lineage: every upstream value, "
                         "the calls that made them, their code and environment.")
    crate.license = crate.add(ContextEntity(crate, LICENSE, properties={  # edit before publishing
        "@type": "CreativeWork", "name": "Creative Commons Attribution 4.0 (a default: edit it)"}))
    profile = crate.add(ContextEntity(crate, PROFILE, properties={
        "@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5"}))
    crate.root_dataset["conformsTo"] = profile
    ids = _file_ids(manifest)
    raw = {r["oid"]: r["path"] for r in manifest.get("raw_files", []) if r.get("path")}  # copied ones
    # (a url is a URI reference: a raw file's path keeps its spaces and script, `quote`d here)
    files: dict[str, Any] = {}
    for entry in manifest["files"]:
        if entry["path"] and entry["path"] not in files:
            add = crate.add_dataset if "members" in entry else crate.add_file
            files[entry["path"]] = add(dest_path=entry["path"], properties={
                "name": f"{entry['var']} {_address(entry['addr'], entry['vkeys'])}".strip(),
                "encodingFormat": _FORMATS[Path(entry["path"]).suffix],
                "contentSize": str(entry["size"]), "identifier": f"blake3:{entry['oid']}",
                "sha256": entry["sha256"]})
    for obj in manifest["objects"]:
        if obj["path"] not in files:
            files[obj["path"]] = crate.add_file(dest_path=obj["path"], properties={
                "name": f"scistack {obj['kind']} object", "encodingFormat": "application/octet-stream",
                "identifier": f"blake3:{obj['oid']}", "sha256": obj["sha256"],
                "contentSize": str((to / obj["path"]).stat().st_size)})
    for extra, fmt in ((MANIFEST, "application/json"), (PROV_FILE, "application/json"),
                       ("README.md", "text/markdown")):
        crate.add_file(dest_path=extra, properties={"name": extra, "encodingFormat": fmt})
    apps: dict[str, Any] = {}
    actions: list[Any] = []
    for call_oid, call in sorted(found.calls.items()):
        fn = call.function
        app = apps.get(fn.identity)
        if app is None:
            props = {"@type": "SoftwareApplication", "name": f"{fn.module}.{fn.name}",
                     "identifier": f"scistack-code:{fn.identity}",
                     "softwareVersion": f"git {call.git['commit']}" if call.git.get("commit")
                     else fn.version or f"code {fn.identity[:16]}"}
            if fn.code and fn.code in ids:
                props["url"] = ids[fn.code]
            app = crate.add(ContextEntity(crate, f"#fn-{fn.identity[:16]}", properties=props))
            apps[fn.identity] = app
        inputs = [files[ids[item.oid]] for item in call.inputs.values() if ids.get(item.oid) in files]
        inputs += [crate.get(eid) or crate.add(ContextEntity(crate, eid, properties={
            "@type": "CreativeWork", "name": str(item.extra["path"]), "identifier": f"blake3:{item.oid}",
            **({"url": quote(raw[item.oid]), "description": f"a raw file the call read (PathInput), in this bundle at "
                                                     f"{raw[item.oid]}"} if item.oid in raw else
               {"description": "a raw file the call read (PathInput), identified by its content; not in "
                               "this bundle"})}))
            for item in call.inputs.values() if "path" in item.extra and ids.get(item.oid) not in files
            for eid in [f"#raw-{item.oid[:16]}"]]
        constants = [crate.add(ContextEntity(crate, f"#const-{call_oid[:16]}-{_slug(name)}", properties={
            "@type": "PropertyValue", "name": name, "value": json.dumps(item.const, default=str)}))
            for name, item in sorted(call.constants.items())]
        env = [crate.get(eid) or crate.add(ContextEntity(crate, eid, properties={
            "@type": "PropertyValue", "name": key, "value": str(value)}))
            for key, value in _environment(call).items()
            for eid in [f"#env-{_slug(key)}-{_slug(str(value))}"]]
        props = {"name": f"{fn.name} call {call_oid[:12]}", "identifier": f"blake3:{call_oid}",
                 "environment": env, **_times(call)}
        props["description"] = f"scistack ran {fn.module}.{fn.name} (call record {call_oid})"
        action = crate.add_action(app, identifier=f"#call-{call_oid[:16]}", properties=props)
        action["object"] = _single(inputs + constants)
        action["result"] = _single([files[ids[o]] for o in call.outputs if ids.get(o) in files])
        actions.append(action)
    if actions:
        crate.root_dataset["mentions"] = _single(actions)
    crate.write(to)


def _single(items: list) -> Any:
    """RO-Crate 1.1 prefers a single value to a one-element list."""
    return items[0] if len(items) == 1 else items


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def _address(addr: dict[str, Any], vkeys: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in {**addr, **vkeys}.items())


def _times(call: CallRecord) -> dict[str, str]:
    if not call.started:
        return {}
    try:
        start = datetime.fromisoformat(call.started.replace("Z", "+00:00"))
    except ValueError:
        return {"startTime": call.started}
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    end = start + timedelta(seconds=float(call.duration or 0))
    return {"startTime": start.isoformat(timespec="milliseconds"),
            "endTime": end.isoformat(timespec="milliseconds")}


def _environment(call: CallRecord) -> dict[str, str]:
    env = {k: v for k, v in call.env.items() if k in ("python", "platform", "host")}
    env |= {f"package {name}": version for name, version in (call.env.get("packages") or {}).items()}
    if call.git.get("commit"):
        env["git commit"] = call.git["commit"]
    return env


def write_prov(found: Closure, manifest: dict[str, Any], to: Path) -> None:
    """The same graph as W3C PROV-JSON: entities (values), activities (calls), agents (code)."""
    doc = ProvDocument()
    doc.add_namespace("blake3", "urn:blake3:")
    doc.add_namespace("scistack", "https://scistack.dev/ns#")
    entities: dict[str, Any] = {}
    first_file: dict[str, dict] = {}  # oid -> the first file written of it (one pass: 300k values)
    for entry in manifest["files"]:
        first_file.setdefault(entry["oid"], entry)

    def entity(oid: str) -> Any:
        if oid not in entities:
            path = first_file.get(oid)
            attrs = ({"scistack:variable": path["var"], "scistack:path": path["path"] or ""}
                     if path else {})
            entities[oid] = doc.entity(f"blake3:{oid}", attrs)
        return entities[oid]

    for call_oid, call in sorted(found.calls.items()):
        fn = call.function
        times = _times(call)
        activity = doc.activity(f"blake3:{call_oid}", times.get("startTime"), times.get("endTime"),
                                {"scistack:function": f"{fn.module}.{fn.name}"})
        agent = doc.agent(f"scistack:code-{fn.identity}", {"scistack:name": f"{fn.module}.{fn.name}"})
        doc.wasAssociatedWith(activity, agent)
        for item in call.inputs.values():
            if "writes" not in item.extra:  # a PathOutput's oid names the path it writes, no entity
                doc.used(activity, entity(item.oid))
        for oid in call.outputs:
            doc.wasGeneratedBy(entity(oid), activity)
    for entry in manifest["files"]:
        entity(entry["oid"])
    (to / PROV_FILE).write_text(doc.serialize(format="json", indent=1))


def producer() -> str:
    return f"scistack {__version__}"
