"""Bounds on recurrence rules (RRULE/EXRULE values), checked before any library expands them.

dateutil, which both icalendar (VTIMEZONE observances) and recurring-ical-events
(VEVENT series) use, walks a rule period by period from its DTSTART.  A rule
that can never match (``BYMONTH=2;BYMONTHDAY=30``) makes it walk to the year
9999; a fine frequency (``FREQ=SECONDLY`` in a VTIMEZONE) makes icalendar list
every second since DTSTART.  ``refusal`` answers, without expanding the rule in
full, why a rule must not be expanded (or None):

* unknown or too fine a FREQ (finer than DAILY in a VTIMEZONE, than HOURLY in a
  VEVENT), INTERVAL below 1, BYSETPOS with HOURLY;
* BYxxx values outside RFC 5545's ranges (BYMONTH 1..12, BYMONTHDAY ±1..31,
  BYDAY ordinals ±1..53, or ±1..5 in a monthly rule, ...);
* more instances to pass than the caller allows (``max_instances``, an upper
  bound from the frequency, INTERVAL and the BYxxx lists) between DTSTART and
  ``until`` (the caller's horizon, or the rule's own UNTIL when earlier);
* no instance at all: probed by running the rule from a start late in the
  calendar (same date, time, weekday and leap-year phase as DTSTART, in 9944..9971),
  so dateutil stops at its last year 9999 within 56 years; every kind of year
  (leap or not, starting on each weekday) comes in any 28 of them.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache

FREQUENCIES = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY", "SECONDLY")
#: Roughly how long one period of each frequency is.
_PERIOD = {
    "YEARLY": timedelta(days=365.25), "MONTHLY": timedelta(days=30.44), "WEEKLY": timedelta(weeks=1),
    "DAILY": timedelta(days=1), "HOURLY": timedelta(hours=1), "MINUTELY": timedelta(minutes=1),
    "SECONDLY": timedelta(seconds=1),
}
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February in a leap year
# (name, lowest, highest, negative allowed)
_RANGES = (
    ("BYSECOND", 0, 60, False), ("BYMINUTE", 0, 59, False), ("BYHOUR", 0, 23, False),
    ("BYMONTHDAY", 1, 31, True), ("BYYEARDAY", 1, 366, True), ("BYWEEKNO", 1, 53, True),
    ("BYMONTH", 1, 12, False), ("BYSETPOS", 1, 366, True),
)
_PROBE_YEAR = 9944  # dateutil stops after 9999; no century year in between
_FINEST = {"VTIMEZONE": "DAILY", "VEVENT": "HOURLY"}


def parse(value: str) -> dict[str, str]:
    """``FREQ=DAILY;BYDAY=MO,TU`` -> ``{"FREQ": "DAILY", "BYDAY": "MO,TU"}`` (names upper-cased)."""
    parts: dict[str, str] = {}
    for item in value.strip().split(";"):
        if not item.strip():
            continue
        name, _, text = item.partition("=")
        parts[name.strip().upper()] = text.strip().upper()
    return parts


def _integers(text: str) -> list[int] | None:
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        return None


def _weekdays(text: str) -> list[tuple[int, str]] | None:
    """BYDAY items as (ordinal or 0, weekday)."""
    found = []
    for item in text.split(","):
        item = item.strip()
        day = item[-2:]
        if day not in _WEEKDAYS:
            return None
        number = item[:-2]
        if number in ("", "+", "-"):
            found.append((0, day))
            continue
        try:
            found.append((int(number), day))
        except ValueError:
            return None
    return found


def _range_refusal(parts: dict[str, str]) -> str | None:
    frequency = parts.get("FREQ", "")
    for name, low, high, negative in _RANGES:
        if name not in parts:
            continue
        values = _integers(parts[name])
        if not values:
            return f"{name}={parts[name]} is not a list of numbers"
        for value in values:
            if not (low <= value <= high or (negative and -high <= value <= -1)):
                return f"{name}={value} is out of range"
    if "BYDAY" in parts:
        days = _weekdays(parts["BYDAY"])
        if not days:
            return f"BYDAY={parts['BYDAY']} is not a list of weekdays"
        monthly = frequency == "MONTHLY" or (frequency == "YEARLY" and "BYMONTH" in parts)
        highest = 5 if monthly else 53
        for ordinal, day in days:
            if ordinal and not (1 <= abs(ordinal) <= highest):
                return f"BYDAY={ordinal}{day} is out of range"
    if "WKST" in parts and parts["WKST"] not in _WEEKDAYS:
        return f"WKST={parts['WKST']} is not a weekday"
    return None


def _combination_refusal(parts: dict[str, str]) -> str | None:
    """Month days or year days that no listed month has (``BYMONTH=2;BYMONTHDAY=30``)."""
    months = _integers(parts["BYMONTH"]) if "BYMONTH" in parts else list(range(1, 13))
    longest = max(_DAYS_IN_MONTH[month - 1] for month in months or [1])
    if "BYMONTHDAY" in parts and all(abs(day) > longest for day in _integers(parts["BYMONTHDAY"]) or []):
        return f"no month of BYMONTH has day {parts['BYMONTHDAY']}"
    return None


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # "²".isdigit() is true, int("²") fails


_EXPANDING = ("BYMONTH", "BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY", "BYHOUR", "BYMINUTE", "BYSECOND")


def _per_period(parts: dict[str, str]) -> int:
    """At most how many instances one period yields (an upper bound)."""
    factor = 1
    for name in _EXPANDING:
        if name in parts:
            factor *= max(len(parts[name].split(",")), 1)
    frequency = parts["FREQ"]
    plain_weekday = any(item.strip()[:-2] in ("", "+", "-") for item in parts.get("BYDAY", "").split(","))
    if "BYDAY" in parts and plain_weekday and not {"BYMONTHDAY", "BYYEARDAY"} & parts.keys():
        if frequency == "YEARLY" and not {"BYMONTH", "BYWEEKNO"} & parts.keys():
            factor *= 53  # every Monday of the year
        elif frequency in ("YEARLY", "MONTHLY"):
            factor *= 5  # every Monday of the month
    return factor


def _instances(parts: dict[str, str], start: datetime, until: datetime) -> float:
    """At most how many instances dateutil passes from ``start`` to ``until``."""
    interval = int(parts.get("INTERVAL", "1"))
    periods = (until - start).total_seconds() / (_PERIOD[parts["FREQ"]].total_seconds() * interval)
    instances = periods * _per_period(parts)
    count = parts.get("COUNT", "")
    if _digits(count):
        # COUNT ends the walk after that many instances; a rule with instances has one at
        # least every 56 years (see ``_probe``), so the walk between them is bounded too.
        instances = min(instances, int(count))
    return instances


def rule_until(value: str) -> datetime | None:
    """The date of the rule's UNTIL (naive), if it has a readable one."""
    text = parse(value).get("UNTIL", "")
    try:
        return datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def refusal(
    value: str,
    *,
    component: str,
    start: date | datetime | None,
    until: datetime,
    max_instances: int,
) -> str | None:
    """Why the rule ``value`` of a ``component`` ("VEVENT" or "VTIMEZONE") must not be
    expanded from ``start`` up to ``until`` (naive, local), or None if it may."""
    parts = parse(value)
    frequency = parts.get("FREQ", "")
    if frequency not in FREQUENCIES:
        return f"unknown FREQ={frequency}"
    finest = _FINEST[component]
    if FREQUENCIES.index(frequency) > FREQUENCIES.index(finest):
        return f"FREQ={frequency} is too frequent for a {component} (finer than {finest})"
    interval = parts.get("INTERVAL", "1")
    if not _digits(interval) or int(interval) < 1:
        return f"INTERVAL={interval}"
    if "BYSETPOS" in parts and frequency == "HOURLY":
        return "BYSETPOS with FREQ=HOURLY"
    reason = _range_refusal(parts) or _combination_refusal(parts)
    if reason:
        return reason
    if start is not None:
        first = start if isinstance(start, datetime) else datetime(start.year, start.month, start.day)
        first = first.replace(tzinfo=None)
        own_until = rule_until(value)
        last = min(until, own_until) if own_until else until
        if last > first and _instances(parts, first, last) > max_instances:
            return (f"FREQ={frequency} from {first:%Y-%m-%d} to {last:%Y-%m-%d} passes more than "
                    f"{max_instances} instances")
        if not _has_instances(value, first):
            return "the rule has no instance"
    return None


