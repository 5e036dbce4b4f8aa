"""Classification: what one mail's calendar says (``classify``, ``Classification``)."""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from webinar_proxy.calendar import (
    Attendee,
    CalendarError,
    EventFacts,
    Occurrence,
    ParsedCalendar,
    event_facts,
    minimal_calendar,
    normalise_address,
    parse_calendar,
)
from webinar_proxy.calendar import next_occurrence as _calendar_next_occurrence
from webinar_proxy.invitation.errors import EngineError
from webinar_proxy.invitation.options import EngineOptions
from webinar_proxy.mail import (
    MimeEntity,
    MimeError,
    PayloadError,
    calendar_entities,
    decode_text,
    looks_like_bare_calendar,
    may_carry_calendar,
    parse_structure,
    read_part_text,
)


@dataclass(frozen=True)
class Classification:
    """What the engine read from one mail.  Times are aware UTC."""

    processable: bool
    #: Why not processable ("ok" when it is).
    reason: str
    #: A calendar part was found (inline, attached, or inside an attached message).
    is_imip: bool = False
    #: METHOD of the calendar object; the MIME ``method`` parameter only if it has none.
    method: str | None = None
    mime_method: str | None = None
    uid: str | None = None
    organizer: str | None = None
    organizer_name: str | None = None
    sent_by: str | None = None
    from_organizer: bool = False
    #: Addresses in the mail's ``From:`` and ``Reply-To:`` headers (lower case).
    header_from: tuple[str, ...] = ()
    reply_to: tuple[str, ...] = ()
    sequence: int | None = None
    status: str | None = None
    recurrence_ids: tuple[datetime, ...] = ()
    has_master: bool = False
    summary: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    duration: timedelta | None = None
    all_day: bool = False
    #: IANA name of the event's zone when one can be determined.
    timezone: str | None = None
    attendees: tuple[Attendee, ...] = ()
    #: Found triggers: "location" (keyword), "property" (X- property), "header".
    #: Read from the master VEVENT, or from the first instance when there is none.
    triggers: tuple[str, ...] = ()
    conference_requested: bool = False
    has_our_link: bool = False
    our_link: str | None = None
    recurring: bool = False
    next_occurrence: Occurrence | None = None
    #: A minimal VCALENDAR of this UID's VEVENTs (+ VTIMEZONEs) for ``next_occurrence``.
    calendar: bytes = b""
    #: Calendar parts found (copies of one object count separately).
    calendar_parts: int = 0
    #: The calendar is only inside an attached message (a bounce or a forward).
    in_attached_message: bool = False
    warnings: tuple[str, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            if moment is None:
                return None
            return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

        return {
            "processable": self.processable,
            "reason": self.reason,
            "is_imip": self.is_imip,
            "method": self.method,
            "mime_method": self.mime_method,
            "uid": self.uid,
            "organizer": self.organizer,
            "sent_by": self.sent_by,
            "from_organizer": self.from_organizer,
            "header_from": list(self.header_from),
            "reply_to": list(self.reply_to),
            "sequence": self.sequence,
            "status": self.status,
            "summary": self.summary,
            "start": iso(self.start),
            "end": iso(self.end),
            "all_day": self.all_day,
            "timezone": self.timezone,
            "has_master": self.has_master,
            "recurrence_ids": [iso(moment) for moment in self.recurrence_ids],
            "recurring": self.recurring,
            "next_occurrence": iso(self.next_occurrence.start) if self.next_occurrence else None,
            "next_occurrence_end": iso(self.next_occurrence.end) if self.next_occurrence else None,
            "attendees": [
                {
                    "address": attendee.address,
                    "name": attendee.name,
                    "role": attendee.role,
                    "cutype": attendee.cutype,
                    "partstat": attendee.partstat,
                    "is_person": attendee.is_person,
                }
                for attendee in self.attendees
            ],
            "triggers": list(self.triggers),
            "conference_requested": self.conference_requested,
            "has_our_link": self.has_our_link,
            "our_link": self.our_link,
            "calendar_parts": self.calendar_parts,
            "in_attached_message": self.in_attached_message,
            "warnings": list(self.warnings),
        }


@dataclass
class _CalendarSource:
    text: str
    entity: MimeEntity | None
    mime_method: str | None


@dataclass
class _FoundCalendars:
    """The calendar texts of one mail, best first."""

    sources: list[_CalendarSource]
    #: Calendar parts in the mail, readable or not.
    parts: int
    #: Every calendar part sits inside an attached message (bounce, forward).
    attached_only: bool
    #: The MIME tree (None for a bare iCalendar file).
    root: MimeEntity | None
    problems: list[str]


def _find_calendars(raw: bytes, options: EngineOptions) -> _FoundCalendars:
    limits = options.limits.mime
    if looks_like_bare_calendar(raw):
        if len(raw) > limits.max_calendar_bytes:
            raise EngineError(f"calendar larger than {limits.max_calendar_bytes} bytes")
        text, _ = decode_text(raw, None)
        return _FoundCalendars([_CalendarSource(text, None, None)], 1, False, None, [])
    root = parse_structure(raw, limits)
    entities = calendar_entities(root)
    if len(entities) > limits.max_calendar_parts:
        raise EngineError(f"more than {limits.max_calendar_parts} calendar parts")
    own = [entity for entity in entities if not entity.in_attached_message]
    chosen = own or entities
    # The inline text/calendar part is the iMIP object; attachments are copies.
    chosen.sort(key=lambda e: (e.content_type != "text/calendar" or e.is_attachment))
    problems: list[str] = []
    sources = []
    for entity in chosen:
        try:
            part = read_part_text(raw, entity)
        except PayloadError as exc:
            problems.append(str(exc))
            continue
        if len(part.text) > limits.max_calendar_bytes:
            raise EngineError(f"calendar part larger than {limits.max_calendar_bytes} bytes")
        sources.append(_CalendarSource(part.text, entity, entity.mime_method))
    return _FoundCalendars(sources, len(entities), bool(entities) and not own, root, problems)


def classify(
    raw: bytes, mail_from: str | None, options: EngineOptions, now: datetime
) -> Classification:
    """Read ``raw`` (a mail, or a bare iCalendar file); never raises."""
    try:
        return _classify(raw, mail_from, options, now)
    except Exception as exc:  # the promise is "never raises"; say what happened instead
        return Classification(
            processable=False, reason=f"internal error: {type(exc).__name__}: {exc}"[:300]
        )


def _not(reason: str) -> Classification:
    return Classification(processable=False, reason=reason)


def _classify(raw: bytes, mail_from: str | None, options: EngineOptions,
              now: datetime) -> Classification:
    """Find the calendar parts, parse them, read the event, judge the sender, decide."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not may_carry_calendar(raw):
        return _not("not a calendar mail")
    try:
        found = _find_calendars(raw, options)
    except (MimeError, EngineError) as exc:
        return _not(f"unreadable mail: {exc}")
    if not found.parts:
        return _not("no calendar part")
    imip = Classification(processable=False, reason="", is_imip=True,
                          calendar_parts=found.parts, in_attached_message=found.attached_only)
    read = _read_calendars(found, options)
    if not read.calendars:
        return _unreadable(imip, found.sources, read.problems)
    source, primary = read.calendars[0]
    imip = replace(imip, mime_method=source.mime_method,
                   method=primary.method(0) or source.mime_method)
    uids = primary.uids(0)
    if not uids:
        events = primary.objects[0].walk("VEVENT")
        return replace(imip, reason="VEVENT without UID" if events else "no VEVENT")
    event = _read_event(primary, uids[0], options, now)
    sender = _judge_sender(found.root, mail_from, event.facts)
    triggers = _triggers(found.root, event.facts, options)
    refusal = _refusal(found, read, uids, imip.method, event.facts)
    return _describe(imip, event, sender, triggers, read.problems, refusal)


# --- the steps of classify, each with a typed result -----------------------------

@dataclass(frozen=True)
class _ReadCalendars:
    """The calendar texts that parsed, best first, and what could not be read."""

    calendars: list[tuple[_CalendarSource, ParsedCalendar]]
    #: The payloads that could not be decoded, then the texts that did not parse.
    problems: list[str]


def _read_calendars(found: _FoundCalendars, options: EngineOptions) -> _ReadCalendars:
    calendars: list[tuple[_CalendarSource, ParsedCalendar]] = []
    problems = list(found.problems)
    for source in found.sources:
        try:
            calendars.append((source, parse_calendar(source.text, options.reader)))
        except CalendarError as exc:
            problems.append(str(exc))
    return _ReadCalendars(calendars, problems)


_RAW_METHOD = re.compile(r"(?im)^METHOD:[ \t]*([A-Z-]+)[ \t]*\r?$")


def _unreadable(imip: Classification, sources: list[_CalendarSource],
                problems: list[str]) -> Classification:
    """No calendar part parsed: say why, with the METHOD its text seems to carry."""
    reason = problems[0] if problems else "calendar part unreadable"
    mime_method = sources[0].mime_method if sources else None
    method_line = _RAW_METHOD.search(sources[0].text) if sources else None
    method = method_line.group(1).upper() if method_line else mime_method
    return replace(imip, reason=f"calendar part unreadable: {reason}",
                   mime_method=mime_method, method=method)


@dataclass(frozen=True)
class _Event:
    """The event a mail is about, read from its first calendar."""

    uid: str
    facts: EventFacts
    next_occurrence: Occurrence | None
    #: ``Classification.calendar``.
    calendar: bytes
    #: What reading it noticed (the facts' warnings, a failed occurrence search).
    notes: list[str]


def _read_event(primary: ParsedCalendar, uid: str, options: EngineOptions,
                now: datetime) -> _Event:
    reader = options.reader
    facts = event_facts(primary, uid, reader)
    notes = list(facts.warnings)
    next_one = None
    try:
        next_one = _calendar_next_occurrence(primary, uid, now, reader)
    except CalendarError as exc:
        notes.append(str(exc))
    return _Event(uid, facts, next_one, minimal_calendar(primary, uid), notes)


@dataclass(frozen=True)
class _Sender:
    """Who the mail says it is from, and whether that is the organizer."""

    header_from: tuple[str, ...]
    reply_to: tuple[str, ...]
    from_organizer: bool


def _judge_sender(root: MimeEntity | None, mail_from: str | None,
                  facts: EventFacts) -> _Sender:
    header_from = _header_addresses(root, "from")
    senders = _sender_addresses(mail_from, header_from)
    from_organizer = bool(facts.organizer) and bool(
        senders & {facts.organizer, facts.sent_by} - {None}
    )
    return _Sender(header_from, _header_addresses(root, "reply-to"), from_organizer)


def _header_addresses(root: MimeEntity | None, name: str) -> tuple[str, ...]:
    if root is None:
        return ()
    headers = [str(value) for value in root.headers.get_all(name, [])]
    found = (normalise_address(address) for _, address in email.utils.getaddresses(headers))
    return tuple(dict.fromkeys(address for address in found if address))


def _sender_addresses(mail_from: str | None, header_from: tuple[str, ...]) -> set[str]:
    addresses = set(header_from)
    if mail_from:
        address = normalise_address(mail_from)
        if address:
            addresses.add(address)
    return addresses


def _triggers(root: MimeEntity | None, facts: EventFacts,
              options: EngineOptions) -> tuple[str, ...]:
    """Which of the three ways to ask for a conference the mail uses."""
    return tuple(
        name for name, found in (
            ("location", facts.keyword_in_location),
            ("property", facts.trigger_property),
            ("header", _header_trigger(root, options)),
        ) if found
    )


def _header_trigger(root: MimeEntity | None, options: EngineOptions) -> bool:
    if root is None:
        return False
    value = root.headers.get(options.trigger_header)
    return value is not None and str(value).strip().lower() in ("yes", "true", "1", "on")


def _refusal(found: _FoundCalendars, read: _ReadCalendars, uids: list[str],
             method: str | None, facts: EventFacts) -> str | None:
    """Why the relay must not act on this calendar, or None when it may."""
    if found.attached_only:
        return "calendar only inside an attached message (bounce or forward)"
    primary = read.calendars[0][1]
    if len(primary.objects) > 1:
        return "several calendar objects in one part"
    if len(uids) > 1:
        return f"several events (UIDs) in one calendar: {len(uids)}"
    for _, copy in read.calendars[1:]:
        other = {u for index in range(len(copy.objects)) for u in copy.uids(index)}
        if other - {uids[0]}:
            return "calendar parts carry different events"
    if method is None:
        return "no METHOD: not an iTIP message"
    if facts.organizer is None:
        return "no ORGANIZER"
    return None


def _describe(imip: Classification, event: _Event, sender: _Sender, triggers: tuple[str, ...],
              problems: list[str], refusal: str | None) -> Classification:
    facts = event.facts
    return replace(
        imip,
        processable=refusal is None,
        reason=refusal or "ok",
        uid=event.uid,
        organizer=facts.organizer,
        organizer_name=facts.organizer_name,
        sent_by=facts.sent_by,
        from_organizer=sender.from_organizer,
        header_from=sender.header_from,
        reply_to=sender.reply_to,
        sequence=facts.sequence,
        status=facts.status,
        recurrence_ids=facts.recurrence_ids,
        has_master=facts.has_master,
        summary=facts.summary,
        start=facts.start,
        end=facts.end,
        duration=facts.duration,
        all_day=facts.all_day,
        timezone=facts.timezone,
        attendees=facts.attendees,
        triggers=triggers,
        conference_requested=bool(triggers),
        has_our_link=bool(facts.our_links),
        our_link=facts.our_links[0] if facts.our_links else None,
        recurring=facts.recurring,
        next_occurrence=event.next_occurrence,
        calendar=event.calendar,
        warnings=tuple(dict.fromkeys(event.notes + problems)),
    )
