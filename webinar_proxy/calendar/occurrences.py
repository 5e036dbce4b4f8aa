"""The nearest occurrence of an event after an instant, via recurring-ical-events.

recurring-ical-events expands RRULE (COUNT/UNTIL), RDATE, EXDATE, moved
occurrences and RANGE=THISANDFUTURE.  What this module adds:

* floating times and all-day dates are read in the configured default zone
  (the query bound is given in that zone, which is how the library reads them);
* occurrences cancelled by the caller (RECURRENCE-IDs from CANCEL mails) or by a
  ``STATUS:CANCELLED`` override are skipped;
* every occurrence is identified by its original start (its RECURRENCE-ID), also
  those shifted by a THISANDFUTURE override, so the caller can match cancellations.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import icalendar
import recurring_ical_events

from webinar_proxy.calendar import rules
from webinar_proxy.calendar.reader import (
    CalendarError,
    ParsedCalendar,
    ReaderOptions,
    _dt_value,
    _params,
    event_uid,
    to_utc,
)


@dataclass(frozen=True)
class Occurrence:
    """One occurrence, all aware UTC; ``recurrence_id`` is its original start."""

    start: datetime
    end: datetime
    recurrence_id: datetime


def _range_shifts(events: list[icalendar.Event], options: ReaderOptions) -> dict[datetime, timedelta]:
    """For each THISANDFUTURE override: its RECURRENCE-ID -> how far it moved the series."""
    shifts = {}
    zone = options.zone
    for event in events:
        prop = event.get("RECURRENCE-ID")
        if prop is None or str(_params(prop).get("RANGE", "")).upper() != "THISANDFUTURE":
            continue
        rid = _dt_value(event, "RECURRENCE-ID")
        start = _dt_value(event, "DTSTART")
        if rid is None or start is None:
            continue
        shifts[to_utc(rid, zone)] = to_utc(start, zone) - to_utc(rid, zone)
    return shifts


def _without_unreadable(calendar: icalendar.Calendar, uid: str) -> icalendar.Calendar:
    """A copy holding the UID's VEVENTs whose DTSTART can be read, plus all VTIMEZONEs."""
    copy = icalendar.Calendar()
    for name, value in calendar.items():
        if name in ("VERSION", "PRODID", "CALSCALE"):
            copy.add(name, value)
    for component in calendar.subcomponents:
        if component.name == "VTIMEZONE" or (
            component.name == "VEVENT"
            and event_uid(component) == uid
            and _dt_value(component, "DTSTART") is not None
        ):
            copy.add_component(component)
    return copy


# Search windows grow from a week to centuries; ``between`` is far cheaper than the
# library's ``after`` when many occurrences must be passed over.
_FIRST_WINDOW = timedelta(days=7)
_WINDOW_GROWTH = 4
_LAST_MOMENT = datetime(9000, 1, 1, tzinfo=UTC)


def _check_rules(events: list[icalendar.Event], after: datetime, options: ReaderOptions) -> None:
    """Refuse rules whose expansion is unbounded (see ``calendar.rules``)."""
    zone = options.zone
    # dateutil walks every period from DTSTART up to the searched window.
    horizon = (after + timedelta(days=366)).replace(tzinfo=None)
    for event in events:
        start_value = _dt_value(event, "DTSTART")
        start = to_utc(start_value, zone).replace(tzinfo=None) if start_value is not None else None
        for name in ("RRULE", "EXRULE"):
            found = event.get(name)
            for rule in found if isinstance(found, list) else [found]:
                if rule is None:
                    continue
                try:
                    text = rule.to_ical().decode("utf-8", "replace")
                except Exception:
                    text = str(rule)
                reason = rules.refusal(text, component="VEVENT", start=start, until=horizon,
                                       max_instances=options.limits.max_rule_instances)
                if reason:
                    raise CalendarError(f"recurrence not expanded: {reason}")


