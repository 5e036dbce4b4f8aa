"""Standing in for systemd in tests: a notify socket and a relay child that uses it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.env import serve_env

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


@contextlib.contextmanager
def serve_process(env: dict[str, str], log_path: Path, args: list[str] | None = None
                  ) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m webinar_proxy serve`` as a child, output to ``log_path``; killed if still running."""
    full_env = serve_env("NOTIFY_SOCKET", "WATCHDOG_", "CREDENTIALS_")
    full_env.update(env)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "webinar_proxy", *(args or ["serve"])],
            cwd=REPO, env=full_env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


