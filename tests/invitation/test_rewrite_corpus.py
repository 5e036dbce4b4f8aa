"""Rewriting every processable REQUEST of the in-repository corpus: where the link goes,
what must not change.

The checks read the results with the stdlib ``email`` parser and with icalendar,
not with the engine's own MIME or iCalendar code.
"""

from __future__ import annotations

import email
import email.policy
import re
import warnings
from email.message import Message

import icalendar
import pytest

from tests.invitation.test_corpus_table import EXPECTED
from tests.support.calendars import EARLY, LINK, OTHER_LINK
from tests.support.fixtures import client_fixture
from webinar_proxy.invitation import classify, remove_conference, rewrite
from webinar_proxy.mail.joinblock import HTML_BEGIN, TEXT_BEGIN

REQUESTS = sorted(
    name for name, (ok, method, _, _) in EXPECTED.items() if ok and method == "REQUEST"
)
CALENDAR_TYPES = ("text/calendar", "application/ics")


def _is_calendar(part: Message) -> bool:
    name = (part.get_filename() or "").lower()
    return part.get_content_type() in CALENDAR_TYPES or name.endswith(".ics")


def _leaves(message: Message, inside_message: bool = False):
    """(part, inside an attached message) for every leaf, in order."""
    if message.is_multipart():
        for child in message.get_payload():
            yield from _leaves(child, inside_message)
    elif message.get_content_type() == "message/rfc822":
        for child in message.get_payload():
            yield from _leaves(child, True)
    else:
        yield message, inside_message


def _text(payload: bytes) -> str:
    if payload[:2] in (b"\xff\xfe", b"\xfe\xff") or payload[1:8:2] == b"\x00" * 4:
        return payload.decode("utf-16-le" if payload[1:2] == b"\x00" else "utf-16")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("latin-1")


def _for_stdlib(raw: bytes) -> bytes:
    """The stdlib parser trips over a BOM before the headers and over CR-only lines
    (it cannot decode "=\\r" QP soft breaks); give it the same mail without them."""
    return re.sub(rb"\r(?!\n)", b"\r\n", raw.removeprefix(b"\xef\xbb\xbf"))


def _parse(raw: bytes, policy=email.policy.compat32) -> Message:
    return email.message_from_bytes(_for_stdlib(raw), policy=policy)


def _calendar_texts(raw: bytes, name: str) -> list[str]:
    if name.endswith(".ics"):
        return [_text(_for_stdlib(raw))]
    message = _parse(raw)
    return [
        _text(part.get_payload(decode=True) or b"")
        for part, inside in _leaves(message)
        if _is_calendar(part) and not inside
    ]


def _events(text: str, uid: str) -> list[icalendar.Event]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calendars = icalendar.Calendar.from_ical(text, multiple=True)
    return [e for c in calendars for e in c.walk("VEVENT") if str(e.get("UID")) == uid]


def _body_positions(message: Message) -> tuple[int | None, int | None]:
    """Leaf indexes of the first inline text/plain and text/html body parts."""
    plain = html = None
    for index, (part, inside) in enumerate(_leaves(message)):
        if inside or _is_calendar(part) or part.get_content_disposition() == "attachment":
            continue
        if part.get_filename():
            continue
        if part.get_content_type() == "text/plain" and plain is None:
            plain = index
        elif part.get_content_type() == "text/html" and html is None:
            html = index
    return plain, html


def _body_parts(raw: bytes) -> tuple[Message | None, Message | None]:
    message = _parse(raw, email.policy.default)
    leaves = [part for part, _ in _leaves(message)]
    plain, html = _body_positions(message)
    return (
        leaves[plain] if plain is not None else None,
        leaves[html] if html is not None else None,
    )


def _uid(name: str) -> str:
    return EXPECTED[name][2]


@pytest.fixture(params=REQUESTS)
def request_mail(request, options) -> tuple[str, bytes, bytes]:
    name = request.param
    raw = client_fixture(name)
    result = classify(raw, None, options, EARLY)
    assert result.processable, result.reason
    return name, raw, rewrite(raw, result.uid, LINK, options)


