"""The invitation engine: what a mail's calendar says, and the mail with a join link.

Pure and synchronous: bytes and objects in, bytes and objects out, no I/O (the
join-block templates are read once, by ``EngineOptions.from_settings``).  It joins
``webinar_proxy.mail`` (MIME) and ``webinar_proxy.calendar`` (iCalendar), which do
not know each other.  Running big rewrites off the event loop is the caller's job.

Public API (the lifecycle calls exactly this):

``EngineOptions``
    Frozen settings of the engine; ``EngineOptions.from_settings(settings)`` reads
    ``settings.policy`` (location_keyword, language, template_dir,
    default_timezone).  Also: ``trigger_property`` (``X-WEBINAR-CONFERENCE``),
    ``trigger_header`` (``X-Webinar-Conference``), ``link_hosts`` (hosts whose
    https links count as "our link") and ``limits``.

``classify(raw, mail_from, options, now) -> Classification``
    Never raises.  A mail that is not a calendar mail, or that cannot be read
    within the limits, comes back with ``processable=False`` and a ``reason``;
    the relay forwards it unchanged.  ``Classification.to_json_dict()`` is what
    ``webinar-proxy inspect --json`` prints.

``next_occurrence(calendar, uid, after, options, *, cancelled=(), include_ongoing=True)``
    The first occurrence of ``uid`` in ``calendar`` (``Classification.calendar``)
    that has not ended at ``after`` - an occurrence in progress counts, so a
    running meeting keeps its conference; ``include_ongoing=False`` asks for the
    first one starting after ``after``.  ``cancelled``: RECURRENCE-IDs (aware)
    cancelled by CANCEL mails.  Returns ``Occurrence(start, end, recurrence_id)``
    in UTC, or None; raises ``EngineError`` if the calendar cannot be read.

``rewrite(raw, uid, link, options, *, label="Webinar") -> bytes``
    Every VEVENT of ``uid`` (inline part and ``.ics`` copies) gets the RFC 7986
    CONFERENCE, the link in LOCATION (replacing the keyword) and one fenced join
    block in DESCRIPTION / X-ALT-DESC; the first text/plain and text/html body
    parts get the block too.  Idempotent; a new link replaces the old one.  Only
    changed leaf parts are re-encoded, every other byte is kept.  ``link`` must
    be https (``ValueError`` otherwise); ``EngineError`` if no calendar part
    carries ``uid``.

``remove_conference(raw, uid, options) -> bytes``
    Takes our CONFERENCE, link and join blocks out again.
"""

from __future__ import annotations

import email.utils
import html
import re
import string
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from webinar_proxy.calendar import (
    Attendee,
    CalendarError,
    CalendarLimits,
    EventEdit,
    Occurrence,
    ParsedCalendar,
    ReaderOptions,
    event_facts,
    find_links,
    minimal_calendar,
    normalise_address,
    parse_calendar,
    rewrite_events,
)
from webinar_proxy.calendar import next_occurrence as _calendar_next_occurrence
from webinar_proxy.mail import (
    MimeEntity,
    MimeError,
    MimeLimits,
    PayloadError,
    Splice,
    apply_splices,
    body_text_entities,
    calendar_entities,
    decode_text,
    encode_part_text,
    looks_like_bare_calendar,
    may_carry_calendar,
    parse_structure,
    read_part_text,
)
from webinar_proxy.mail.joinblock import (
    insert_html_block,
    insert_text_block,
    remove_html_block,
    remove_text_block,
)

__all__ = [
    "Attendee",
    "Classification",
    "EngineError",
    "EngineLimits",
    "EngineOptions",
    "JoinTemplates",
    "Occurrence",
    "classify",
    "next_occurrence",
    "remove_conference",
    "rewrite",
]

DEFAULT_LINK_HOSTS = ("events.webinar.ru", "my.mts-link.ru", "events.mts-link.ru")
TRIGGER_PROPERTY = "X-WEBINAR-CONFERENCE"
TRIGGER_HEADER = "X-Webinar-Conference"
LANGUAGES = ("ru", "en")
TEMPLATE_FIELDS = ("link", "label")


class EngineError(ValueError):
    """The engine cannot do what was asked with this input."""


# --- options ---------------------------------------------------------------------

