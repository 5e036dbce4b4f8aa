"""Read a leaf part's text and write changed text back as a byte splice.

Decoding undoes the transfer encoding and the charset.  Every decode keeps what is
needed to encode the same way again (codec, transfer encoding, line ending), so a
part whose text did not change is never touched, and a changed part is re-encoded
as close to the original as the new text allows.  When the new text does not fit
the old charset or transfer encoding, the part's Content-Type charset or
Content-Transfer-Encoding header line is changed - only that line.
"""

from __future__ import annotations

import binascii
import codecs
import re
from dataclasses import dataclass

from webinar_proxy.mail.structure import MimeEntity

_TEXTUAL_ENCODINGS = ("7bit", "8bit", "binary")
_SUPPORTED_ENCODINGS = (*_TEXTUAL_ENCODINGS, "base64", "quoted-printable")
_EOL = re.compile(r"\r\n|\n|\r")
_MAX_7BIT_LINE = 998


class PayloadError(ValueError):
    """A part's body cannot be decoded or re-encoded faithfully."""


@dataclass(frozen=True)
class Splice:
    """Replace ``raw[start:end]`` with ``data``."""

    start: int
    end: int
    data: bytes


def apply_splices(raw: bytes, splices: list[Splice]) -> bytes:
    """Apply non-overlapping splices; everything between them is copied unchanged."""
    pieces = []
    position = 0
    for splice in sorted(splices, key=lambda item: item.start):
        if splice.start < position:
            raise ValueError("overlapping splices")
        pieces.append(raw[position : splice.start])
        pieces.append(splice.data)
        position = splice.end
    pieces.append(raw[position:])
    return b"".join(pieces)


