"""The invariants of the invitation engine, checked on one input.

``check(raw)`` runs classify -> rewrite -> remove_conference -> next_occurrence and
raises ``Violation`` when the engine breaks a promise:

* ``classify`` never raises and never falls into its "internal error" catch-all
  (that is an unexpected exception inside), and, with ``time_limit``, returns in time;
* for a processable REQUEST, ``rewrite`` raises nothing but ``EngineError``, or returns
  bytes that the stdlib parser (``policy.default``) reads if it reads the input (some
  of its header parsers raise on odd values such as ``Message-ID: <:x@y>``, which the
  rewrite keeps as they are); every leaf part that is neither a calendar part nor the
  body text it writes into is byte-identical; the result classifies again with our
  link; rewriting it again changes nothing; and ``remove_conference`` of it takes our
  link out again;
* ``next_occurrence`` of the stored copy raises nothing but ``EngineError``.

Shared by ``fuzz/fuzz_engine.py`` and the CI test in ``tests/fuzz``.
"""

from __future__ import annotations

import email
import email.policy
import time
from datetime import UTC, datetime

from webinar_proxy.invitation import (
    EngineError,
    EngineOptions,
    classify,
    next_occurrence,
    remove_conference,
)
from webinar_proxy.invitation import rewrite as engine_rewrite
from webinar_proxy.mail import body_text_entities, calendar_entities, looks_like_bare_calendar
from webinar_proxy.mail import parse_structure as mime_structure

LINK = "https://events.webinar.ru/fuzz-org/4242424"
OPTIONS = EngineOptions()
#: Before every corpus event, so recurring ones still have occurrences to search.
NOW = datetime(2000, 1, 1, tzinfo=UTC)
MAIL_FROM = "organizer@example.com"


class Violation(AssertionError):
    """The engine broke one of its promises on this input."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def _timed(time_limit: float | None, what: str, function, *args):
    began = time.perf_counter()
    result = function(*args)
    spent = time.perf_counter() - began
    if time_limit is not None and spent > time_limit:
        raise Violation("slow", f"{what} took {spent:.1f} s (limit {time_limit:g} s)")
    return result


def _leaves(raw: bytes) -> list[bytes] | None:
    """Bytes of every leaf that the rewrite must not touch, in order (None: bare calendar)."""
    if looks_like_bare_calendar(raw):
        return None
    root = mime_structure(raw, OPTIONS.limits.mime)
    calendars = {id(entity) for entity in calendar_entities(root)}
    bodies = {id(entity) for entity in body_text_entities(root) if entity is not None}
    return [
        raw[entity.start : entity.end]
        for entity in root.walk()
        if not entity.children and id(entity) not in calendars | bodies
    ]


def _stdlib_reads(data: bytes) -> None:
    message = email.message_from_bytes(data, policy=email.policy.default)
    for part in message.walk():
        part.get_content_type()
        for name, value in part.items():
            str(name), str(value)


def _stdlib_reads_input(raw: bytes) -> bool:
    try:
        _stdlib_reads(raw)
    except Exception:
        return False
    return True


def check(raw: bytes, *, time_limit: float | None = None) -> str:
    """Run the chain on ``raw``; return how far it got, raise ``Violation`` if broken."""
    first = _timed(time_limit, "classify", classify, raw, MAIL_FROM, OPTIONS, NOW)
    if first.reason.startswith("internal error"):
        raise Violation("classify-internal-error", first.reason)
    if first.calendar and first.uid:
        try:
            _timed(time_limit, "next_occurrence", next_occurrence, first.calendar, first.uid, NOW, OPTIONS)
        except EngineError:
            pass
        except Exception as exc:
            raise Violation("next-occurrence-raised", f"{type(exc).__name__}: {exc}") from exc
    if not first.processable or first.method != "REQUEST":
        return "classified"
    uid = first.uid
    assert uid is not None
    try:
        out = _timed(time_limit, "rewrite", engine_rewrite, raw, uid, LINK, OPTIONS)
    except EngineError:
        return "rewrite-refused"
    except Exception as exc:
        raise Violation("rewrite-raised", f"{type(exc).__name__}: {exc}") from exc
    try:
        _stdlib_reads(out)
    except Exception as exc:
        if _stdlib_reads_input(raw):  # else a header we keep byte for byte already broke it
            raise Violation("stdlib-cannot-read", f"{type(exc).__name__}: {exc}") from exc
    before, after = _leaves(raw), _leaves(out)
    if before != after:
        count = (len(before or ()), len(after or ()))
        raise Violation("other-parts-changed", f"untouchable leaves before/after: {count}")
    again = classify(out, MAIL_FROM, OPTIONS, NOW)
    link_read = again.our_link == LINK or (first.has_our_link and again.has_our_link)
    if not again.processable or again.uid != uid or not link_read:
        raise Violation("link-not-read-back",
                        f"processable={again.processable} reason={again.reason!r} "
                        f"uid={again.uid!r} our_link={again.our_link!r}")
    try:
        twice = engine_rewrite(out, uid, LINK, OPTIONS)
    except Exception as exc:
        raise Violation("rewrite-of-result-raised", f"{type(exc).__name__}: {exc}") from exc
    if twice != out:
        raise Violation("not-idempotent", f"{len(out)} bytes -> {len(twice)} bytes")
    try:
        removed = remove_conference(out, uid, OPTIONS)
    except Exception as exc:
        raise Violation("remove-raised", f"{type(exc).__name__}: {exc}") from exc
    gone = classify(removed, MAIL_FROM, OPTIONS, NOW)
    if gone.has_our_link and not first.has_our_link:
        raise Violation("link-not-removed", f"still there: {gone.our_link!r} ({gone.reason})")
    return "rewritten"
