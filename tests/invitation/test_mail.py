"""The MIME side on its own: pre-check, part map, re-encoding, join blocks."""

from __future__ import annotations

import base64
import binascii

import pytest

from webinar_proxy.mail import (
    MimeError,
    MimeLimits,
    apply_splices,
    encode_part_text,
    looks_like_bare_calendar,
    may_carry_calendar,
    parse_structure,
    read_part_text,
)
from webinar_proxy.mail.joinblock import (
    insert_html_block,
    insert_text_block,
    remove_html_block,
    remove_text_block,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"Subject: x\r\n\r\nno calendar here, although text/calendar is mentioned\r\n", False),
        (b"Content-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\n", True),
        (b"Content-Type: TeXt/CaLeNdAr\r\n\r\n", True),
        (b'Content-Type: multipart/mixed; boundary="z"\r\n\r\n--z\r\n'
         b"Content-Type: text/plain\r\n\r\nhi\r\n--z\r\n"
         b'Content-Type: application/octet-stream; name="invite.ICS"\r\n\r\nQkVH\r\n--z--\r\n',
         True),
        (b'Content-Type: multipart/mixed; boundary="z"\r\n\r\n--z\r\n'
         b"Content-Type: text/plain\r\n\r\nContent-Type: text/calendar\r\n--z--\r\n", False),
        (b'Content-Type: multipart/report; boundary="r"\r\n\r\n--r\r\n'
         b"Content-Type: message/rfc822\r\n\r\nContent-Type: application/ics\r\n\r\nx\r\n"
         b"--r--\r\n", True),
        (b"Content-Type: multipart/mixed;\r\tboundary=q\r\r--q\rContent-Type: text/calendar\r"
         b"\r--q--\r", True),
        (b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", True),
        ("BEGIN:VCALENDAR\r\n".encode("utf-16-le"), True),
    ],
)
def test_precheck(raw: bytes, expected: bool) -> None:
    assert may_carry_calendar(raw) is expected


def test_bare_calendar_detection() -> None:
    assert looks_like_bare_calendar(b"\xef\xbb\xbf\r\nBEGIN:VCALENDAR\r\n")
    assert not looks_like_bare_calendar(b"From: a\r\n\r\nBEGIN:VCALENDAR\r\n")