def _occurrence(component: icalendar.Event, zone, shifts) -> Occurrence | None:
    start_value = _dt_value(component, "DTSTART")
    if start_value is None:
        return None
    start = to_utc(start_value, zone)
    end_value = _dt_value(component, "DTEND")
    if end_value is not None:
        end = to_utc(end_value, zone)
    elif isinstance(start_value, datetime):
        end = start
    else:
        end = start + timedelta(days=1)
    rid_value = _dt_value(component, "RECURRENCE-ID")
    recurrence_id = to_utc(rid_value, zone) if rid_value is not None else start
    shift = shifts.get(recurrence_id)
    if shift is not None and start - shift != recurrence_id:
        recurrence_id = start - shift  # a later occurrence moved by THISANDFUTURE
    return Occurrence(start, max(end, start), recurrence_id)


def _earliest_start(events: list[icalendar.Event], zone) -> datetime:
    starts = [to_utc(value, zone) for value in (_dt_value(e, "DTSTART") for e in events)
              if value is not None]
    return min(starts) if starts else datetime(1900, 1, 1, tzinfo=UTC)


def iter_occurrences(
    parsed: ParsedCalendar,
    uid: str,
    after: datetime,
    options: ReaderOptions,
    *,
    cancelled: Iterable[datetime] = (),
    include_ongoing: bool = True,
    index: int = 0,
):
    """Yield upcoming occurrences in start order (see ``next_occurrence``)."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    zone = options.zone
    after = after.astimezone(UTC)
    cancelled_ids = {moment.astimezone(UTC) for moment in cancelled}
    calendar = _without_unreadable(parsed.objects[index], uid)
    events = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    if not events:
        return
    master = next((e for e in events if e.get("RECURRENCE-ID") is None), None)
    if master is not None and str(master.get("STATUS", "")).strip().upper() == "CANCELLED":
        return  # the whole series is cancelled
    skipped = 0
    seen: set[datetime] = set()
    try:
        _check_rules(events, after, options)
        shifts = _range_shifts(events, options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            query = recurring_ical_events.of(calendar)
            # Nothing happens before the earliest DTSTART: start looking there.
            window_start = max(after, _earliest_start(events, zone) - timedelta(days=1))
            window = _FIRST_WINDOW
            while window_start < _LAST_MOMENT:
                window_end = window_start + min(window, _LAST_MOMENT - window_start)
                found = []
                for component in query.between(
                    window_start.astimezone(zone), window_end.astimezone(zone)
                ):
                    occurrence = _occurrence(component, zone, shifts)
                    if occurrence is None or occurrence.recurrence_id in seen:
                        continue
                    seen.add(occurrence.recurrence_id)
                    status = str(component.get("STATUS", "")).strip().upper()
                    finished = (occurrence.end <= after if include_ongoing
                                else occurrence.start <= after)
                    if finished or status == "CANCELLED" or (
                        occurrence.recurrence_id in cancelled_ids
                    ):
                        skipped += 1
                        if skipped > options.limits.max_skipped_occurrences:
                            return  # at once, not after the rest of a long window
                        continue
                    found.append(occurrence)
                yield from sorted(found, key=lambda item: (item.start, item.end))
                window_start = window_end
                window *= _WINDOW_GROWTH
    except CalendarError:
        raise
    except Exception as exc:  # the library raises many types on odd rules
        raise CalendarError(f"cannot expand the recurrence: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def next_occurrence(
    parsed: ParsedCalendar,
    uid: str,
    after: datetime,
    options: ReaderOptions,
    *,
    cancelled: Iterable[datetime] = (),
    include_ongoing: bool = True,
    index: int = 0,
) -> Occurrence | None:
    """The first occurrence that has not ended at ``after`` (or, with
    ``include_ongoing=False``, that starts after it), skipping cancelled ones.

    Raises ``CalendarError`` when the recurrence cannot be expanded.
    """
    with contextlib.closing(
        iter_occurrences(parsed, uid, after, options, cancelled=cancelled,
                         include_ongoing=include_ongoing, index=index)
    ) as occurrences:
        return next(occurrences, None)
