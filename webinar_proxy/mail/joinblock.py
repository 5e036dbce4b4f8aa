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
_TEXT_BLOCK = re.compile(
    rf"(?s){_LINE_START}[ \t]*~+[ \t]*\[webinar\][ \t]*~+[ \t]*{_EOL}.*?"
    rf"{_LINE_START}[ \t]*~+[ \t]*\[/webinar\][ \t]*~+[ \t]*(?:{_EOL}{_EOL}?)?"
)
_HTML_BLOCK = re.compile(
    rf"(?s){re.escape(HTML_BEGIN)}.*?{re.escape(HTML_END)}{_EOL}?"
)
_BODY_TAG = re.compile(r"(?is)<body\b[^>]*>")
_HEAD_END = re.compile(r"(?is)</head\s*>|<html\b[^>]*>")


def _eol_of(text: str, default: str) -> str:
    match = re.search(_EOL, text)
    return match.group() if match else default


def remove_text_block(text: str) -> str:
    return _TEXT_BLOCK.sub("", text)


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
    return _HTML_BLOCK.sub("", html)


def insert_html_block(html: str, block_html: str, default_eol: str = "\r\n") -> str:
    """``html`` with exactly one join block, first thing inside ``<body>``."""
    rest = remove_html_block(html)
    eol = _eol_of(rest, default_eol)
    block = HTML_BEGIN + re.sub(_EOL, eol, block_html.strip()) + HTML_END
    body = _BODY_TAG.search(rest) or _HEAD_END.search(rest)
    position = body.end() if body else 0
    if position and rest.startswith(("\r\n", "\n", "\r"), position):
        # Keep the tag's own line break where it was; the block takes the next line.
        newline = _eol_of(rest[position : position + 2], eol)
        position += len(newline)
    return rest[:position] + block + eol + rest[position:]
