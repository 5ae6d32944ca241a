"""moto's server: the WSGI application of every service, and the request handler the local cloud's server extends.

Imported only when a local cloud starts (localcloud.keepalive subclasses the handler), so moto loads here eagerly.
"""

from __future__ import annotations

from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

__all__ = ["MotoRequestHandler", "wsgi_app"]


def wsgi_app() -> Any:
    """moto's application for every service, each created on its first request."""
    return DomainDispatcherApplication(create_backend_app)
