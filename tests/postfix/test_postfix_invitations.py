"""Invitations through a real (private) Postfix wired with the shipped snippets, the real
relay behind it, and the fake Webinar API as a separate process.

After the queue: an invitation with the keyword arrives in the mailbox with the join
link and the platform holds the conference; the CANCEL deletes it.  Before the queue:
the invitation scenario.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.env import clean_env
from tests.support.invites import invitation
from tests.support.postfix import (
    PostfixInstance,
    free_ports,
    fresh,
    postfix_instance,
    skip_reason,
    wait_until,
)
from tests.support.relay import REPO

pytestmark = pytest.mark.postfix

TOKEN = "postfix-test-token"
BOSS = "boss@example.org"
ANN = "ann@example.net"
START = datetime.now(UTC).replace(microsecond=0, second=0) + timedelta(days=7)


class FakeWebinarProcess:
    def __init__(self) -> None:
        [self.port] = free_ports(1)
        env = clean_env()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "webinar_proxy", "fake-webinar", "--listen",
             f"127.0.0.1:{self.port}", "--token", TOKEN],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the readiness line
        assert "listening on" in line, line
        self.api_url = f"http://127.0.0.1:{self.port}/v3"

    def state(self) -> dict:
        return httpx.get(f"http://127.0.0.1:{self.port}/_fake/state", timeout=10).json()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeWebinarProcess]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    process = FakeWebinarProcess()
    try:
        yield process
    finally:
        process.stop()


def _relay_env(fake: FakeWebinarProcess) -> dict[str, str]:
    return {
        "WEBINAR_PROXY_WEBINAR__API_URL": fake.api_url,
        "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
        "WEBINAR_PROXY_WEBINAR__RATE_LIMIT": "100",
    }


@pytest.fixture(scope="module")
def after_queue(fake: FakeWebinarProcess) -> Iterator[PostfixInstance]:
    # A group of two workers behind the content filter (the before-queue one is one process).
    env = {**_relay_env(fake), "WEBINAR_PROXY_SMTP__WORKERS": "2"}
    with postfix_instance("after-queue", relay_env=env) as instance:
        yield instance


@pytest.fixture(scope="module")
def before_queue(fake: FakeWebinarProcess) -> Iterator[PostfixInstance]:
    with postfix_instance("before-queue", relay_env=_relay_env(fake)) as instance:
        yield instance


def _events_with_uid_summary(fake: FakeWebinarProcess, summary: str) -> list[dict]:
    return [e for e in fake.state()["events"] if e["name"] == summary]


def _calendar_of(mail) -> str:
    parts = [p for p in mail.message.walk() if p.get_content_type() == "text/calendar"]
    return "".join(p.get_content() for p in parts).replace("\r\n ", "").replace("\n ", "")


def test_invitation_through_postfix_gets_the_link_and_cancel_deletes_it(
    after_queue: PostfixInstance, fake: FakeWebinarProcess
):
    pf = fresh(after_queue)
    summary = f"Postfix planning {time.monotonic_ns()}"
    uid = f"pf-{time.monotonic_ns()}@example.org"
    invite = invitation(uid=uid, summary=summary, start=START, end=START + timedelta(hours=1),
                        attendees=(ANN,))
    pf.submit(invite, BOSS, [ANN], mail_options=("BODY=8BITMIME",))
    # the invitation to Ann, and the organizer's notice to the boss
    delivered = pf.wait_delivered(2)
    [event] = _events_with_uid_summary(fake, summary)
    to_ann = next(m for m in delivered if m.recipient == ANN)
    assert f"CONFERENCE;VALUE=URI;FEATURE=AUDIO,VIDEO;LABEL=Webinar:{event['link']}" in _calendar_of(to_ann)
    notice = next(m for m in delivered if m.recipient == BOSS)
    assert event["link"] in notice.message.get_content()

    pf.reset()
    cancel = invitation(uid=uid, summary=summary, start=START, end=START + timedelta(hours=1),
                        attendees=(ANN,), method="CANCEL", status="CANCELLED", sequence=1)
    pf.submit(cancel, BOSS, [ANN], mail_options=("BODY=8BITMIME",))
    pf.wait_delivered(1)
    wait_until(lambda: not _events_with_uid_summary(fake, summary), 30, "the conference deleted")
    pf.wait_queue(lambda entries: not entries, "an empty queue")


def test_before_queue_invitation_gets_the_link(before_queue: PostfixInstance, fake: FakeWebinarProcess):
    pf = fresh(before_queue)
    summary = f"Before-queue planning {time.monotonic_ns()}"
    invite = invitation(uid=f"bq-{time.monotonic_ns()}@example.org", summary=summary, start=START,
                        end=START + timedelta(hours=1), attendees=(ANN,))
    pf.submit(invite, BOSS, [ANN], mail_options=("BODY=8BITMIME",))
    delivered = pf.wait_delivered(2)
    [event] = _events_with_uid_summary(fake, summary)
    to_ann = next(m for m in delivered if m.recipient == ANN)
    assert event["link"] in _calendar_of(to_ann)
