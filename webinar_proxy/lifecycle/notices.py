"""Organizer notices: a short localized mail saying what happened to the conference.

The organizer's own invitation goes to the attendees, so without a notice the
organizer would not see the join link (seed 3.3).  Notices are built here (pure)
and sent by the pipeline after the invitation itself was accepted by the next hop.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from webinar_proxy.lifecycle.conferences import utc_now


class NoticeKind(enum.StrEnum):
    CREATED = "created"
    REMOVED = "removed"
    FAILED = "failed"


_TEXTS = {
    "ru": {
        NoticeKind.CREATED: (
            "Конференция Webinar создана: {summary}",
            "Для встречи «{summary}» создана конференция Webinar.\n\n"
            "Ссылка для подключения:\n{link}\n\n"
            "Ссылка уже вписана в приглашение, которое получили участники.\n",
        ),
        NoticeKind.REMOVED: (
            "Конференция Webinar удалена: {summary}",
            "Конференция Webinar для встречи «{summary}» удалена.\n"
            "Ссылка {link} больше не действует.\n",
        ),
        NoticeKind.FAILED: (
            "Конференцию Webinar создать не удалось: {summary}",
            "Для встречи «{summary}» не удалось создать конференцию Webinar: {reason}.\n"
            "Приглашение отправлено участникам без ссылки. Отправьте его ещё раз позже\n"
            "или обратитесь к администратору почты.\n",
        ),
    },
    "en": {
        NoticeKind.CREATED: (
            "Webinar conference created: {summary}",
            "A Webinar conference was created for the meeting \"{summary}\".\n\n"
            "Join link:\n{link}\n\n"
            "The link is already in the invitation your attendees received.\n",
        ),
        NoticeKind.REMOVED: (
            "Webinar conference removed: {summary}",
            "The Webinar conference of the meeting \"{summary}\" was removed.\n"
            "The link {link} no longer works.\n",
        ),
        NoticeKind.FAILED: (
            "Webinar conference could not be created: {summary}",
            "No Webinar conference could be created for the meeting \"{summary}\": {reason}.\n"
            "The invitation went to the attendees without a link. Send it again later or\n"
            "contact your mail administrator.\n",
        ),
    },
}


#: Paragraphs added to a creation notice: registration still in progress, and
#: attendees over the limit.  ``{registered}``/``{total}`` are formatted with
#: thousands separators; ``{left_out}`` lists at most ``LEFT_OUT_LISTED`` addresses.
_EXTRAS = {
    "ru": {
        "progress": "Участники регистрируются в фоне: пока зарегистрировано {registered} из "
                    "{total}.\nОстальные будут зарегистрированы в ближайшие минуты; ссылка уже "
                    "действует.\n",
        "left_out": "Участников больше, чем допускает платформа ({limit}): {count} не "
                    "зарегистрированы:\n{left_out}\n",
    },
    "en": {
        "progress": "Attendees are being registered in the background: {registered} of {total} "
                    "registered so far.\nThe others follow within minutes; the link works "
                    "already.\n",
        "left_out": "There are more attendees than the platform allows ({limit}): {count} were "
                    "not registered:\n{left_out}\n",
    },
}
LEFT_OUT_LISTED = 50
#: Registration is mentioned only when more than one batch (one API call) is left:
#: a small meeting is registered moments after its notice goes out.
PROGRESS_MENTIONED_ABOVE = 50


@dataclass(frozen=True, slots=True)
class Notice:
    kind: NoticeKind
    organizer: str
    summary: str
    link: str | None = None
    reason: str = ""
    #: Creation notices of meetings still registering: how far it has come.
    registered: int | None = None
    total: int = 0
    #: Attendees over ``policy.max_attendees`` (never registered), and that limit.
    left_out: tuple[str, ...] = ()
    limit: int = 0


def _one_line(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f\s]+", " ", text).strip()


def _count(number: int, language: str) -> str:
    """``10,000`` (English) or ``10 000`` (Russian, a no-break space)."""
    text = f"{number:,}"
    return text.replace(",", "\u00a0") if language == "ru" else text


def build_notice(notice: Notice, *, language: str, sender: str = "") -> bytes:
    """The notice as a complete RFC 5322 message (CRLF line endings)."""
    subject, body = _TEXTS.get(language, _TEXTS["en"])[notice.kind]
    values = {"summary": notice.summary, "link": notice.link or "", "reason": notice.reason}
    domain = notice.organizer.rpartition("@")[2] or "localhost"
    message = EmailMessage(policy=SMTP)
    message["From"] = sender or f"Webinar <webinar-noreply@{domain}>"
    message["To"] = notice.organizer
    # SUMMARY may hold line breaks (iCalendar "\n"): a header value must not.
    message["Subject"] = subject.format(**{**values, "summary": _one_line(notice.summary)})
    message["Date"] = format_datetime(utc_now())
    message["Message-ID"] = make_msgid(domain=domain)
    # RFC 3834: an automatic message; vacation responders must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    text = body.format(**values)
    extras = _EXTRAS.get(language, _EXTRAS["en"])
    if notice.registered is not None and notice.total - notice.registered > PROGRESS_MENTIONED_ABOVE:
        text += "\n" + extras["progress"].format(
            registered=_count(notice.registered, language), total=_count(notice.total, language))
    if notice.left_out:
        listed = list(notice.left_out[:LEFT_OUT_LISTED])
        more = len(notice.left_out) - len(listed)
        if more:
            listed.append(("… и ещё " if language == "ru" else "… and ") + _count(more, language)
                          + ("" if language == "ru" else " more"))
        text += "\n" + extras["left_out"].format(
            limit=_count(notice.limit, language), count=_count(len(notice.left_out), language),
            left_out="\n".join(listed))
    message.set_content(text, charset="utf-8")
    return message.as_bytes()
