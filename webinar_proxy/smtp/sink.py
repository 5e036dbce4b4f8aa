"""A local next hop that writes every delivered message into a folder (demo and trials).

Each accepted message becomes one ``.eml`` file holding the exact bytes received;
the envelope goes into a ``Return-Path``/``X-Envelope-To`` header pair prepended
to the copy, the way a local delivery agent records it.  Numbering continues after
the files already in the folder.  ``webinar-proxy sink`` runs it standalone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import sys
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from webinar_proxy.signals import until_terminated

log = logging.getLogger(__name__)
_NUMBERED = re.compile(r"^(\d+)\.eml$")


def _next_number(folder: Path) -> int:
    taken = [int(match[1]) for path in folder.glob("*.eml") if (match := _NUMBERED.match(path.name))]
    return max(taken, default=0) + 1


class _FolderHandler:
    def __init__(self, folder: Path, announce: bool = False) -> None:
        self.folder = folder
        self.announce = announce
        self.delivered: list[Path] = []
        self._numbers = itertools.count(1)

    def restart_numbering(self) -> None:
        self._numbers = itertools.count(_next_number(self.folder))

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        number = next(self._numbers)
        path = self.folder / f"{number:04d}.eml"
        sender = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        envelope_headers = (
            f"Return-Path: <{sender}>\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode("utf-8", "surrogateescape")
        path.write_bytes(envelope_headers + (envelope.original_content or b""))
        self.delivered.append(path)
        if self.announce:
            log.info("delivered %s (from <%s> to %d recipient(s))", path, sender, len(envelope.rcpt_tos))
        return f"250 2.0.0 Ok: delivered as {path.name}"


class FolderSink:
    """An SMTP server on loopback that delivers into ``folder``."""

    def __init__(
        self, folder: Path, host: str = "127.0.0.1", port: int = 0, *, announce: bool = False
    ) -> None:
        """``announce``: log each delivery at INFO (the standalone ``sink`` command)."""
        self.folder = folder
        self.host = host
        self.port = port
        self.handler = _FolderHandler(folder, announce)
        self._server: asyncio.Server | None = None

    @property
    def delivered(self) -> list[Path]:
        return self.handler.delivered

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.handler.restart_numbering()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self.handler, hostname="sink.local", enable_SMTPUTF8=True,
                         data_size_limit=None),
            host=self.host, port=self.port,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


def run_sink(listen: str, folder: str) -> int:
    """``webinar-proxy sink``: deliver into ``folder`` until SIGTERM/SIGINT; exit code."""
    from webinar_proxy.settings import parse_host_port

    try:
        where = parse_host_port(listen)
    except ValueError as exc:
        print(f"webinar-proxy: --listen: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve_sink(FolderSink(Path(folder), where.host, where.port, announce=True)))


async def _serve_sink(sink: FolderSink) -> int:
    try:
        await sink.start()
    except OSError as exc:
        print(f"webinar-proxy: sink: {exc.strerror or exc}", file=sys.stderr)
        return 1
    shown = f"[{sink.host}]:{sink.port}" if ":" in sink.host else f"{sink.host}:{sink.port}"
    print(f"sink listening on {shown}, writing mail into {sink.folder.resolve()}", flush=True)
    try:
        await until_terminated()
    finally:
        await sink.stop()
    print("sink stopped", flush=True)
    return 0
