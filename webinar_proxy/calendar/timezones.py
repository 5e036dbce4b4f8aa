"""Turn the TZIDs real clients write into IANA zone names.

icalendar already knows IANA names and the CLDR Windows names
(``Russian Standard Time`` -> ``Europe/Moscow``).  What it cannot know:

* legacy Exchange names such as ``(GMT+03.00) Moscow, St. Petersburg, Volgograd``
  - we look for a city of the IANA database in the name, else use the offset;
* Lotus Notes short names (``W. Europe``, ``FLE``, ``Eastern``) - the Windows
  name with `` Standard Time`` appended;
* anything else (``BRT`` without a VTIMEZONE) - no answer; the caller decides.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, timedelta
from functools import cache

from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

_LEGACY_OFFSET = re.compile(
    r"^\s*\(?\s*(?:GMT|UTC)\s*(?:(?P<sign>[+-])\s*(?P<hours>\d{1,2})(?:[.:]?(?P<minutes>\d{2}))?)?\s*\)?"
)


@cache
def _zones_by_city() -> dict[str, str]:
    cities: dict[str, str] = {}
    for name in sorted(zoneinfo.available_timezones()):
        if "/" not in name or name.startswith(("Etc/", "SystemV/", "posix/", "right/")):
            continue
        city = name.rsplit("/", 1)[1].replace("_", " ").lower()
        cities.setdefault(city, name)
    return cities


@cache
def _iana_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_iana(name: str) -> bool:
    """Whether ``name`` is a zone of the IANA database.

    Looked up in the list of zone names, not by loading: ``ZoneInfo("a/a/.../a")``
    imports one package per "/" from tzdata and fails with RecursionError after
    seconds (a mutated TZID made classify hang and then crash).
    """
    if len(name) > 64 or name not in _iana_names():
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _fixed_offset_zone(offset: timedelta) -> str | None:
    minutes = int(offset.total_seconds() // 60)
    if minutes % 60:
        return None  # the Etc/ zones have whole hours only
    hours = minutes // 60
    if hours == 0:
        return "Etc/UTC"
    # Etc/GMT signs are inverted: Etc/GMT-3 is three hours ahead of UTC.
    return f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}"


def _legacy_offset(tzid: str) -> timedelta | None:
    match = _LEGACY_OFFSET.match(tzid)
    if not match or not match.group("sign"):
        return None
    sign = 1 if match.group("sign") == "+" else -1
    minutes = int(match.group("hours")) * 60 + int(match.group("minutes") or 0)
    return sign * timedelta(minutes=minutes)


def _city_in(tzid: str) -> str | None:
    cities = _zones_by_city()
    text = _LEGACY_OFFSET.sub("", tzid, count=1)
    for token in re.split(r"[,/;&()]| - ", text):
        city = token.strip().lower()
        if city in cities:
            return cities[city]
    return None


@cache
def iana_name(tzid: str) -> str | None:
    """The IANA zone a client's TZID means, or None if we cannot tell.

    Deliberately not ``icalendar.timezone.tzp.timezone()``: that also answers from
    a process-wide cache filled by the VTIMEZONEs of earlier mails.
    """
    cleaned = tzid.strip().strip('"').strip("/")
    if not cleaned:
        return None
    if is_iana(cleaned):
        return cleaned
    for name in (cleaned, f"{cleaned} Standard Time"):
        if name in WINDOWS_TO_OLSON and is_iana(WINDOWS_TO_OLSON[name]):
            return WINDOWS_TO_OLSON[name]
    if "/" in tzid:
        # A "globally unique" TZID such as /freeassociation.sourceforge.net/Europe/Berlin.
        parts = cleaned.split("/")
        # IANA names have at most three parts: longer suffixes need not be tried
        # (joining every suffix of a long TZID was quadratic).
        for start in range(max(1, len(parts) - 3), len(parts)):
            if is_iana("/".join(parts[start:])):
                return "/".join(parts[start:])
    city = _city_in(cleaned)
    if city:
        return city
    offset = _legacy_offset(cleaned)
    if offset is not None:
        return _fixed_offset_zone(offset)
    return None


def matches_offset(zone: str, when: datetime) -> bool:
    """Whether ``zone`` has the same UTC offset as the aware ``when`` at that instant."""
    try:
        local = when.astimezone(zoneinfo.ZoneInfo(zone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OverflowError):
        return False
    return local.utcoffset() == when.utcoffset()
