"""Calendar servers as senders, end to end: the relay, the fake platform over HTTP, the real
store and a real next hop, fed the mails of ``tests/fixtures/servers/`` over SMTP with the
envelope each server uses.  After every step the platform must hold what the meeting is:
everyone invited registered, the conference alive exactly as long as the meeting."""

from __future__ import annotations

import email
import email.policy
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.support.invites import invitation
from tests.support.product import TOKEN, Product, calendar_text, running_product
from tests.support.serve import running_serve
from tests.support.smtp import running_next_hop, send_one
from tests.support.waiting import eventually
from webinar_proxy.invitation import EngineOptions, classify, rewrite
from webinar_proxy.testing.fake_webinar import running_fake_webinar

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "servers"
T0 = datetime(2031, 2, 3, 8, 0, tzinfo=UTC)
SABRE_SENDER = "www-data@cal.corp.example"  # Baïkal: PHP mail() as the web server's user
NEXTCLOUD_SENDER = "invitations-noreply@cloud.corp.example"


@dataclass(frozen=True)
class Mail:
    name: str
    mail_from: str
    rcpt: str
    content: bytes


def lifecycle(server: str) -> dict[str, list[Mail]]:
    """The server's mails grouped by step, in the order it sends them."""
    steps: dict[str, list[Mail]] = {}
    for eml in sorted((FIXTURES / server).glob("*.eml")):
        envelope = dict(
            line.split(":", 1) for line in eml.with_suffix(".envelope").read_text().splitlines()
        )
        step = eml.stem.split("-", 1)[1].rsplit("-to-", 1)[0]
        steps.setdefault(step, []).append(Mail(
            eml.stem, envelope["MAIL FROM"].strip("<>"), envelope["RCPT TO"].strip("<>"),
            eml.read_bytes(),
        ))
    return steps


async def deliver(product: Product, mails: list[Mail]) -> None:
    for mail in mails:
        code, text = await product.send(mail.content, mail.mail_from, [mail.rcpt])
        assert code == 250, (mail.name, code, text)


def registered(product: Product) -> set[str]:
    return {r["email"] for r in product.state()["registrations"]}


def sessions(product: Product) -> list[str]:
    return [s["startsAt"][:16] for s in product.state()["sessions"]]


def links_delivered(product: Product) -> set[bytes]:
    return {calendar_text(m).split(b"LABEL=Webinar:")[1].split(b"\r\n")[0]
            for m in product.delivered() if b"LABEL=Webinar:" in calendar_text(m)}


SABRE_POLICY = {"organizer_domains": ["corp.example"],
                "trusted_senders": [SABRE_SENDER, NEXTCLOUD_SENDER]}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The whole lifecycle on each store: the CANCEL bookkeeping is kept there."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return request.getfixturevalue("pg_url")


@pytest.mark.parametrize("server", ["sabre", "nextcloud"])
async def test_sabre_meeting_lifecycle(tmp_path, store_url, server):
    steps = lifecycle(server)
    organizer = "paul@corp.example"
    async with running_product(tmp_path, T0, policy=SABRE_POLICY, store_url=store_url) as product:
        await deliver(product, steps["create"])  # alice, bob and the room; not dave, not ivan
        [event] = product.state()["events"]
        # everyone invited is registered, also those the server never mails
        assert registered(product) == {organizer, "alice@example.net", "bob@example.net",
                                       "dave@example.net", "ivan@corp.example"}
        assert sessions(product) == ["2031-03-10T07:00"]  # 10:00 in Moscow
        assert links_delivered(product) == {event["link"].encode()}
        if server == "sabre":  # a single calendar part, the link goes into the event only
            header, _, body = product.delivered()[0].partition(b"\r\n\r\n")
            assert b"Content-Type: text/calendar" in header and body.startswith(b"BEGIN:VCALENDAR")
        else:  # Nextcloud's readable body gets the join block as well
            assert event["link"].encode() in product.delivered()[0].split(b"text/plain", 1)[1]

        await deliver(product, steps["move"])
        assert sessions(product) == ["2031-03-11T11:00"]

        await deliver(product, steps["remove-bob"])
        assert registered(product) == {organizer, "alice@example.net", "dave@example.net",
                                       "ivan@corp.example"}

        await deliver(product, steps["add-carol"])
        assert "carol@example.net" in registered(product)

        before = product.state()
        await deliver(product, steps["remove-room"])
        assert product.state()["events"] == before["events"]
        assert product.state()["registrations"] == before["registrations"]

        first, last = steps["delete"]  # one CANCEL per mailed attendee, none says CANCELLED
        await deliver(product, [first])
        assert len(product.state()["events"]) == 1
        await deliver(product, [last])
        assert product.state()["events"] == [] and product.state()["sessions"] == []


