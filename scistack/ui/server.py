"""The web view's HTTP server: the standard library's threading server on a loopback port.

Read-only (GET only) and local: it binds 127.0.0.1 (or ::1) and nothing else, answers only
requests whose Host header names that address (so a web page elsewhere cannot reach it
through DNS rebinding), names no file path in any request (the project is the one it was
started on; static files come from a fixed list shipped in the package), and sends a
Content-Security-Policy that allows only its own scripts. Library calls are serialised by
one lock: a `Database` is one process's view, and the page makes few requests.
"""

from __future__ import annotations

import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from scistack.database import Database
from scistack.errors import ScistackError, WebViewError
from scistack.ui import api

LOOPBACK = ("127.0.0.1", "localhost", "::1")
STATIC = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript"),
          "/app.css": ("app.css", "text/css")}
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "connect-src 'self'; frame-ancestors *")


class UiServer:
    """A running web view of one project: `.url`, `.stop()`; shows itself inline in Jupyter."""

    def __init__(self, db: Database, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in LOOPBACK:
            raise WebViewError(f"the web view binds only to loopback (127.0.0.1, ::1), not {host!r}; "
                               "use an SSH tunnel to see it from another machine")
        server_class = _V6Server if ":" in host else ThreadingHTTPServer
        try:
            self.httpd = server_class(("::1" if host == "::1" else "127.0.0.1", port), _Handler)
        except OSError as exc:
            raise WebViewError(f"cannot listen on port {port}: {exc.strerror}; pick another with "
                               "--port, or --port 0 for any free one") from None
        self.httpd.daemon_threads = True
        self.httpd.db = db  # type: ignore[attr-defined]
        self.httpd.lock = threading.Lock()  # type: ignore[attr-defined]
        self.httpd.cache = api.Kept(64)  # type: ignore[attr-defined]  # (path, query) -> JSON body
        self.port = self.httpd.server_address[1]
        self.url = f"http://{'[::1]' if host == '::1' else '127.0.0.1'}:{self.port}/"
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        """Serve until interrupted (the `scistack ui` command)."""
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.httpd.server_close()

    def start(self) -> UiServer:
        """Serve from a daemon thread (a notebook's `db.ui()`)."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="scistack-ui", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()

    def __repr__(self) -> str:
        return f"<scistack web view at {self.url}>"

    def _repr_html_(self) -> str:
        return (f'<iframe src="{self.url}" width="100%" height="640" style="border:0"></iframe>'
                f'<div><a href="{self.url}" target="_blank">{self.url}</a></div>')


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server_version = "scistack-ui"

    def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
        url = urlsplit(self.path)
        if not self._host_ok():
            return self._send(HTTPStatus.FORBIDDEN, b'{"error": "unexpected Host header"}')
        if url.path in STATIC:
            name, mime = STATIC[url.path]
            body = resources.files("scistack.ui").joinpath("static", name).read_bytes()
            return self._send(HTTPStatus.OK, body, f"{mime}; charset=utf-8")
        if url.path == "/favicon.ico":
            return self._send(HTTPStatus.NO_CONTENT, b"")
        route = ROUTES.get(url.path)
        if route is None:
            return self._send(HTTPStatus.NOT_FOUND, api.dumps({"error": f"no page {url.path}"}))
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}  # (statuses= : none)
        server: Any = self.server
        try:
            with server.lock:
                body = _answer(server, url.path, query, route)
        except ScistackError as exc:
            return self._send(HTTPStatus.BAD_REQUEST, api.dumps({"error": str(exc)}))
        except Exception as exc:  # noqa: BLE001 - shown on the page, the server goes on
            return self._send(HTTPStatus.INTERNAL_SERVER_ERROR,
                              api.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        self._send(HTTPStatus.OK, body)

    def do_POST(self) -> None:  # noqa: N802
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b'{"error": "the web view is read-only"}')

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in LOOPBACK

    def _send(self, status: HTTPStatus, body: bytes, mime: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", POLICY)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


def _answer(server: Any, path: str, query: dict[str, str], route: Any) -> bytes:
    """The route's JSON, kept while the journal has not grown (`api.Kept`)."""
    generation = server.db.index.generation()
    if path == "/api/generation":
        return api.dumps(route(server.db, query))
    return server.cache.get((path, tuple(sorted(query.items()))), generation,
                            lambda: api.dumps(route(server.db, query)))


def _int(text: str | None, what: str = "version") -> int | None:
    if text in (None, ""):
        return None
    try:
        return int(text)
    except ValueError:
        raise WebViewError(f"{what} {text!r} must be a whole number") from None


def _int_or(query: dict[str, str], name: str, default: int) -> int:
    """A whole number given as ?name=, else `default` (a 0 given is 0, for the API to judge:
    `or default` had served limit=0 as a full page)."""
    found = _int(query.get(name), name)
    return default if found is None else found


def _need(query: dict[str, str], name: str) -> str:
    if not query.get(name):
        raise WebViewError(f"this request needs ?{name}=")
    return query[name]


ROUTES = {
    "/api/project": lambda db, q: api.project(db),
    "/api/generation": lambda db, q: {"generation": db.index.generation()},
    "/api/graph": lambda db, q: api.graph(db),
    "/api/grid": lambda db, q: api.grid(
        db, _need(q, "node"), offset=_int_or(q, "offset", 0), limit=_int_or(q, "limit", api.GRID_PAGE),
        statuses=None if q.get("statuses") is None else [s for s in q["statuses"].split(",") if s],
        text=q.get("text", "")),
    "/api/value": lambda db, q: api.value(db, _need(q, "var"), api.parse_addr(q.get("addr")),
                                          _int(q.get("version"))),
    "/api/runs": lambda db, q: api.runs(db),
    "/api/run": lambda db, q: api.run(db, _need(q, "id"), offset=_int_or(q, "offset", 0),
                                      limit=_int_or(q, "limit", api.RUN_PAGE)),
}
