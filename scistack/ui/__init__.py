"""The local web view (`scistack ui`, `db.ui()`): the pipeline graph, each node's status grid,
a value's preview, provenance and `why`, and the run history, in a browser.

A thin client of the report layer: `api` reshapes what `pipeline_graph`, `status_cells`,
`why_value`, `log_entries` and `run_history` return into JSON, `server` serves it with the
page (`static/`: one HTML file, one script, one stylesheet, no third-party code, so it works
offline), and the page polls `/api/generation` to show saves made by other processes.
Importing this package only registers `db.ui()`; the server loads when first used.
"""

from __future__ import annotations

from typing import Any

from scistack.database import Database, register_ui

__all__ = ["open_ui"]


def open_ui(db: Database, *, port: int = 0, host: str = "127.0.0.1") -> Any:
    """Serve the web view of `db` from a background thread; returns the running `UiServer`
    (`.url`, `.stop()`; shown inline by Jupyter)."""
    from scistack.ui.server import UiServer

    return UiServer(db, host=host, port=port).start()


register_ui(open_ui)