@pytest.mark.parametrize(("server", "policy"),
                         [("sabre", SABRE_POLICY), ("nextcloud", SABRE_POLICY), ("sogo", {})])
async def test_weekly_series_with_exdate(tmp_path, server, policy):
    steps = lifecycle(server)
    async with running_product(tmp_path, T0, policy=policy) as product:
        await deliver(product, steps["series-create"])
        [event] = product.state()["events"]
        assert event["isSeries"] is True and sessions(product) == ["2031-03-03T06:00"]
        await deliver(product, steps["series-exdate"])  # the first occurrence taken out
        assert sessions(product) == ["2031-03-10T06:00"]
        alice, bob = steps["series-delete"]  # one CANCEL each, no STATUS:CANCELLED
        await deliver(product, [alice])
        assert len(product.state()["events"]) == 1
        await deliver(product, [bob])
        assert product.state()["events"] == []


async def test_sabre_without_trusted_sender_changes_nothing_and_says_why_once(tmp_path, caplog):
    steps = lifecycle("sabre")
    caplog.set_level(logging.WARNING, logger="webinar_proxy.lifecycle")
    async with running_product(tmp_path, T0, policy={"organizer_domains": ["corp.example"]}) as product:
        await deliver(product, steps["create"] + steps["move"])
        assert product.state()["events"] == []
        assert product.delivered() == [m.content for m in steps["create"] + steps["move"]]
    hints = [r.getMessage() for r in caplog.records if "trusted_senders" in r.getMessage()]
    assert len(hints) == 1  # once per UID, not per mail
    assert SABRE_SENDER in hints[0] and "Reply-To: paul@corp.example" in hints[0]
    assert "From: noreply@cal.corp.example" in hints[0]


async def test_a_trusted_sender_counts_with_the_strict_organizer_check(tmp_path):
    steps = lifecycle("sabre")
    policy = {**SABRE_POLICY, "organizer_check": "envelope"}
    async with running_product(tmp_path, T0, policy=policy) as product:
        await deliver(product, steps["create"][:1])
        assert len(product.state()["events"]) == 1


async def test_an_attendee_passing_an_invitation_on_is_no_reason_for_a_hint(tmp_path, caplog):
    invite = invitation(start=datetime(2031, 3, 1, 9, tzinfo=UTC), end=datetime(2031, 3, 1, 10, tzinfo=UTC),
                        from_address="ann@example.net", attendees=("ann@example.net",))
    caplog.set_level(logging.WARNING, logger="webinar_proxy.lifecycle")
    async with running_product(tmp_path, T0) as product:
        assert (await product.send(invite, "ann@example.net", ["zed@example.com"]))[0] == 250
        assert product.state()["events"] == []
    assert not [r for r in caplog.records if "trusted_senders" in r.getMessage()]


async def test_a_trusted_sender_does_not_speak_for_an_organizer_not_served(tmp_path):
    steps = lifecycle("sabre")
    policy = {"organizer_domains": ["other.example"], "trusted_senders": [SABRE_SENDER]}
    async with running_product(tmp_path, T0, policy=policy) as product:
        await deliver(product, steps["create"])
        assert product.state()["events"] == []


async def test_sogo_meeting_lifecycle(tmp_path, store_url):
    steps = lifecycle("sogo")
    organizer = "marta@corp.example"
    async with running_product(tmp_path, T0, policy={"organizer_domains": ["corp.example"]},
                               store_url=store_url) as product:
        await deliver(product, steps["create"])  # alice, bob, room 1; room 2 gets no calendar
        [event] = product.state()["events"]
        assert registered(product) == {organizer, "alice@example.net", "bob@example.net"}
        assert sessions(product) == ["2031-03-10T07:00"]
        sogo_out = product.delivered()[0]
        assert event["link"].encode() in calendar_text(sogo_out)
        assert b"Content-Length:" not in sogo_out.split(b"text/html", 1)[1]  # both parts rewritten

        await deliver(product, steps["move"])
        assert sessions(product) == ["2031-03-11T11:00"]

        # the CANCEL goes to bob and lists the people who remain
        await deliver(product, steps["remove-bob"])
        assert registered(product) == {organizer, "alice@example.net"}

        await deliver(product, steps["add-carol"])
        assert registered(product) == {organizer, "alice@example.net", "carol@example.net"}

        # the CANCEL goes to the room and lists the attendees who remain: nothing changes
        before = product.state()
        await deliver(product, steps["remove-room1"])
        assert product.state()["events"] == before["events"]
        assert registered(product) == {organizer, "alice@example.net", "carol@example.net"}

        *others, last = steps["delete"]  # to alice, room 2 (no calendar), carol
        await deliver(product, others)
        assert len(product.state()["events"]) == 1
        await deliver(product, [last])
        assert product.state()["events"] == [] and product.state()["sessions"] == []


