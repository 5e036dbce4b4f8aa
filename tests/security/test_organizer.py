"""Only the organizer acts, end to end: real relay, fake Webinar API over HTTP,
SQLite store, recording next hop.

"From the organizer" means: the envelope sender OR the From: address equals the
VEVENT's ORGANIZER or its SENT-BY, and the organizer's domain is served
(``policy.organizer_domains``).  With ``policy.organizer_check = "envelope"`` only the
envelope sender counts.  Conferences are keyed by (ORGANIZER, UID).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.invites import invitation
from tests.support.product import Product, calendar_text, running_product
from webinar_proxy.store import ConferenceState

T0 = datetime(2022, 3, 1, 9, 0, tzinfo=UTC)
START = datetime(2022, 3, 16, 11, 0, tzinfo=UTC)
END = START + timedelta(minutes=30)
BOSS = "boss@example.org"
DELEGATE = "secretary@example.org"
MALLORY = "mallory@evil.example"
UID = "scenario-1@example.org"


def platform(product: Product) -> dict[str, Any]:
    """What the platform holds, minus bookkeeping that a read may change."""
    state = product.state()
    return {
        "events": [(e["eventId"], e["name"], e["link"]) for e in state["events"]],
        "sessions": [(s["eventSessionId"], s["startsAt"], s["duration"]) for s in state["sessions"]],
        "registrations": sorted((r["email"], r["role"]) for r in state["registrations"]),
    }


async def _created(product: Product, **kwargs: Any) -> dict[str, Any]:
    invite = invitation(start=START, end=END, **kwargs)
    code, text = await product.send(invite, kwargs.get("from_address") or BOSS, ["ann@example.net"])
    assert code == 250, text
    before = platform(product)
    assert len(before["events"]) == 1
    return before


def _attacks() -> dict[str, bytes]:
    later = START + timedelta(days=1)
    return {
        "CANCEL whole meeting": invitation(start=START, end=END, method="CANCEL", status="CANCELLED",
                                           sequence=1, from_address=MALLORY),
        "CANCEL to one attendee": invitation(start=START, end=END, method="CANCEL", sequence=1,
                                             attendees=("ann@example.net",), from_address=MALLORY),
        "REQUEST moving it": invitation(start=later, end=later + timedelta(hours=2), sequence=1,
                                        summary="Moved", attendees=("mallory@evil.example",),
                                        from_address=MALLORY),
        "REQUEST without trigger (would remove)": invitation(start=START, end=END, sequence=1,
                                                             location="", from_address=MALLORY),
    }


@pytest.mark.parametrize("attack", sorted(_attacks()))
async def test_mail_neither_sent_nor_signed_by_the_organizer_changes_nothing(tmp_path, attack):
    mail = _attacks()[attack]
    async with running_product(tmp_path, T0) as product:
        before = await _created(product)
        code, text = await product.send(mail, MALLORY, ["victim@example.net"])
        assert code == 250, text
        assert platform(product) == before
        record = await product.services.store.get(BOSS, UID)
    assert record is not None and record.state == ConferenceState.ACTIVE
    forwarded = product.delivered()[-1]
    if b"METHOD:REQUEST" in mail:  # a forwarded REQUEST gets the stored link, nothing else
        assert before["events"][0][2].encode() in calendar_text(forwarded)
    else:
        assert forwarded == mail


# (envelope sender, From:) → whether the mail counts as the organizer's, by policy
COMBINATIONS = [
    (BOSS, BOSS, True, True),
    (BOSS, MALLORY, True, True),  # envelope is the organizer's; From: says otherwise
    (MALLORY, BOSS, True, False),  # From: claims the organizer, envelope does not
    (MALLORY, MALLORY, False, False),
    (DELEGATE, DELEGATE, True, False),  # the delegate named in SENT-BY: self-asserted
]


@pytest.mark.parametrize("check", ["envelope_or_from", "envelope"])
@pytest.mark.parametrize(
    ("envelope", "header", "either", "envelope_only"), COMBINATIONS,
    ids=[f"envelope={e.split('@')[0]},from={h.split('@')[0]}" for e, h, *_ in COMBINATIONS],
)
async def test_who_may_cancel(tmp_path, check, envelope, header, either, envelope_only):
    sent_by = (f'ORGANIZER;CN=Organizer;SENT-BY="mailto:{DELEGATE}":mailto:{BOSS}',)
    cancel = invitation(start=START, end=END, method="CANCEL", status="CANCELLED", sequence=1,
                        from_address=header).replace(
        b"ORGANIZER;CN=Organizer:mailto:" + BOSS.encode(), sent_by[0].encode())
    allowed = either if check == "envelope_or_from" else envelope_only
    async with running_product(tmp_path, T0, policy={"organizer_check": check}) as product:
        await _created(product)
        code, text = await product.send(cancel, envelope, ["ann@example.net"])
        assert code == 250, text
        record = await product.services.store.get(BOSS, UID)
        events = product.state()["events"]
    assert record is not None
    if allowed:
        assert events == [] and record.state == ConferenceState.DELETED
    else:
        assert len(events) == 1 and record.state == ConferenceState.ACTIVE


async def test_self_declared_sent_by_is_believed_only_as_much_as_from(tmp_path):
    """SENT-BY is written by the sender, like From:.  An insider who names himself SENT-BY
    of the boss's meeting is believed under "envelope_or_from" (as a forged From: is); under
    "envelope" only an envelope sender equal to ORGANIZER acts."""
    forged = f'ORGANIZER;CN=Organizer;SENT-BY="mailto:{MALLORY}":mailto:{BOSS}'.encode()
    cancel = invitation(start=START, end=END, method="CANCEL", status="CANCELLED", sequence=1,
                        from_address=MALLORY).replace(b"ORGANIZER;CN=Organizer:mailto:" + BOSS.encode(),
                                                       forged)
    for check, survives in (("envelope", True), ("envelope_or_from", False)):
        async with running_product(tmp_path / check, T0, policy={"organizer_check": check}) as product:
            before = await _created(product)
            assert (await product.send(cancel, MALLORY, ["ann@example.net"]))[0] == 250
            assert (platform(product) == before) is survives


async def test_request_naming_the_attacker_as_organizer_is_a_separate_conference(tmp_path):
    hijack = invitation(start=START + timedelta(days=2), end=END + timedelta(days=2), sequence=5,
                        organizer=MALLORY, summary="Hijacked", attendees=("ann@example.net",))
    async with running_product(tmp_path, T0) as product:
        before = await _created(product)
        assert (await product.send(hijack, MALLORY, ["ann@example.net"]))[0] == 250
        after = platform(product)
        real = await product.services.store.get(BOSS, UID)
        theirs = await product.services.store.get(MALLORY, UID)
        # the attacker's CANCEL deletes only the attacker's conference
        cancel = invitation(start=START, end=END, method="CANCEL", status="CANCELLED", sequence=6,
                            organizer=MALLORY)
        assert (await product.send(cancel, MALLORY, ["ann@example.net"]))[0] == 250
        final = platform(product)
        real_after = await product.services.store.get(BOSS, UID)
    assert before["events"][0] in after["events"] and len(after["events"]) == 2
    assert before["sessions"][0] in after["sessions"]
    assert real is not None and theirs is not None and real.event_id != theirs.event_id
    assert real.link != theirs.link and real.sequence == 0 and real.summary == "Planning"
    assert final["events"] == before["events"] and final["sessions"] == before["sessions"]
    assert real_after is not None and real_after.state == ConferenceState.ACTIVE


async def test_the_same_uid_under_another_organizer_cannot_touch_the_first(tmp_path):
    other = "colleague@example.org"
    async with running_product(tmp_path, T0) as product:
        before = await _created(product)
        # the colleague removes the conference from "their" meeting with the same UID:
        # nothing of theirs is stored, so nothing happens to the boss's
        removal = invitation(start=START, end=END, sequence=3, location="", organizer=other)
        assert (await product.send(removal, other, ["ann@example.net"]))[0] == 250
        cancel = invitation(start=START, end=END, method="CANCEL", status="CANCELLED", sequence=4,
                            organizer=other)
        assert (await product.send(cancel, other, ["ann@example.net"]))[0] == 250
        assert platform(product) == before
        assert product.delivered()[-2:] == [removal, cancel]


async def test_organizer_in_a_domain_we_do_not_serve_passes_untouched(tmp_path):
    policy = {"organizer_domains": ["example.org"]}
    outsider = "boss@elsewhere.example"
    invite = invitation(start=START, end=END, organizer=outsider, uid="outside@elsewhere.example")
    async with running_product(tmp_path, T0, policy=policy) as product:
        before = await _created(product)
        assert (await product.send(invite, outsider, ["ann@example.net"]))[0] == 250
        # an outsider claiming to be our organizer: the domain is served, the sender is not him
        forged = invitation(start=START, end=END, method="CANCEL", status="CANCELLED", sequence=1,
                            from_address=outsider)
        assert (await product.send(forged, outsider, ["ann@example.net"]))[0] == 250
        assert platform(product) == before
        assert await product.services.store.get(outsider, "outside@elsewhere.example") is None
    assert product.delivered()[-2:] == [invite, forged]
