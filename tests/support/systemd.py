"""Standing in for systemd in tests: a notify socket (``serve.serve_process`` runs the relay)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class NotifyListener:
    """An AF_UNIX datagram socket like systemd's ``$NOTIFY_SOCKET``; collects what arrives."""

    sock: socket.socket
    env_value: str
    received: list[dict[str, str]] = field(default_factory=list)
    _cursor: int = 0

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30,
                 process: subprocess.Popen[bytes] | None = None) -> dict[str, str]:
        """The next notification carrying ``key`` (=``value``), received within ``timeout``.

        Notifications are taken in order: each call continues after the previous match.
        With ``process``, gives up as soon as that process has exited.
        """
        deadline = time.monotonic() + timeout
        while True:
            while self._cursor < len(self.received):
                message = self.received[self._cursor]
                self._cursor += 1
                if key in message and (value is None or message[key] == value):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key}={value or '*'} notification; got {self.received}")
            if process is not None and process.poll() is not None:
                raise AssertionError(f"process exited ({process.returncode}) before {key}={value or '*'}")
            self.sock.settimeout(remaining if process is None else min(remaining, 0.25))
            try:
                datagram = self.sock.recv(4096)
            except TimeoutError:
                continue
            lines = datagram.decode("utf-8").split("\n")
            self.received.append(dict(line.split("=", 1) for line in lines if "=" in line))


@contextlib.contextmanager
def notify_socket(directory: Path | None = None) -> Iterator[NotifyListener]:
    """Bind a notify socket: in the abstract namespace (``@name``), or as a file in ``directory``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        name = f"webinar-proxy-test-{uuid.uuid4().hex}"
        if directory is None:
            sock.bind("\0" + name)
            env_value = "@" + name
        else:
            env_value = str(directory / "notify.sock")
            sock.bind(env_value)
        yield NotifyListener(sock, env_value)
    finally:
        sock.close()
