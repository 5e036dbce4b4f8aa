"""The reader admits the largest meeting the platform takes: 10,000 attendees plus the
organizer, rooms and resources; far beyond it a calendar is not processable."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.support.invites import invitation
from webinar_proxy.invitation import EngineOptions, classify

NOW = datetime(2030, 1, 1, tzinfo=UTC)
START, END = datetime(2030, 2, 1, 9, tzinfo=UTC), datetime(2030, 2, 1, 10, tzinfo=UTC)


def _people(count: int) -> tuple[str, ...]:
    return tuple(f"person{n:05d}@example.net" for n in range(count))


def test_ten_thousand_attendees_with_rooms_are_read() -> None:
    big = invitation(start=START, end=END, attendees=_people(10_000),
                     rooms=("room-a@example.org", "beamer@example.org"), to="All <all@example.net>")
    result = classify(big, "boss@example.org", EngineOptions(), NOW)
    assert result.processable, result.reason
    assert len(result.attendees) == 10_002


def test_more_than_twenty_thousand_attendee_lines_are_not_processable() -> None:
    huge = invitation(start=START, end=END, attendees=_people(20_001), to="All <all@example.net>")
    result = classify(huge, "boss@example.org", EngineOptions(), NOW)
    assert not result.processable
    assert "20000 attendees" in result.reason