@dataclass(frozen=True)
class JoinTemplates:
    """The join block as plain text and as HTML (``string.Template``, ``$link``, ``$label``)."""

    text: str
    html: str

    @classmethod
    def load(cls, language: str, template_dir: Path | None = None) -> JoinTemplates:
        """Shipped templates for ``language``, each replaced by the administrator's
        ``join_<language>.txt`` / ``join_<language>.html`` in ``template_dir`` if present.
        """
        if language not in LANGUAGES:
            raise ValueError(f"no join templates for language {language!r}")
        texts = {}
        for kind in ("txt", "html"):
            name = f"join_{language}.{kind}"
            override = template_dir / name if template_dir is not None else None
            if override is not None and override.is_file():
                texts[kind] = override.read_text(encoding="utf-8")
            else:
                texts[kind] = _shipped(name)
            _check_template(texts[kind], override if override and override.is_file() else name)
        return cls(text=texts["txt"], html=texts["html"])

    def render_text(self, link: str, label: str) -> str:
        return string.Template(self.text).substitute(link=link, label=label)

    def render_html(self, link: str, label: str) -> str:
        return string.Template(self.html).substitute(
            link=html.escape(link, quote=True), label=html.escape(label, quote=True)
        )


@cache
def _shipped(name: str) -> str:
    return resources.files("webinar_proxy").joinpath("templates", name).read_text("utf-8")


def _check_template(text: str, where: object) -> None:
    template = string.Template(text)
    names = {
        match.group("named") or match.group("braced")
        for match in template.pattern.finditer(text)
        if match.group("named") or match.group("braced")
    }
    unknown = names - set(TEMPLATE_FIELDS)
    if unknown or not template.is_valid():
        raise ValueError(f"{where}: unknown placeholders {sorted(unknown)} (use $link, $label)")
    if "link" not in names:
        raise ValueError(f"{where}: the template must contain $link")


@cache
def _default_templates(language: str) -> JoinTemplates:
    return JoinTemplates.load(language)


@dataclass(frozen=True)
class EngineLimits:
    """Beyond these a mail is "not processable" and forwarded unchanged."""

    mime: MimeLimits = field(default_factory=MimeLimits)
    calendar: CalendarLimits = field(default_factory=CalendarLimits)


@dataclass(frozen=True)
class EngineOptions:
    location_keyword: str = "@webinar"
    #: Language of the join block: "ru" (default) or "en".
    language: str = "ru"
    #: Zone in which floating times and all-day dates are read.
    default_timezone: str = "Europe/Moscow"
    trigger_property: str = TRIGGER_PROPERTY
    trigger_header: str = TRIGGER_HEADER
    #: Hosts whose https links are ours (lower case).
    link_hosts: tuple[str, ...] = DEFAULT_LINK_HOSTS
    #: None: the shipped templates of ``language``.
    templates: JoinTemplates | None = None
    limits: EngineLimits = field(default_factory=EngineLimits)

    def __post_init__(self) -> None:
        try:
            zoneinfo.ZoneInfo(self.default_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.default_timezone!r}") from exc
        if self.language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}")

    @classmethod
    def from_settings(cls, settings: Any) -> EngineOptions:
        """Read ``settings.policy``; loads the administrator's templates (file I/O)."""
        policy = settings.policy
        return cls(
            location_keyword=policy.location_keyword if policy.location_trigger else "",
            language=policy.language,
            default_timezone=policy.default_timezone,
            templates=JoinTemplates.load(policy.language, policy.template_dir),
        )

    @property
    def join_templates(self) -> JoinTemplates:
        return self.templates or _default_templates(self.language)

    @property
    def reader(self) -> ReaderOptions:
        return _reader_options(self)


@cache
def _reader_options(options: EngineOptions) -> ReaderOptions:
    return ReaderOptions(
        default_timezone=options.default_timezone,
        location_keyword=options.location_keyword,
        trigger_property=options.trigger_property,
        link_hosts=tuple(host.lower() for host in options.link_hosts),
        limits=options.limits.calendar,
    )


# --- classification --------------------------------------------------------------

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


def _not(reason: str, **known: Any) -> Classification:
    return Classification(processable=False, reason=reason, **known)


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


def _header_trigger(root: MimeEntity | None, options: EngineOptions) -> bool:
    if root is None:
        return False
    value = root.headers.get(options.trigger_header)
    return value is not None and str(value).strip().lower() in ("yes", "true", "1", "on")


_RAW_METHOD = re.compile(r"(?im)^METHOD:[ \t]*([A-Z-]+)[ \t]*\r?$")


