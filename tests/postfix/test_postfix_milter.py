"""The milter wiring through a real (private) Postfix with the shipped config/postfix/milter/
snippets: ``smtpd_milters`` on the submission service, the real ``serve`` with only its
milter listener, the fake Webinar API as a separate process.

Submitters log in with SASL (Cyrus sasldb, real users made with saslpasswd2), so the
``{auth_authen}`` macro the milter reads is Postfix's own, and the relay runs with
``policy.organizer_check = "login"``.  Organizer notices go to the instance's port-25
smtpd (``milter.notice_submit``), which has no milters.
"""

from __future__ import annotations

import shutil
import smtplib
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.postfix.test_postfix_invitations import (
    ANN,
    BOSS,
    START,
    FakeWebinarProcess,
    _calendar_of,
    _events_with_uid_summary,
    _relay_env,
    fake,  # noqa: F401 - the module's fake Webinar API fixture
)
from tests.support.invites import invitation
from tests.support.postfix import SASLPASSWD2, PostfixInstance, fresh, postfix_instance, wait_until

pytestmark = pytest.mark.postfix

PLAIN = (b"Date: Fri, 04 Dec 2026 12:00:00 +0000\r\n"
         b"From: Boss <boss@example.org>\r\nTo: ann@example.net\r\nSubject: lunch\r\n"
         b"Message-ID: <milter-plain-%d@example.org>\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
         + "Обед в 13:00?\r\n".encode() * 200)


def _invitation(prefix: str, **options: object) -> tuple[str, bytes]:
    """A unique summary and an invitation from the boss to Ann with it."""
    summary = f"{prefix} {time.monotonic_ns()}"
    return summary, invitation(uid=f"{time.monotonic_ns()}@example.org", summary=summary, start=START,
                               end=START + timedelta(hours=1), attendees=(ANN,), **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def milter(fake: FakeWebinarProcess) -> Iterator[PostfixInstance]:  # noqa: F811
    if not shutil.which(SASLPASSWD2):
        pytest.skip("saslpasswd2 (sasl2-bin) is not installed; .ci/run installs it")
    # The milter served by a group of two workers: the supervisor hands Postfix's
    # connections over.
    env = {**_relay_env(fake), "WEBINAR_PROXY_POLICY__ORGANIZER_CHECK": "login",
           "WEBINAR_PROXY_SMTP__WORKERS": "2"}
    with postfix_instance("milter", relay_env=env) as instance:
        yield instance


def test_invitation_gets_the_link_the_organizer_a_notice_and_cancel_deletes_it(
    milter: PostfixInstance, fake: FakeWebinarProcess  # noqa: F811
):
    pf = fresh(milter)
    summary = f"Milter planning {time.monotonic_ns()}"
    uid = f"milter-{time.monotonic_ns()}@example.org"
    invite = invitation(uid=uid, summary=summary, start=START, end=START + timedelta(hours=1),
                        attendees=(ANN,))
    queue_id = pf.submit(invite, BOSS, [ANN], mail_options=("BODY=8BITMIME",), login=BOSS)
    delivered = pf.wait_delivered(2)  # the invitation to Ann, the notice to the boss
    [event] = _events_with_uid_summary(fake, summary)
    to_ann = next(m for m in delivered if m.recipient == ANN)
    assert f"CONFERENCE;VALUE=URI;FEATURE=AUDIO,VIDEO;LABEL=Webinar:{event['link']}" in _calendar_of(to_ann)
    assert event["link"] in to_ann.message.get_body(("plain",)).get_content()
    notice = next(m for m in delivered if m.recipient == BOSS)
    assert notice.message["Auto-Submitted"] == "auto-generated"
    assert event["link"] in notice.message.get_content()
    assert queue_id and f"queue_id={queue_id}" in pf.relay_log()

    pf.reset()
    cancel = invitation(uid=uid, summary=summary, start=START, end=START + timedelta(hours=1),
                        attendees=(ANN,), method="CANCEL", status="CANCELLED", sequence=1)
    pf.submit(cancel, BOSS, [ANN], mail_options=("BODY=8BITMIME",), login=BOSS)
    pf.wait_delivered(1)
    wait_until(lambda: not _events_with_uid_summary(fake, summary), 30, "the conference deleted")


def test_plain_mail_arrives_byte_identical_apart_from_postfix_headers(milter: PostfixInstance):
    pf = fresh(milter)
    message = PLAIN.replace(b"%d", str(time.monotonic_ns()).encode())
    pf.submit(message, BOSS, [ANN], mail_options=("BODY=8BITMIME",), login=BOSS)
    [mail] = pf.wait_delivered(1)
    sent_headers, _, sent_body = message.partition(b"\r\n\r\n")
    got_headers, _, got_body = mail.wire.partition(b"\r\n\r\n")
    assert got_body == sent_body
    # Postfix and virtual(8) add Return-Path, X-Original-To, Delivered-To and Received on
    # top; ours follow unchanged.
    assert got_headers.endswith(sent_headers)
    added = got_headers[: -len(sent_headers)].split(b"\r\n")
    assert all(line.split(b":")[0] in (b"Return-Path", b"X-Original-To", b"Delivered-To", b"Received")
               or line[:1] in (b" ", b"\t") or not line for line in added), added


def test_the_login_check_acts_only_for_the_organizers_own_login(
    milter: PostfixInstance, fake: FakeWebinarProcess  # noqa: F811
):
    pf = fresh(milter)
    summary, invite = _invitation("Forged")
    # Ann logs in but writes the boss as envelope sender, From: and ORGANIZER.
    pf.submit(invite, BOSS, [ANN], mail_options=("BODY=8BITMIME",), login=ANN)
    [mail] = pf.wait_delivered(1)
    assert _events_with_uid_summary(fake, summary) == []
    assert "CONFERENCE" not in _calendar_of(mail)


def test_milter_down_gives_4xx_and_queues_nothing_then_delivers_after_restart(
    milter: PostfixInstance, fake: FakeWebinarProcess  # noqa: F811
):
    pf = fresh(milter)
    summary, invite = _invitation("Milter down")
    assert pf.stop_relay() == 0
    try:
        with pytest.raises(smtplib.SMTPResponseException) as refused:
            pf.submit(invite, BOSS, [ANN], mail_options=("BODY=8BITMIME",), login=BOSS)
        assert 400 <= refused.value.smtp_code < 500, refused.value
        assert pf.queue() == [] and pf.delivered() == []
    finally:
        pf.start_relay()
    pf.submit(invite, BOSS, [ANN], mail_options=("BODY=8BITMIME",), login=BOSS)  # the client retries
    delivered = pf.wait_delivered(2)
    [event] = _events_with_uid_summary(fake, summary)
    assert event["link"] in _calendar_of(next(m for m in delivered if m.recipient == ANN))
