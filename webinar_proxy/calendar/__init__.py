"""iCalendar and iTIP for invitation mails (icalendar + recurring-ical-events, no I/O).

Owns: repairing and reading calendar objects (``reader``: METHOD, UID, ORGANIZER
and SENT-BY, attendees, SEQUENCE, STATUS, RECURRENCE-IDs, times, triggers, links
already present), zone names (``timezones``), the nearest occurrence
(``occurrences``), the bounds on recurrence rules (``rules``, ``limits``) and the
text-level VEVENT rewrite (``rewrite``).

It knows nothing about MIME; ``webinar_proxy.invitation`` joins it with
``webinar_proxy.mail``.
"""

from webinar_proxy.calendar.limits import CalendarLimits
from webinar_proxy.calendar.occurrences import Occurrence, iter_occurrences, next_occurrence
from webinar_proxy.calendar.reader import (
    Attendee,
    CalendarError,
    EventFacts,
    ParsedCalendar,
    ReaderOptions,
    event_facts,
    find_links,
    minimal_calendar,
    normalise_address,
    parse_calendar,
)
from webinar_proxy.calendar.rewrite import EventEdit, conference_line, rewrite_events
from webinar_proxy.calendar.timezones import iana_name

__all__ = [
    "Attendee",
    "CalendarError",
    "CalendarLimits",
    "EventEdit",
    "EventFacts",
    "Occurrence",
    "ParsedCalendar",
    "ReaderOptions",
    "conference_line",
    "event_facts",
    "find_links",
    "iana_name",
    "iter_occurrences",
    "minimal_calendar",
    "next_occurrence",
    "normalise_address",
    "parse_calendar",
    "rewrite_events",
]
