"""Read what an iTIP calendar object says about one event.

Real clients write iCalendar that icalendar rejects or misreads, so the text is
repaired first (on a copy; the mail itself is never changed here):

* CR-only and mixed line endings, empty lines inside the object, a BOM;
* RRULEs with escaped semicolons or spaces (Exchange CDO: ``BYDAY=MO, TU``);
* ``ORGANIZER;mailto:x`` (colon missing after the name);
* TZIDs without a VTIMEZONE: a known name (IANA, Windows, Lotus short name,
  legacy ``(GMT+03.00) Moscow, ...``) is replaced by its IANA name, anything else
  by the configured default zone, with a warning.

Times come back aware: floating times and dates are read in the default zone.
"""

from __future__ import annotations

import hashlib
import re
import warnings
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit

import icalendar

from webinar_proxy.calendar import rules
from webinar_proxy.calendar.contentlines import (
    Line,
    components,
    fold,
    param,
    parses,
    property_name,
    split_lines,
    split_property,
    still_open,
    unescape_text,
)
from webinar_proxy.calendar.limits import CalendarLimits
from webinar_proxy.calendar.timezones import iana_name, is_iana, matches_offset


class CalendarError(ValueError):
    """The calendar data cannot be read (or is beyond the limits)."""


@dataclass(frozen=True)
class ReaderOptions:
    default_timezone: str = "Europe/Moscow"
    location_keyword: str = "@webinar"
    trigger_property: str = "X-WEBINAR-CONFERENCE"
    link_hosts: tuple[str, ...] = ("events.webinar.ru", "my.mts-link.ru", "events.mts-link.ru")
    limits: CalendarLimits = field(default_factory=CalendarLimits)

    @property
    def zone(self) -> tzinfo:
        return zoneinfo.ZoneInfo(self.default_timezone)


@dataclass(frozen=True)
class Attendee:
    address: str
    name: str | None
    role: str | None
    cutype: str | None
    partstat: str | None
    #: Rooms, resources and groups are not people to register.
    is_person: bool


@dataclass(frozen=True)
class ParsedCalendar:
    """The repaired text and the icalendar objects read from it."""

    clean_text: str
    objects: tuple[icalendar.Calendar, ...]
    warnings: tuple[str, ...]

    def method(self, index: int = 0) -> str | None:
        value = self.objects[index].get("METHOD")
        return str(value).strip().upper() or None if value is not None else None

    def uids(self, index: int = 0) -> list[str]:
        seen: list[str] = []
        for event in self.objects[index].walk("VEVENT"):
            uid = event_uid(event)
            if uid and uid not in seen:
                seen.append(uid)
        return seen

    def events(self, uid: str, index: int = 0) -> list[icalendar.Event]:
        return [e for e in self.objects[index].walk("VEVENT") if event_uid(e) == uid]


@dataclass(frozen=True)
class EventFacts:
    """What the VEVENTs of one UID in one calendar object say."""

    uid: str
    organizer: str | None
    organizer_name: str | None
    sent_by: str | None
    sequence: int
    status: str | None
    recurrence_ids: tuple[datetime, ...]
    has_master: bool
    summary: str | None
    start: datetime | None
    end: datetime | None
    duration: timedelta | None
    all_day: bool
    timezone: str | None
    attendees: tuple[Attendee, ...]
    location: str | None
    keyword_in_location: bool
    trigger_property: bool
    recurring: bool
    our_links: tuple[str, ...]
    warnings: tuple[str, ...]


# --- repairing the text -----------------------------------------------------------

# Each parameter is split at its first "=": with "[^;:]*=" a value holding several
# "=" could be split in several ways, and a failing match tried them all (exponential).
_MAILTO_AS_PARAM = re.compile(r"(?i)^(ORGANIZER|ATTENDEE)((?:;[^;:=]*=[^;:]*)*);mailto$")
_TZID_PARAM = re.compile(r'(?i)(;TZID=)("[^"]*"|[^;:]*)')
_TZID_DIGEST = re.compile(r" #[0-9a-f]{12}$")


def _tzid_value(raw: str) -> str:
    return raw.strip().strip('"')


def original_tzid(tzid: str) -> str:
    """A TZID as the client wrote it (without the digest ``normalise`` adds)."""
    return _TZID_DIGEST.sub("", tzid)


_OFFSET = re.compile(r"^([+-])(\d\d)(\d\d)(\d\d)?$")


