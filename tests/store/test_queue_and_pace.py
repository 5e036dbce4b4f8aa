"""The store's registration queue and API pace, on both backends."""

from __future__ import annotations

import asyncio

from webinar_proxy.store import ConferenceStore, PendingRegistration, RegistrationAction

ADD, REMOVE = RegistrationAction.ADD, RegistrationAction.REMOVE
ORG, UID = "boss@example.org", "big-1"


def _adds(count: int, start: int = 0) -> list[PendingRegistration]:
    return [PendingRegistration(f"p{i}@example.org", ADD, "GUEST", f"P {i}", i)
            for i in range(start, start + count)]


async def test_queued_rows_are_claimed_in_batches_of_one_conference_and_action(
    store: ConferenceStore,
) -> None:
    await store.change_registrations(ORG, UID, _adds(120))
    await store.change_registrations("x@example.org", "other", [
        PendingRegistration("gone@example.org", REMOVE, "GUEST")])
    assert await store.registration_counts(ORG, UID) == {"add": 120, "remove": 0}
    first = await store.claim_registrations("relay-a", 60, 50)
    second = await store.claim_registrations("relay-b", 60, 50)
    assert first is not None and second is not None
    assert (first.organizer, first.uid) == (ORG, UID)
    assert [i.address for i in first.items] == [f"p{i}@example.org" for i in range(50)]
    assert [i.position for i in second.items] == list(range(50, 100))
    assert {i.action for i in first.items + second.items} == {ADD}
    third = await store.claim_registrations("relay-a", 60, 50)
    assert third is not None and len(third.items) == 20
    fourth = await store.claim_registrations("relay-a", 60, 50)
    assert fourth is not None and fourth.uid == "other" and fourth.items[0].action is REMOVE
    assert await store.claim_registrations("relay-a", 60, 50) is None
    assert await store.finish_registrations(ORG, UID, [i.address for i in first.items]) == 50
    assert await store.registration_counts(ORG, UID) == {"add": 70, "remove": 0}


async def test_an_expired_lease_is_claimed_again_and_a_changed_row_is_free(
    store: ConferenceStore,
) -> None:
    await store.change_registrations(ORG, UID, _adds(3))
    claim = await store.claim_registrations("crashed", 0.2, 50)
    assert claim is not None and len(claim.items) == 3
    assert await store.claim_registrations("other", 60, 50) is None
    await asyncio.sleep(0.3)  # the lease's expiry is the behaviour under test
    again = await store.claim_registrations("other", 60, 50)
    assert again is not None and len(again.items) == 3
    # A change (the attendee was removed again before being added) frees the row.
    await store.change_registrations(ORG, UID, [PendingRegistration("p1@example.org", REMOVE)],
                                     drop=["p0@example.org"])
    pending = await store.pending_registrations(ORG, UID)
    assert [(p.address, p.action) for p in pending] == [
        ("p1@example.org", REMOVE), ("p2@example.org", ADD)]
    freed = await store.claim_registrations("third", 60, 50)
    assert freed is not None and [i.address for i in freed.items] == ["p1@example.org"]
    assert await store.finish_registrations(ORG, UID) == 2
    assert await store.pending_registrations(ORG, UID) == []


async def test_ten_thousand_rows_are_queued_at_once(store: ConferenceStore) -> None:
    await store.change_registrations(ORG, UID, _adds(10_000))
    assert await store.registration_counts(ORG, UID) == {"add": 10_000, "remove": 0}


async def test_forget_drops_the_queue_of_the_conference(store: ConferenceStore) -> None:
    await store.change_registrations(ORG, UID, _adds(2))
    await store.forget(ORG, UID)
    assert await store.registration_counts(ORG, UID) == {"add": 0, "remove": 0}


async def test_slots_are_an_interval_apart_and_a_push_moves_the_next_one(
    store: ConferenceStore,
) -> None:
    waits = [await store.reserve_api_slot("k", 10.0, 100.0) for _ in range(3)]
    assert waits[0] is not None and waits[0] < 1.0
    assert waits[1] is not None and 9.0 < waits[1] <= 10.0
    assert waits[2] is not None and 19.0 < waits[2] <= 20.0
    assert await store.reserve_api_slot("k", 10.0, 5.0) is None  # too far: nothing reserved
    wait = await store.reserve_api_slot("k", 10.0, 100.0)
    assert wait is not None and 29.0 < wait <= 30.0
    assert await store.reserve_api_slot("other-key", 10.0, 0.0) is not None
    await store.push_api_slot("other-key", 50.0)
    pushed = await store.reserve_api_slot("other-key", 10.0, 100.0)
    assert pushed is not None and 49.0 < pushed <= 50.0


async def test_queued_registrations_counts_every_conference(store: ConferenceStore) -> None:
    await store.change_registrations(ORG, UID, _adds(3))
    await store.change_registrations("x@example.org", "other", _adds(2))
    assert await store.queued_registrations() == 5
