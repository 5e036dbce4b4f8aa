"""Turning header and body events into a message and the pipeline's result back into edits (pure)."""

from __future__ import annotations

from webinar_proxy.milter.message import MAX_BODY_CHUNK, HeaderEdit, assemble, edits, split_message

HEADERS = [("From", b" a@example.org"), ("Subject", b" long\n\tfolded"), ("Received", b" one"),
           ("Received", b" two"), ("Content-Type", b" text/calendar; method=REQUEST")]


def test_assemble_keeps_leading_space_and_turns_folding_into_crlf():
    message = assemble(HEADERS, b"body\r\n", leading_space=True)
    assert message.startswith(b"From: a@example.org\r\nSubject: long\r\n\tfolded\r\nReceived: one\r\n")
    assert message.endswith(b"\r\n\r\nbody\r\n")
    assert split_message(message)[1] == b"body\r\n"


def test_an_unchanged_message_needs_no_edit():
    message = assemble(HEADERS, b"body\r\n", leading_space=True)
    assert edits(HEADERS, b"body\r\n", message, leading_space=True).headers == ()
    assert edits(HEADERS, b"body\r\n", message, leading_space=True).body is None


def test_only_changed_headers_are_edited_by_occurrence_and_the_body_replaced_in_chunks():
    new_body = b"x" * (2 * MAX_BODY_CHUNK + 10)
    changed = [*HEADERS[:3], ("Received", b" TWO"), ("Content-Type", b" text/calendar; charset=utf-8"),
               ("Content-Transfer-Encoding", b" quoted-printable")]
    result = edits(HEADERS, b"body\r\n", assemble(changed, new_body, leading_space=True), leading_space=True)
    assert set(result.headers) == {
        HeaderEdit("Received", 2, b" TWO"),
        HeaderEdit("Content-Type", 1, b" text/calendar; charset=utf-8"),
        HeaderEdit("Content-Transfer-Encoding", 1, b" quoted-printable", add=True),
    }
    chunks = result.body_chunks()
    assert [len(c) for c in chunks] == [MAX_BODY_CHUNK, MAX_BODY_CHUNK, 10]
    assert b"".join(chunks) == new_body


def test_a_removed_header_is_an_empty_change_last_occurrence_first():
    result = edits(HEADERS, b"b\r\n", assemble(HEADERS[:2], b"b\r\n", leading_space=True), leading_space=True)
    assert [edit for edit in result.headers if edit.name == "Received"] == [
        HeaderEdit("Received", 2, b""), HeaderEdit("Received", 1, b"")]


def test_without_leading_space_values_come_back_without_it():
    plain = [(name, value.removeprefix(b" ")) for name, value in HEADERS]
    changed = [*plain[:4], ("Content-Type", b"text/plain")]
    result = edits(plain, b"b\r\n", assemble(changed, b"b\r\n", leading_space=False), leading_space=False)
    assert result.headers == (HeaderEdit("Content-Type", 1, b"text/plain"),)
