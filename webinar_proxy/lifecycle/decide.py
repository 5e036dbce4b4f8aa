"""DESIGN §3's table as one pure function: what to do with an invitation, given what is stored.

``decide`` looks only at the engine's classification and the stored record; it
does no I/O and changes nothing, so every row of the table is a plain unit test.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from webinar_proxy.engine import Classification
from webinar_proxy.store import ConferenceRecord, ConferenceState

#: iTIP methods that can create, change or remove a conference; all others pass.
ACTING_METHODS = frozenset({"REQUEST", "ADD", "CANCEL"})


class Action(enum.StrEnum):
    PASS = "pass"  # forward unchanged
    INSERT_LINK = "insert_link"  # write the stored link in; change nothing on the platform
    ENSURE = "ensure"  # create the conference, or bring it in step with the meeting
    REMOVE = "remove"  # the organizer took the conference out: delete it
    CANCEL = "cancel"  # the meeting is cancelled: delete the conference
    UNREGISTER = "unregister"  # a CANCEL to some attendees: they were removed
    CANCEL_OCCURRENCES = "cancel_occurrences"  # a CANCEL of single occurrences


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str


def is_served(organizer: str, organizer_domains: tuple[str, ...]) -> bool:
    """True when the relay acts for this organizer (empty list = every organizer)."""
    if not organizer_domains:
        return True
    domain = organizer.rpartition("@")[2].lower()
    return domain in {d.lower().lstrip("@") for d in organizer_domains}


def login_may_organize(
    login: str | None, organizer: str, login_addresses: Mapping[str, tuple[str, ...]]
) -> bool:
    """``policy.organizer_check = "login"``: the SASL login maps to ORGANIZER.

    A login listed in ``login_addresses`` may organize for the addresses listed; any
    other login only for the address equal to itself.  No login, no organizer.
    """
    if not login:
        return False
    login = login.strip().lower()
    return organizer.lower() in login_addresses.get(login, (login,))


def _live(record: ConferenceRecord | None) -> ConferenceRecord | None:
    if record is None or record.state not in (ConferenceState.ACTIVE, ConferenceState.CREATING):
        return None
    return record


def decide(
    c: Classification,
    record: ConferenceRecord | None,
    *,
    always: bool = False,
) -> Decision:
    """The action for a classified mail whose organizer the relay serves.

    ``always``: the organizer's domain is one where every meeting gets a conference.
    """
    if not (c.processable and c.is_imip and c.uid and c.organizer):
        return Decision(Action.PASS, c.reason or "not a calendar invitation")
    method = (c.method or "").upper()
    if method not in ACTING_METHODS:
        return Decision(Action.PASS, f"METHOD:{method or 'none'} never changes a conference")
    live = _live(record)
    if not c.from_organizer:
        if method != "CANCEL" and live is not None and live.link:
            return Decision(Action.INSERT_LINK, "not from the organizer: stored link inserted")
        return Decision(Action.PASS, "not from the organizer")
    if method == "CANCEL":
        return _decide_cancel(c, live)
    requested = c.conference_requested or always
    if live is None:
        if requested:
            return Decision(Action.ENSURE, "conference requested")
        return Decision(Action.PASS, "no conference requested")
    if c.sequence is not None and c.sequence < live.sequence:
        return Decision(Action.INSERT_LINK, f"SEQUENCE {c.sequence} older than stored {live.sequence}")
    if not c.has_master:
        return Decision(Action.INSERT_LINK, "single occurrences only: link kept")
    if requested or c.has_our_link:
        return Decision(Action.ENSURE, "update of a meeting with a conference")
    return Decision(Action.REMOVE, "the organizer took the conference out")


def _decide_cancel(c: Classification, live: ConferenceRecord | None) -> Decision:
    if live is None:
        return Decision(Action.PASS, "CANCEL of a meeting without a conference")
    if c.recurrence_ids and not c.has_master:
        return Decision(Action.CANCEL_OCCURRENCES, "CANCEL of single occurrences")
    if (c.status or "").upper() == "CANCELLED":
        return Decision(Action.CANCEL, "meeting cancelled")
    cancelled = {a.address.lower() for a in c.attendees if a.is_person}
    stored = {r.address.lower() for r in live.registrations} - {live.organizer}
    if not cancelled or stored <= cancelled:
        return Decision(Action.CANCEL, "CANCEL to everyone")
    return Decision(Action.UNREGISTER, "CANCEL to some attendees: they were removed")
