"""The real ``webinar-proxy serve`` as a child process, for async tests (``running_serve``)
and synchronous ones (``serve_process``): the one spawn-and-wait-for-readiness helper.

Everything the child writes (stdout and stderr, i.e. its whole log) is collected by a
reader (a task, or a thread for ``serve_process``), so the pipe never fills up and a
test can grep it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.support.env import serve_env
from tests.support.relay import REPO

_ADDRESS = re.compile(r"on (?:http://)?127\.0\.0\.1:(\d+)")


@dataclass
class Serve:
    process: asyncio.subprocess.Process
    smtp_port: int
    metrics_port: int | None
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def peak_rss_kib(self) -> int:
        """VmHWM of the child (peak resident set size), in KiB."""
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc/PID/status")


@contextlib.asynccontextmanager
async def running_serve(env: dict[str, str], *args: str) -> AsyncIterator[Serve]:
    """``python -m webinar_proxy serve [args]`` with ``env`` over a clean environment;
    yields once it is listening.  Left running at the end, it gets SIGTERM."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webinar_proxy", "serve", *args, cwd=REPO, env=serve_env(**env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await stdout.readline()).decode("utf-8", "replace")
                if not line:
                    raise AssertionError("serve exited before it was ready:\n" + "".join(lines))
                lines.append(line)
                if "listening on" in line and "metrics" not in line:
                    break
        smtp_port = _port(lines, "listening on")
        metrics = [line for line in lines if "metrics and health on" in line]
        serve = Serve(process, smtp_port, _port(metrics, "metrics") if metrics else None, lines)

        async def collect() -> None:
            while line := await stdout.readline():
                lines.append(line.decode("utf-8", "replace"))

        reader = asyncio.ensure_future(collect())
        try:
            yield serve
        finally:
            if process.returncode is None:
                process.terminate()
            async with asyncio.timeout(30):
                await process.wait()
                await reader
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _port(lines: list[str], marker: str) -> int:
    [line] = [line for line in lines if marker in line and "fake" not in line][:1]
    match = _ADDRESS.search(line)
    assert match, line
    return int(match[1])


#: systemd's variables: a test that wants them passes them in ``env``.
_SYSTEMD = ("NOTIFY_SOCKET", "WATCHDOG_", "CREDENTIALS_")
_SMTP_LISTENING = re.compile(r"listening on (?:\[[^\]]+\]|[^:\s\[]+):(\d+)(?![\d.])")


class ServeProcess(subprocess.Popen[str]):
    """A ``webinar-proxy`` child (a ``Popen``); a thread reads its output into ``lines``
    and copies it to ``log`` if given."""

    def __init__(self, argv: list[str], log: IO[str] | None, **options: Any) -> None:
        super().__init__(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         errors="replace", **options)
        self.lines: list[str] = []
        #: The SMTP port from the first "listening on" line, once logged.
        self.port: int | None = None
        self._cursor = 0
        self._ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(log,), daemon=True)
        self._reader.start()

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 30) -> str:
        """The next line containing ``text`` (each call goes on after the previous match)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                while self._cursor < len(self.lines):
                    line = self.lines[self._cursor]
                    self._cursor += 1
                    if text in line:
                        return line
                if self._ended:
                    raise AssertionError(f"relay exited before {text!r}:\n" + self.output())
                if not self._changed.wait(deadline - time.monotonic()):
                    raise AssertionError(f"no {text!r} in time:\n" + self.output())

    def stop(self) -> None:
        """Kill the child if it still runs; wait for it and for the reader."""
        if self.poll() is None:
            self.kill()
        self.wait(timeout=10)
        self._reader.join(timeout=10)
        if self.stdout:
            self.stdout.close()

    def _read(self, log: IO[str] | None) -> None:
        assert self.stdout is not None
        for line in self.stdout:
            if log is not None:
                log.write(line)
                log.flush()
            with self._changed:
                self.lines.append(line)
                if self.port is None and (match := _SMTP_LISTENING.search(line)):
                    self.port = int(match[1])
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()


@contextlib.contextmanager
def serve_process(env: dict[str, str], *args: str, ready: str | None = "listening on",
                  log_path: Path | None = None) -> Iterator[ServeProcess]:
    """``python -m webinar_proxy <args>`` (default ``serve``) with ``env`` over a clean
    environment (a throwaway SQLite store unless ``env`` names one); yields once a line
    containing ``ready`` was logged (at once when ``ready`` is None).  The output is also
    written to ``log_path`` if given.  Still running at the end, the child is killed."""
    with contextlib.ExitStack() as stack:
        full_env = serve_env(*_SYSTEMD, **env)
        if "WEBINAR_PROXY_STORE__URL" not in full_env:
            state = stack.enter_context(tempfile.TemporaryDirectory(prefix="webinar-proxy-test-"))
            full_env["WEBINAR_PROXY_STORE__URL"] = f"sqlite:///{state}/state.db"
        log = stack.enter_context(log_path.open("w", encoding="utf-8")) if log_path else None
        process = ServeProcess([sys.executable, "-m", "webinar_proxy", *(args or ("serve",))],
                               log, cwd=REPO, env=full_env)
        try:
            if ready is not None:
                process.wait_for_line(ready)
            yield process
        finally:
            process.stop()
