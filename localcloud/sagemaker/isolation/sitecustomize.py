"""Network isolation for a local SageMaker container's Python: no connection leaves the process.

Imported at start-up (it is first on PYTHONPATH) by a training script whose job has EnableNetworkIsolation. On
AWS such a container has no network at all; here an internet or loopback connection fails as an unreachable
network does. Unix sockets (no network) still work.
"""

import errno
import socket

_NETWORK_FAMILIES = {socket.AF_INET, socket.AF_INET6}
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


def _refuse(sock: socket.socket) -> None:
    if sock.family in _NETWORK_FAMILIES:
        raise OSError(errno.ENETUNREACH, "Network is unreachable (the job runs with EnableNetworkIsolation)")


def _connect(self: socket.socket, address: object) -> None:
    _refuse(self)
    _original_connect(self, address)  # type: ignore[arg-type]


def _connect_ex(self: socket.socket, address: object) -> int:
    if self.family in _NETWORK_FAMILIES:
        return errno.ENETUNREACH
    return _original_connect_ex(self, address)  # type: ignore[arg-type]


socket.socket.connect = _connect  # type: ignore[method-assign,assignment]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign,assignment]
