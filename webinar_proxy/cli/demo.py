"""``webinar-proxy demo``: the whole product on this machine, with nothing to set up.

Starts the fake Webinar server, a local next hop that writes delivered mail into a
folder, and the relay on the built-in defaults (loopback, ephemeral ports, SQLite in
a temporary directory).  Sends an ordinary mail, then a sample invitation, its
update and its cancellation through the relay, prints the link, the delivered files
and the fake platform's state after each step, and exits 0 when everything behaved.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from webinar_proxy.settings import (
    HostPort,
    PolicySettings,
    Settings,
    SmtpSettings,
    StoreSettings,
    WebinarSettings,
)
from webinar_proxy.smtp.sink import FolderSink
from webinar_proxy.smtp.submit import submit
from webinar_proxy.testing.fake_webinar import running_fake_webinar
from webinar_proxy.wiring import running_product

ORGANIZER = "organizer@example.org"
ATTENDEES = ("anna@example.net", "boris@example.net")
DEMO_TOKEN = "demo-token"

ORDINARY_MAIL = (
    b"From: Organizer <organizer@example.org>\r\n"
    b"To: Attendee <anna@example.net>\r\n"
    b"Subject: Quarterly numbers\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Hello, the numbers are attached. \xe2\x80\x94 O.\r\n"
)


def sample_invitation(start: datetime, *, sequence: int = 0, method: str = "REQUEST") -> bytes:
    """A Thunderbird-shaped invitation whose location asks for a Webinar conference."""
    end = start + timedelta(hours=1)
    stamp = "%Y%m%dT%H%M%SZ"
    attendees = "".join(
        f"ATTENDEE;CN={a.split('@')[0].title()};ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;"
        f"RSVP=TRUE:mailto:{a}\r\n" for a in ATTENDEES
    )
    status = "STATUS:CANCELLED\r\n" if method == "CANCEL" else ""
    ics = (
        "BEGIN:VCALENDAR\r\nPRODID:-//webinar-proxy demo//EN\r\nVERSION:2.0\r\n"
        f"METHOD:{method}\r\nBEGIN:VEVENT\r\nUID:demo-meeting-1@example.org\r\n"
        f"SEQUENCE:{sequence}\r\nDTSTAMP:{datetime.now(UTC).strftime(stamp)}\r\n"
        f"DTSTART:{start.strftime(stamp)}\r\nDTEND:{end.strftime(stamp)}\r\n"
        "SUMMARY:Планёрка отдела продаж\r\nLOCATION:Переговорная 3 @webinar\r\n"
        f"ORGANIZER;CN=Organizer:mailto:{ORGANIZER}\r\n{attendees}{status}"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    title = {"REQUEST": "Invitation" if not sequence else "Updated invitation", "CANCEL": "Cancelled"}
    return (
        f"From: Organizer <{ORGANIZER}>\r\nTo: {', '.join(ATTENDEES)}\r\n"
        f"Subject: {title[method]}: sales team meeting\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="demo-boundary"\r\n\r\n'
        "--demo-boundary\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        "Sales team meeting.\r\n\r\n"
        "--demo-boundary\r\n"
        f"Content-Type: text/calendar; charset=utf-8; method={method}\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        f"{ics}\r\n--demo-boundary--\r\n"
    ).encode()


def _what_was_delivered(path: Path) -> str:
    """Tell the mail as sent apart from the relay's own notice to the organizer."""
    if path.read_bytes().startswith(b"Return-Path: <>"):  # notices go with a null sender
        return "the relay's notice to the organizer about the conference"
    return "the mail as the recipients get it"


def _summary(state: dict[str, Any]) -> str:
    compact = {
        "events": [{k: e[k] for k in ("eventId", "name", "isSeries", "link")} for e in state["events"]],
        "sessions": [{k: s[k] for k in ("eventSessionId", "startsAt")} for s in state["sessions"]],
        "registrations": sorted(f"{r['email']} ({r['role']})" for r in state["registrations"]),
    }
    return json.dumps(compact, ensure_ascii=False, indent=2)


async def _demo(folder: Path) -> int:
    sink = FolderSink(folder / "delivered")
    await sink.start()
    ok = True
    async with running_fake_webinar(token=DEMO_TOKEN) as fake:
        settings = Settings(
            smtp=SmtpSettings(listen=HostPort("127.0.0.1", 0), next_hop=HostPort("127.0.0.1", sink.port)),
            webinar=WebinarSettings(api_url=fake.api_url, token=DEMO_TOKEN),
            store=StoreSettings(url=f"sqlite:///{folder}/state.db"),
            policy=PolicySettings(language="en"),
        )
        async with running_product(settings) as product:
            assert product.relay is not None
            relay_address = HostPort("127.0.0.1", product.relay.port)
            print(f"fake Webinar API at {fake.api_url}")
            print(f"relay listening on {relay_address}, next hop (folder {sink.folder}) on port {sink.port}")
            start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
            steps = [
                ("ordinary mail", ORDINARY_MAIL, lambda s: not s["events"]),
                ("invitation", sample_invitation(start), lambda s: len(s["events"]) == 1),
                ("update: one hour later", sample_invitation(start + timedelta(hours=1), sequence=1),
                 lambda s: len(s["sessions"]) == 1),
                ("cancellation", sample_invitation(start, sequence=2, method="CANCEL"),
                 lambda s: not s["events"]),
            ]
            for title, message, expected in steps:
                seen = len(sink.delivered)
                reply = await submit(relay_address, ORGANIZER, list(ATTENDEES), message)
                await product.settle()
                # Attendees are registered in the background: show them registered.
                await product.services.registrations.drain()
                state = fake.state()
                print(f"\n== {title}: relay answered {reply}")
                for path in sink.delivered[seen:]:
                    print(f"   delivered: {path} ({_what_was_delivered(path)})")
                for event in state["events"]:
                    print(f"   join link: {event['link']}")
                print("   platform:", _summary(state).replace("\n", "\n   "))
                step_ok = reply.is_success and expected(state)
                ok = ok and step_ok
                if not step_ok:
                    print(f"   UNEXPECTED result for {title}")
            unchanged = sink.delivered and sink.delivered[0].read_bytes().endswith(ORDINARY_MAIL)
            print(f"\nordinary mail arrived byte for byte: {'yes' if unchanged else 'NO'}")
            ok = ok and bool(unchanged)
    await sink.stop()
    print("\ndemo", "finished: everything as expected" if ok else "FAILED")
    return 0 if ok else 1


def run_demo(keep: str | None = None) -> int:
    if keep:
        folder = Path(keep)
        folder.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_demo(folder))
    with tempfile.TemporaryDirectory(prefix="webinar-proxy-demo-") as tmp:
        return asyncio.run(_demo(Path(tmp)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