def _offset(value: str) -> timedelta | None:
    match = _OFFSET.match(value.strip())
    if not match:
        return None
    sign = -1 if match.group(1) == "-" else 1
    hours, minutes, seconds = (int(match.group(i) or 0) for i in (2, 3, 4))
    return sign * timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _current_offsets(block: list[str]) -> tuple[set[timedelta], int] | None:
    """TZOFFSETTO of the newest STANDARD and DAYLIGHT rule, and that rule's year."""
    newest: dict[str, tuple[str, str]] = {}
    kind = None
    start = offset = ""
    for line in block:
        upper = line.upper()
        if upper.startswith(("BEGIN:STANDARD", "BEGIN:DAYLIGHT")):
            kind, start, offset = upper[6:].strip(), "", ""
        elif upper.startswith(("END:STANDARD", "END:DAYLIGHT")) and kind:
            if offset and (kind not in newest or start > newest[kind][0]):
                newest[kind] = (start, offset)
            kind = None
        elif kind and property_name(line) == "DTSTART":
            start = split_property(line)[1].strip()
        elif kind and property_name(line) == "TZOFFSETTO":
            offset = split_property(line)[1]
    offsets = {_offset(value) for _, value in newest.values()}
    if not newest or None in offsets:
        return None
    years = [start[:4] for start, _ in newest.values()]
    year = max((int(text) for text in years if text.isascii() and text.isdigit()), default=0)
    return {o for o in offsets if o is not None}, year


def _zone_agrees(zone: str, block: list[str]) -> bool:
    current = _current_offsets(block)
    if current is None:
        return False
    offsets, year = current
    year = max(year, 2000)
    tz = zoneinfo.ZoneInfo(zone)
    seen = {datetime(year, month, 15, 12, tzinfo=tz).utcoffset() for month in (1, 7)}
    return seen == offsets


def _timezone_renames(lines: list[str], limits: CalendarLimits) -> tuple[dict[str, str], set[int]]:
    """Decide how each VTIMEZONE is read: (TZID renames, line indexes to drop).

    * An IANA TZID needs no definition: icalendar uses its own zone data.
    * A TZID that names an IANA zone (Windows, legacy Exchange, Lotus) whose
      current offsets agree with the definition becomes that zone.
    * Anything else keeps its definition under a content-addressed TZID.
      icalendar keeps zones built from VTIMEZONEs in a process-wide cache keyed
      by TZID, so two mails defining "W. Europe" differently (or a wrong
      definition in one mail) would otherwise change how later mails are read;
      with the digest of the definition in the name, equal names mean equal zones.
      Its observance rules must be bounded (``_check_zone_rules``).
    """
    renames: dict[str, str] = {}
    dropped: set[int] = set()
    index = 0
    while index < len(lines):
        if lines[index].upper().startswith("BEGIN:VTIMEZONE"):
            end = index
            while end < len(lines) and not lines[end].upper().startswith("END:VTIMEZONE"):
                end += 1
            end = min(end, len(lines) - 1)  # no END:VTIMEZONE: the zone runs to the end
            block = lines[index : end + 1]
            tzid_line = next((line for line in block if property_name(line) == "TZID"), None)
            if tzid_line is not None:
                tzid = _tzid_value(split_property(tzid_line)[1])
                zone = tzid if is_iana(tzid) else iana_name(original_tzid(tzid))
                if zone and (zone == tzid or _zone_agrees(zone, block)):
                    if zone != tzid:
                        renames[tzid] = zone
                    dropped.update(range(index, end + 1))
                else:
                    body = "\n".join(line for line in block if line is not tzid_line)
                    digest = hashlib.sha256(body.encode("utf-8", "surrogateescape")).hexdigest()
                    renames[tzid] = f"{original_tzid(tzid)} #{digest[:12]}"
                    _rebase_rules(lines, index, end)
                    _check_zone_rules(lines, index, end, tzid, limits)
            else:
                _check_zone_rules(lines, index, end, None, limits)
            index = end
        index += 1
    return renames, dropped


_REBASE_YEAR = 1970
# icalendar lists a VTIMEZONE rule's transitions up to its UNTIL or, without one, 2038.
_ZONE_RULES_END = datetime(2039, 1, 1)
_LAST_MOMENT = datetime(9999, 12, 31)