def _classify(raw: bytes, mail_from: str | None, options: EngineOptions,
              now: datetime) -> Classification:
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
    sources, root, problems = found.sources, found.root, found.problems
    attached_only = found.attached_only
    known: dict[str, Any] = {
        "is_imip": True,
        "calendar_parts": found.parts,
        "in_attached_message": attached_only,
    }
    reader = options.reader
    parsed: list[tuple[_CalendarSource, ParsedCalendar]] = []
    for source in sources:
        try:
            parsed.append((source, parse_calendar(source.text, reader)))
        except CalendarError as exc:
            problems.append(str(exc))
    if not parsed:
        reason = problems[0] if problems else "calendar part unreadable"
        mime_method = sources[0].mime_method if sources else None
        method_line = _RAW_METHOD.search(sources[0].text) if sources else None
        method = method_line.group(1).upper() if method_line else mime_method
        return _not(f"calendar part unreadable: {reason}", mime_method=mime_method,
                    method=method, **known)
    source, primary = parsed[0]
    known["mime_method"] = source.mime_method
    known["method"] = primary.method(0) or source.mime_method
    uids = primary.uids(0)
    events = primary.objects[0].walk("VEVENT")
    if not uids:
        return _not("VEVENT without UID" if events else "no VEVENT", **known)
    uid = uids[0]
    facts = event_facts(primary, uid, reader)
    header_trigger = _header_trigger(root, options)
    triggers = tuple(
        name for name, found_trigger in (
            ("location", facts.keyword_in_location),
            ("property", facts.trigger_property),
            ("header", header_trigger),
        ) if found_trigger
    )
    header_from = _header_addresses(root, "from")
    senders = _sender_addresses(mail_from, header_from)
    from_organizer = bool(facts.organizer) and bool(
        senders & {facts.organizer, facts.sent_by} - {None}
    )
    notes = list(facts.warnings)
    next_one = None
    try:
        next_one = _calendar_next_occurrence(primary, uid, now, reader)
    except CalendarError as exc:
        notes.append(str(exc))
    known.update(
        uid=uid,
        organizer=facts.organizer,
        organizer_name=facts.organizer_name,
        sent_by=facts.sent_by,
        from_organizer=from_organizer,
        header_from=header_from,
        reply_to=_header_addresses(root, "reply-to"),
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
        next_occurrence=next_one,
        calendar=minimal_calendar(primary, uid),
        warnings=tuple(dict.fromkeys(notes + problems)),
    )
    if attached_only:
        return _not("calendar only inside an attached message (bounce or forward)", **known)
    if len(primary.objects) > 1:
        return _not("several calendar objects in one part", **known)
    if len(uids) > 1:
        return _not(f"several events (UIDs) in one calendar: {len(uids)}", **known)
    for _, copy in parsed[1:]:
        other = {u for index in range(len(copy.objects)) for u in copy.uids(index)}
        if other - {uid}:
            return _not("calendar parts carry different events", **known)
    if known["method"] is None:
        return _not("no METHOD: not an iTIP message", **known)
    if facts.organizer is None:
        return _not("no ORGANIZER", **known)
    return Classification(processable=True, reason="ok", **known)


# --- next occurrence -------------------------------------------------------------

def next_occurrence(
    calendar: bytes,
    uid: str,
    after: datetime,
    options: EngineOptions,
    *,
    cancelled: frozenset[datetime] | set[datetime] | tuple[datetime, ...] = (),
    include_ongoing: bool = True,
) -> Occurrence | None:
    """See the module docstring; ``calendar`` is ``Classification.calendar``."""
    reader = options.reader
    try:
        text, _ = decode_text(calendar, "utf-8")
        parsed = parse_calendar(text, reader)
        return _calendar_next_occurrence(
            parsed, uid, after, reader, cancelled=cancelled, include_ongoing=include_ongoing
        )
    except CalendarError as exc:
        raise EngineError(str(exc)) from None


# --- rewriting -------------------------------------------------------------------

_FORBIDDEN_IN_LINK = re.compile(r"""[\s"'<>\\\x00-\x1f\x7f]""")


