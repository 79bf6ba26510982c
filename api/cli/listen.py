"""The listening sockets of ``ctxlog serve``, bound before anything else starts.

aiohttp binds its sites only after the application's startup has run: opened (or created) the
database and begun catching up. A second server on a used port then logged that it was ready
and ended in a traceback. Bound first, a port in use is one line and an exit status, and no
file is touched.
"""

from __future__ import annotations

import contextlib
import errno
import socket

from .support import CliError, Exit

BACKLOG = 128
"""As aiohttp's sites (``TCPSite``) have it."""


def listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address ``host`` names (as asyncio's ``create_server``
    binds them); CliError (exit 5, or 2 for a host that does not resolve) when one cannot be
    bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise CliError(Exit.USAGE, f"cannot listen on {host}: {e.strerror}") from None
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(
            (i[0], i[1], i[2], i[3], i[4]) for i in infos
        ):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio: each family on its own socket
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as e:
                raise CliError(Exit.UNAVAILABLE, _why(host, port, e)) from None
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in bound:
            with contextlib.suppress(OSError):
                sock.close()
        raise
    return bound


def _why(host: str, port: int, e: OSError) -> str:
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    match e.errno:
        case errno.EADDRINUSE:
            return f"cannot listen on {where}: the address is in use (another server?)"
        case errno.EACCES:
            return f"cannot listen on {where}: permission denied (a port below 1024?)"
        case errno.EADDRNOTAVAIL:
            return f"cannot listen on {where}: no such address on this machine"
    return f"cannot listen on {where}: {e.strerror or e}"
