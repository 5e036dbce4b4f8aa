"""``webinar-proxy inspect``: classification output and the dry-run rewrite."""

from __future__ import annotations

import argparse
import email
import email.policy
import json
from pathlib import Path

import pytest

from tests.support.calendars import LINK, calendar, mail
from webinar_proxy.cli.inspect import run_inspect
from webinar_proxy.settings import Settings


def _args(file: Path, **extra) -> argparse.Namespace:
    values = {"file": str(file), "mail_from": None, "now": "2024-01-01T00:00:00Z",
              "link": None, "json": False}
    values.update(extra)
    return argparse.Namespace(**values)


@pytest.fixture
def invitation(tmp_path: Path) -> Path:
    path = tmp_path / "invite.eml"
    path.write_bytes(mail(calendar("LOCATION:@webinar")))
    return path


def test_json_output(invitation: Path, capsys) -> None:
    code = run_inspect(_args(invitation, json=True, mail_from="boss@example.com"), Settings())
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "REQUEST" and data["uid"] == "meeting-42@example.com"
    assert data["organizer"] == "boss@example.com" and data["from_organizer"] is True
    assert data["conference_requested"] is True and data["has_our_link"] is False
    assert data["recurring"] is False and data["next_occurrence"] == "2024-03-01T09:00:00Z"
    assert data["processable"] is True and data["reason"] == "ok"
    assert [a["address"] for a in data["attendees"]] == ["ann@example.com", "room1@example.com"]


def test_next_occurrence_is_null_when_everything_is_past(invitation: Path, capsys) -> None:
    run_inspect(_args(invitation, json=True, now="2030-01-01T00:00:00+03:00"), Settings())
    assert json.loads(capsys.readouterr().out)["next_occurrence"] is None


def test_human_output(invitation: Path, capsys) -> None:
    assert run_inspect(_args(invitation), Settings()) == 0
    out = capsys.readouterr().out
    assert "meeting-42@example.com" in out and "location" in out


def test_link_writes_the_rewritten_mail(invitation: Path, capsysbinary) -> None:
    assert run_inspect(_args(invitation, link=LINK), Settings()) == 0
    captured = capsysbinary.readouterr()
    assert captured.out.startswith(b"From: Boss")
    message = email.message_from_bytes(captured.out, policy=email.policy.default)
    calendar_part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    assert "CONFERENCE;VALUE=URI" in calendar_part.get_content()
    assert b"meeting-42@example.com" in captured.err


def test_bare_ics_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "event.ics"
    path.write_text(calendar(), encoding="utf-8")
    assert run_inspect(_args(path, json=True), Settings()) == 0
    assert json.loads(capsys.readouterr().out)["uid"] == "meeting-42@example.com"


def test_errors(tmp_path: Path, invitation: Path, capsys) -> None:
    assert run_inspect(_args(tmp_path / "missing.eml"), Settings()) == 1
    assert run_inspect(_args(invitation, now="yesterday"), Settings()) == 2
    assert run_inspect(_args(invitation, link="http://insecure.example/x"), Settings()) == 2
    plain = tmp_path / "plain.eml"
    plain.write_bytes(b"Subject: hi\r\n\r\nhello\r\n")
    assert run_inspect(_args(plain, link=LINK), Settings()) == 1
    assert "not a calendar mail" in capsys.readouterr().err