def detect_eol(data: bytes | str, default: str = "\r\n") -> str:
    """The line ending the data uses (its first one)."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    match = _EOL.search(text)
    return match.group() if match else default


def decode_transfer(raw_body: bytes, transfer_encoding: str) -> bytes:
    if transfer_encoding == "base64":
        compact = re.sub(rb"[^A-Za-z0-9+/=]", b"", raw_body)
        compact = compact[: len(compact) - len(compact) % 4] if b"=" not in compact else compact
        try:
            return binascii.a2b_base64(compact)
        except binascii.Error as exc:
            raise PayloadError(f"broken base64: {exc}") from None
    if transfer_encoding == "quoted-printable":
        # binascii knows "=\r\n" and "=\n" soft breaks; CR-only mail has "=\r".
        return binascii.a2b_qp(re.sub(rb"=\r(?!\n)", b"", raw_body))
    if transfer_encoding in _TEXTUAL_ENCODINGS:
        return raw_body
    raise PayloadError(f"unsupported Content-Transfer-Encoding {transfer_encoding!r}")


def _codec_for(declared: str | None) -> str | None:
    if not declared:
        return None
    try:
        return codecs.lookup(declared).name
    except (LookupError, ValueError):  # ValueError: a NUL in the charset label
        return None


def _looks_utf16(data: bytes) -> str | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    head = data[:64]
    if len(head) >= 4 and head[1::2].count(0) > len(head) // 4 and head[0::2].count(0) == 0:
        return "utf-16-le"
    if len(head) >= 4 and head[0::2].count(0) > len(head) // 4 and head[1::2].count(0) == 0:
        return "utf-16-be"
    return None


# Windows-1251 letters: А..я (0xC0-0xFF), Ё and ё.
_CP1251_WORD = re.compile(rb"[\xa8\xb8\xc0-\xff]{3,}")
_HIGH_BYTES = bytes(range(0x80, 0x100))


def _looks_windows_1251(data: bytes) -> bool:
    """Most non-ASCII bytes form runs of three or more Windows-1251 letters: Russian words.

    Latin-1 text (French, German) has its accented letters one or two at a time
    between ASCII letters.
    """
    high = len(data) - len(data.translate(None, _HIGH_BYTES))
    in_words = sum(len(word) for word in _CP1251_WORD.findall(data))
    return high > 0 and 2 * in_words >= high


def choose_codec(data: bytes, declared: str | None) -> str:
    """The codec that reads ``data`` exactly: declared if it works, else UTF-8, else a
    guess: Windows-1251 for Russian-looking text, Latin-1 for the rest.

    Every choice round-trips the original bytes, so unchanged text re-encodes to
    the same bytes.
    """
    utf16 = _looks_utf16(data)
    if utf16:
        try:
            data.decode(utf16)
            return utf16
        except UnicodeDecodeError:
            pass  # odd length or a broken surrogate: not (readable) UTF-16 after all
    # A UTF-8 byte order mark is only a guess too: the rest must decode.
    first = ("utf-8-sig",) if data.startswith(b"\xef\xbb\xbf") else ()
    for codec in (*first, _codec_for(declared), "utf-8"):
        if codec is None:
            continue
        try:
            data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        return codec
    if _looks_windows_1251(data):
        try:
            data.decode("cp1251")  # 0x98 is the one byte it does not define
            return "cp1251"
        except UnicodeDecodeError:
            pass
    return "latin-1"


def decode_text(data: bytes, declared: str | None) -> tuple[str, str]:
    """Return (text, codec) for bytes whose charset label may be missing or wrong."""
    codec = choose_codec(data, declared)
    return data.decode(codec), codec


def _mime_charset_name(codec: str) -> str:
    names = {"utf-8-sig": "utf-8", "latin-1": "iso-8859-1", "utf-16-le": "utf-16le"}
    name = names.get(codec, codec)
    return {"iso8859-1": "iso-8859-1", "koi8-r": "koi8-r", "cp1252": "windows-1252",
            "cp1251": "windows-1251"}.get(name, name)


@dataclass(frozen=True)
class PartText:
    """A decoded text part and how to encode it again."""

    entity: MimeEntity
    text: str
    codec: str
    transfer_encoding: str
    transport_eol: str
    ends_with_eol: bool


def read_part_text(raw: bytes, entity: MimeEntity) -> PartText:
    """Decode a leaf part to text; raises ``PayloadError`` if that is not possible."""
    transfer = entity.transfer_encoding
    if transfer not in _SUPPORTED_ENCODINGS:
        raise PayloadError(f"unsupported Content-Transfer-Encoding {transfer!r}")
    body = raw[entity.body_start : entity.end]
    data = decode_transfer(body, transfer)
    text, codec = decode_text(data, entity.charset)
    return PartText(
        entity=entity,
        text=text,
        codec=codec,
        transfer_encoding=transfer,
        transport_eol=detect_eol(raw[entity.start : entity.body_start] or body),
        ends_with_eol=body.endswith((b"\n", b"\r")),
    )


def _encode_base64(data: bytes, eol: bytes, trailing_eol: bool) -> bytes:
    lines = [
        binascii.b2a_base64(data[index : index + 57], newline=False)
        for index in range(0, len(data), 57)
    ]
    encoded = eol.join(lines)
    return encoded + eol if trailing_eol else encoded


def _encode_quoted_printable(data: bytes, eol: bytes, trailing_eol: bool) -> bytes:
    """QP with hard breaks in the transport's line ending.

    Line endings in the data that differ from the transport's are written encoded
    (``=0D=0A``), so decoding gives back exactly ``data``.
    """
    out = []
    text = data.decode("latin-1")
    position = 0
    for match in _EOL.finditer(text):
        line = text[position : match.start()].encode("latin-1")
        encoded = binascii.b2a_qp(line, istext=False).replace(b"=\n", b"=" + eol)
        terminator = match.group().encode("latin-1")
        if terminator == eol:
            out.append(encoded + eol)
        else:
            escaped = b"".join(b"=%02X" % byte for byte in terminator)
            out.append(encoded + escaped + b"=" + eol)
        position = match.end()
    tail = text[position:].encode("latin-1")
    if tail:
        out.append(binascii.b2a_qp(tail, istext=False).replace(b"=\n", b"=" + eol))
    encoded = b"".join(out)
    if trailing_eol and not encoded.endswith(eol):
        # The data has no line break at its end: a soft one, or decoding would add one
        # (a body that ended in a soft break "=\r" gained a CR on every rewrite).
        encoded += b"=" + eol if tail else eol
    return encoded


# "^" with MULTILINE ignores CR-only line ends, which some mail has in its headers too.
_HEADER_LINE = r"(?i)(?:^|(?<=[\r\n])){name}[ \t]*:[^\r\n]*(?:(?:\r\n|\n|\r)[ \t][^\r\n]*)*"


def _set_header(header_block: bytes, name: str, value: str, eol: bytes) -> bytes:
    """Replace one header's value, or add the header at the end of the block."""
    text = header_block.decode("latin-1")
    pattern = re.compile(_HEADER_LINE.format(name=re.escape(name)))
    match = pattern.search(text)
    line = f"{name}: {value}"
    if match:
        text = text[: match.start()] + line + text[match.end() :]
    else:
        stripped = text.rstrip("\r\n")
        text = stripped + (eol.decode() if stripped else "") + line + text[len(stripped) :]
        if not stripped:
            text = line + eol.decode()
    return text.encode("latin-1")


