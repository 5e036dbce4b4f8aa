"""A local next hop that writes every delivered message into a folder (demo and trials).

Each accepted message becomes one ``.eml`` file holding the exact bytes received;
the envelope goes into a ``Return-Path``/``X-Envelope-To`` header pair prepended
to the copy, the way a local delivery agent records it.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session


class _FolderHandler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.delivered: list[Path] = []
        self._numbers = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        number = next(self._numbers)
        path = self.folder / f"{number:04d}.eml"
        envelope_headers = (
            f"Return-Path: <{envelope.mail_from}>\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode("utf-8", "surrogateescape")
        path.write_bytes(envelope_headers + (envelope.original_content or b""))
        self.delivered.append(path)
        return f"250 2.0.0 Ok: delivered as {path.name}"


class FolderSink:
    """An SMTP server on loopback that delivers into ``folder``."""

    def __init__(self, folder: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.folder = folder
        self.host = host
        self.port = port
        self.handler = _FolderHandler(folder)
        self._server: asyncio.Server | None = None

    @property
    def delivered(self) -> list[Path]:
        return self.handler.delivered

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
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
