"""The local web view (`scistack ui`, `db.ui()`): the pipeline graph, each node's status grid,
a value's preview, provenance and `why`, and the run history, in a browser.

A thin client of the report layer: `api` reshapes what `status_grid`, `pipeline_graph`,
`why_value`, `log_entries` and `run_history` return into JSON, `server` serves it with the
page (`static/`: one HTML file, one script, one stylesheet, no third-party code, so it works
offline), and the page polls `/api/generation` to show saves made by other processes.
"""

from __future__ import annotations

from scistack.database import Database, register_ui
from scistack.ui.server import UiServer

__all__ = ["UiServer", "open_ui"]


def open_ui(db: Database, *, port: int = 0, host: str = "127.0.0.1") -> UiServer:
    """Serve the web view of `db` from a background thread; returns the running server."""
    return UiServer(db, host=host, port=port).start()


register_ui(open_ui)
