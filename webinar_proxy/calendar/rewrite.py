"""Change the conference properties of one UID's VEVENTs, leaving every other line alone.

Works on content lines (see ``contentlines``): a property that does not change
keeps its original bytes, including its folding; SEQUENCE, DTSTAMP and UID are
never touched.  What the LOCATION, DESCRIPTION and X-ALT-DESC values become is
decided by the caller's functions, so this module knows nothing about templates.

New or changed lines use the text's own line ending and are folded at 75 octets.
The RFC 7986 CONFERENCE property this relay writes is recognised by its link, so
a CONFERENCE another system wrote (Google Meet, Teams) stays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from webinar_proxy.calendar.contentlines import (
    Line,
    components,
    escape_text,
    fold,
    line_ending,
    param,
    parses,
    split_lines,
    split_property,
    unescape_text,
)

TextChange = Callable[[str | None], str | None]


@dataclass(frozen=True)
class EventEdit:
    """What to do to each VEVENT of the UID."""

    #: The CONFERENCE link to write, or None to take ours out.
    conference_link: str | None
    label: str
    is_our_link: Callable[[str], bool]
    #: Unescaped old LOCATION (None if absent) -> new value (None drops the property).
    location: TextChange
    description: TextChange
    #: Unescaped HTML of ``X-ALT-DESC;FMTTYPE=text/html`` -> new HTML.
    html_description: Callable[[str], str]


def conference_line(link: str, label: str) -> str:
    clean_label = label.replace('"', "")
    if any(char in clean_label for char in ';:,') or not clean_label:
        clean_label = f'"{clean_label}"'
    return f"CONFERENCE;VALUE=URI;FEATURE=AUDIO,VIDEO;LABEL={clean_label}:{link}"


def _uid_of(lines: list[Line], begin: int, end: int) -> str | None:
    depth = 0
    for line in lines[begin + 1 : end]:
        upper = line.logical[:6].upper()
        if upper.startswith("BEGIN:"):
            depth += 1
        elif upper.startswith("END:"):
            depth = max(depth - 1, 0)  # a stray END closes nothing
        elif depth == 0 and line.name == "UID" and parses(line.logical):
            # icalendar skips a UID line it cannot parse and takes the next one.
            return unescape_text(split_property(line.logical)[1]).strip()
    return None


def rewrite_events(text: str, uid: str, edit: EventEdit) -> tuple[str, int]:
    """``text`` with every VEVENT of ``uid`` changed as ``edit`` says, and how many
    VEVENTs carry that UID."""
    lines = split_lines(text)
    eol = line_ending(text)
    replaced: dict[int, str] = {}
    inserted: dict[int, list[str]] = {}
    matched = 0
    for block in components(lines):
        if block.name != "VEVENT" or _uid_of(lines, block.begin, block.end) != uid:
            continue
        matched += 1
        _edit_event(lines, block.begin, block.end, edit, eol, replaced, inserted)
    if not replaced and not inserted:
        return text, matched
    out: list[str] = []
    for index, line in enumerate(lines):
        out.extend(inserted.get(index, ()))
        out.append(replaced.get(index, line.raw))
    return "".join(out), matched


def _edit_event(
    lines: list[Line],
    begin: int,
    end: int,
    edit: EventEdit,
    eol: str,
    replaced: dict[int, str],
    inserted: dict[int, list[str]],
) -> None:
    own: list[int] = []  # the VEVENT's own property lines, not its VALARMs
    first_nested = end
    depth = 0
    for index in range(begin + 1, end):
        upper = lines[index].logical[:6].upper()
        if upper.startswith("BEGIN:"):
            if depth == 0 and first_nested == end:
                first_nested = index
            depth += 1
        elif upper.startswith("END:"):
            depth = max(depth - 1, 0)  # a stray END closes nothing
        elif depth == 0:
            own.append(index)
    additions: list[str] = []

    def set_text(name: str, change: TextChange) -> None:
        index = next((i for i in own if lines[i].name == name), None)
        if index is None:
            new = change(None)
            if new is not None:
                additions.append(f"{name}:{escape_text(new)}")
            return
        head, raw_value = split_property(lines[index].logical)
        if head.count('"') % 2:
            # An unclosed quoted parameter swallowed the colon and the value; written
            # back under that head, the new value would be swallowed again.
            head, raw_value = name, ""
        old = unescape_text(raw_value)
        new = change(old)
        if new == old:
            return
        if new is None:
            replaced[index] = ""
        else:
            replaced[index] = fold(f"{head}:{escape_text(new)}", _ending(lines[index], eol))

    set_text("LOCATION", edit.location)
    set_text("DESCRIPTION", edit.description)
    for index in own:
        if lines[index].name != "X-ALT-DESC":
            continue
        head, raw_value = split_property(lines[index].logical)
        if (param(head, "FMTTYPE") or "").lower() != "text/html":
            continue
        old = unescape_text(raw_value)
        new = edit.html_description(old)
        if new != old:
            replaced[index] = fold(f"{head}:{escape_text(new)}", _ending(lines[index], eol))
    for index in own:
        if lines[index].name == "CONFERENCE":
            _, value = split_property(lines[index].logical)
            if edit.is_our_link(value.strip()):
                replaced[index] = ""
    if edit.conference_link is not None:
        additions.append(conference_line(edit.conference_link, edit.label))
    if additions:
        # New lines go before the first line icalendar cannot parse (as written): icalendar
        # skips that line, stricter readers may skip the rest, so every reader sees them.
        unreadable = next((index for index in own if not parses(_final(lines, replaced, index))), end)
        at = min(first_nested, unreadable)
        # Each new line ends as the line before it did, so the text that follows meets the
        # same line break as before (a CR written before an empty LF line would make CRLF).
        line_end = _ending(lines[at - 1], eol)
        inserted.setdefault(at, []).extend(fold(addition, line_end) for addition in additions)


def _ending(line: Line, default: str) -> str:
    """The line break that ends ``line`` as written (``default`` for a last line without one)."""
    return line.raw[len(line.raw.rstrip("\r\n")):] or default


def _final(lines: list[Line], replaced: dict[int, str], index: int) -> str:
    """The logical line at ``index`` as it will be written ("" when it goes)."""
    if index not in replaced:
        return lines[index].logical
    written = split_lines(replaced[index])
    return written[0].logical if written else "X-REMOVED:"