def _drop_header(header_block: bytes, name: str) -> bytes:
    """The header block without any ``name`` header (its continuation lines and line end too)."""
    text = header_block.decode("latin-1")
    pattern = re.compile(_HEADER_LINE.format(name=re.escape(name)) + r"(?:\r\n|\n|\r)?")
    return pattern.sub("", text).encode("latin-1")


def _set_charset(header_block: bytes, charset: str, eol: bytes) -> bytes:
    text = header_block.decode("latin-1")
    pattern = re.compile(_HEADER_LINE.format(name="content-type"))
    match = pattern.search(text)
    if match is None:
        return _set_header(header_block, "Content-Type", f'text/plain; charset="{charset}"', eol)
    header = match.group()
    param = re.compile(r"""(?i)(;[ \t\r\n]*charset[ \t]*=[ \t]*)("[^"]*"|[^;\s]*)""")
    if param.search(header):
        header = param.sub(lambda m: f'{m.group(1)}"{charset}"', header, count=1)
    else:
        header = f'{header}; charset="{charset}"'
    return (text[: match.start()] + header + text[match.end() :]).encode("latin-1")


def encode_part_text(
    raw: bytes, part: PartText, new_text: str, *, html: bool = False
) -> list[Splice]:
    """Splices that turn ``part`` into ``new_text`` (none if the text is unchanged).

    Characters the part's charset cannot hold become character references in
    HTML; elsewhere the part switches to UTF-8.
    """
    if new_text == part.text:
        return []
    entity = part.entity
    codec = part.codec
    charset_change = None
    try:
        data = new_text.encode(codec)
    except UnicodeEncodeError:
        if html:
            data = new_text.encode(codec, errors="xmlcharrefreplace")
        else:
            codec = "utf-8"
            data = new_text.encode(codec)
            charset_change = "utf-8"
    declared = _codec_for(entity.charset)
    labelled = declared == codecs.lookup(codec).name or (
        codec == "utf-8-sig" and declared == "utf-8"
    )
    if charset_change is None and not data.isascii() and not labelled:
        # Non-ASCII must be labelled: a missing or wrong label is corrected.
        charset_change = _mime_charset_name(codec)
    eol = part.transport_eol.encode("ascii")
    transfer = part.transfer_encoding
    transfer_change = None
    if transfer == "base64":
        body = _encode_base64(data, eol, part.ends_with_eol)
    elif transfer == "quoted-printable":
        body = _encode_quoted_printable(data, eol, part.ends_with_eol)
    else:
        too_long = any(len(line) > _MAX_7BIT_LINE for line in data.splitlines())
        needs_encoding = (transfer == "7bit" and not data.isascii()) or (
            too_long and transfer != "binary"
        )
        if needs_encoding:
            transfer_change = "quoted-printable"
            body = _encode_quoted_printable(data, eol, part.ends_with_eol)
        else:
            body = data
    splices = [Splice(entity.body_start, entity.end, body)]
    header_end = entity.header_end
    header = raw[entity.start : header_end]
    # A part's own Content-Length (SOGo writes one) no longer matches its new body.
    stale_length = entity.headers.get("content-length") is not None
    if stale_length:
        header = _drop_header(header, "Content-Length")
    if charset_change or transfer_change:
        if charset_change:
            header = _set_charset(header, charset_change, eol)
        if transfer_change and not entity.headers_complete:
            # The parser stops at a malformed header line and would not see a line
            # changed after it: put the new one first, where it is read.
            header = b"Content-Transfer-Encoding: " + transfer_change.encode() + eol + header
        elif transfer_change:
            header = _set_header(header, "Content-Transfer-Encoding", transfer_change, eol)
    if charset_change or transfer_change or stale_length:
        splices.append(Splice(entity.start, header_end, header))
    return splices