@pytest.mark.parametrize("server", ["sabre", "sogo"])
def test_fixtures_are_upcoming_and_one_recipient_each(server):
    for mails in lifecycle(server).values():
        for mail in mails:
            assert b"2031" in mail.content and "@" in mail.rcpt


def test_how_the_engine_reads_a_sabre_invitation():
    [first, *_] = lifecycle("sabre")["create"]
    c = classify(first.content, first.mail_from, EngineOptions(), T0)
    assert c.processable and c.method == "REQUEST" and c.organizer == "paul@corp.example"
    assert not c.from_organizer  # until its sender is trusted
    assert c.header_from == ("noreply@cal.corp.example",) and c.reply_to == ("paul@corp.example",)
    agents = {a.address: a.cutype for a in c.attendees}
    assert agents["room2@corp.example"] == "ROOM" and "dave@example.net" in agents


#: What the platform holds after each step of a server's lifecycle: the registered
#: addresses, or None once the conference is gone.
SABRE_PEOPLE = {"paul@corp.example", "alice@example.net", "bob@example.net",
                "dave@example.net", "ivan@corp.example"}
SABRE_STEPS = [
    ("create", SABRE_PEOPLE),
    ("move", SABRE_PEOPLE),
    ("remove-bob", SABRE_PEOPLE - {"bob@example.net"}),
    ("add-carol", SABRE_PEOPLE - {"bob@example.net"} | {"carol@example.net"}),
    ("remove-room", SABRE_PEOPLE - {"bob@example.net"} | {"carol@example.net"}),
    ("delete", None),
]
AFTER_EACH_STEP = {
    "sabre": SABRE_STEPS,
    "nextcloud": SABRE_STEPS,
    "sogo": [
        ("create", {"marta@corp.example", "alice@example.net", "bob@example.net"}),
        ("move", {"marta@corp.example", "alice@example.net", "bob@example.net"}),
        ("remove-bob", {"marta@corp.example", "alice@example.net"}),
        ("add-carol", {"marta@corp.example", "alice@example.net", "carol@example.net"}),
        ("remove-room1", {"marta@corp.example", "alice@example.net", "carol@example.net"}),
        ("delete", None),
    ],
}


@pytest.mark.slow
async def test_the_real_serve_process_through_both_lifecycles(tmp_path):
    """``webinar-proxy serve`` as a child process, configured by its environment; the
    platform read over HTTP (``/_fake/state``) after every step."""
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = {
            "WEBINAR_PROXY_SMTP__LISTEN": "127.0.0.1:0",
            "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{hop.port}",
            "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
            "WEBINAR_PROXY_WEBINAR__API_URL": fake.api_url,
            "WEBINAR_PROXY_WEBINAR__RATE_LIMIT": "1000",
            "WEBINAR_PROXY_STORE__URL": f"sqlite:///{tmp_path}/state.db",
            "WEBINAR_PROXY_POLICY__ORGANIZER_DOMAINS": "corp.example",
            "WEBINAR_PROXY_POLICY__TRUSTED_SENDERS": f"{SABRE_SENDER},{NEXTCLOUD_SENDER}",
        }
        async with running_serve(env) as serve, httpx.AsyncClient(trust_env=False) as http:
            for server, expectations in AFTER_EACH_STEP.items():
                steps = lifecycle(server)
                for step, people in expectations:
                    for mail in steps[step]:
                        code = await send_one(serve.smtp_port, mail.content, mail.mail_from, (mail.rcpt,))
                        assert code == 250, (mail.name, serve.output[-2000:])
                    async def fake_state() -> dict:
                        return (await http.get(f"{fake.root_url}/_fake/state", timeout=10)).json()

                    # Attendees are registered in the background, moments after the reply.
                    state = await eventually(fake_state, lambda state, people=people: (
                        people is None or {r["email"] for r in state["registrations"]} == people))
                    if people is None:
                        assert state["events"] == [], (server, step)
                    else:
                        assert len(state["events"]) == 1, (server, step)
                        assert {r["email"] for r in state["registrations"]} == people, (server, step)
    assert "trusted_senders" not in serve.output  # the sabre sender was trusted: no hint


def test_a_sogo_mail_rewritten_keeps_no_stale_content_length():
    [first, *_] = lifecycle("sogo")["create"]
    assert first.content.count(b"Content-Length:") == 2
    out = rewrite(first.content, "5E1-6B12FE80-3-24CE17C0", "https://events.webinar.ru/1/2",
                         EngineOptions())
    assert b"Content-Length:" not in out  # both parts changed, both headers gone
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    html, calendar = (part for part in parsed.walk() if not part.is_multipart())
    assert "https://events.webinar.ru/1/2" in html.get_content()
    assert "CONFERENCE;VALUE=URI" in calendar.get_content()
    assert calendar["Content-Class"] == "urn:content-classes:calendarmessage"
