"""systemd's service notification protocol (``sd_notify``), without libsystemd.

A notification is one datagram of ``KEY=VALUE`` lines sent to the AF_UNIX socket
named in ``$NOTIFY_SOCKET``; a name starting with ``@`` is in the abstract
namespace. Without ``$NOTIFY_SOCKET`` (not started by systemd, or not
``Type=notify``) every call is a no-op. A failed send is logged and never raised:
the relay must not stop relaying mail because systemd did not listen.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(environ: Mapping[str, str]) -> str | None:
    name = environ.get("NOTIFY_SOCKET", "")
    if name.startswith("@"):
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    return None  # unset, or a kind we do not speak (e.g. vsock:)


def notify(*fields: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``fields`` (e.g. ``"READY=1"``, ``"STATUS=…"``) in one datagram; True if sent."""
    address = _address(os.environ if environ is None else environ)
    if address is None or not fields:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode("utf-8"))
    except OSError as exc:
        log.warning("systemd notification %s not sent: %s", fields[0], exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None if off.

    ``$WATCHDOG_PID``, when set, names the process the watchdog is meant for; a child
    that inherited the environment must not ping on its parent's behalf.
    """
    environ = os.environ if environ is None else environ
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
        pid = int(environ.get("WATCHDOG_PID", os.getpid()))
    except ValueError:
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 2 / 1_000_000
