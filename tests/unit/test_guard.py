"""Tests for localcloud/guard.py, the WSGI middleware that keeps browsers and foreign hosts out."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from localcloud.guard import Guard

PORT = 4566


@dataclass
class Downstream:
    """Stands in for moto's app and records what got through."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.calls.append(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"from moto"]


@dataclass
class Response:
    status: str
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> int:
        return int(self.status.split()[0])

    def json(self) -> Any:
        return json.loads(self.body)


def call(guard: Guard, path: str = "/", **headers: str) -> Response:
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "wsgi.url_scheme": "http"}
    environ.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"] = status
        captured["headers"] = dict(response_headers)

    body = b"".join(guard(environ, start_response))
    return Response(captured["status"], captured["headers"], body)


def make_guard(admin_api: bool = False) -> tuple[Guard, Downstream]:
    app = Downstream()
    return Guard(app, PORT, admin_api=admin_api), app


# ---------------------------------------------------------------- Host


@pytest.mark.parametrize("host", [f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"[::1]:{PORT}", f"LOCALHOST:{PORT}"])
def test_loopback_host_with_the_port_is_allowed(host: str) -> None:
    # Given a guard on PORT
    guard, app = make_guard()
    # When a request names the loopback endpoint
    response = call(guard, host=host)
    # Then it reaches the app
    assert response.code == 200
    assert len(app.calls) == 1


def test_s3_virtual_hosted_bucket_host_is_allowed() -> None:
    # Given a guard on PORT
    guard, app = make_guard()
    # When a request uses S3 virtual-hosted style <bucket>.localhost:PORT
    response = call(guard, host=f"training-data.localhost:{PORT}")
    # Then it reaches the app
    assert response.code == 200
    assert app.calls


@pytest.mark.parametrize(
    "host",
    [
        f"attacker.com:{PORT}",  # DNS rebinding: a foreign name resolving to 127.0.0.1
        f"127.0.0.1:{PORT + 1}",  # another port
        f"localhost:{PORT + 1}",
        "localhost",  # no port
        f"evil.localhost.attacker.com:{PORT}",  # localhost as a prefix, not the suffix
        f"localhost.attacker.com:{PORT}",
        f"evil-localhost:{PORT}",  # suffix without the dot
        f"bucket.127.0.0.1:{PORT}",  # only localhost has subdomains
        "",  # no Host header at all
    ],
)
def test_other_hosts_are_refused(host: str) -> None:
    # Given a guard on PORT
    guard, app = make_guard()
    # When the Host header names something other than the local endpoint
    response = call(guard, host=host) if host else call(guard)
    # Then it is refused and never reaches the app
    assert response.code == 403
    assert app.calls == []


def test_refusal_is_json_with_a_message() -> None:
    # Given a guard on PORT
    guard, _ = make_guard()
    # When a foreign host is refused
    response = call(guard, host=f"attacker.com:{PORT}")
    # Then the body is JSON with a message naming the host, and headers describe it
    assert response.status == "403 Forbidden"
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.body)
    assert "attacker.com" in response.json()["message"]


def test_allow_port_moves_the_allowed_port() -> None:
    # Given a guard created with port 0 (not yet bound)
    app = Downstream()
    guard = Guard(app, 0)
    # When the bound port becomes known
    guard.allow_port(51234)
    # Then the new port is allowed and the old one is not
    assert call(guard, host="localhost:51234").code == 200
    assert call(guard, host="localhost:0").code == 403


def test_allow_port_also_moves_bucket_hosts() -> None:
    # Given a guard moved from PORT to another port
    guard, _ = make_guard()
    guard.allow_port(51234)
    # When a bucket host uses the old and new ports
    # Then only the new port is allowed
    assert call(guard, host="b.localhost:51234").code == 200
    assert call(guard, host=f"b.localhost:{PORT}").code == 403


# ---------------------------------------------------------------- Origin and Sec-Fetch-Site


def test_cross_origin_request_is_refused() -> None:
    # Given a request from a page on another site, sent to the right Host
    guard, app = make_guard()
    # When it reaches the guard
    response = call(guard, host=f"localhost:{PORT}", origin="https://attacker.example")
    # Then it is refused with a message naming the origin
    assert response.code == 403
    assert "attacker.example" in response.json()["message"]
    assert app.calls == []


