"""The bundle's `ro-crate-metadata.json` (an RO-Crate 1.1 Process Run Crate, profile 0.5) and
`provenance.json` (W3C PROV-JSON of the same graph), written with the `rocrate` and `prov`
libraries rather than JSON-LD by hand.

One `File` per exported value (encodingFormat, contentSize, identifiers `blake3:<oid>` and
`sha256:<hex>`); one `SoftwareApplication` per function identity (its code object's oid and
the git commit it ran at); one `CreateAction` per call record: instrument = the function,
object = its input files and constants (`PropertyValue`), result = its output files, start
and end times, and the Python and package versions it ran with (`PropertyValue`s under
`environment`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from scistack.export.closure import Closure
from scistack.export.files import OpenFile
from scistack.records import read_call as read_call_record
from scistack.version import __version__

PROFILE = "https://w3id.org/ro/wfrun/process/0.5"


def write_crate(db: Any, closure: Closure, files: list[OpenFile], root: Path, *, title: str) -> None:
    """Write ro-crate-metadata.json and provenance.json into `root` (the files are there)."""
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    crate = ROCrate(version="1.1")
    # Process Run Crate's term for the environment a process ran in (Workflow Run RO-Crate terms)
    crate.metadata.extra_terms["environment"] = "https://w3id.org/ro/terms/workflow-run#environment"
    profile = crate.add(ContextEntity(crate, PROFILE, properties={
        "@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5"}))
    dataset = crate.root_dataset
    dataset["conformsTo"] = [profile]
    dataset["name"] = title
    dataset["description"] = (f"{len(closure.chosen)} value(s) exported by scistack {__version__} with "
                              f"their lineage: {len(files)} values, {len(closure.calls)} calls")
    dataset["datePublished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    dataset["license"] = "https://spdx.org/licenses/CC-BY-4.0"
    by_oid: dict[str, list[Any]] = {}
    for f in files:
        add = crate.add_dataset if f.path.endswith(".zarr") else crate.add_file  # a Zarr array is a folder
        entity = add(root / f.path, dest_path=f.path + ("/" if f.path.endswith(".zarr") else ""), properties={
            "name": f"{f.record.var} {f.record.addr}" + (f" {f.record.vkeys}" if f.record.vkeys else ""),
            "encodingFormat": f.encoding, "contentSize": str(f.size),
            "identifier": [f"blake3:{f.oid}", f"sha256:{f.sha256}"],
            "version": str(f.record.version), "dateCreated": f.record.created_at})
        by_oid.setdefault(f.oid, []).append(entity)
    tools: dict[str, Any] = {}
    for call_oid, info in sorted(closure.calls.items()):
        record = read_call_record(db.store, call_oid)
        tool = tools.get(info.identity)
        if tool is None:
            props = {"@type": "SoftwareApplication", "name": info.function,
                     "description": f"{info.module}.{info.function} (scistack function identity {info.identity})",
                     "identifier": [f"scistack-identity:{info.identity}"]
                     + ([f"blake3:{info.code}"] if info.code else [])}
            if info.git_commit:
                props["softwareVersion"] = info.git_commit
            tool = tools[info.identity] = crate.add(ContextEntity(crate, f"#function-{info.identity[:16]}",
                                                                   properties=props))
        inputs = [entity for item in info.inputs for oid in (item.oid, *item.members) for entity in by_oid.get(oid, [])]
        constants = [crate.add(ContextEntity(crate, f"#call-{call_oid[:16]}-{name}", properties={
            "@type": "PropertyValue", "name": name, "value": _text(value)}))
            for name, value in sorted(info.constants.items())]
        outputs = [entity for oid in record.outputs for entity in by_oid.get(oid, [])]
        env = record.env or {}
        environment = [crate.add(ContextEntity(crate, f"#call-{call_oid[:16]}-env-{name}", properties={
            "@type": "PropertyValue", "name": name, "value": str(value)}))
            for name, value in [("python", env.get("python")),
                                *sorted((env.get("packages") or {}).items())] if value]
        props = {"name": f"{info.function} call {call_oid[:12]}", "identifier": f"blake3:{call_oid}"}
        if info.started:
            props["startTime"] = info.started
            props["endTime"] = _end(info.started, info.duration)
        if environment:
            props["environment"] = environment
        crate.add_action(tool, identifier=f"#call-{call_oid[:16]}", object=inputs + constants, result=outputs,
                         properties=props)
    crate.add_file(root / "provenance.json", dest_path="provenance.json", properties={
        "name": "W3C PROV-JSON of the same graph", "encodingFormat": "application/json"})
    write_prov(closure, files, root / "provenance.json")
    crate.metadata.write(root)


def write_prov(closure: Closure, files: list[OpenFile], path: Path) -> None:
    """Entities (values), activities (calls), agents (functions) and their relations."""
    from prov.model import ProvDocument

    doc = ProvDocument()
    doc.add_namespace("scistack", "https://scistack.invalid/oid/")
    doc.add_namespace("file", "./")
    entities = {}
    for f in files:
        entities.setdefault(f.oid, doc.entity(f"scistack:{f.oid}", {
            "prov:label": f"{f.record.var} {f.record.addr}", "prov:location": f.path}))
    for call_oid, info in sorted(closure.calls.items()):
        start = _parse(info.started) if info.started else None
        end = _parse(_end(info.started, info.duration)) if info.started else None
        activity = doc.activity(f"scistack:{call_oid}", start, end, {"prov:label": info.function})
        agent = doc.agent(f"scistack:{info.identity}", {"prov:label": f"{info.module}.{info.function}"})
        doc.wasAssociatedWith(activity, agent)
        for item in info.inputs:
            for oid in (item.oid, *item.members):
                if oid in entities:
                    doc.used(activity, entities[oid])
    for f in files:
        if f.record.call and f.record.call in closure.calls:
            doc.wasGeneratedBy(entities[f.oid], f"scistack:{f.record.call}")
    path.write_text(doc.serialize(indent=1))


def _text(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _end(started: str, duration: float) -> str:
    return (_parse(started) + dt.timedelta(seconds=duration or 0.0)).isoformat()


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
