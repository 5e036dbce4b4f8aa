"""Links and text: only https links from the platform's answers are written into mail, and
text from the invitation (SUMMARY, names) never becomes markup or a header — in the
rewritten invitation or in the organizer's notice."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.invites import invitation
from tests.support.product import running_product
from webinar_proxy.store import ConferenceState

T0 = datetime(2022, 3, 1, 9, 0, tzinfo=UTC)
START = datetime(2022, 3, 16, 11, 0, tzinfo=UTC)
END = START + timedelta(minutes=30)
BOSS = "boss@example.org"
UID = "scenario-1@example.org"

#: The fake builds links as "<link_base>/<organization>/<event id>".
BAD_LINK_BASES = {
    "http": "http://events.webinar.test",
    "javascript": "javascript:alert(document.cookie)",
    "data": "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "markup in https": 'https://events.webinar.test/x"><img src=x onerror=alert(1)>',
    "CRLF in https": "https://events.webinar.test/x\r\nBcc: victim@example.net",
}


def _bad_bits(base: str) -> list[bytes]:
    return [base.encode(), b"onerror", b"javascript:", b"data:text/html", b"http://events"]


@pytest.mark.parametrize("name", sorted(BAD_LINK_BASES))
async def test_a_platform_link_that_is_not_plain_https_never_reaches_mail(tmp_path, name):
    base = BAD_LINK_BASES[name]
    invite = invitation(start=START, end=END)
    async with running_product(tmp_path, T0, fake_options={"link_base": base}) as product:
        code, text = await product.send(invite, BOSS, ["ann@example.net"])
        assert code == 451, text  # policy "tempfail": the MTA keeps the mail
        assert product.state()["events"] == []  # the event made with that link is gone again
        record = await product.services.store.get(BOSS, UID)
        assert record is not None and record.state == ConferenceState.DELETED and record.link is None
        # the MTA's retry meets the same answer: again 451, still nothing left behind
        assert (await product.send(invite, BOSS, ["ann@example.net"]))[0] == 451
        assert product.state()["events"] == []
    assert product.delivered() == []


@pytest.mark.parametrize("name", ["javascript", "markup in https"])
async def test_in_deliver_mode_the_invitation_goes_without_a_link_and_the_organizer_is_told(tmp_path, name):
    base = BAD_LINK_BASES[name]
    invite = invitation(start=START, end=END)
    async with running_product(tmp_path, T0, fake_options={"link_base": base},
                               policy={"on_api_failure": "deliver"}) as product:
        code, text = await product.send(invite, BOSS, ["ann@example.net"])
        assert code == 250, text
        await product.hop.handler.wait_delivered(2)
        assert product.state()["events"] == []
    forwarded, notice = product.delivered()
    assert forwarded == invite
    assert product.hop.handler.delivered[1].rcpt_tos == [BOSS]
    for bit in _bad_bits(base):
        assert bit not in notice


HOSTILE_SUMMARIES = {
    "script": "<script>alert(1)</script>",
    "attribute break-out": '"><img src=x onerror=alert(1)>',
    "escaped newline + header": "Planning\\nBcc: victim@example.net\\nX-Evil: 1",
    "escaped CR LF + header": "Planning\\r\\nBcc: victim@example.net",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_SUMMARIES))
async def test_invitation_text_never_becomes_markup_or_a_header(tmp_path, name):
    summary = HOSTILE_SUMMARIES[name]
    invite = invitation(start=START, end=END, summary=summary).replace(
        b"ORGANIZER;CN=Organizer:", b'ORGANIZER;CN="<b onmouseover=alert(1)>Boss</b>":'
    ).replace(
        b'Content-Type: text/plain; charset=utf-8\r\n\r\n',
        b'Content-Type: text/plain; charset=utf-8\r\n\r\n',
    )
    # an HTML body, so the join block is written into HTML too
    invite = invite.replace(
        b"--b1\r\nContent-Type: text/calendar",
        b"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Agenda</p>\r\n\r\n"
        b"--b1\r\nContent-Type: text/calendar",
    )
    async with running_product(tmp_path, T0) as product:
        code, text = await product.send(invite, BOSS, ["ann@example.net"])
        assert code == 250, text
        await product.hop.handler.wait_delivered(2)
        link = product.state()["events"][0]["link"]
    rewritten, notice = product.delivered()
    original_head = invite.split(b"\r\n\r\n", 1)[0]
    assert rewritten.split(b"\r\n\r\n", 1)[0] == original_head  # headers untouched
    parsed = email.message_from_bytes(rewritten, policy=email.policy.default)
    html = next(p for p in parsed.walk() if p.get_content_type() == "text/html").get_content()
    added = html.replace("<p>Agenda</p>", "")
    assert link in added
    for bad in ("<script", "onerror", "onmouseover", "<img", "<b "):
        assert bad not in added  # our block carries the link and label, nothing of the sender's
    notice_message = email.message_from_bytes(notice, policy=email.policy.default)
    assert notice_message.get_content_type() == "text/plain"  # no markup can exist in it
    assert notice_message["Bcc"] is None and notice_message["X-Evil"] is None
    assert notice_message.get_all("To") == [BOSS]
    assert "\n" not in str(notice_message["Subject"]) and "\r" not in str(notice_message["Subject"])
    head = notice.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in head and b"\nX-Evil:" not in head
    assert link in notice_message.get_content()
