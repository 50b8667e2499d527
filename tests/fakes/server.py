"""What every fake provider API shares: a real HTTP server on 127.0.0.1 in a background thread."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up (its timeout after a hang, a worker stopping) is no error of the fake's."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class LocalHTTPFake:
    """Serve `handler_class` (which finds this object as its `fake`) on a free loopback port.

    Use as a context manager or with start()/stop(); `url` is the base URL
    with the API's version prefix.
    """

    handler_class: ClassVar[type[BaseHTTPRequestHandler]]
    url_prefix: ClassVar[str] = "/v1"
    _server: ThreadingHTTPServer | None = None  # a _QuietServer once started
    _thread: threading.Thread | None = None

    def start(self) -> Any:
        handler = type("Handler", (self.handler_class,), {"fake": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, f"{type(self).__name__} is not running"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.url_prefix}"
