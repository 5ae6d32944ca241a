"""HTTP/1.1 persistent connections for the local cloud's werkzeug server (docs/LOCAL_CLOUD.md, "Connections").

werkzeug closes after every response because ``http.server`` cannot find the next request behind a body the
application left unread: this handler limits the body to Content-Length and drains the rest, and closes
whenever it cannot tell where the next request starts (a chunked body, an error mid-response).
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from werkzeug.exceptions import InternalServerError
from werkzeug.serving import ThreadedWSGIServer

from localcloud.moto.server import MotoRequestHandler
from localcloud.wsgi import RECEIVED_AT

IDLE_SECONDS = 120.0  # an idle client connection is closed after this long
_NO_BODY = {204, 304}
_COALESCE_BYTES = 64 * 1024  # a body up to this size goes out in the same write as the headers
log = logging.getLogger("werkzeug")


class KeepAliveRequestHandler(MotoRequestHandler):
    """moto's request handler, serving many requests per connection."""

    timeout = IDLE_SECONDS  # socket timeout: an idle connection ends in handle_one_request

    def parse_request(self) -> bool:
        self.received_at = time.perf_counter()  # the request line has just been read
        return bool(super().parse_request())

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        environ[RECEIVED_AT] = getattr(self, "received_at", None) or time.perf_counter()
        return environ

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in one write; without Nagle's delay for whatever follows.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tracker = getattr(self.server, "track", None)
        if tracker is not None:
            tracker(self.connection, True)

    def finish(self) -> None:
        tracker = getattr(self.server, "track", None)
        if tracker is not None:
            tracker(self.connection, False)
        super().finish()

    def run_wsgi(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            super().run_wsgi()  # werkzeug's own path, which closes the connection
            return
        try:
            length = max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            length = 0
            self.close_connection = True
        environ = self.make_environ()  # (http.server's parse_request answered an Expect: 100-continue)
        body = RequestBody(self.rfile, length)
        environ["wsgi.input"] = body
        self.environ = environ
        response = _Response(self, environ)
        try:
            response.run(self.server.app)
        except (ConnectionError, TimeoutError) as exc:
            self.close_connection = True
            self.connection_dropped(exc, environ)
            return
        except Exception as exc:
            self.close_connection = True
            if self.server.passthrough_errors:
                raise
            if not response.sent:
                response.reset()
                try:
                    response.run(InternalServerError())
                except Exception:  # the client is gone as well
                    log.debug("could not send the error response", exc_info=True)
            self.server.log("error", f"Error on request {self.command} {self.path}: {type(exc).__name__}: {exc}")
            return
        if not self.close_connection:
            try:
                body.drain()  # whatever the application did not read comes before the next request
            except OSError:
                self.close_connection = True

    def end_headers_with(self, data: bytes) -> None:
        """end_headers, with the first body bytes in the same write (one segment for a small answer)."""
        buffer: list[bytes] = self.__dict__.get("_headers_buffer", [])  # what send_header collected
        buffer.append(b"\r\n")
        self.__dict__["_headers_buffer"] = []
        if len(data) > _COALESCE_BYTES:  # not worth a copy of a large body
            self.wfile.write(b"".join(buffer))
            self.wfile.write(data)
            return
        buffer.append(data)
        self.wfile.write(b"".join(buffer))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if log.isEnabledFor(logging.INFO):  # werkzeug formats the line before its logger decides
            super().log_request(code, size)

    def log_error(self, format: str, *args: Any) -> None:
        if format.startswith("Request timed out"):
            return  # an idle keep-alive connection reaching IDLE_SECONDS: no error
        super().log_error(format, *args)


class RequestBody:
    """wsgi.input that ends at Content-Length, however much the application asks for."""

    def __init__(self, stream: io.BufferedIOBase, length: int) -> None:
        self._stream = stream
        self.remaining = length

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        if not size:
            return b""
        data = self._stream.read(size)
        self.remaining -= len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = self.remaining if size is None or size < 0 else min(size, self.remaining)
        if not limit:
            return b""
        line = self._stream.readline(limit)
        self.remaining -= len(line)
        return line

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def drain(self) -> None:
        """Read past what the application left, up to the next request; OSError if the client is gone."""
        while self.remaining:
            chunk = self._stream.read(min(self.remaining, 1 << 20))
            if not chunk:
                raise ConnectionResetError("the client closed the connection mid-request")
            self.remaining -= len(chunk)


class _Response:
    """start_response / write for one request: the status line, headers and first body bytes in one send."""

    def __init__(self, handler: KeepAliveRequestHandler, environ: dict[str, Any]) -> None:
        self.handler = handler
        self.environ = environ
        self.reset()

    def reset(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = False
        self.chunked = False
        self.bodiless = False
        self.declared: int | None = None  # the Content-Length the application gave
        self.written = 0

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info and self.sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers = status, headers
        return self.write

    def write(self, data: bytes) -> None:
        handler = self.handler
        if not self.sent:
            assert self.status is not None, "write() before start_response"
            self.sent = True
            code_text, _, reason = self.status.partition(" ")
            code = int(code_text)
            handler.send_response(code, reason)
            names = set()
            for name, value in self.headers:
                handler.send_header(name, value)
                names.add(name.lower())
                if name.lower() == "content-length" and value.strip().isdigit():
                    self.declared = int(value)
            method = self.environ["REQUEST_METHOD"]
            self.bodiless = bodiless = method == "HEAD" or 100 <= code < 200 or code in _NO_BODY
            if bodiless:
                data = b""  # whatever an application yields here would be read as the next answer
            if "content-length" not in names and not bodiless:
                if handler.request_version >= "HTTP/1.1":
                    self.chunked = True
                    handler.send_header("Transfer-Encoding", "chunked")
                else:
                    handler.close_connection = True  # the body ends where the connection does
            if handler.close_connection:
                handler.send_header("Connection", "close")
            self.written += len(data)
            handler.end_headers_with(self._frame(data))
            return
        if data and not self.bodiless:
            self.written += len(data)
            handler.wfile.write(self._frame(data))

    def _miscounted(self, length: int) -> bool:
        """Whether a body of ``length`` bytes contradicts the Content-Length given (HEAD, 204, 304 aside)."""
        if self.status is None:
            return False
        code = self.status.partition(" ")[0]
        if self.environ["REQUEST_METHOD"] == "HEAD" or code[:1] == "1" or code in {"204", "304"}:
            return False
        declared = [v.strip() for k, v in self.headers if k.lower() == "content-length"]
        return bool(declared) and declared[0] != str(length)

    def _frame(self, data: bytes) -> bytes:
        if not self.chunked or not data:
            return data
        return b"%x\r\n%b\r\n" % (len(data), data)

    def run(self, app: Any) -> None:
        result: Iterable[bytes] = app(self.environ, self.start_response)
        if isinstance(result, list | tuple) and self._miscounted(sum(len(chunk) for chunk in result)):
            self.handler.close_connection = True  # known before the headers go: say so in them
        try:
            for data in result:
                self.write(data)
            if not self.sent:
                self.write(b"")
            if self.chunked:
                self.handler.wfile.write(b"0\r\n\r\n")
            elif self.declared is not None and self.written != self.declared and not self.bodiless:
                # A body that is not as long as its Content-Length leaves the client and this server
                # disagreeing on where the next answer starts: as werkzeug did, end the connection.
                self.handler.close_connection = True
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


class KeepAliveWSGIServer(ThreadedWSGIServer):
    """werkzeug's threaded server with persistent connections, closed with the server."""

    def __init__(self, host: str, port: int, app: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(host, port, app, handler=KeepAliveRequestHandler)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def server_close(self) -> None:
        with self._connections_lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)  # wakes the thread waiting for the next request
        super().server_close()
