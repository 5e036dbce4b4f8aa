"""Bounds on what the calendar reader accepts; beyond them a mail is "not processable"."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CalendarLimits:
    #: Content lines in one calendar part (a 4 MB part of short lines is about 80,000).
    max_lines: int = 100_000
    #: VCALENDAR objects in one part.
    max_objects: int = 16
    #: VEVENTs in one part (a long series with many moved occurrences can have hundreds).
    max_events: int = 1_000
    #: ATTENDEE properties over all VEVENTs of a part: room for the largest meeting the
    #: platform takes (10,000 attendees) with the organizer, rooms and resources, and a
    #: few overridden occurrences listing them again.
    max_attendees: int = 20_000
    #: Occurrences the next-occurrence search may pass over (cancelled, already ended).
    max_skipped_occurrences: int = 5_000
