"""The local cloud's HTTP server keeps connections open between requests, and never loses a request boundary."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from localcloud.keepalive import KeepAliveWSGIServer
from localcloud.wsgi import RECEIVED_AT


def app(environ: dict[str, Any], start_response: Any) -> Any:
    path = environ["PATH_INFO"]
    if path == "/ignore-body":  # answers without reading what the client sent
        start_response("200 OK", [("Content-Length", "7")])
        return [b"ignored"]
    if path == "/stream":  # no Content-Length: the body must be chunked to keep the connection
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"one ", b"two"])
    if path == "/fail":
        raise RuntimeError("boom")
    if path == "/miscounted":  # a Content-Length that is not the body's length (a str's, say)
        start_response("200 OK", [("Content-Length", "3")])
        return ["héllo".encode()]
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    answer = b"echo:" + body + b":" + str(RECEIVED_AT in environ).encode()
    start_response("200 OK", [("Content-Length", str(len(answer)))])
    return [answer]


@pytest.fixture
def server() -> Iterator[KeepAliveWSGIServer]:
    server = KeepAliveWSGIServer("127.0.0.1", 0, app)
    accepted = []
    original = server.process_request

    def counting(request: Any, address: Any) -> None:
        accepted.append(address)
        original(request, address)

    server.process_request = counting  # type: ignore[method-assign]
    server.accepted = accepted  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _post(conn: http.client.HTTPConnection, path: str, body: bytes = b"") -> http.client.HTTPResponse:
    conn.request("POST", path, body=body)
    return conn.getresponse()


def test_many_requests_share_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port)
    answers = [_post(conn, "/echo", f"request {i}".encode()).read() for i in range(20)]
    assert answers == [f"echo:request {i}:True".encode() for i in range(20)]
    assert len(server.accepted) == 1


def test_a_body_the_application_did_not_read_does_not_become_the_next_request(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port)
    ignored = _post(conn, "/ignore-body", b"x" * 100_000)
    assert ignored.read() == b"ignored"
    assert _post(conn, "/echo", b"next").read() == b"echo:next:True"
    assert len(server.accepted) == 1


def test_an_answer_without_content_length_is_chunked_and_keeps_the_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port)
    streamed = _post(conn, "/stream")
    assert streamed.getheader("Transfer-Encoding") == "chunked"
    assert streamed.read() == b"one two"
    assert _post(conn, "/echo", b"after").read() == b"echo:after:True"
    assert len(server.accepted) == 1


def test_an_application_error_answers_500_and_closes_the_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port)
    failed = _post(conn, "/fail")
    assert failed.status == 500
    assert failed.getheader("Connection") == "close"
    failed.read()
    assert _post(conn, "/echo", b"again").read() == b"echo:again:True"  # http.client reconnects
    assert len(server.accepted) == 2


def test_an_http_1_0_client_gets_connection_close(server):
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as sock:
        sock.sendall(b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")  # the server's version; it closes as 1.0 asks
    assert b"Connection: close" in data
    assert data.endswith(b"echo:hi:True")


def test_closing_the_server_closes_idle_connections(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port)
    assert _post(conn, "/echo", b"x").read() == b"echo:x:True"
    server.shutdown()
    server.server_close()
    assert conn.sock is not None
    conn.sock.settimeout(5)
    assert conn.sock.recv(1) == b""  # the server hung up: a stopped cloud answers nothing on a pooled connection


def test_expect_100_continue_gets_one_interim_answer_and_the_connection_serves_on(server):
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"body")
        first = sock.recv(65536)
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nnext")
        second = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    assert first.endswith(b"echo:body:True")
    assert second.startswith(b"HTTP/1.1 200")
    assert second.endswith(b"echo:next:True")
    assert len(server.accepted) == 1


def test_a_body_longer_than_its_content_length_ends_the_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port)
    assert _post(conn, "/miscounted").read() == "hé".encode()
    assert _post(conn, "/echo", b"fresh").read() == b"echo:fresh:True"  # on a new connection, not the rest
    assert len(server.accepted) == 2


def test_a_head_answer_carries_no_body(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port)
    conn.request("HEAD", "/echo")
    head = conn.getresponse()
    assert head.read() == b""
    assert _post(conn, "/echo", b"then").read() == b"echo:then:True"
    assert len(server.accepted) == 1
