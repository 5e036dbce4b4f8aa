"""The next occurrence of a stored invitation's event (``next_occurrence``)."""

from __future__ import annotations

from datetime import datetime

from webinar_proxy.calendar import CalendarError, Occurrence, parse_calendar
from webinar_proxy.calendar import next_occurrence as _calendar_next_occurrence
from webinar_proxy.invitation.errors import EngineError
from webinar_proxy.invitation.options import EngineOptions
from webinar_proxy.mail import decode_text


def next_occurrence(
    calendar: bytes,
    uid: str,
    after: datetime,
    options: EngineOptions,
    *,
    cancelled: frozenset[datetime] | set[datetime] | tuple[datetime, ...] = (),
    include_ongoing: bool = True,
) -> Occurrence | None:
    """See ``webinar_proxy.invitation``; ``calendar`` is ``Classification.calendar``."""
    reader = options.reader
    try:
        text, _ = decode_text(calendar, "utf-8")
        parsed = parse_calendar(text, reader)
        return _calendar_next_occurrence(
            parsed, uid, after, reader, cancelled=cancelled, include_ongoing=include_ongoing
        )
    except CalendarError as exc:
        raise EngineError(str(exc)) from None

