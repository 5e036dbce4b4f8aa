"""Promises that hold for any mail, checked over every corpus file.

These need no table of expected answers, so they also run over an extra corpus from
outside the repository when ``WEBINAR_PROXY_EXTRA_CORPUS`` names one (see
``tests.support.fixtures``): test ids are ``clients/<file>`` and ``extra/<file>``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.calendars import EARLY, LINK, OTHER_LINK
from tests.support.fixtures import corpus_files
from webinar_proxy.invitation import classify, remove_conference, rewrite

FILES = corpus_files()


@pytest.fixture(params=[path for _, path in FILES], ids=[name for name, _ in FILES])
def raw(request) -> bytes:
    return Path(request.param).read_bytes()


def test_classify_answers_without_an_internal_error(raw: bytes, options) -> None:
    result = classify(raw, None, options, EARLY)
    assert not result.reason.startswith("internal error"), result.reason
    if result.processable:
        assert result.uid and result.organizer and result.method
        assert result.calendar.startswith(b"BEGIN:VCALENDAR")


def test_rewrite_of_a_request_is_idempotent_and_reversible(raw: bytes, options) -> None:
    result = classify(raw, None, options, EARLY)
    if not (result.processable and result.method == "REQUEST"):
        return  # nothing the relay would rewrite
    out = rewrite(raw, result.uid, LINK, options)
    again = classify(out, None, options, EARLY)
    assert again.processable and again.uid == result.uid
    assert again.has_our_link and again.our_link == LINK
    assert rewrite(out, result.uid, LINK, options) == out
    moved = rewrite(out, result.uid, OTHER_LINK, options)
    assert classify(moved, None, options, EARLY).our_link == OTHER_LINK
    removed = remove_conference(moved, result.uid, options)
    assert not classify(removed, None, options, EARLY).has_our_link
    assert remove_conference(raw, result.uid, options) == raw