def _has_instances(value: str, start: datetime) -> bool:
    # Only the phase of the start within its period matters to the probe.
    return _probe(_without_end(value), start.month, start.day, start.hour, start.minute,
                  start.second, start.weekday(), start.year % 4)


def _without_end(value: str) -> str:
    return ";".join(item for item in value.split(";")
                    if item.strip().upper().partition("=")[0] not in ("UNTIL", "COUNT"))


@lru_cache(maxsize=1024)
def _probe(value: str, month: int, day: int, hour: int, minute: int, second: int,
           weekday: int, leap_phase: int) -> bool:
    from dateutil.rrule import rrulestr

    # A start with the same date, time, weekday and place in the leap cycle, taken from
    # the 28 years from 9944 (no century year up to 9999), so the probe walks 28 to 56
    # years, in which every kind of year comes at least once.
    candidate = None
    for year in range(_PROBE_YEAR, _PROBE_YEAR + 28):
        if year % 4 != leap_phase:
            continue
        try:
            moment = datetime(year, month, day, hour, minute, second)
        except ValueError:
            continue
        if moment.weekday() == weekday:
            candidate = moment
            break
    if candidate is None:
        return True  # cannot place the probe: the caller's other bounds still hold
    try:
        rule = rrulestr(value, dtstart=candidate)
        return next(iter(rule), None) is not None
    except (ValueError, TypeError, OverflowError, IndexError, KeyError):
        return False