def _local_moment(value: str) -> datetime | None:
    value = value.strip()
    try:
        return datetime(int(value[0:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None


def _check_zone_rules(lines: list[str], begin: int, end: int, tzid: str | None,
                      limits: CalendarLimits) -> None:
    """Refuse the calendar if a kept VTIMEZONE has a rule icalendar cannot list in bounds
    (``FREQ=SECONDLY`` since 1601 is billions of transitions)."""
    start = None
    for index in range(begin, end + 1):
        line = lines[index]
        upper = line[:16].upper()
        if upper.startswith(("BEGIN:STANDARD", "BEGIN:DAYLIGHT")):
            start = None
        name = property_name(line)
        if name == "DTSTART":
            start = _local_moment(split_property(line)[1])
        elif name in ("RRULE", "EXRULE"):
            # The observance's DTSTART may come after its RRULE.
            for later in range(index + 1, end + 1):
                if lines[later][:4].upper() == "END:":
                    break
                if property_name(lines[later]) == "DTSTART":
                    start = _local_moment(split_property(lines[later])[1])
            value = split_property(line)[1]
            # icalendar lists transitions up to the rule's own UNTIL, or 2038 without one
            # (with COUNT: as many as COUNT says, up to dateutil's year 9999).
            until = rules.rule_until(value) or _ZONE_RULES_END
            if "COUNT" in rules.parse(value):
                until = _LAST_MOMENT
            reason = rules.refusal(value, component="VTIMEZONE", start=start,
                                   until=until, max_instances=limits.max_zone_transitions)
            if reason:
                raise CalendarError(f"VTIMEZONE {original_tzid(tzid or '')!r} refused: {reason}")


def _rebase_rules(lines: list[str], begin: int, end: int) -> None:
    """Move a 1601 onset of an endless yearly rule to 1970, in place.

    Exchange writes ``DTSTART:16010101T...`` for its zone rules; dateutil then
    walks every year since 1601 on each offset lookup (hundreds of ms per
    invitation).  With one STANDARD and at most one DAYLIGHT, each repeating
    without end, the rule gives the same transitions after 1970 either way.
    """
    kinds: dict[str, list[int]] = {}
    current = None
    for index in range(begin, end + 1):
        upper = lines[index].upper()
        if upper.startswith(("BEGIN:STANDARD", "BEGIN:DAYLIGHT")):
            current = upper[6:].strip()
            kinds.setdefault(current, [])
        elif upper.startswith(("END:STANDARD", "END:DAYLIGHT")):
            current = None
        elif current and property_name(lines[index]) in ("DTSTART", "RRULE", "RDATE"):
            kinds[current].append(index)
    if len(kinds) > 2 or any(len(found) != 2 for found in kinds.values()):
        return  # several rules of one kind, RDATEs, or no RRULE: leave it alone
    for found in kinds.values():
        names = {property_name(lines[i]): i for i in found}
        rule = split_property(lines[names.get("RRULE", found[0])])[1].upper()
        if "DTSTART" not in names or "RRULE" not in names or "UNTIL" in rule or "COUNT" in rule:
            return
    for found in kinds.values():
        for index in found:
            if property_name(lines[index]) != "DTSTART":
                continue
            head, value = split_property(lines[index])
            value = value.strip()
            year = value[:4]
            if len(value) >= 8 and year.isascii() and year.isdigit() and int(year) < _REBASE_YEAR:
                lines[index] = f"{head}:{_REBASE_YEAR}{value[4:]}"


def normalise(text: str, options: ReaderOptions) -> tuple[str, list[str]]:
    """Repair ``text`` into something icalendar reads as the client meant it."""
    limits = options.limits
    notes: list[str] = []
    text = text.lstrip("\ufeff")
    # A logical line that still starts with a space continued an empty line: written
    # back, it would continue the line before it (whatever the rewrite put there).
    lines = [line for line in split_lines(text) if line.logical.strip() and not line.logical[0].isspace()]
    if len(lines) > limits.max_lines:
        raise CalendarError(f"more than {limits.max_lines} content lines")
    used: set[str] = set()
    repaired: list[str] = []
    in_timezone = False
    for line in lines:
        logical = line.logical
        upper = logical[:16].upper()
        if upper.startswith("BEGIN:VTIMEZONE"):
            in_timezone = True
        elif upper.startswith("END:VTIMEZONE"):
            in_timezone = False
        name = line.name
        head, value = split_property(logical)
        if name in ("RRULE", "EXRULE") and not in_timezone:
            cleaned = re.sub(r"[\\\s]", "", value)
            if cleaned != value:
                logical = f"{head}:{cleaned}"
        mailto = _MAILTO_AS_PARAM.match(head)
        if mailto:
            logical = f"{mailto.group(1)}{mailto.group(2)}:mailto:{value}"
        for match in _TZID_PARAM.finditer(head):
            used.add(_tzid_value(match.group(2)))
        repaired.append(logical)
    renames, dropped = _timezone_renames(repaired, limits)
    repaired = [line for index, line in enumerate(repaired) if index not in dropped]
    for tzid in sorted(used - renames.keys()):
        if not tzid or is_iana(tzid):
            continue
        zone = iana_name(original_tzid(tzid))
        if zone is None:
            zone = options.default_timezone
            notes.append(f"unknown TZID {tzid!r} without VTIMEZONE: read in {zone}")
        renames[tzid] = zone
    if renames:

        def substitute(match: re.Match[str]) -> str:
            new = renames.get(_tzid_value(match.group(2)))
            return f'{match.group(1)}"{new}"' if new else match.group()

        result = []
        for logical in repaired:
            if property_name(logical) == "TZID":
                head, value = split_property(logical)
                new = renames.get(_tzid_value(value))
                result.append(f"{head}:{new}" if new else logical)
            else:
                head, value = split_property(logical)
                new_head = _TZID_PARAM.sub(substitute, head)
                result.append(logical if new_head == head else f"{new_head}:{value}")
        repaired = result
    return "".join(fold(logical, "\r\n") for logical in repaired), notes


def parse_calendar(text: str, options: ReaderOptions) -> ParsedCalendar:
    """Repair and parse; raises ``CalendarError`` when nothing usable comes out."""
    upper = text.upper()
    if "BEGIN:VCALENDAR" not in upper:
        raise CalendarError("not iCalendar data (no BEGIN:VCALENDAR)")
    limits = options.limits
    # Cheap counts first, so an oversized calendar is refused before it is parsed.
    if upper.count("BEGIN:VCALENDAR") > limits.max_objects:
        raise CalendarError(f"more than {limits.max_objects} calendar objects")
    if upper.count("BEGIN:VEVENT") > limits.max_events:
        raise CalendarError(f"more than {limits.max_events} VEVENTs")
    clean, notes = normalise(text, options)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            objects = icalendar.Calendar.from_ical(clean, multiple=True)
    except Exception as exc:  # icalendar raises many types on bad input
        raise CalendarError(f"unreadable iCalendar: {_short(exc)}") from None
    objects = [obj for obj in objects if obj.name == "VCALENDAR"]
    if not objects:
        raise CalendarError("no VCALENDAR object")
    if len(objects) > limits.max_objects:
        raise CalendarError(f"more than {limits.max_objects} calendar objects")
    events = sum(len(obj.walk("VEVENT")) for obj in objects)
    if events > limits.max_events:
        raise CalendarError(f"more than {limits.max_events} VEVENTs")
    attendees = len(re.findall(r"(?im)^ATTENDEE[;:]", clean))
    if attendees > limits.max_attendees:
        raise CalendarError(f"more than {limits.max_attendees} attendees")
    return ParsedCalendar(clean, tuple(objects), tuple(notes))


def _short(exc: BaseException) -> str:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return message[:160]


# --- reading values -------------------------------------------------------------

def event_uid(event: icalendar.Event) -> str | None:
    value = event.get("UID")
    if isinstance(value, list):
        # Several UID lines: icalendar keeps them all; the rewrite and the stored copy
        # take the first (readable) one, and so does this.
        value = value[0] if value else None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def normalise_address(value: Any, params: Any = None) -> str | None:
    """``MAILTO:Bob@Example.com`` (or ``mailto:mailto:``, or no scheme) -> ``bob@example.com``."""
    text = str(value or "").strip()
    while text.lower().startswith("mailto:"):
        text = text[7:].strip()
    if "@" not in text and params is not None:
        email = params.get("EMAIL")
        if email:
            text = str(email).strip()
            while text.lower().startswith("mailto:"):
                text = text[7:].strip()
    text = text.strip("<>").strip()
    if "@" not in text:
        return None
    return text.lower()


def _params(value: Any) -> Any:
    return getattr(value, "params", {}) or {}


def _param_text(value: Any, name: str) -> str | None:
    found = _params(value).get(name)
    if found is None:
        return None
    text = str(found).strip().strip('"')
    return text or None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


_FIRST_YEAR, _LAST_YEAR = 2, 9998


def _dt_value(event: icalendar.Event, name: str) -> date | datetime | None:
    prop = event.get(name)
    if prop is None:
        return None
    try:
        value = prop.dt
    except Exception:
        return None
    # A PERIOD (``start/PT1H``) or a duration is no instant.
    if not isinstance(value, date):
        return None
    # At the ends of the calendar, converting to UTC or adding a day overflows.
    return value if _FIRST_YEAR <= value.year <= _LAST_YEAR else None


def to_aware(value: date | datetime, zone: tzinfo) -> datetime:
    """Dates start at midnight and floating times are local, both in ``zone``."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=zone)
    return value


def to_utc(value: date | datetime, zone: tzinfo) -> datetime:
    return to_aware(value, zone).astimezone(UTC)


def _truthy(value: Any) -> bool:
    return str(value).strip().upper() in ("TRUE", "YES", "1", "ON")


# Anchored after the first "mailto:" of the line, and the local part holds no "@":
# a lazy scan over every colon of a long line, each retried, was quadratic.
_RAW_ORGANIZER = re.compile(r"(?im)^ORGANIZER[;:][^\r\n]*?:(?:mailto:)+([^\s:;\"<>@]+@[^\s:;\"<>]+)")
_URL = re.compile(r"""https?://[^\s"'<>\\]+""", re.IGNORECASE)


def find_links(text: str, hosts: tuple[str, ...]) -> list[str]:
    """URLs in ``text`` whose host is one of ``hosts``."""
    found = []
    for match in _URL.finditer(text):
        url = match.group().rstrip(".,;:!?)]}")
        try:
            host = (urlsplit(url).hostname or "").lower()
        except ValueError:
            continue
        if host in hosts and url not in found:
            found.append(url)
    return found


def _event_timezone(event: icalendar.Event, start: date | datetime | None,
                    options: ReaderOptions) -> str | None:
    if start is None:
        return None
    if not isinstance(start, datetime) or start.tzinfo is None:
        return options.default_timezone
    tzid = _param_text(event.get("DTSTART"), "TZID")
    if tzid:
        zone = iana_name(original_tzid(tzid))
        if zone and matches_offset(zone, start):
            return zone
        key = getattr(start.tzinfo, "key", None)
        return key if key and is_iana(key) else None
    if start.utcoffset() == timedelta(0):
        return "UTC"
    return None


def event_facts(parsed: ParsedCalendar, uid: str, options: ReaderOptions,
                index: int = 0) -> EventFacts:
    events = parsed.events(uid, index)
    if not events:
        raise CalendarError(f"no VEVENT with UID {uid!r}")
    notes = list(parsed.warnings)
    zone = options.zone
    master = next((e for e in events if e.get("RECURRENCE-ID") is None), None)
    # The series' own properties come from the master, or the first instance without one.
    reference = master if master is not None else events[0]
    organizer = _organizer(parsed, events, reference, notes)
    sequence = _sequence(events, notes)
    recurrence_ids = _recurrence_ids(events, zone, notes)
    times = _times(reference, zone, notes)
    location = _text(reference, "LOCATION")
    return EventFacts(
        uid=uid,
        organizer=organizer.address,
        organizer_name=organizer.name,
        sent_by=organizer.sent_by,
        sequence=sequence,
        status=_status(reference),
        recurrence_ids=recurrence_ids,
        has_master=master is not None,
        summary=_text(reference, "SUMMARY"),
        start=times.start,
        end=times.end,
        duration=times.duration,
        all_day=times.all_day,
        timezone=_event_timezone(reference, times.start_value, options),
        attendees=_attendees(events),
        location=location,
        keyword_in_location=_keyword_in(location, options),
        trigger_property=_trigger_property(reference, options),
        recurring=bool(recurrence_ids) or any(
            reference.get(name) is not None for name in ("RRULE", "RDATE")
        ),
        our_links=_our_links(events, options),
        warnings=tuple(dict.fromkeys(notes)),
    )


@dataclass(frozen=True)
class _Organizer:
    address: str | None
    name: str | None
    sent_by: str | None


def _organizer(parsed: ParsedCalendar, events: list[icalendar.Event],
               reference: icalendar.Event, notes: list[str]) -> _Organizer:
    """The ORGANIZER of the reference VEVENT, else of the first VEVENT that has one."""
    prop = next((e.get("ORGANIZER") for e in [reference, *events]
                 if e.get("ORGANIZER") is not None), None)
    if prop is None:
        # icalendar drops an ORGANIZER whose parameters it cannot parse
        # (e.g. CN=3D"..." from a still quoted-printable file); the address may be fine.
        raw_organizer = _RAW_ORGANIZER.search(parsed.clean_text)
        if raw_organizer is None:
            return _Organizer(None, None, None)
        notes.append("ORGANIZER parameters unreadable; address read from the raw line")
        return _Organizer(normalise_address(raw_organizer.group(1)), None, None)
    # SEND-BY is a misspelling seen in the wild (Tine 2.0); it means the same.
    sent_by = _param_text(prop, "SENT-BY") or _param_text(prop, "SEND-BY")
    return _Organizer(
        # An empty value (falsy, not None) names no organizer, whatever its EMAIL says.
        address=normalise_address(prop, _params(prop)) if prop else None,
        name=_param_text(prop, "CN"),
        sent_by=normalise_address(sent_by) if sent_by else None,
    )


def _sequence(events: list[icalendar.Event], notes: list[str]) -> int:
    """The highest SEQUENCE of the VEVENTs (0 when none is readable)."""
    sequences = []
    for event in events:
        try:
            sequences.append(int(str(event.get("SEQUENCE", 0)).strip()))
        except ValueError:
            notes.append("unreadable SEQUENCE")
    return max(sequences) if sequences else 0


def _recurrence_ids(events: list[icalendar.Event], zone: tzinfo,
                    notes: list[str]) -> tuple[datetime, ...]:
    recurrence_ids = []
    for event in events:
        value = _dt_value(event, "RECURRENCE-ID")
        if value is not None:
            recurrence_ids.append(to_utc(value, zone))
        elif event.get("RECURRENCE-ID") is not None:
            notes.append("unreadable RECURRENCE-ID")
    return tuple(recurrence_ids)


@dataclass(frozen=True)
class _Times:
    #: DTSTART as written (a date for an all-day event), for the time zone.
    start_value: date | datetime | None
    start: datetime | None
    end: datetime | None
    duration: timedelta | None
    all_day: bool


def _times(reference: icalendar.Event, zone: tzinfo, notes: list[str]) -> _Times:
    """Start and end in UTC, from DTSTART and DTEND, DURATION or the RFC 5545 default."""
    start_value = _dt_value(reference, "DTSTART")
    if start_value is None and reference.get("DTSTART") is not None:
        notes.append("unreadable DTSTART")
    start = to_utc(start_value, zone) if start_value is not None else None
    all_day = start_value is not None and not isinstance(start_value, datetime)
    if _truthy(reference.get("X-MICROSOFT-CDO-ALLDAYEVENT", "")):
        all_day = True
    end = None
    end_value = _dt_value(reference, "DTEND")
    duration_prop = reference.get("DURATION")
    if end_value is not None:
        end = to_utc(end_value, zone)
    elif duration_prop is not None and start is not None:
        try:
            end = to_utc(start_value, zone) + duration_prop.dt
        except Exception:
            notes.append("unreadable DURATION")
    elif start is not None:
        end = start + (timedelta(days=1) if all_day and not isinstance(start_value, datetime)
                       else timedelta(0))
    duration = end - start if start is not None and end is not None else None
    return _Times(start_value, start, end, duration, all_day)


def _attendees(events: list[icalendar.Event]) -> tuple[Attendee, ...]:
    """Every ATTENDEE of the VEVENTs, once per address, first mention wins."""
    attendees: dict[str, Attendee] = {}
    for event in events:
        for prop in _as_list(event.get("ATTENDEE")):
            address = normalise_address(prop, _params(prop))
            if not address or address in attendees:
                continue
            cutype = (_param_text(prop, "CUTYPE") or "").upper() or None
            attendees[address] = Attendee(
                address=address,
                name=_param_text(prop, "CN"),
                role=(_param_text(prop, "ROLE") or "").upper() or None,
                cutype=cutype,
                partstat=(_param_text(prop, "PARTSTAT") or "").upper() or None,
                is_person=cutype in (None, "INDIVIDUAL", "UNKNOWN"),
            )
    return tuple(attendees.values())


def _text(event: icalendar.Event, name: str) -> str | None:
    value = event.get(name)
    return str(value) if value is not None else None


def _status(event: icalendar.Event) -> str | None:
    status = event.get("STATUS")
    return str(status).strip().upper() if status is not None else None


def _keyword_in(location: str | None, options: ReaderOptions) -> bool:
    keyword = options.location_keyword.lower()
    return bool(keyword) and location is not None and keyword in location.lower()


def _trigger_property(event: icalendar.Event, options: ReaderOptions) -> bool:
    value = event.get(options.trigger_property)
    return value is not None and _truthy(value)


def _our_links(events: list[icalendar.Event], options: ReaderOptions) -> tuple[str, ...]:
    """Our join links anywhere a client may show one, in every VEVENT of the UID."""
    texts = []
    for event in events:
        for name in ("CONFERENCE", "LOCATION", "DESCRIPTION", "X-ALT-DESC", "URL", "COMMENT"):
            texts.extend(str(value) for value in _as_list(event.get(name)))
    return tuple(find_links("\n".join(texts), options.link_hosts))


# --- the stored copy ------------------------------------------------------------

_CALENDAR_HEADER_PROPS = ("VERSION", "PRODID", "CALSCALE")


def minimal_calendar(parsed: ParsedCalendar, uid: str, index: int = 0) -> bytes:
    """A VCALENDAR with only the VEVENTs of ``uid`` and the VTIMEZONEs they use.

    Built from the repaired text, so reading it back needs no repairs.
    """
    lines = split_lines(parsed.clean_text)
    blocks = components(lines)
    calendars = [block for block in blocks if block.name == "VCALENDAR" and block.depth == 0]
    if index >= len(calendars) and lines:
        # icalendar reads an object whose END lines are missing (or one nested in
        # another): close every component left open.
        lines.extend(Line(f"END:{name}\r\n", f"END:{name}") for name in still_open(lines))
        blocks = components(lines)
        calendars = [block for block in blocks if block.name == "VCALENDAR" and block.depth == 0]
    if index >= len(calendars):
        raise CalendarError("no such calendar object")
    outer = calendars[index]
    # icalendar finds VEVENTs at any depth (a VCALENDAR nested in another one): so do we,
    # taking the outermost VEVENT and VTIMEZONE blocks.
    inner = []
    for block in blocks:
        if not outer.begin < block.begin < outer.end or block.name not in ("VEVENT", "VTIMEZONE"):
            continue
        if not any(other.begin < block.begin <= other.end for other in inner):
            inner.append(block)
    events = [b for b in inner if b.name == "VEVENT" and _block_uid(lines, b) == uid]
    used_tzids = set()
    for block in events:
        for line in lines[block.begin : block.end + 1]:
            head, _ = split_property(line.logical)
            tzid = param(head, "TZID")
            if tzid:
                used_tzids.add(tzid)
    timezones = [
        b for b in inner
        if b.name == "VTIMEZONE" and _block_property(lines, b, "TZID") in used_tzids
    ]
    out: list[str] = ["BEGIN:VCALENDAR\r\n"]
    nested = {index for b in blocks if outer.begin < b.begin < outer.end
              for index in range(b.begin, b.end + 1)}
    for position in range(outer.begin + 1, outer.end):
        line = lines[position]
        if position not in nested and line.name in _CALENDAR_HEADER_PROPS:
            out.append(line.raw)
    for block in [*timezones, *events]:
        out.extend(line.raw for line in lines[block.begin : block.end + 1])
    out.append("END:VCALENDAR\r\n")
    return "".join(out).encode("utf-8", "surrogateescape")


def _block_property(lines: list[Line], block, name: str) -> str | None:
    depth = 0
    for line in lines[block.begin + 1 : block.end]:
        upper = line.logical.upper()
        if upper.startswith("BEGIN:"):
            depth += 1
        elif upper.startswith("END:"):
            depth = max(depth - 1, 0)  # a stray END closes nothing
        elif depth == 0 and line.name == name and parses(line.logical):
            # A line icalendar cannot parse it skips, reading the next one.
            return split_property(line.logical)[1].strip().strip('"')
    return None


def _block_uid(lines: list[Line], block) -> str | None:
    value = _block_property(lines, block, "UID")
    return unescape_text(value).strip() or None if value else None
