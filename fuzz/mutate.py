"""Structured mutations of invitation mails and iCalendar files.

Each mutator takes the input bytes and a ``random.Random`` and returns new bytes;
``mutate`` stacks one to three of them.  They aim at the places where MIME and
iCalendar readers go wrong: byte flips, truncation, duplicated or removed lines,
swapped or broken boundaries, wrong charsets and transfer encodings, huge folded
lines, deep multipart nesting, odd property values, broken VTIMEZONEs, absurd RRULEs,
and a (mutated) calendar wrapped into a fresh mail in any encoding.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
from collections.abc import Callable
from pathlib import Path

Mutator = Callable[[bytes, random.Random], bytes]

CHARSETS = (b"utf-8", b"koi8-r", b"windows-1251", b"iso-8859-1", b"us-ascii", b"utf-16", b"utf-16le",
            b"utf-7", b"iso-2022-jp", b"x-unknown", b"", b'"', b"utf-8'en'", b"big5", b"cp1252")
ENCODINGS = (b"7bit", b"8bit", b"binary", b"base64", b"quoted-printable", b"x-uuencode", b"",
             b"BASE64", b" quoted-printable ", b"bogus")
ODD_VALUES = (
    "", ":", ";", "\\", "\\n", '"', "mailto:", "MAILTO:mailto:x@", "@", "x" * 5000,
    "19000101T000000", "99991231T235959Z", "20240230T250000", "00000000T000000Z", "2024",
    "20240101", "20240101T000000Z/PT1H", "-P1D", "P99999999W", "PT", "TRUE", "-1", "999999999999999999",
    "https://events.webinar.ru/x/1", "https://events.webinar.ru/", "http://[::1", "@webinar",
    "Room 1\\, @webinar; https://events.webinar.ru/o/9", "\u0000", "\u202e\u0085\u2028", "é" * 40,
    "\ud800", "=?utf-8?b?w6k=?=", "<html><body>x</body></html>", "~~ [webinar] ~~",
    "~~ [webinar] ~~\\n" * 2000, "<!--webinar-proxy:begin-->" * 2000, " " * 20000 + ";",
)
PROPERTIES = ("DTSTART", "DTEND", "DURATION", "UID", "ORGANIZER", "ATTENDEE", "RRULE", "RDATE", "EXDATE",
              "SEQUENCE", "LOCATION", "DESCRIPTION", "X-ALT-DESC", "RECURRENCE-ID", "STATUS", "METHOD",
              "SUMMARY", "CONFERENCE", "X-WEBINAR-CONFERENCE", "TZID", "TZOFFSETTO", "TZOFFSETFROM",
              "X-MICROSOFT-CDO-ALLDAYEVENT", "DTSTAMP", "URL")
PARAMS = (";TZID=Europe/Moscow", ';TZID="(GMT+03.00) Moscow, St. Petersburg"', ";TZID=W. Europe",
          ";TZID=", ';TZID="', ";VALUE=DATE", ";VALUE=PERIOD", ";RANGE=THISANDFUTURE",
          ";SENT-BY=mailto:sec@example.com", ";CN=\"a;b:c\"", ";EMAIL=x@example.com",
          ";FMTTYPE=text/html", ";X-A=" + "y" * 300, ";CUTYPE=ROOM", ";X-B=c=d=e" * 30 + ";mailto")
RRULES = (
    "FREQ=SECONDLY", "FREQ=MINUTELY;INTERVAL=1", "FREQ=DAILY;COUNT=999999999", "FREQ=DAILY;INTERVAL=0",
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO",
    "FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=4,6,9,11", "FREQ=WEEKLY;BYDAY=", "FREQ=WEEKLY;BYDAY=XX",
    "FREQ=YEARLY;BYSETPOS=-366;BYYEARDAY=366", "FREQ=DAILY;UNTIL=19000101T000000Z",
    "FREQ=DAILY;UNTIL=99991231", "FREQ=HOURLY;BYHOUR=25", "FREQ=YEARLY;BYWEEKNO=53;BYDAY=SU",
    "FREQ=DAILY;COUNT=1;UNTIL=20300101", "FREQ=NEVER", "FREQ=WEEKLY;WKST=XX;BYDAY=1MO",
    "FREQ=MONTHLY;BYDAY=5FR;COUNT=0", "FREQ=DAILY\\;INTERVAL=2", "FREQ=DAILY;INTERVAL=99999999",
    "FREQ=YEARLY;INTERVAL=400;BYMONTH=2;BYMONTHDAY=29", "FREQ=MONTHLY;BYMONTHDAY=-32", ";;;",
    "FREQ=DAILY;BYWEEKNO=53;BYMONTH=6", "FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29",
    "FREQ=HOURLY;BYSETPOS=2", "FREQ=DAILY;INTERVAL=7;BYDAY=TU", "FREQ=MONTHLY;BYDAY=6FR",
)
VTIMEZONE_BREAKS = (
    (rb"(?m)^END:VTIMEZONE\r?\n?", b""),
    (rb"(?ms)^BEGIN:STANDARD.*?END:STANDARD\r?\n?", b""),
    (rb"(?ms)^BEGIN:DAYLIGHT.*?END:DAYLIGHT\r?\n?", b""),
    (rb"(?m)^TZOFFSETTO:[^\r\n]*", b"TZOFFSETTO:+9999"),
    (rb"(?m)^TZOFFSETFROM:[^\r\n]*", b"TZOFFSETFROM:garbage"),
    (rb"(?m)^(BEGIN:(?:STANDARD|DAYLIGHT)\r?\n)DTSTART:[^\r\n]*", rb"\1DTSTART:00010101T000000"),
    (rb"(?m)^(TZID[:;])[^\r\n]*", rb"\1Europe/Nowhere"),
    (rb"(?m)^RRULE:FREQ=YEARLY[^\r\n]*", b"RRULE:FREQ=YEARLY;BYMONTH=13;BYDAY=-9SU"),
    (rb"(?m)^RRULE:FREQ=YEARLY", b"RRULE:FREQ=SECONDLY"),
    (rb"(?m)^RRULE:FREQ=YEARLY", b"RRULE:FREQ=MINUTELY"),
    (rb"(?m)^RRULE:FREQ=YEARLY[^\r\n]*", b"RRULE:FREQ=DAILY;UNTIL=99991231T000000Z"),
    (rb"(?m)^RRULE:FREQ=YEARLY[^\r\n]*", b"RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30;COUNT=5"),
    (rb"(?m)^BEGIN:VTIMEZONE", b"BEGIN:VTIMEZONE\r\nBEGIN:VTIMEZONE"),
)


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) or [data]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.choice((0, 10, 13, 32, 45, 58, 59, 61, 92, 0xC3, 0xFF,
                                                   rng.randrange(256)))
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def duplicate_lines(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    for _ in range(rng.randint(1, 3)):
        index = rng.randrange(len(lines))
        lines[index:index] = [lines[index]] * rng.choice((1, 1, 2, 50))
    return b"".join(lines)


def remove_lines(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    for _ in range(rng.randint(1, 3)):
        if lines:
            del lines[rng.randrange(len(lines))]
    return b"".join(lines)


def line_endings(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(3)
    if choice == 0:
        return data.replace(b"\r\n", b"\n")
    if choice == 1:
        return data.replace(b"\r\n", b"\r")
    lines = _lines(data)
    index = rng.randrange(len(lines))
    lines[index] = lines[index].rstrip(b"\r\n") + rng.choice((b"\n", b"\r", b"\r\r\n", b"\n\r"))
    return b"".join(lines)


def boundaries(data: bytes, rng: random.Random) -> bytes:
    found = re.findall(rb'boundary="?([^";\r\n]+)"?', data, flags=re.IGNORECASE)
    if not found:
        return data
    target = rng.choice(found)
    choice = rng.randrange(5)
    if choice == 0 and len(set(found)) > 1:  # two multiparts swap their boundaries
        other = rng.choice([b for b in found if b != target] or found)
        return data.replace(target, b"\x00SWAP\x00").replace(other, target).replace(b"\x00SWAP\x00", other)
    if choice == 1:  # the closing delimiter goes
        return data.replace(b"--" + target + b"--", b"")
    if choice == 2:  # one delimiter line is damaged
        positions = [m.start() for m in re.finditer(re.escape(b"--" + target), data)]
        if positions:
            at = rng.choice(positions) + 2 + rng.randrange(len(target))
            return data[:at] + b"~" + data[at + 1 :]
        return data
    if choice == 3:  # the declared boundary is a prefix of the real one
        return data.replace(b"boundary=\"" + target + b"\"", b"boundary=\"" + target[:-1] + b"\"", 1)
    return data.replace(b"--" + target + b"\r\n", b"--" + target + b"  \t\r\n", 1)


def charsets(data: bytes, rng: random.Random) -> bytes:
    matches = list(re.finditer(rb"(?i)charset=(\"[^\"]*\"|[^;\s]*)", data))
    if not matches:
        return data
    match = rng.choice(matches)
    return data[: match.start(1)] + rng.choice(CHARSETS) + data[match.end(1) :]


def transfer_encodings(data: bytes, rng: random.Random) -> bytes:
    matches = list(re.finditer(rb"(?im)^content-transfer-encoding:[ \t]*([^\r\n]*)", data))
    if not matches:
        return data
    match = rng.choice(matches)
    return data[: match.start(1)] + rng.choice(ENCODINGS) + data[match.end(1) :]


def content_types(data: bytes, rng: random.Random) -> bytes:
    matches = list(re.finditer(rb"(?im)^content-type:[ \t]*([^;\r\n]*)", data))
    if not matches:
        return data
    match = rng.choice(matches)
    new = rng.choice((b"text/calendar", b"application/ics", b"multipart/mixed", b"message/rfc822",
                      b"text/plain", b"text/html", b"application/octet-stream", b"multipart/alternative",
                      b"text/x-vcalendar", b"", b"text/calendar; method=REQUEST; method=CANCEL"))
    return data[: match.start(1)] + new + data[match.end(1) :]


def huge_line(data: bytes, rng: random.Random) -> bytes:
    size = rng.choice((1000, 10_000, 200_000))
    lines = _lines(data)
    index = rng.randrange(len(lines))
    if rng.random() < 0.5:  # a folded iCalendar property
        value = ("@webinar " * (size // 9))[:size]
        chunks = [value[i : i + 74] for i in range(0, len(value), 74)]
        new = ("DESCRIPTION:" + "\r\n ".join(chunks) + "\r\n").encode()
    else:  # one unfolded line (header or body)
        new = b"X-Long: " + b"a" * size + b"\r\n"
    lines.insert(index, new)
    return b"".join(lines)


def nest(data: bytes, rng: random.Random) -> bytes:
    """Wrap the whole message in multipart/mixed (or message/rfc822) levels."""
    for level in range(rng.choice((1, 2, 5, 13, 30))):
        if rng.random() < 0.2:
            data = b"Content-Type: message/rfc822\r\n\r\n" + data
        else:
            boundary = f"nest{level}".encode()
            data = (b"Content-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n\r\n--" + boundary
                    + b"\r\n" + data + b"\r\n--" + boundary + b"--\r\n")
    return b"From: organizer@example.com\r\nMIME-Version: 1.0\r\n" + data


def property_values(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    candidates = [i for i, line in enumerate(lines)
                  if re.match(rb"[A-Z][A-Z-]*[;:]", line) and not line.startswith((b"BEGIN:", b"END:"))]
    name = rng.choice(PROPERTIES)
    params = rng.choice(PARAMS) if rng.random() < 0.3 else ""
    value = rng.choice(ODD_VALUES) if rng.random() < 0.7 else rng.choice(RRULES)
    new = f"{name}{params}:{value}\r\n".encode("utf-8", "surrogatepass")
    if candidates and rng.random() < 0.6:
        index = rng.choice(candidates)
        if rng.random() < 0.5:  # keep the name, change the value
            head = re.match(rb"[^:]*", lines[index]).group()  # type: ignore[union-attr]
            new = head + b":" + value.encode("utf-8", "surrogatepass") + b"\r\n"
        lines[index] = new
    else:
        anchor = [i for i, line in enumerate(lines) if line.startswith(b"END:VEVENT")]
        lines.insert(rng.choice(anchor) if anchor else rng.randrange(len(lines) + 1), new)
    return b"".join(lines)


def absurd_rrule(data: bytes, rng: random.Random) -> bytes:
    rule = rng.choice(RRULES).encode()
    if re.search(rb"(?m)^RRULE:", data) and rng.random() < 0.5:
        return re.sub(rb"(?m)^RRULE:[^\r\n]*", b"RRULE:" + rule.replace(b"\\", b"\\\\"), data, count=1)
    return re.sub(rb"(?m)^(END:VEVENT)", b"RRULE:" + rule.replace(b"\\", b"\\\\") + rb"\r\n\1", data,
                  count=1)


def break_vtimezone(data: bytes, rng: random.Random) -> bytes:
    pattern, replacement = rng.choice(VTIMEZONE_BREAKS)
    return re.sub(pattern, replacement, data, count=1)


def wrap_in_mail(data: bytes, rng: random.Random) -> bytes:
    """A bare calendar (or the calendar text of a mail) wrapped into a new mail."""
    start = data.find(b"BEGIN:VCALENDAR")
    end = data.rfind(b"END:VCALENDAR")
    ics = data[start : end + len(b"END:VCALENDAR")] + b"\r\n" if 0 <= start < end else data
    encoding = rng.choice((b"7bit", b"8bit", b"base64", b"quoted-printable"))
    charset = rng.choice((b"utf-8", b"koi8-r", b"utf-16", b"windows-1251"))
    if encoding == b"base64":
        body = base64.encodebytes(ics).replace(b"\n", b"\r\n")
    elif encoding == b"quoted-printable":
        body = binascii.b2a_qp(ics).replace(b"=\n", b"=\r\n")
    else:
        body = ics
    method = rng.choice((b"; method=REQUEST", b"", b"; method=CANCEL"))
    disposition = rng.choice((b"", b"Content-Disposition: attachment; filename=invite.ics\r\n"))
    html = b"<html><head></head><body><p>Invitation</p></body></html>\r\n"
    return (
        b"From: Organizer <organizer@example.com>\r\nTo: a@example.net\r\nSubject: fuzz\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
        b"--outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n"
        b"--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYou are invited.\r\n"
        b"--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html +
        b"--inner\r\nContent-Type: text/calendar; charset=" + charset + method + b"\r\n"
        b"Content-Transfer-Encoding: " + encoding + b"\r\n" + disposition + b"\r\n" + body +
        b"\r\n--inner--\r\n--outer\r\nContent-Type: application/pdf; name=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfs\r\n--outer--\r\n"
    )


MUTATORS: tuple[Mutator, ...] = (
    flip_bytes, truncate, duplicate_lines, remove_lines, line_endings, boundaries, charsets,
    transfer_encodings, content_types, huge_line, nest, property_values, property_values, absurd_rrule,
    absurd_rrule, break_vtimezone, wrap_in_mail,
)


def mutate(data: bytes, rng: random.Random, *, max_size: int = 4 * 1024 * 1024) -> bytes:
    for _ in range(rng.choice((1, 1, 2, 3))):
        data = rng.choice(MUTATORS)(data, rng)
        if len(data) > max_size:
            data = data[:max_size]
    return data


def load_seeds(directory: Path) -> list[bytes]:
    """Every corpus file; the mbox is split into its messages."""
    seeds = []
    for path in sorted(directory.iterdir()):
        if path.suffix in (".eml", ".ics"):
            seeds.append(path.read_bytes())
        elif path.suffix == ".mbox":
            for message in re.split(rb"(?m)^From [^\r\n]*\r?\n", path.read_bytes()):
                if message.strip():
                    seeds.append(message)
    return seeds
