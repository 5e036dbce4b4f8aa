"""The README's invitation table as one pure function: what to do with an invitation,
given what is stored.

``decide`` looks only at the engine's classification, the mail's envelope
recipients and the stored record; it does no I/O and changes nothing, so every row
of the table is a plain unit test.

Who a CANCEL uninvites, and whether it cancels the whole meeting, is read from
where the mail goes, not only from its ATTENDEE lines: calendar servers send one
CANCEL per attendee (sabre/dav: each lists only its own recipient, none says
STATUS:CANCELLED) or list the people who *remain* (SOGo).  So the record keeps the
envelope recipients of the organizer's invitations (``mailed_to``), and the
meeting counts as cancelled once the organizer's CANCELs of one SEQUENCE have
together reached all of them.  ``after_request`` and the ``bookkeeping`` of a
CANCEL decision say what to store.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from webinar_proxy.invitation import Classification
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


#: Attendee types that are places or things: never registered, and neither keeping a
#: conference alive nor ending it.
NOT_MAILED_FOR_CANCEL = frozenset({"ROOM", "RESOURCE"})


@dataclass(frozen=True, slots=True)
class Bookkeeping:
    """The record's view of who the meeting's mail reached (see ``ConferenceRecord``)."""

    attendees: frozenset[str] = frozenset()
    mailed_to: frozenset[str] = frozenset()
    cancel_sequence: int | None = None
    cancelled_to: frozenset[str] = frozenset()

    @classmethod
    def of(cls, record: ConferenceRecord) -> Bookkeeping:
        return cls(frozenset(record.attendees), frozenset(record.mailed_to),
                   record.cancel_sequence, frozenset(record.cancelled_to))

    def as_fields(self) -> dict[str, object]:
        """Keyword arguments for ``dataclasses.replace(record, ...)``."""
        return {
            "attendees": tuple(sorted(self.attendees)),
            "mailed_to": tuple(sorted(self.mailed_to)),
            "cancel_sequence": self.cancel_sequence,
            "cancelled_to": tuple(sorted(self.cancelled_to)),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    #: UNREGISTER: the addresses the CANCEL uninvited.
    uninvited: frozenset[str] = frozenset()
    #: What to store about the meeting's mail after this one (None: nothing changes).
    bookkeeping: Bookkeeping | None = field(default=None)


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


def live_record(record: ConferenceRecord | None) -> ConferenceRecord | None:
    """The record if its conference exists (or is being made), else None."""
    if record is None or record.state not in (ConferenceState.ACTIVE, ConferenceState.CREATING):
        return None
    return record


def decide(
    c: Classification,
    record: ConferenceRecord | None,
    *,
    always: bool = False,
    rcpt_tos: Iterable[str] = (),
    queued: Iterable[str] = (),
) -> Decision:
    """The action for a classified mail whose organizer the relay serves.

    ``always``: the organizer's domain is one where every meeting gets a conference.
    ``rcpt_tos``: the mail's envelope recipients (who a CANCEL really goes to).
    ``queued``: attendees queued for registration, not registered yet (they count as
    registered: the background worker registers them moments later).
    """
    if not (c.processable and c.is_imip and c.uid and c.organizer):
        return Decision(Action.PASS, c.reason or "not a calendar invitation")
    method = (c.method or "").upper()
    if method not in ACTING_METHODS:
        return Decision(Action.PASS, f"METHOD:{method or 'none'} never changes a conference")
    live = live_record(record)
    if not c.from_organizer:
        if method != "CANCEL" and live is not None and live.link:
            return Decision(Action.INSERT_LINK, "not from the organizer: stored link inserted")
        return Decision(Action.PASS, "not from the organizer")
    if method == "CANCEL":
        return _decide_cancel(c, live, _addresses(rcpt_tos), _addresses(queued))
    requested = c.conference_requested or always
    if live is None:
        if requested and c.next_occurrence is None:
            # A conference is booked for the nearest upcoming occurrence; there is none.
            return Decision(Action.PASS, "conference requested, but no occurrence is upcoming")
        if requested:
            return Decision(Action.ENSURE, "conference requested")
        return Decision(Action.PASS, "no conference requested")
    if c.sequence is not None and c.sequence < live.sequence:
        return Decision(Action.INSERT_LINK, f"SEQUENCE {c.sequence} older than stored {live.sequence}")
    if not c.has_master:
        return Decision(Action.INSERT_LINK, "single occurrences only: link kept")
    if requested or c.has_our_link:
        if live.state == ConferenceState.CREATING or not live.link:
            return Decision(Action.ENSURE, "conference requested; an earlier attempt did not finish it")
        return Decision(Action.ENSURE, "update of a meeting with a conference")
    return Decision(Action.REMOVE, "the organizer took the conference out")


def _addresses(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip().strip("<>").lower() for v in values if "@" in v)


def _places(c: Classification) -> frozenset[str]:
    return frozenset(a.address.lower() for a in c.attendees
                     if (a.cutype or "").upper() in NOT_MAILED_FOR_CANCEL)


def after_request(c: Classification, record: ConferenceRecord, rcpt_tos: Iterable[str]) -> Bookkeeping:
    """What to store once the organizer's REQUEST ``c``, mailed to ``rcpt_tos``, is applied.

    Its recipients (not the organizer, not rooms or resources) join ``mailed_to``;
    addresses uninvited since - reached by the CANCELs so far, or no longer listed
    as attendees - leave it.  A REQUEST ends the counting of CANCELs.
    """
    book = Bookkeeping.of(record)
    listed = frozenset(a.address.lower() for a in c.attendees)
    organizer = record.organizer.lower()
    dropped = (book.attendees - listed) | book.cancelled_to
    mailed = (book.mailed_to - dropped) | (_addresses(rcpt_tos) - _places(c) - {organizer})
    return Bookkeeping(book.attendees | listed, mailed, None, frozenset())


def _decide_cancel(c: Classification, live: ConferenceRecord | None,
                   rcpts: frozenset[str], queued: frozenset[str] = frozenset()) -> Decision:
    if live is None:
        return Decision(Action.PASS, "CANCEL of a meeting without a conference")
    if c.recurrence_ids and not c.has_master:
        return Decision(Action.CANCEL_OCCURRENCES, "CANCEL of single occurrences")
    if (c.status or "").upper() == "CANCELLED":
        return Decision(Action.CANCEL, "meeting cancelled")
    organizer = live.organizer.lower()
    book = Bookkeeping.of(live)
    registered = (frozenset(r.address.lower() for r in live.registrations) | queued) - {organizer}
    known = book.attendees | registered
    lines = frozenset(a.address.lower() for a in c.attendees) - {organizer}
    if rcpts and rcpts <= {organizer}:
        return Decision(Action.UNREGISTER, "CANCEL mailed to the organizer only: nobody uninvited")
    rcpts = rcpts - {organizer}
    strangers = rcpts - known
    if not rcpts or strangers:
        # Not addressed to known attendees (a list the MTA expanded, say): the
        # ATTENDEE lines are all there is to go by.
        uninvited = lines & known if known else lines
        how = ("its ATTENDEE lines (recipients not attendees: " + ", ".join(sorted(strangers)) + ")"
               if strangers else "its ATTENDEE lines")
    else:
        uninvited = rcpts
        how = "its envelope recipients"
    # CANCELs of one SEQUENCE add up; a new SEQUENCE finishes the last one's uninvitations.
    sequence = c.sequence or 0
    mailed = book.mailed_to
    reached = book.cancelled_to
    if book.cancel_sequence != sequence:
        mailed, reached = mailed - reached, frozenset()
    contributes = (rcpts | uninvited) & mailed
    reached = reached | contributes
    after = Bookkeeping(book.attendees, mailed, sequence, reached)
    if mailed:
        everyone = bool(contributes) and mailed <= reached
        target = "every address the invitations were mailed to"
    else:  # nothing known about where the invitations went (a record from before)
        everyone = (bool(uninvited) and registered <= uninvited) if registered else not uninvited
        target = "every registered attendee"
    if uninvited and uninvited <= known and not (uninvited & registered):
        everyone = False  # only rooms or never-registered people were taken out
    if rcpts and rcpts <= known and lines and not (lines & rcpts):
        everyone = False  # SOGo's removal: the lines name who remains, not the one taken out
    if everyone:
        return Decision(Action.CANCEL, f"CANCELs of SEQUENCE {sequence} reached {target}",
                        bookkeeping=after)
    return Decision(Action.UNREGISTER, f"CANCEL uninvites by {how}: "
                    + (", ".join(sorted(uninvited)) or "nobody known"),
                    uninvited=uninvited, bookkeeping=after)
