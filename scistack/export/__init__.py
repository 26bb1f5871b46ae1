"""Publish what a paper used: export a lineage closure as a bundle (open files, scistack
objects, an RO-Crate Process Run Crate, PROV-JSON, a README) and import it back elsewhere.

    db.export("MeanStepLength", "paper-2027/", session="post")
    db.import_bundle("paper-2027/")

Modules: `closure` (what to include), `files` (open files), `crate` (RO-Crate and PROV),
`bundle` (the export), `importer` (the import).
"""

from __future__ import annotations

from scistack.database import register_bundles
from scistack.export.bundle import ExportReport, export
from scistack.export.importer import ImportReport, import_bundle

register_bundles(export, import_bundle)

__all__ = ["ExportReport", "ImportReport", "export", "import_bundle"]
