"""Rewriting: the join link into a mail and out again (``rewrite``, ``remove_conference``).

Also ``check_link``, the rule for a link that may be written into mail.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from webinar_proxy.calendar import EventEdit, find_links, rewrite_events
from webinar_proxy.invitation.errors import EngineError
from webinar_proxy.invitation.options import EngineOptions
from webinar_proxy.mail import (
    MimeError,
    PayloadError,
    Splice,
    apply_splices,
    body_text_entities,
    calendar_entities,
    decode_text,
    encode_part_text,
    looks_like_bare_calendar,
    parse_structure,
    read_part_text,
)
from webinar_proxy.mail.joinblock import (
    insert_html_block,
    insert_text_block,
    remove_html_block,
    remove_text_block,
)

_FORBIDDEN_IN_LINK = re.compile(r"""[\s"'<>\\\x00-\x1f\x7f]""")


def _check_link(link: str) -> None:
    try:
        parts = urlsplit(link)
    except ValueError:
        raise ValueError(f"not a URL: {link!r}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"join links must be https URLs, got {link!r}")
    if _FORBIDDEN_IN_LINK.search(link):
        raise ValueError(f"the link contains characters that are not allowed: {link!r}")


#: Raises ``ValueError`` unless ``link`` may be written into mail (https, no markup or
#: control characters); the lifecycle checks the platform's answers with it.
check_link = _check_link


def _strip_links(value: str, links: list[str]) -> str:
    if not links:
        return value  # nothing taken out: keep its spaces (stripping them broke idempotency)
    for link in links:
        escaped = re.escape(link)
        # "(?<!\s)": a match starts where a run of spaces starts, not at each of its
        # spaces (which made a long run quadratic).
        value = re.sub(rf"(?<!\s)\s*[;,]\s*{escaped}|{escaped}\s*[;,]?\s*", "", value)
    return value.strip()


def _event_edit(options: EngineOptions, link: str | None, label: str) -> EventEdit:
    hosts = options.reader.link_hosts
    keyword = options.location_keyword

    def is_ours(url: str) -> bool:
        return bool(find_links(url, hosts))

    if link is None:
        def location(value: str | None) -> str | None:
            if value is None:
                return None
            ours = find_links(value, hosts)
            if not ours:
                return value
            return _strip_links(value, ours) or None

        def description(value: str | None) -> str | None:
            if value is None:
                return None
            stripped = remove_text_block(value)
            return stripped if stripped or not value else None

        return EventEdit(None, label, is_ours, location, description, remove_html_block)

    templates = options.join_templates
    text_block = templates.render_text(link, label)
    html_block = templates.render_html(link, label)

    def put_location(value: str | None) -> str | None:
        text = value or ""
        ours = find_links(text, hosts)
        if ours:
            text = text.replace(ours[0], link)
            return _strip_links(text, [old for old in ours[1:] if old != link]) or link
        position = text.lower().find(keyword.lower()) if keyword else -1
        if position >= 0:
            rest = text[position + len(keyword):]
            rest = re.sub(re.escape(keyword), "", rest, flags=re.IGNORECASE)
            return text[:position] + link + rest
        return f"{text}; {link}" if text.strip() else link

    def put_description(value: str | None) -> str:
        return insert_text_block(value or "", text_block, "\n")

    def put_html(value: str) -> str:
        return insert_html_block(value, html_block, "\n")

    return EventEdit(link, label, is_ours, put_location, put_description, put_html)


def rewrite(raw: bytes, uid: str, link: str, options: EngineOptions, *,
            label: str = "Webinar") -> bytes:
    """See ``webinar_proxy.invitation``."""
    _check_link(link)
    if not label.strip() or len(label) > 64 or re.search(r'["\x00-\x1f\x7f]', label):
        raise ValueError(f"bad conference label {label!r}")
    return _apply(raw, uid, options, link, label)


def remove_conference(raw: bytes, uid: str, options: EngineOptions) -> bytes:
    """See ``webinar_proxy.invitation``."""
    return _apply(raw, uid, options, None, "Webinar")


def _apply(raw: bytes, uid: str, options: EngineOptions, link: str | None, label: str) -> bytes:
    edit = _event_edit(options, link, label)
    if looks_like_bare_calendar(raw):
        text, codec = decode_text(raw, None)
        new_text, matched = rewrite_events(text, uid, edit)
        if not matched:
            raise EngineError(f"no VEVENT with UID {uid!r}")
        if new_text == text:
            return raw
        try:
            return new_text.encode(codec)
        except UnicodeEncodeError:
            return new_text.encode("utf-8")
    try:
        root = parse_structure(raw, options.limits.mime)
    except MimeError as exc:
        raise EngineError(f"unreadable mail: {exc}") from None
    splices: list[Splice] = []
    rewritten = 0
    for entity in calendar_entities(root):
        if entity.in_attached_message:
            continue
        try:
            part = read_part_text(raw, entity)
        except PayloadError:
            continue
        new_text, matched = rewrite_events(part.text, uid, edit)
        if matched:
            rewritten += 1
            splices.extend(encode_part_text(raw, part, new_text))
    if not rewritten:
        raise EngineError(f"no calendar part carries UID {uid!r}")
    plain, html_part = body_text_entities(root)
    for entity, is_html in ((plain, False), (html_part, True)):
        if entity is None:
            continue
        try:
            part = read_part_text(raw, entity)
        except PayloadError:
            continue  # an encoding we cannot write back: leave that body alone
        new_text = _body_change(part.text, is_html, link, options, label)
        splices.extend(encode_part_text(raw, part, new_text, html=is_html))
    return apply_splices(raw, splices)


def _body_change(text: str, is_html: bool, link: str | None, options: EngineOptions,
                 label: str) -> str:
    if link is None:
        return remove_html_block(text) if is_html else remove_text_block(text)
    templates = options.join_templates
    if is_html:
        return insert_html_block(text, templates.render_html(link, label))
    return insert_text_block(text, templates.render_text(link, label))
