"""The invitation engine: what a mail's calendar says, and the mail with a join link.

The only door to ``webinar_proxy.mail`` and ``webinar_proxy.calendar``.  Pure and
synchronous: bytes and objects in, bytes and objects out, no I/O (the
join-block templates are read once, by ``EngineOptions.from_settings``).  It joins
``webinar_proxy.mail`` (MIME) and ``webinar_proxy.calendar`` (iCalendar), which do
not know each other.  Running big rewrites off the event loop is the caller's job.

Modules: ``options`` (``EngineOptions``, ``EngineLimits``, ``JoinTemplates``),
``classification`` (``Classification``, ``classify``), ``occurrences``
(``next_occurrence``), ``rewriting`` (``rewrite``, ``remove_conference``,
``check_link``), ``errors`` (``EngineError``), ``pool`` and ``worker`` (the
bounded worker processes).  Callers import from this package.

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

``check_link(link)``
    Raises ``ValueError`` unless ``link`` may be written into mail.

``EnginePool`` (``pool``)
    Runs the engine in supervised worker processes (``worker``), bounded in time
    (``policy.engine_timeout_seconds``) and memory (``policy.engine_memory_mb``),
    so the event loop never does; the lifecycle, the scheduler and ``inspect``
    call the engine through it.

``normalise_address``, ``may_carry_calendar``, ``headers_may_carry_calendar``
    Address and cheap "can this hold a calendar" questions, passed through from
    ``mail/`` and ``calendar/`` for rooms that may not open those.
"""

from webinar_proxy.calendar import Attendee, Occurrence, normalise_address
from webinar_proxy.invitation.classification import Classification, classify
from webinar_proxy.invitation.errors import EngineError
from webinar_proxy.invitation.occurrences import next_occurrence
from webinar_proxy.invitation.options import (
    DEFAULT_LINK_HOSTS,
    LANGUAGES,
    TRIGGER_HEADER,
    TRIGGER_PROPERTY,
    EngineLimits,
    EngineOptions,
    JoinTemplates,
)
from webinar_proxy.invitation.pool import (
    STOP_REASONS,
    Engine,
    EnginePool,
    EngineStopped,
    EngineUnavailable,
    InThreadEngine,
)
from webinar_proxy.invitation.rewriting import check_link, remove_conference, rewrite
from webinar_proxy.mail import may_carry_calendar
from webinar_proxy.mail.precheck import headers_may_carry_calendar

__all__ = [
    "DEFAULT_LINK_HOSTS",
    "LANGUAGES",
    "STOP_REASONS",
    "TRIGGER_HEADER",
    "TRIGGER_PROPERTY",
    "Attendee",
    "Classification",
    "Engine",
    "EngineError",
    "EngineLimits",
    "EngineOptions",
    "EnginePool",
    "EngineStopped",
    "EngineUnavailable",
    "InThreadEngine",
    "JoinTemplates",
    "Occurrence",
    "check_link",
    "classify",
    "headers_may_carry_calendar",
    "may_carry_calendar",
    "next_occurrence",
    "normalise_address",
    "remove_conference",
    "rewrite",
]