def _check_link(link: str) -> None:
    try:
        parts = urlsplit(link)
    except ValueError:
        raise ValueError(f"not a URL: {link!r}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"join links must be https URLs, got {link!r}")
    if _FORBIDDEN_IN_LINK.search(link):
        raise ValueError(f"the link contains characters that are not allowed: {link!r}")


#: Raises ``ValueError`` unless ``link`` may be written into mail (https, no markup or
#: control characters); the lifecycle checks the platform's answers with it.
check_link = _check_link


def _strip_links(value: str, links: list[str]) -> str:
    if not links:
        return value  # nothing taken out: keep its spaces (stripping them broke idempotency)
    for link in links:
        escaped = re.escape(link)
        # "(?<!\s)": a match starts where a run of spaces starts, not at each of its
        # spaces (which made a long run quadratic).
        value = re.sub(rf"(?<!\s)\s*[;,]\s*{escaped}|{escaped}\s*[;,]?\s*", "", value)
    return value.strip()


def _event_edit(options: EngineOptions, link: str | None, label: str) -> EventEdit:
    hosts = options.reader.link_hosts
    keyword = options.location_keyword

    def is_ours(url: str) -> bool:
        return bool(find_links(url, hosts))

    if link is None:
        def location(value: str | None) -> str | None:
            if value is None:
                return None
            ours = find_links(value, hosts)
            if not ours:
                return value
            return _strip_links(value, ours) or None

        def description(value: str | None) -> str | None:
            if value is None:
                return None
            stripped = remove_text_block(value)
            return stripped if stripped or not value else None

        return EventEdit(None, label, is_ours, location, description, remove_html_block)

    templates = options.join_templates
    text_block = templates.render_text(link, label)
    html_block = templates.render_html(link, label)

    def put_location(value: str | None) -> str | None:
        text = value or ""
        ours = find_links(text, hosts)
        if ours:
            text = text.replace(ours[0], link)
            return _strip_links(text, [old for old in ours[1:] if old != link]) or link
        position = text.lower().find(keyword.lower()) if keyword else -1
        if position >= 0:
            rest = text[position + len(keyword):]
            rest = re.sub(re.escape(keyword), "", rest, flags=re.IGNORECASE)
            return text[:position] + link + rest
        return f"{text}; {link}" if text.strip() else link

    def put_description(value: str | None) -> str:
        return insert_text_block(value or "", text_block, "\n")

    def put_html(value: str) -> str:
        return insert_html_block(value, html_block, "\n")

    return EventEdit(link, label, is_ours, put_location, put_description, put_html)


def rewrite(raw: bytes, uid: str, link: str, options: EngineOptions, *,
            label: str = "Webinar") -> bytes:
    """See the module docstring."""
    _check_link(link)
    if not label.strip() or len(label) > 64 or re.search(r'["\x00-\x1f\x7f]', label):
        raise ValueError(f"bad conference label {label!r}")
    return _apply(raw, uid, options, link, label)


def remove_conference(raw: bytes, uid: str, options: EngineOptions) -> bytes:
    """See the module docstring."""
    return _apply(raw, uid, options, None, "Webinar")


def _apply(raw: bytes, uid: str, options: EngineOptions, link: str | None, label: str) -> bytes:
    edit = _event_edit(options, link, label)
    if looks_like_bare_calendar(raw):
        text, codec = decode_text(raw, None)
        new_text, matched = rewrite_events(text, uid, edit)
        if not matched:
            raise EngineError(f"no VEVENT with UID {uid!r}")
        if new_text == text:
            return raw
        try:
            return new_text.encode(codec)
        except UnicodeEncodeError:
            return new_text.encode("utf-8")
    try:
        root = parse_structure(raw, options.limits.mime)
    except MimeError as exc:
        raise EngineError(f"unreadable mail: {exc}") from None
    splices: list[Splice] = []
    rewritten = 0
    for entity in calendar_entities(root):
        if entity.in_attached_message:
            continue
        try:
            part = read_part_text(raw, entity)
        except PayloadError:
            continue
        new_text, matched = rewrite_events(part.text, uid, edit)
        if matched:
            rewritten += 1
            splices.extend(encode_part_text(raw, part, new_text))
    if not rewritten:
        raise EngineError(f"no calendar part carries UID {uid!r}")
    plain, html_part = body_text_entities(root)
    for entity, is_html in ((plain, False), (html_part, True)):
        if entity is None:
            continue
        try:
            part = read_part_text(raw, entity)
        except PayloadError:
            continue  # an encoding we cannot write back: leave that body alone
        new_text = _body_change(part.text, is_html, link, options, label)
        splices.extend(encode_part_text(raw, part, new_text, html=is_html))
    return apply_splices(raw, splices)


def _body_change(text: str, is_html: bool, link: str | None, options: EngineOptions,
                 label: str) -> str:
    if link is None:
        return remove_html_block(text) if is_html else remove_text_block(text)
    templates = options.join_templates
    if is_html:
        return insert_html_block(text, templates.render_html(link, label))
    return insert_text_block(text, templates.render_text(link, label))
