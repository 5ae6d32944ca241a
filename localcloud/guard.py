"""The local cloud's front door: who may talk to it, and which requests Shepherd answers itself.

Uploaded code runs as training and Lambda, so the endpoint is a code-execution boundary.
Loopback is not enough: a web page in the developer's browser can reach 127.0.0.1, so
requests must name the local endpoint in Host (no DNS rebinding), carry no foreign
Origin (no cross-site requests), and moto's reset/admin API stays closed unless opened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from localcloud.wsgi import WSGIApp, json_response


class Guard:
    """WSGI middleware that refuses requests a browser page or a foreign host could send."""

    def __init__(self, app: WSGIApp, port: int, admin_api: bool = False) -> None:
        self.app = app
        self.admin_api = admin_api
        self.allowed_hosts: set[str] = set()
        self.allow_port(port)

    def allow_port(self, port: int) -> None:
        """The port is known only once bound (port 0 picks a free one)."""
        self.allowed_hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}

    def host_allowed(self, host: str) -> bool:
        host = host.lower()
        # S3 virtual-hosted style (<bucket>.localhost) resolves to loopback only.
        return host in self.allowed_hosts or any(host.endswith("." + h) for h in self.allowed_hosts if "localhost" in h)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST", "")
        if not self.host_allowed(host):
            return json_response(
                start_response, "403 Forbidden", {"message": f"Host {host!r} is not the local cloud endpoint"}
            )
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and origin.split("://", 1)[-1].lower() not in self.allowed_hosts:
            return json_response(
                start_response, "403 Forbidden", {"message": f"Cross-origin request from {origin!r} refused"}
            )
        if environ.get("HTTP_SEC_FETCH_SITE", "same-origin") not in ("same-origin", "none"):
            return json_response(start_response, "403 Forbidden", {"message": "Cross-site request refused"})
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-api") and not self.admin_api:
            return json_response(
                start_response,
                "403 Forbidden",
                {"message": "moto's admin API is closed; start with --admin-api to open it"},
            )
        return self.app(environ, start_response)