def test_every_vevent_of_the_uid_carries_the_conference(request_mail) -> None:
    name, _, out = request_mail
    texts = _calendar_texts(out, name)
    assert texts
    for text in texts:
        events = _events(text, _uid(name))
        assert events, "the UID's VEVENTs are still readable"
        for event in events:
            conferences = event.get("CONFERENCE")
            conferences = conferences if isinstance(conferences, list) else [conferences]
            ours = [c for c in conferences if c is not None and str(c) == LINK]
            assert len(ours) == 1
            feature = ours[0].params["FEATURE"]
            assert (",".join(feature) if isinstance(feature, list) else feature) == "AUDIO,VIDEO"
            assert ours[0].params["LABEL"] == "Webinar"
            assert LINK in str(event.get("LOCATION"))
            description = str(event.get("DESCRIPTION"))
            assert description.count(LINK) >= 1
            assert description.count(TEXT_BEGIN) == 1
            alt = event.get("X-ALT-DESC")
            if alt is not None and str(alt.params.get("FMTTYPE", "")).lower() == "text/html":
                assert str(alt).count(HTML_BEGIN) == 1
                assert f'href="{LINK}"' in str(alt)


def test_sequence_dtstamp_uid_and_other_properties_stay(request_mail) -> None:
    name, raw, out = request_mail
    changed = {"LOCATION", "DESCRIPTION", "X-ALT-DESC", "CONFERENCE"}
    for before_text, after_text in zip(
        _calendar_texts(raw, name), _calendar_texts(out, name), strict=True
    ):
        before = _events(before_text, _uid(name))
        after = _events(after_text, _uid(name))
        assert len(before) == len(after)
        for old, new in zip(before, after, strict=True):
            for key in set(old) - changed:
                assert old[key] == new[key], key
            assert set(new) - set(old) <= changed


def test_body_parts_carry_the_join_block(request_mail) -> None:
    name, raw, out = request_mail
    if name.endswith(".ics"):
        return
    plain_before, html_before = _body_parts(raw)
    plain, html = _body_parts(out)
    if plain_before is not None:
        text = plain.get_content()
        assert text.count(TEXT_BEGIN) == 1 and LINK in text
    if html_before is not None:
        markup = html.get_content()
        assert markup.count(HTML_BEGIN) == 1 and f'href="{LINK}"' in markup


def test_headers_and_untouched_parts_are_byte_identical(request_mail) -> None:
    name, raw, out = request_mail
    if name.endswith(".ics"):
        return
    before = _parse(raw)
    after = _parse(out)
    leaf_before = list(_leaves(before))
    leaf_after = list(_leaves(after))
    assert [p.get_content_type() for p, _ in leaf_before] == [
        p.get_content_type() for p, _ in leaf_after
    ]
    if before.is_multipart():
        head = re.split(rb"\r\n\r\n|\n\n|\r\r", raw, maxsplit=1)[0]
        assert out.startswith(head)
    else:
        editable = {"content-type", "content-transfer-encoding"}
        assert [(k, v) for k, v in before.items() if k.lower() not in editable] == [
            (k, v) for k, v in after.items() if k.lower() not in editable
        ]
    edited_positions = set(_body_positions(before))
    for index, (part, inside) in enumerate(leaf_before):
        if _is_calendar(part) and not inside:
            edited_positions.add(index)
    for index, ((old, _), (new, _)) in enumerate(zip(leaf_before, leaf_after, strict=True)):
        if index in edited_positions:
            continue
        assert old.get_payload() == new.get_payload()
        assert old.items() == new.items()


def test_rewriting_twice_changes_nothing(request_mail, options) -> None:
    name, _, out = request_mail
    assert rewrite(out, _uid(name), LINK, options) == out


def test_a_new_link_replaces_the_old_one(request_mail, options) -> None:
    name, _, out = request_mail
    moved = rewrite(out, _uid(name), OTHER_LINK, options)
    texts = _calendar_texts(moved, name)
    for text in texts:
        unfolded = text.replace("\r\n ", "").replace("\n ", "").replace("\r ", "")
        assert LINK not in unfolded
        assert unfolded.count(OTHER_LINK) >= 3  # CONFERENCE, LOCATION, DESCRIPTION
        for event in _events(text, _uid(name)):
            assert str(event.get("DESCRIPTION")).count(TEXT_BEGIN) == 1
    if not name.endswith(".ics"):
        plain, html = _body_parts(moved)
        for part in (plain, html):
            if part is not None:
                assert LINK not in part.get_content()


def test_remove_takes_everything_out(request_mail, options) -> None:
    name, raw, out = request_mail
    removed = remove_conference(out, _uid(name), options)
    for text in _calendar_texts(removed, name):
        unfolded = text.replace("\r\n ", "").replace("\n ", "").replace("\r ", "")
        assert "events.webinar.ru" not in unfolded
        assert "[webinar]" not in unfolded
    if not name.endswith(".ics"):
        plain, html = _body_parts(removed)
        for part in (plain, html):
            if part is not None:
                content = part.get_content()
                assert LINK not in content and "webinar-proxy:begin" not in content
    assert remove_conference(raw, _uid(name), options) == raw
