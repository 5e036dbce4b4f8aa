"""The milter front door over a real socket, driven by an MTA-side client.

The whole product runs in the test's loop: the milter listener on loopback, the
invitation pipeline, a real SQLite store, the fake Webinar API over HTTP, and a
recording SMTP server where organizer notices are submitted (``milter.notice_submit``).
The client (tests/support/milter.py) speaks the MTA's half of protocol version 6 and
applies the filter's edits the way an MTA does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kilter.protocol import (
    Abort,
    Accept,
    ActionFlags,
    ChangeHeader,
    Continue,
    ProtocolFlags,
    ReplaceBody,
    ReplyCode,
    Stage,
)

from tests.support.invites import invitation
from tests.support.milter import OFFERED_ACTIONS, OFFERED_PROTOCOL, MtaClient
from tests.support.product import TOKEN, Clock
from tests.support.smtp import RunningNextHop, running_next_hop
from webinar_proxy.milter.message import MAX_BODY_CHUNK
from webinar_proxy.milter.server import MilterServer
from webinar_proxy.settings import (
    HostPort,
    MilterAddress,
    MilterSettings,
    PolicySettings,
    Settings,
    SmtpSettings,
    StoreSettings,
    WebinarSettings,
)
from webinar_proxy.testing.fake_webinar import running_fake_webinar
from webinar_proxy.webinar.pacing import Backoff
from webinar_proxy.wiring import Services, open_services

T0 = datetime(2022, 3, 1, 9, 0, tzinfo=UTC)
START = datetime(2022, 3, 16, 11, 0, tzinfo=UTC)
BOSS = "boss@example.org"
ANN = "ann@example.net"
INVITE = invitation(start=START, end=START + timedelta(minutes=30))
PLAIN = (b"From: Boss <boss@example.org>\r\nTo: ann@example.net\r\nSubject: lunch\r\n"
         b"Message-ID: <plain-1@example.org>\r\n\r\n" + b"Shall we?\r\n" * 1000)
MIXED = (b"From: boss@example.org\r\nTo: ann@example.net\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
         b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\n'
         b"see attached\r\n--x\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
         b"\r\nJVBERi0xLjQK\r\n--x--\r\n")


@dataclass
class MilterProduct:
    fake: Any
    notices: RunningNextHop
    milter: MilterServer
    services: Services

    async def client(self, **options: Any) -> MtaClient:
        return await MtaClient.connect(self.milter.port, **options)


@contextlib.asynccontextmanager
async def running_milter(tmp_path: Path, *, policy: dict[str, Any] | None = None,
                         deadline: float = 60.0, progress: float = 30.0,
                         call_deadline: float = 5.0) -> AsyncIterator[MilterProduct]:
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as notices:
        settings = Settings(
            smtp=SmtpSettings(enabled=False, deadline_seconds=deadline),
            webinar=WebinarSettings(api_url=fake.api_url, token=TOKEN, rate_limit=1000,
                                    call_deadline_seconds=call_deadline, read_timeout_seconds=2,
                                    connect_timeout_seconds=2),
            store=StoreSettings(url=f"sqlite:///{tmp_path}/state.db"),
            policy=PolicySettings(**(policy or {})),
            milter=MilterSettings(listen=MilterAddress("inet", "127.0.0.1", 0),
                                  notice_submit=HostPort("127.0.0.1", notices.port),
                                  progress_interval_seconds=progress),
        )
        async with open_services(settings, clock=Clock(T0),
                                 client_options={"backoff": Backoff(base=0.01, cap=0.05)}) as services:
            milter = MilterServer(settings.milter, services.pipeline,
                                  deadline_seconds=deadline)
            await milter.start()
            try:
                yield MilterProduct(fake, notices, milter, services)
            finally:
                await milter.shutdown(grace=1)


async def test_negotiation_asks_for_the_identity_macros_and_no_unneeded_events(tmp_path):
    async with running_milter(tmp_path) as product:
        client = await product.client()
        negotiated = client.negotiated
        assert negotiated is not None and negotiated.version == 6
        assert set(negotiated.macros[Stage.ENVELOPE_FROM]) == {"{auth_authen}", "{mail_addr}", "i"}
        assert "i" in negotiated.macros[Stage.END_MESSAGE]
        for flag in (ProtocolFlags.HEADER_LEADING_SPACE, ProtocolFlags.NR_HEADER,
                     ProtocolFlags.NO_CONNECT, ProtocolFlags.NO_HELO):
            assert flag in negotiated.protocol_flags
        assert ActionFlags.CHANGE_BODY in negotiated.action_flags
        assert ActionFlags.CHANGE_HEADERS in negotiated.action_flags
        await client.close()


@pytest.mark.parametrize(("content", "sender"), [
    (PLAIN, BOSS),  # text/plain cannot hold a calendar part
    (INVITE, ""),  # bounces and our own notices
], ids=["plain", "null-sender"])
async def test_ordinary_mail_is_accepted_at_end_of_headers_without_its_body(tmp_path, content, sender):
    async with running_milter(tmp_path) as product:
        client = await product.client()
        assert client.negotiated is not None
        assert ProtocolFlags.NR_SENDER in client.negotiated.protocol_flags  # no round trip at MAIL
        for _ in range(2):  # the same connection serves the next transaction
            outcome = await client.message(content, sender, [ANN])
            assert outcome.stage == "eoh" and isinstance(outcome.reply, Accept)
            assert outcome.body_chunks_sent == 0
        assert product.fake.state()["events"] == []
        await client.close()


async def test_an_auto_submitted_invitation_from_a_calendar_server_still_gets_its_conference(tmp_path):
    async with running_milter(tmp_path) as product:
        client = await product.client()
        outcome = await client.message(b"Auto-Submitted: auto-generated\r\n" + INVITE, BOSS, [ANN])
        assert outcome.stage == "eom" and isinstance(outcome.reply, Continue)
        [event] = product.fake.state()["events"]
        assert event["link"].encode() in outcome.message
        await client.close()


async def test_an_mta_that_must_hear_about_mail_from_gets_the_null_sender_accept_there(tmp_path):
    async with running_milter(tmp_path) as product:
        client = await product.client(protocol=OFFERED_PROTOCOL & ~ProtocolFlags.NR_SENDER)
        outcome = await client.message(INVITE, "", [ANN])
        assert outcome.stage == "mail" and isinstance(outcome.reply, Accept)
        assert product.fake.state()["events"] == []
        await client.close()


async def test_multipart_without_calendar_passes_unchanged_at_end_of_message(tmp_path):
    async with running_milter(tmp_path) as product:
        client = await product.client()
        outcome = await client.message(MIXED, BOSS, [ANN])
        assert outcome.stage == "eom" and isinstance(outcome.reply, Continue)
        assert outcome.edits == [] and outcome.message == MIXED
        await client.close()


async def test_invitation_gets_the_link_as_a_new_body_and_the_notice_follows_delivery(tmp_path):
    async with running_milter(tmp_path) as product:
        client = await product.client()
        outcome = await client.message(INVITE, BOSS, [ANN], macros={"i": "4QueueId1", "{auth_authen}": BOSS})
        assert outcome.stage == "eom" and isinstance(outcome.reply, Continue)
        [event] = product.fake.state()["events"]
        link = event["link"].encode()
        assert link in outcome.message
        # a multipart rewrite changes the body only: every header stays as it was
        assert all(isinstance(edit, ReplaceBody) for edit in outcome.edits)
        assert outcome.message.split(b"\r\n\r\n")[0] == INVITE.split(b"\r\n\r\n")[0]
        # the notice waits for the MTA to move on: nothing yet
        await asyncio.sleep(0)
        assert product.notices.handler.delivered == []
        again = await client.message(PLAIN, BOSS, [ANN])  # the next transaction: the last one stood
        assert isinstance(again.reply, Accept)
        await product.notices.handler.wait_delivered(1)
        [notice] = product.notices.handler.delivered
        assert notice.mail_from in ("", "<>") and notice.rcpt_tos == [BOSS]
        assert b"Auto-Submitted: auto-generated" in notice.content
        await client.close()


async def test_a_message_tempfailed_or_aborted_before_its_end_sends_no_notice(tmp_path):
    async with running_milter(tmp_path, call_deadline=0.5) as product:
        client = await product.client()
        product.fake.add_fault("500", times=None, path="/events/*/sessions")
        failed = await client.message(INVITE, BOSS, [ANN])  # the event is made, the session not
        assert isinstance(failed.reply, ReplyCode)
        product.fake.clear_faults()
        await client.send(Abort())
        await client.close()
        await product.milter.settle()
        assert product.notices.handler.delivered == []


async def test_postfix_style_abort_after_an_accepted_end_of_message_sends_the_notice(tmp_path):
    async with running_milter(tmp_path) as product:
        client = await product.client()
        outcome = await client.message(INVITE, BOSS, [ANN])
        assert isinstance(outcome.reply, Continue) and outcome.edits
        await client.send(Abort())  # Postfix resets every transaction with SMFIC_ABORT
        await product.notices.handler.wait_delivered(1)
        await client.close()


async def test_cancel_deletes_the_conference(tmp_path):
    async with running_milter(tmp_path) as product:
        client = await product.client()
        await client.message(INVITE, BOSS, [ANN])
        cancel = invitation(start=START, end=START + timedelta(minutes=30), method="CANCEL", sequence=1)
        outcome = await client.message(cancel, BOSS, [ANN])
        assert isinstance(outcome.reply, Continue)
        assert product.fake.state()["events"] == []
        await client.close()


async def test_large_invitation_body_comes_back_in_chunks_of_at_most_65535_bytes(tmp_path):
    attachment = (b"A" * 76 + b"\r\n") * 4000  # about 300 KB of base64 lines
    big = INVITE.replace(b"--b1--", b'--b1\r\nContent-Type: application/octet-stream\r\n'
                         b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + b"--b1--")
    assert big != INVITE
    async with running_milter(tmp_path) as product:
        client = await product.client()
        outcome = await client.message(big, BOSS, [ANN])
        chunks = [edit for edit in outcome.edits if isinstance(edit, ReplaceBody)]
        assert len(chunks) >= 4
        assert all(len(bytes(chunk.content)) <= MAX_BODY_CHUNK for chunk in chunks)
        assert product.fake.state()["events"][0]["link"].encode() in outcome.message
        assert attachment in outcome.message
        await client.close()


async def test_single_part_calendar_changes_only_the_headers_that_must_change(tmp_path):
    inner = INVITE.split(b"Content-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n")[1]
    ics = inner.split(b"\r\n--b1--")[0]
    single = (b"From: Organizer <boss@example.org>\r\nTo: ann@example.net\r\nSubject: Planning\r\n"
              b"MIME-Version: 1.0\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n"
              b"Content-Transfer-Encoding: 7bit\r\n\r\n" + ics)
    async with running_milter(tmp_path) as product:
        client = await product.client()
        outcome = await client.message(single, BOSS, [ANN])
        assert isinstance(outcome.reply, Continue)
        assert product.fake.state()["events"][0]["link"].encode() in outcome.message.replace(b"=\r\n", b"")
        changed = {edit.name.lower() for edit in outcome.edits if isinstance(edit, ChangeHeader)}
        assert changed <= {"content-transfer-encoding", "content-type"}
        await client.close()


async def test_platform_down_is_451_4_3_0_and_nothing_is_accepted(tmp_path):
    async with running_milter(tmp_path, call_deadline=0.5) as product:
        product.fake.add_fault("500", times=None)
        client = await product.client()
        outcome = await client.message(INVITE, BOSS, [ANN])
        assert isinstance(outcome.reply, ReplyCode)
        assert outcome.reply_text.startswith("451 4.3.0 ")
        assert outcome.edits == []
        product.fake.clear_faults()
        retry = await client.message(INVITE, BOSS, [ANN])
        assert isinstance(retry.reply, Continue) and retry.edits
        assert len(product.fake.state()["events"]) == 1
        await client.close()


async def test_long_platform_waits_send_progress_keep_alives(tmp_path):
    async with running_milter(tmp_path, deadline=2.0, progress=0.05, call_deadline=60) as product:
        product.fake.add_fault("hang", times=None)
        client = await product.client()
        outcome = await client.message(INVITE, BOSS, [ANN])
        assert outcome.progress >= 1
        assert isinstance(outcome.reply, ReplyCode) and outcome.reply_text.startswith("451 ")
        await client.close()


async def test_an_mta_that_forbids_body_changes_gets_451_for_an_invitation(tmp_path):
    async with running_milter(tmp_path) as product:
        client = await product.client(actions=OFFERED_ACTIONS & ~ActionFlags.CHANGE_BODY)
        outcome = await client.message(INVITE, BOSS, [ANN])
        assert isinstance(outcome.reply, ReplyCode) and outcome.reply_text.startswith("451 4.3.0")
        plain = await client.message(PLAIN, BOSS, [ANN])
        assert isinstance(plain.reply, Accept)
        await client.close()


async def test_login_check_acts_only_for_the_organizers_login(tmp_path):
    policy = {"organizer_check": "login", "login_addresses": {"b.oss": [BOSS]}}
    async with running_milter(tmp_path, policy=policy) as product:
        client = await product.client()
        # envelope sender and From: say boss, but the login is someone else's
        forged = await client.message(INVITE, BOSS, [ANN], macros={"{auth_authen}": "mallory"})
        assert isinstance(forged.reply, Continue) and forged.edits == []
        anonymous = await client.message(INVITE, BOSS, [ANN])
        assert anonymous.edits == []
        assert product.fake.state()["events"] == []
        real = await client.message(INVITE, BOSS, [ANN], macros={"{auth_authen}": "B.Oss"})
        assert real.edits and len(product.fake.state()["events"]) == 1
        await client.close()


async def test_login_equal_to_the_address_needs_no_map(tmp_path):
    async with running_milter(tmp_path, policy={"organizer_check": "login"}) as product:
        client = await product.client()
        outcome = await client.message(INVITE, BOSS, [ANN], macros={"{auth_authen}": BOSS})
        assert outcome.edits and len(product.fake.state()["events"]) == 1
        await client.close()


async def test_a_garbled_stream_closes_the_connection_and_leaves_the_listener_serving(tmp_path):
    async with running_milter(tmp_path) as product:
        reader, writer = await asyncio.open_connection("127.0.0.1", product.milter.port)
        writer.write(b"\x00\x00\x00\x05Zjunk")
        await writer.drain()
        assert await reader.read() == b""  # closed by the filter
        writer.close()
        await writer.wait_closed()
        client = await product.client()
        outcome = await client.message(PLAIN, BOSS, [ANN])
        assert isinstance(outcome.reply, Accept)
        await client.close()


async def test_shutdown_lets_a_message_in_flight_answer_then_refuses_new_connections(tmp_path):
    async with running_milter(tmp_path, deadline=1.0, call_deadline=60) as product:
        product.fake.add_fault("hang", times=None)
        client = await product.client()
        in_flight = asyncio.create_task(client.message(INVITE, BOSS, [ANN]))
        for _ in range(1000):  # bounded: until the message is waiting for the platform
            if product.fake.requests:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the message never reached the platform")
        port = product.milter.port
        await product.milter.shutdown(grace=30)
        outcome = await in_flight
        assert isinstance(outcome.reply, ReplyCode) and outcome.reply_text.startswith("451 ")
        await client.close()
        with pytest.raises(OSError):
            await MtaClient.connect(port)
