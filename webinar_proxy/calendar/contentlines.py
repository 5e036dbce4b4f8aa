"""iCalendar as text: content lines with their exact original bytes.

The rewrite edits a few properties of some VEVENTs and must leave every other
line exactly as the client wrote it (folding, parameter order, odd escapes), so
it works on content lines rather than on a parsed object model.  A ``Line`` is
one logical (unfolded) content line plus the physical text it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from icalendar.parser import Contentline

_PHYSICAL = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+$")
FOLD_OCTETS = 75


@dataclass(frozen=True)
class Line:
    """One logical content line."""

    #: The original physical text, line endings included.
    raw: str
    #: Unfolded, without the line ending.
    logical: str

    @property
    def name(self) -> str:
        return property_name(self.logical)


def split_lines(text: str) -> list[Line]:
    """Unfold ``text`` into logical lines; empty lines become lines of their own."""
    lines: list[Line] = []
    raw_parts: list[str] = []
    logical_parts: list[str] = []

    def flush() -> None:
        if raw_parts:
            lines.append(Line("".join(raw_parts), "".join(logical_parts)))
            raw_parts.clear()
            logical_parts.clear()

    for match in _PHYSICAL.finditer(text):
        physical = match.group()
        content = physical.rstrip("\r\n")
        if content[:1] in (" ", "\t") and logical_parts:
            raw_parts.append(physical)
            logical_parts.append(content[1:])
            continue
        flush()
        raw_parts.append(physical)
        logical_parts.append(content)
    flush()
    return lines


def parses(logical: str) -> bool:
    """Whether icalendar can split ``logical`` into name, parameters and value.

    icalendar skips a line it cannot split and reads on, so such a line carries no
    property: whoever looks for a property (the rewrite, the stored copy) skips it too.
    """
    try:
        Contentline(logical).parts()
    except Exception:  # icalendar raises ValueError, sometimes others, on bad lines
        return False
    return True


def line_ending(text: str) -> str:
    match = re.search(r"\r\n|\n|\r", text)
    return match.group() if match else "\r\n"


def _split_name_params(logical: str) -> tuple[str, int]:
    """Return (name+params part, index of the value colon) honouring quoted params."""
    quoted = False
    for index, char in enumerate(logical):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            return logical[:index], index
    return logical, len(logical)


def property_name(logical: str) -> str:
    head = re.match(r"[A-Za-z0-9-]*", logical)
    return head.group().upper() if head else ""


def split_property(logical: str) -> tuple[str, str]:
    """Return (``NAME;PARAMS`` exactly as written, raw value)."""
    head, colon = _split_name_params(logical)
    return head, logical[colon + 1 :]


def param(head: str, name: str) -> str | None:
    """The value of parameter ``name`` in ``NAME;P1=...;P2=...`` (unquoted)."""
    pattern = re.compile(
        rf';[ \t]*{re.escape(name)}[ \t]*=[ \t]*("([^"]*)"|[^;:]*)', re.IGNORECASE
    )
    match = pattern.search(head)
    if not match:
        return None
    return match.group(2) if match.group(2) is not None else match.group(1).strip()


def unescape_text(value: str) -> str:
    """RFC 5545 TEXT value to plain text (``\\n`` -> newline, ``\\,`` -> ``,``...)."""

    def replace(match: re.Match[str]) -> str:
        char = match.group(1)
        return "\n" if char in "nN" else char

    return re.sub(r"\\(.)", replace, value)


def escape_text(text: str) -> str:
    text = text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return re.sub(r"\r\n|\n|\r", r"\\n", text)


def fold(logical: str, eol: str) -> str:
    """Fold one logical line at 75 octets without splitting a UTF-8 sequence."""
    if logical.isascii():  # one octet per character: slice (most lines; the fuzzer's hot path)
        if len(logical) <= FOLD_OCTETS:
            return logical + eol
        pieces = [logical[:FOLD_OCTETS]]
        pieces += [" " + logical[i : i + FOLD_OCTETS - 1]
                   for i in range(FOLD_OCTETS, len(logical), FOLD_OCTETS - 1)]
        return eol.join(pieces) + eol
    pieces = []
    current = ""
    current_octets = 0
    limit = FOLD_OCTETS
    for char in logical:
        size = len(char.encode("utf-8", "surrogateescape"))
        if current_octets + size > limit:
            pieces.append(current)
            current = " "
            current_octets = 1
        current += char
        current_octets += size
    pieces.append(current)
    return eol.join(pieces) + eol


@dataclass(frozen=True)
class Block:
    """A component's extent in a list of lines: ``lines[begin]`` is its BEGIN line."""

    name: str
    begin: int
    end: int  # index of the END line
    depth: int


def components(lines: list[Line]) -> list[Block]:
    """Every BEGIN/END pair, outermost first in document order.

    Read as icalendar reads them: an END line closes the innermost open component,
    whatever name it carries (``END:VG&ENT`` ends a VEVENT); an END with nothing
    open is ignored.  A component still open at the end is not a block (see
    ``still_open``).
    """
    blocks: list[Block] = []
    stack: list[tuple[str, int]] = []
    for index, line in enumerate(lines):
        upper = line.logical.strip().upper()
        if upper.startswith("BEGIN:"):
            stack.append((upper[6:].strip(), index))
        elif upper.startswith("END:") and stack:
            begin_name, begin = stack.pop()
            blocks.append(Block(begin_name, begin, index, len(stack)))
    blocks.sort(key=lambda block: block.begin)
    return blocks


def still_open(lines: list[Line]) -> list[str]:
    """Names of the components open after the last line, innermost first."""
    stack: list[str] = []
    for line in lines:
        upper = line.logical.strip().upper()
        if upper.startswith("BEGIN:"):
            stack.append(upper[6:].strip())
        elif upper.startswith("END:") and stack:
            stack.pop()
    return stack[::-1]
