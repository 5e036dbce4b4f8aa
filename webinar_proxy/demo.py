"""``webinar-proxy demo``: the relay end to end on this machine, with nothing to set up.

Starts a local next hop that writes delivered mail into a folder, starts the relay
on the built-in defaults (loopback, ephemeral ports), sends sample mail through it,
prints what arrived where, and exits 0.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from webinar_proxy.service import build_pipeline, configure_logging
from webinar_proxy.settings import HostPort, Settings, SmtpSettings
from webinar_proxy.smtp.server import RelayServer
from webinar_proxy.smtp.sink import FolderSink
from webinar_proxy.smtp.submit import submit

ORDINARY_MAIL = (
    b"From: Organizer <organizer@example.org>\r\n"
    b"To: Attendee <attendee@example.net>\r\n"
    b"Subject: Quarterly numbers\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Hello, the numbers are attached. \xe2\x80\x94 O.\r\n"
)


async def _demo(folder: Path) -> int:
    sink = FolderSink(folder / "delivered")
    await sink.start()
    settings = Settings(
        smtp=SmtpSettings(listen=HostPort("127.0.0.1", 0), next_hop=HostPort("127.0.0.1", sink.port)),
    )
    relay = RelayServer(settings.smtp, build_pipeline(settings))
    await relay.start()
    try:
        print(f"relay listening on 127.0.0.1:{relay.port}, next hop 127.0.0.1:{sink.port}")
        reply = await submit(HostPort("127.0.0.1", relay.port), "organizer@example.org",
                             ["attendee@example.net"], ORDINARY_MAIL)
        print(f"ordinary mail: relay answered {reply}")
        for path in sink.delivered:
            print(f"delivered: {path}")
        unchanged = bool(sink.delivered) and sink.delivered[-1].read_bytes().endswith(ORDINARY_MAIL)
        print(f"ordinary mail arrived byte for byte: {'yes' if unchanged else 'NO'}")
        return 0 if reply.is_success and unchanged else 1
    finally:
        await relay.shutdown(grace=5)
        await sink.stop()


def run_demo(keep: str | None = None) -> int:
    configure_logging()
    if keep:
        folder = Path(keep)
        folder.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_demo(folder))
    with tempfile.TemporaryDirectory(prefix="webinar-proxy-demo-") as tmp:
        return asyncio.run(_demo(Path(tmp)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
