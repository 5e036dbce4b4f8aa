"""Put one fenced join block into plain text or HTML, replacing any earlier one.

The fences are fixed ASCII markers, independent of the template and language, so
a block written by an older template (or in another language) is still found and
replaced.  Inserting is idempotent: ``insert(insert(x)) == insert(x)``, and
``remove(insert(x)) == remove(x)``.

Plain text: the block goes first, followed by an empty line, because a reader
sees the top of a message.  HTML: right after the ``<body>`` tag.
"""

from __future__ import annotations

import re

TEXT_BEGIN = "~~~~~~~~~~~~~~~~~~~~~~~~ [webinar] ~~~~~~~~~~~~~~~~~~~~~~~~"
TEXT_END = "~~~~~~~~~~~~~~~~~~~~~~~ [/webinar] ~~~~~~~~~~~~~~~~~~~~~~~~"
HTML_BEGIN = "<!--webinar-proxy:begin-->"
HTML_END = "<!--webinar-proxy:end-->"

_EOL = r"(?:\r\n|\n|\r)"
_LINE_START = r"(?:^|(?<=[\r\n]))"  # "^" with MULTILINE ignores CR-only line ends
# Begin and end fences are searched for separately: one pattern with ".*?" between
# them rescanned the rest of the text for every begin fence without an end (quadratic),
# and paired an end fence with the first begin fence of the text, not its own.
_TEXT_BEGIN = re.compile(rf"{_LINE_START}[ \t]*~+[ \t]*\[webinar\][ \t]*~+[ \t]*{_EOL}")
_TEXT_END = re.compile(rf"{_LINE_START}[ \t]*~+[ \t]*\[/webinar\][ \t]*~+[ \t]*(?:{_EOL}{_EOL}?)?")
_HTML_BEGIN = re.compile(re.escape(HTML_BEGIN))
_HTML_END = re.compile(rf"{re.escape(HTML_END)}{_EOL}?")
# The tag's end is found with str.find: "<body\b[^>]*>" rescanned the rest of the text
# for every "<body" without a ">" after it (quadratic).
_BODY_TAG = re.compile(r"(?i)<body\b")
_HEAD_END = re.compile(r"(?i)</head\s*>|<html\b")


def _eol_of(text: str, default: str) -> str:
    match = re.search(_EOL, text)
    return match.group() if match else default


def _remove_fenced(text: str, begin: re.Pattern[str], end: re.Pattern[str]) -> str:
    """``text`` without each end fence and the begin fence nearest before it.

    Our block is a begin fence, the block, an end fence; a stray begin fence before
    it (text a client wrote) stays, so removing and inserting again is idempotent.
    Every stretch of text is searched once.
    """
    kept: list[str] = []
    position = 0
    while (closing := end.search(text, position)) is not None:
        opening = None
        for opening in begin.finditer(text, position, closing.start()):  # noqa: B007 - the last one
            pass
        if opening is None:  # an end fence with no begin fence before it stays
            kept.append(text[position : closing.end()])
        else:
            kept.append(text[position : opening.start()])
        position = closing.end()
    kept.append(text[position:])
    return "".join(kept)


def remove_text_block(text: str) -> str:
    return _remove_fenced(text, _TEXT_BEGIN, _TEXT_END)


def render_text_block(lines: str, eol: str) -> str:
    """Fence the rendered template (its own line breaks become ``eol``)."""
    body = [line.rstrip() for line in re.split(_EOL, lines.strip("\r\n"))]
    return eol.join([TEXT_BEGIN, *body, TEXT_END])


def insert_text_block(text: str, block_lines: str, default_eol: str = "\r\n") -> str:
    """``text`` with exactly one join block at the top."""
    rest = remove_text_block(text)
    eol = _eol_of(rest, default_eol)
    block = render_text_block(block_lines, eol)
    if not rest:
        return block
    return block + eol + eol + rest


def remove_html_block(html: str) -> str:
    return _remove_fenced(html, _HTML_BEGIN, _HTML_END)


def _after_tag(html: str, start: re.Pattern[str]) -> int:
    """Where the first tag that ``start`` begins ends (0: no such tag)."""
    match = start.search(html)
    if match is None:
        return 0
    if match.group().endswith(">"):
        return match.end()
    close = html.find(">", match.end())
    return close + 1 if close >= 0 else 0


def insert_html_block(html: str, block_html: str, default_eol: str = "\r\n") -> str:
    """``html`` with exactly one join block, first thing inside ``<body>``."""
    rest = remove_html_block(html)
    eol = _eol_of(rest, default_eol)
    block = HTML_BEGIN + re.sub(_EOL, eol, block_html.strip()) + HTML_END
    position = _after_tag(rest, _BODY_TAG) or _after_tag(rest, _HEAD_END)
    if position and rest.startswith(("\r\n", "\n", "\r"), position):
        # Keep the tag's own line break where it was; the block takes the next line.
        newline = _eol_of(rest[position : position + 2], eol)
        position += len(newline)
    return rest[:position] + block + eol + rest[position:]
