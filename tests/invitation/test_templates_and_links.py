"""Join-block templates (languages, administrator overrides), links and escaping."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.calendars import LINK, calendar, mail
from webinar_proxy.invitation import (
    EngineError,
    EngineOptions,
    JoinTemplates,
    classify,
    remove_conference,
    rewrite,
)
from webinar_proxy.settings import PolicySettings

UID = "meeting-42@example.com"
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def texts(raw: bytes, content_type: str | None = None) -> str:
    """The decoded text of every leaf part (of one type), joined."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return "\n".join(
        part.get_content() for part in message.walk()
        if not part.is_multipart() and content_type in (None, part.get_content_type())
    )


def settings(**policy) -> SimpleNamespace:
    return SimpleNamespace(policy=PolicySettings(**policy))


def test_russian_is_the_default_and_english_is_shipped() -> None:
    russian = EngineOptions.from_settings(settings())
    english = EngineOptions.from_settings(settings(language="en"))
    assert "Подключиться" in russian.join_templates.render_text(LINK, "Webinar")
    assert "Join" in english.join_templates.render_text(LINK, "Webinar")
    out = rewrite(mail(calendar()), UID, LINK, english)
    assert b"Join" in out and "Подключиться".encode() not in out


def test_administrator_templates_override_the_shipped_ones(tmp_path: Path) -> None:
    (tmp_path / "join_ru.txt").write_text("Наша конференция: $link\n", encoding="utf-8")
    options = EngineOptions.from_settings(settings(template_dir=tmp_path))
    assert options.join_templates.text == "Наша конференция: $link\n"
    assert "href" in options.join_templates.html  # the HTML one is still shipped
    out = rewrite(mail(calendar()), UID, LINK, options)
    assert "Наша конференция" in texts(out, "text/plain")
    assert "Наша конференция" in texts(out, "text/calendar").replace("\r\n ", "")


@pytest.mark.parametrize("text", ["no link here\n", "bad $placeholder $link\n", "$link ${x\n"])
def test_bad_administrator_templates_are_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "join_en.txt").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError):
        JoinTemplates.load("en", tmp_path)


@pytest.mark.parametrize(
    "link",
    ["http://events.webinar.ru/x/1", "javascript:alert(1)", "https://", "https://a b/c",
     'https://events.webinar.ru/x/1"onmouseover=1', "ftp://events.webinar.ru/x"],
)
def test_only_clean_https_links(link: str, options) -> None:
    with pytest.raises(ValueError):
        rewrite(mail(calendar()), UID, link, options)


def test_label_and_link_are_escaped_in_html(options) -> None:
    out = rewrite(mail(calendar("X-ALT-DESC;FMTTYPE=text/html:<html><body>x</body></html>")),
                  UID, LINK + "?a=1&b=2", options, label="<b>Web</b>")
    calendar_text = texts(out, "text/calendar").replace("\r\n ", "")
    alt = next(line for line in calendar_text.splitlines() if line.startswith("X-ALT-DESC"))
    assert "<b>Web</b>" not in alt and "&lt\\;b&gt\\;Web&lt\\;/b&gt\\;" in alt
    assert "a=1&amp\\;b=2" in alt


def test_location_keyword_is_replaced_and_room_kept(options) -> None:
    out = rewrite(mail(calendar("LOCATION:Room 5\\, @webinar")), UID, LINK, options)
    assert f"LOCATION:Room 5\\, {LINK}".encode() in out.replace(b"\r\n ", b"")
    removed = remove_conference(out, UID, options)
    assert b"LOCATION:Room 5\r\n" in removed


def test_link_is_added_to_a_location_without_keyword(options) -> None:
    out = rewrite(mail(calendar("LOCATION:Room 5", "X-WEBINAR-CONFERENCE:TRUE")), UID, LINK,
                  options)
    assert f"LOCATION:Room 5\\; {LINK}".encode() in out.replace(b"\r\n ", b"")
    result = classify(out, None, options, NOW)
    assert result.has_our_link and result.our_link == LINK


def test_a_foreign_conference_property_stays(options) -> None:
    foreign = "CONFERENCE;VALUE=URI;LABEL=Meet:https://meet.google.com/abc"
    out = rewrite(mail(calendar(foreign)), UID, LINK, options)
    assert foreign in texts(out, "text/calendar")


def test_unknown_uid_is_an_error(options) -> None:
    with pytest.raises(EngineError):
        rewrite(mail(calendar()), "other-uid", LINK, options)
