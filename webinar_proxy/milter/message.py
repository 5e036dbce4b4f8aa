"""A message as a milter sees it (headers one by one, then body chunks) and back.

The MTA hands a milter each header as a (name, value) pair and the body in chunks;
the pipeline wants the whole message as bytes, and what it returns must go back as
edits: the changed headers and a replacement body.  Pure functions, no protocol.

Header values keep their leading white space and folding (the filter asks for
``SMFIP_HDR_LEADSPC``), so the assembled message is the one the MTA will queue:
the pipeline reads exactly the bytes the recipients get.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Most body bytes in one SMFIR_REPLBODY (the protocol's data limit without MDS flags).
MAX_BODY_CHUNK = 65_535


def _crlf(value: bytes) -> bytes:
    """Folded values may come with bare LF (Postfix) or CRLF (Sendmail); the message uses CRLF."""
    return value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def assemble(headers: list[tuple[str, bytes]], body: bytes, *, leading_space: bool) -> bytes:
    """The whole message: each header as ``Name:value`` CRLF, a blank line, the body."""
    separator = b":" if leading_space else b": "
    lines = [name.encode("ascii") + separator + _crlf(value) + b"\r\n" for name, value in headers]
    return b"".join(lines) + b"\r\n" + body


def split_message(content: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Headers (name, value after the colon, folding kept as CRLF) and body of ``content``."""
    end = content.find(b"\r\n\r\n")
    if end < 0:
        block, body = content, b""
    else:
        block, body = content[: end + 2], content[end + 4 :]
    headers: list[tuple[str, bytes]] = []
    for line in block.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b"\r\n" + line)
            continue
        name, _, value = line.partition(b":")
        headers.append((name.decode("ascii", "replace").strip(), value))
    return headers, body


@dataclass(frozen=True)
class HeaderEdit:
    """One header change: ``index`` counts occurrences of ``name`` from 1; an empty value deletes."""

    name: str
    index: int
    value: bytes
    #: True: add a new header (``SMFIR_ADDHEADER``) rather than change one.
    add: bool = False


@dataclass(frozen=True)
class Edits:
    headers: tuple[HeaderEdit, ...]
    #: The new body, or None when the body is unchanged.
    body: bytes | None

    def body_chunks(self) -> list[bytes]:
        if self.body is None:
            return []
        body = self.body
        return [body[i : i + MAX_BODY_CHUNK] for i in range(0, len(body), MAX_BODY_CHUNK)] or [b""]


def edits(original_headers: list[tuple[str, bytes]], original_body: bytes, new: bytes,
          *, leading_space: bool) -> Edits:
    """What turns the received message into ``new``: only the headers that differ, and the body."""
    new_headers, new_body = split_message(new)
    if not leading_space:
        new_headers = [(name, value.removeprefix(b" ")) for name, value in new_headers]
    before: dict[str, list[bytes]] = {}
    after: dict[str, list[bytes]] = {}
    names: dict[str, str] = {}
    for name, value in original_headers:
        before.setdefault(name.lower(), []).append(_crlf(value))
        names.setdefault(name.lower(), name)
    for name, value in new_headers:
        after.setdefault(name.lower(), []).append(value)
        names.setdefault(name.lower(), name)
    changes: list[HeaderEdit] = []
    for key, name in names.items():
        old_values, new_values = before.get(key, []), after.get(key, [])
        for position in range(max(len(old_values), len(new_values))):
            if position >= len(old_values):
                changes.append(HeaderEdit(name, position + 1, new_values[position], add=True))
            elif position >= len(new_values):
                changes.append(HeaderEdit(name, position + 1, b""))
            elif old_values[position] != new_values[position]:
                changes.append(HeaderEdit(name, position + 1, new_values[position]))
    # Deletions from the last occurrence down, so earlier indexes stay valid.
    changes.sort(key=lambda edit: (edit.add, edit.name.lower(), -edit.index if not edit.value else 0))
    return Edits(tuple(changes), None if new_body == original_body else new_body)


def wire_value(value: bytes) -> bytes:
    """A header value as the MTA wants it in an edit: folded with LF, no NUL."""
    return value.replace(b"\r\n", b"\n").replace(b"\x00", b"")