def test_origin_on_another_local_port_is_refused() -> None:
    # Given a request from a page served by another local dev server
    guard, app = make_guard()
    # When it reaches the guard
    response = call(guard, host=f"localhost:{PORT}", origin=f"http://localhost:{PORT + 1}")
    # Then it is refused
    assert response.code == 403
    assert app.calls == []


def test_null_origin_is_refused() -> None:
    # Given a request from a sandboxed iframe or file:// page (Origin: null)
    guard, _ = make_guard()
    # When it reaches the guard / Then it is refused
    assert call(guard, host=f"localhost:{PORT}", origin="null").code == 403


@pytest.mark.parametrize("origin", [f"http://localhost:{PORT}", f"http://127.0.0.1:{PORT}", f"HTTP://LOCALHOST:{PORT}"])
def test_same_origin_request_is_allowed(origin: str) -> None:
    # Given a request whose Origin is the local endpoint itself
    guard, app = make_guard()
    # When it reaches the guard
    response = call(guard, host=f"localhost:{PORT}", origin=origin)
    # Then it is let through
    assert response.code == 200
    assert app.calls


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_sec_fetch_site_from_elsewhere_is_refused(site: str) -> None:
    # Given a browser request marked as coming from another site, without an Origin header
    guard, app = make_guard()
    # When it reaches the guard
    response = call(guard, host=f"localhost:{PORT}", sec_fetch_site=site)
    # Then it is refused
    assert response.code == 403
    assert response.json()["message"]
    assert app.calls == []


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_sec_fetch_site_same_origin_or_typed_is_allowed(site: str) -> None:
    # Given a browser request from the endpoint itself, or typed into the address bar
    guard, _ = make_guard()
    # When it reaches the guard / Then it is let through
    assert call(guard, host=f"localhost:{PORT}", sec_fetch_site=site).code == 200


def test_request_without_browser_headers_is_allowed() -> None:
    # Given a request as boto3 or the CLI sends it: Host only, no Origin or Sec-Fetch-Site
    guard, _ = make_guard()
    # When it reaches the guard / Then it is let through
    assert call(guard, path="/my-bucket/key", host=f"127.0.0.1:{PORT}").code == 200


# ---------------------------------------------------------------- moto admin API


@pytest.mark.parametrize("path", ["/moto-api/reset", "/moto-api/", "/moto-api/data.json"])
def test_moto_admin_api_is_closed_by_default(path: str) -> None:
    # Given a guard started without --admin-api
    guard, app = make_guard()
    # When a local client calls moto's admin API
    response = call(guard, path=path, host=f"localhost:{PORT}")
    # Then it is refused with a message saying how to open it
    assert response.code == 403
    assert "--admin-api" in response.json()["message"]
    assert app.calls == []


def test_moto_admin_api_is_open_with_admin_api() -> None:
    # Given a guard started with admin_api=True
    guard, app = make_guard(admin_api=True)
    # When a local client calls moto's admin API
    response = call(guard, path="/moto-api/reset", host=f"localhost:{PORT}")
    # Then it reaches the app
    assert response.code == 200
    assert app.calls[0]["PATH_INFO"] == "/moto-api/reset"


def test_admin_api_still_checks_host() -> None:
    # Given a guard with the admin API open
    guard, app = make_guard(admin_api=True)
    # When a foreign host calls it
    response = call(guard, path="/moto-api/reset", host=f"attacker.com:{PORT}")
    # Then it is refused all the same
    assert response.code == 403
    assert app.calls == []


def test_allowed_request_passes_app_response_through() -> None:
    # Given an allowed request
    guard, app = make_guard()
    # When it reaches the app
    response = call(guard, path="/bucket", host=f"localhost:{PORT}")
    # Then the app's own response comes back untouched, with the same environ
    assert response.body == b"from moto"
    assert response.headers == {"Content-Type": "text/plain"}
    assert app.calls[0]["PATH_INFO"] == "/bucket"
