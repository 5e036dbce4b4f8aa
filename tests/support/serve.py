"""The real ``webinar-proxy serve`` as a child process: the one spawn-and-wait-for-readiness helper.

Everything the child writes (stdout and stderr, i.e. its whole log) is collected in
``output`` by a reader task, so the pipe never fills up and a test can grep it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

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
