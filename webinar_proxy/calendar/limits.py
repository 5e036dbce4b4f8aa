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
    #: Instances of one VEVENT recurrence rule that an occurrence search may pass,
    #: counted from the series' DTSTART (dateutil walks them all): 50,000 is a daily
    #: series begun 130 years ago, or every workday for 190 years.
    max_rule_instances: int = 50_000
    #: Transitions one VTIMEZONE observance rule may have (icalendar lists them all,
    #: from the rule's DTSTART to its UNTIL or, without one, 2038).
    max_zone_transitions: int = 10_000
