"""moto's S3 server for the lab tests and bench: `python tests/lab/s3_server.py PORT`.

Why not `python -m moto.server`: its werkzeug development server closes the connection after
every response (a new TCP connection and thread per request), and its dispatcher finds each
request's service by scanning moto's package folders (~180 stat calls a request). Together
they were most of a PUT's time on this machine, which made the test server, not scistack,
the limit of a single save. Here tornado (already installed with dask's distributed) serves
moto's WSGI applications with HTTP/1.1 keep-alive, on a thread pool; requests signed for S3 go
straight to moto's own S3 application, every other one (IAM, which makes the test user)
through moto's dispatcher. The same moto code answers, with the same state and credential checks.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from tornado.httpserver import HTTPServer
from tornado.wsgi import WSGIContainer


def application():  # noqa: ANN201 - a WSGI callable
    """moto's S3 app for S3-signed requests, its dispatcher for the rest."""
    dispatcher = DomainDispatcherApplication(create_backend_app)
    s3 = create_backend_app("s3")

    def app(environ, start_response):  # noqa: ANN001, ANN202 - WSGI
        signed_for_s3 = "/s3/aws4_request" in environ.get("HTTP_AUTHORIZATION", "")
        return (s3 if signed_for_s3 else dispatcher)(environ, start_response)

    return app


async def serve(port: int) -> None:
    container = WSGIContainer(application(), executor=ThreadPoolExecutor(16))
    server = HTTPServer(container, max_body_size=1 << 40, idle_connection_timeout=60)
    server.listen(port, "127.0.0.1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