def _single(body: bytes, cte: str, charset: str = "utf-8") -> bytes:
    return (f"Content-Type: text/plain; charset={charset}\r\n"
            f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode() + body


@pytest.mark.parametrize("cte", ["7bit", "8bit", "quoted-printable", "base64"])
def test_part_text_round_trip_and_change(cte: str) -> None:
    text = "line one\r\nline two é\r\n" if cte != "7bit" else "line one\r\nline two\r\n"
    data = text.encode("utf-8")
    if cte == "base64":
        body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    elif cte == "quoted-printable":
        body = binascii.b2a_qp(data, istext=True)
    else:
        body = data
    raw = _single(body, cte)
    root = parse_structure(raw, MimeLimits())
    part = read_part_text(raw, root)
    assert part.text == text
    assert encode_part_text(raw, part, text) == []
    changed = "Привет\r\n" + text
    out = apply_splices(raw, encode_part_text(raw, part, changed))
    again = parse_structure(out, MimeLimits())
    assert read_part_text(out, again).text == changed
    if cte == "7bit":
        assert again.transfer_encoding == "quoted-printable"


def test_charset_that_cannot_hold_the_new_text_switches_to_utf8() -> None:
    raw = _single("caf\xe9\r\n".encode("latin-1"), "8bit", "iso-8859-1")
    root = parse_structure(raw, MimeLimits())
    part = read_part_text(raw, root)
    out = apply_splices(raw, encode_part_text(raw, part, "Встреча\r\n" + part.text))
    again = parse_structure(out, MimeLimits())
    assert again.charset == "utf-8"
    assert read_part_text(out, again).text == "Встреча\r\ncafé\r\n"


@pytest.mark.parametrize(
    ("text", "codec", "label"),
    [
        ("SUMMARY:Планёрка отдела\r\nATTENDEE;CN=Иванов Иван:mailto:i@example.ru\r\n",
         "cp1251", "windows-1251"),
        ("SUMMARY:Café Größe, résumé\r\n", "latin-1", "iso-8859-1"),
    ],
    ids=["russian", "western"],
)
def test_unlabelled_8bit_text_is_read_by_a_guess_that_fits(text: str, codec: str,
                                                            label: str) -> None:
    """An .ics attachment in Windows-1251 without a charset (seen from Yandex): read as
    Latin-1, the rewrite labelled the mojibake and wrote it back (as UTF-8 once the
    join block needed it)."""
    data = base64.b64encode(text.encode(codec))
    raw = b"Content-Type: application/ics\r\nContent-Transfer-Encoding: base64\r\n\r\n" + data
    root = parse_structure(raw, MimeLimits())
    part = read_part_text(raw, root)
    assert part.text == text
    out = apply_splices(raw, encode_part_text(raw, part, part.text + "CONFERENCE:https://x\r\n"))
    again = parse_structure(out, MimeLimits())
    assert again.charset == label
    assert read_part_text(out, again).text == text + "CONFERENCE:https://x\r\n"


def test_html_keeps_its_charset_with_character_references() -> None:
    raw = ('Content-Type: text/html; charset="iso-8859-1"\r\n\r\n<p>caf\xe9</p>\r\n'
           ).encode("latin-1")
    root = parse_structure(raw, MimeLimits())
    part = read_part_text(raw, root)
    out = apply_splices(raw, encode_part_text(raw, part, "<p>Да</p>" + part.text, html=True))
    assert out.startswith(b'Content-Type: text/html; charset="iso-8859-1"')
    assert b"&#1044;&#1072;" in out


def test_structure_limits() -> None:
    raw = b'Content-Type: multipart/mixed; boundary="a"\r\n\r\n' + b"--a\r\n\r\nx\r\n" * 10
    with pytest.raises(MimeError):
        parse_structure(raw, MimeLimits(max_parts=5))
    with pytest.raises(MimeError):
        parse_structure(b"x" * 100, MimeLimits(max_message_bytes=10))


def test_text_block_is_idempotent_and_removable() -> None:
    original = "Hello,\r\nsee you.\r\n"
    once = insert_text_block(original, "Join: https://x\n")
    assert insert_text_block(once, "Join: https://x\n") == once
    assert once.count("[webinar]") == 1 and "\r\n" in once and "\n\n" not in once
    assert remove_text_block(once) == original
    replaced = insert_text_block(once, "Join: https://y\n")
    assert "https://x" not in replaced and replaced.count("[webinar]") == 1
    assert remove_text_block(insert_text_block("", "Join: https://x")) == ""


def test_html_block_goes_inside_body_and_is_idempotent() -> None:
    original = "<html><head><title>t</title></head>\n<BODY class=x>\n<p>Hi</p></BODY></html>"
    once = insert_html_block(original, "<a href='https://x'>Join</a>")
    assert once.index("webinar-proxy:begin") > once.index("<BODY class=x>")
    assert insert_html_block(once, "<a href='https://x'>Join</a>") == once
    assert remove_html_block(once) == original


@pytest.mark.parametrize("cte", ["8bit", "quoted-printable", "base64"])
def test_a_rewritten_part_loses_its_content_length(cte: str) -> None:
    # SOGo writes Content-Length on each part; after a rewrite it would be stale.
    calendar = b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"
    body = base64.encodebytes(calendar).replace(b"\n", b"\r\n") if cte == "base64" else calendar
    part_header = (b"Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n"
                   b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                   b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n")
    other = b"Content-Type: text/html; charset=utf-8\r\nContent-Length: 9\r\n\r\n<p>hi</p>\r\n"
    raw = (b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n' + other
           + b"--b\r\n" + part_header + b"\r\n" + body + b"--b--\r\n")
    root = parse_structure(raw, MimeLimits())
    calendar_part = read_part_text(raw, root.children[1])
    changed = calendar_part.text.replace("END:VCALENDAR", "X-A:" + "x" * 30 + "\r\nEND:VCALENDAR")
    out = apply_splices(raw, encode_part_text(raw, calendar_part, changed))
    again = parse_structure(out, MimeLimits())
    assert again.children[1].headers.get("content-length") is None
    assert again.children[1].headers.get("content-transfer-encoding") == cte
    assert read_part_text(out, again.children[1]).text == changed
    assert other in out  # an untouched part keeps its header byte for byte
