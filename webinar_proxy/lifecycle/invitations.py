"""The invitation pipeline: message → decision → platform and store → rewritten message.

This is the product's use case.  For each message the SMTP edge hands
over, it asks the engine what the mail carries, takes the per-key lock, decides
with ``decide``, lets ``ConferenceManager`` act, and returns the bytes to forward:
the original object when nothing changes, a complete rewrite otherwise, or
``TemporaryFailure`` (451) when the conference cannot be made now — never a
half-written message.

The engine never runs in the event loop: every call goes through an ``Engine``
(``invitation.EnginePool`` in the service: worker processes with a time and a memory
limit).  Mail the cheap header precheck shows to hold no calendar part never reaches
it.  A call whose worker was stopped (``EngineStopped``: timeout, memory, crash) makes
the mail "not processable": it goes on unchanged, with one warning.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from webinar_proxy.invitation import (
    Classification,
    Engine,
    EngineError,
    EngineOptions,
    EnginePool,
    EngineStopped,
    EngineUnavailable,
    may_carry_calendar,
    normalise_address,
)
from webinar_proxy.lifecycle.conferences import ConferenceManager, utc_now
from webinar_proxy.lifecycle.decide import (
    ACTING_METHODS,
    Action,
    Decision,
    after_request,
    decide,
    is_served,
    live_record,
    login_may_organize,
)
from webinar_proxy.lifecycle.notices import Notice, NoticeKind, build_notice
from webinar_proxy.seam import InboundMessage, Processed, TemporaryFailure
from webinar_proxy.settings import PolicySettings
from webinar_proxy.store import (
    ConferenceRecord,
    ConferenceState,
    ConferenceStore,
    RegistrationAction,
    StoreError,
)
from webinar_proxy.webinar import RejectedError, WebinarError

log = logging.getLogger("webinar_proxy.lifecycle")

#: Most meetings remembered at once whose creation notice still waits for a delivery.
MAX_UNANNOUNCED = 10_000

#: Most UIDs remembered at once as already warned about an untrusted sender.
MAX_WARNED = 10_000

#: Sends one message (envelope sender, recipients, bytes) through the next hop.
NoticeSender = Callable[[str, Sequence[str], bytes], Awaitable[object]]


class InvitationPipeline:
    def __init__(
        self,
        manager: ConferenceManager,
        store: ConferenceStore,
        options: EngineOptions,
        policy: PolicySettings,
        *,
        send_notice: NoticeSender | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.manager = manager
        #: Where classify, rewrite and remove_conference run (never the event loop): the
        #: conference manager's engine, so both share one pool.
        self.engine: Engine = manager.engine
        self.store = store
        self.options = options
        self.policy = policy
        self.send_notice = send_notice
        self.clock = clock
        # A creation notice goes out only with a delivered invitation.  When the first
        # delivery fails after the conference was made (next hop stalled or gone, 451),
        # the MTA's retry finds the conference ready; these keys (organizer, UID) make
        # that retry announce it instead.  In memory: a crash still loses the notice.
        self._unannounced: set[tuple[str, str]] = set()
        self._warned_uids: set[str] = set()

    def reconfigure(self, options: EngineOptions, policy: PolicySettings) -> None:
        """Apply new templates and policy (SIGHUP) to the messages that follow."""
        self.options = options
        self.policy = policy
        if isinstance(self.engine, EnginePool):  # the worker count and memory need a restart
            self.engine.timeout_seconds = policy.engine_timeout_seconds
        self.manager.options = options
        self.manager.max_attendees = policy.max_attendees

    async def process(self, message: InboundMessage) -> Processed:
        """Phase one: the bytes to forward, and the notices to send once they are delivered."""
        after = InvitationFollowUp(self)
        return Processed(await self._process(message, after), after)

    async def _process(self, message: InboundMessage, after: InvitationFollowUp) -> bytes:
        content = message.content
        if not may_carry_calendar(content):
            return content  # ordinary mail: no calendar part, nothing to ask the engine
        try:
            c = await self.engine.classify(content, message.mail_from, self.options, self.clock())
        except EngineStopped as exc:
            log.warning("mail not processable (%s): forwarded unchanged", exc)
            return content
        except EngineUnavailable:
            raise TemporaryFailure("Invitation engine unavailable, try again later") from None
        if not (c.processable and c.is_imip and c.uid and c.organizer):
            return content
        if not is_served(c.organizer, self.policy.organizer_domains):
            return content
        sender = normalise_address(message.mail_from) if message.mail_from else None
        if self.policy.organizer_check == "envelope" and c.from_organizer:
            # SENT-BY is written by the sender like From: is: strict means the envelope only.
            c = dataclasses.replace(c, from_organizer=sender == c.organizer)
        elif self.policy.organizer_check == "login":
            c = dataclasses.replace(c, from_organizer=login_may_organize(
                message.login, c.organizer, self.policy.login_addresses))
        if not c.from_organizer and sender is not None and sender in self._trusted_senders():
            # A calendar server sending for its users speaks for the ORGANIZER it writes.
            c = dataclasses.replace(c, from_organizer=True)
        always = is_served(c.organizer, self.policy.always_domains) if self.policy.always_domains else False
        try:
            async with self.store.key_lock(c.organizer, c.uid):
                record = await self.store.get(c.organizer, c.uid)
                decision = decide(c, record, always=always, rcpt_tos=message.rcpt_tos,
                                  queued=await self._queued(c, record))
                if not c.from_organizer and (c.conference_requested or c.has_our_link or always
                                             or live_record(record) is not None):
                    self._hint_untrusted_sender(message, c, sender)
                log.info("uid=%s method=%s organizer=%s action=%s (%s)",
                         c.uid, c.method, c.organizer, decision.action, decision.reason)
                return await self._act(message, after, c, record, decision)
        except StoreError as exc:
            log.error("conference store unavailable: %s", exc)
            raise TemporaryFailure("Conference store unavailable, try again later") from None

    async def _queued(self, c: Classification, record: ConferenceRecord | None) -> list[str]:
        """Attendees of a CANCEL's conference still waiting to be registered."""
        if record is None or (c.method or "").upper() != "CANCEL":
            return []
        return [p.address for p in await self.store.pending_registrations(c.organizer or "", c.uid or "")
                if p.action is RegistrationAction.ADD]

    def _trusted_senders(self) -> frozenset[str]:
        return frozenset(address.lower() for address in self.policy.trusted_senders)

    def _hint_untrusted_sender(self, message: InboundMessage, c: Classification,
                               sender: str | None) -> None:
        """Say once per UID why a calendar server's mail for a served organizer, about a
        meeting with a conference (asked for or made), is not acted on."""
        assert c.uid is not None and c.organizer is not None
        if (c.method or "").upper() not in ACTING_METHODS or c.uid in self._warned_uids:
            return
        attendees = {a.address.lower() for a in c.attendees}
        if sender in attendees:
            return  # an attendee passing the invitation on: nothing to configure
        if len(self._warned_uids) >= MAX_WARNED:
            self._warned_uids.clear()
        self._warned_uids.add(c.uid)
        log.warning(
            "uid=%s: %s for organizer %s is not from the organizer: envelope sender "
            "<%s>, From: %s, Reply-To: %s. If <%s> is your calendar server sending for its "
            "users, list it in policy.trusted_senders (and keep it from being forged, see "
            "docs/deployment.md)", c.uid, c.method, c.organizer,
            sender or "", ", ".join(c.header_from) or "-", ", ".join(c.reply_to) or "-",
            sender or "",
        )

    async def _act(
        self, message: InboundMessage, after: InvitationFollowUp, c: Classification,
        record: ConferenceRecord | None, decision: Decision,
    ) -> bytes:
        content = message.content
        action = decision.action
        assert c.uid is not None and c.organizer is not None
        if action is Action.PASS:
            return content
        if action is Action.INSERT_LINK:
            assert record is not None and record.link
            return await self._rewrite(content, c.uid, record.link)
        if action is Action.ENSURE:
            return await self._ensure(message, after, c, record)
        assert record is not None
        if action in (Action.REMOVE, Action.CANCEL):
            await self.manager.delete(record, "removed by the organizer" if action is Action.REMOVE
                                      else "meeting cancelled")
            self._unannounced.discard((c.organizer, c.uid))
            after.queue(Notice(NoticeKind.REMOVED, c.organizer, record.summary or "",
                                        record.link))
            if action is Action.REMOVE and c.has_our_link:
                return await self._engine_edit(
                    content, c.uid, "join link not removed from the mail",
                    self.engine.remove_conference(content, c.uid, self.options))
            return content
        try:
            if action is Action.UNREGISTER:
                record = await self.manager.unregister(record, decision.uninvited)
            elif action is Action.CANCEL_OCCURRENCES:
                await self.manager.cancel_occurrences(record, c.recurrence_ids)
        except (WebinarError, EngineError) as exc:
            # The cancellation reaches the attendees anyway; the platform keeps a few
            # extra registrations or an outdated session until the next update.
            log.warning("uid=%s: %s not applied on the platform: %s", c.uid, action, exc)
        if decision.bookkeeping is not None:
            await self.store.put(dataclasses.replace(record, **decision.bookkeeping.as_fields()))
        return content

    async def _ensure(
        self, message: InboundMessage, after: InvitationFollowUp, c: Classification,
        record: ConferenceRecord | None,
    ) -> bytes:
        assert c.uid is not None and c.organizer is not None
        created = record is None or record.link is None or record.state != ConferenceState.ACTIVE
        try:
            async with asyncio.timeout_at(_platform_give_up_at(message)):
                record = await self.manager.ensure(c, record)
        except TimeoutError:
            # The platform is too slow for this message's deadline: stop in time to
            # still answer (451) or deliver without the link, per policy.
            return self._platform_unavailable(message, after, c,
                                              "the Webinar platform did not answer in time")
        except RejectedError as exc:
            # The platform refuses this meeting as it is: retrying the same mail
            # cannot help, so deliver it without a link and tell the organizer.
            log.error("uid=%s: the platform rejected the conference: %s", c.uid, exc)
            return self._deliver_without_link(message, after, c, str(exc.message or exc))
        except WebinarError as exc:
            return self._platform_unavailable(message, after, c, str(exc))
        assert record.link is not None
        book = after_request(c, record, message.rcpt_tos)
        record = await self.store.put(dataclasses.replace(record, **book.as_fields()))
        key = (c.organizer, c.uid)
        if created or key in self._unannounced:
            self._unannounced.discard(key)
            progress = await self.manager.progress(c, record)
            after.queue(Notice(
                NoticeKind.CREATED, c.organizer, record.summary, record.link,
                registered=progress.registered, total=progress.total,
                left_out=progress.left_out, limit=self.manager.max_attendees,
            ))
            after.announces(key)
        return await self._rewrite(message.content, c.uid, record.link)

    def _platform_unavailable(self, message: InboundMessage, after: InvitationFollowUp,
                              c: Classification, why: str) -> bytes:
        if self.policy.on_api_failure == "deliver":
            log.error("uid=%s: no conference (%s); delivering without a link", c.uid, why)
            return self._deliver_without_link(message, after, c, "the Webinar platform is unavailable")
        log.warning("uid=%s: conference not ready (%s); asking the MTA to retry", c.uid, why)
        raise TemporaryFailure("Webinar conference could not be reserved yet, try again later")

    def _deliver_without_link(self, message: InboundMessage, after: InvitationFollowUp,
                              c: Classification, reason: str) -> bytes:
        assert c.organizer is not None
        after.queue(Notice(NoticeKind.FAILED, c.organizer, c.summary or "", reason=reason))
        return message.content

    async def _rewrite(self, content: bytes, uid: str, link: str) -> bytes:
        return await self._engine_edit(content, uid, "join link not written into the mail",
                                       self.engine.rewrite(content, uid, link, self.options))

    async def _engine_edit(self, content: bytes, uid: str, what: str,
                           edit: Awaitable[bytes]) -> bytes:
        """The edited mail, or the mail as it is when the engine cannot edit it."""
        try:
            return await edit
        except EngineStopped as exc:
            log.warning("uid=%s: mail not processable (%s): %s; forwarded unchanged", uid, exc, what)
            return content
        except EngineUnavailable:
            raise TemporaryFailure("Invitation engine unavailable, try again later") from None
        except EngineError as exc:
            # The mail cannot carry the link (a damaged structure the reader accepted):
            # retrying the same bytes would fail the same way for days, so it goes as it
            # is; the organizer's notice still carries the link.
            log.error("uid=%s: %s: %s", uid, what, exc)
            return content


class InvitationFollowUp:
    """Phase two of one message (the seam's ``AfterDelivery``): organizer notices.

    Notices go out only once the invitation itself was delivered.  A creation notice
    of a message that was not delivered is remembered by (organizer, UID), so the
    MTA's retry, which finds the conference ready, announces it instead.
    """

    def __init__(self, pipeline: InvitationPipeline) -> None:
        self._pipeline = pipeline
        self._notices: list[Notice] = []
        self._announcing: tuple[str, str] | None = None
        self._uid = ""

    def queue(self, notice: Notice) -> None:
        if self._pipeline.policy.notify_organizer and self._pipeline.send_notice is not None:
            self._notices.append(notice)

    def announces(self, key: tuple[str, str]) -> None:
        """The queued creation notice announces the conference of ``key`` (organizer, UID)."""
        self._uid = key[1]
        if self._notices:
            self._announcing = key

    async def _refresh(self, notice: Notice) -> Notice:
        """A creation notice counts the registrations done by the time it is sent."""
        if notice.registered is None or notice.registered >= notice.total:
            return notice
        try:
            counts = await self._pipeline.store.registration_counts(notice.organizer, self._uid)
        except StoreError:
            return notice  # the count taken while processing will do
        return dataclasses.replace(notice, registered=max(notice.total - counts["add"], 0))

    async def aborted(self) -> None:
        unannounced = self._pipeline._unannounced
        if self._announcing is not None and len(unannounced) < MAX_UNANNOUNCED:
            unannounced.add(self._announcing)

    async def delivered(self) -> None:
        pipeline = self._pipeline
        if pipeline.send_notice is None:
            return
        for notice in self._notices:
            try:
                notice = await self._refresh(notice)
                data = build_notice(notice, language=pipeline.policy.language,
                                    sender=pipeline.policy.notice_from)
                await pipeline.send_notice("", [notice.organizer], data)
            except Exception as exc:  # a notice is a courtesy; it never fails the mail
                log.warning("notice to %s not sent: %s", notice.organizer, exc)


#: Share of the time left that platform calls may use; the rest is for rewriting and
#: forwarding, so a slow platform still ends in a timely 451 or a delivery.
PLATFORM_SHARE = 0.6


def _platform_give_up_at(message: InboundMessage) -> float | None:
    if not math.isfinite(message.deadline):
        return None
    now = asyncio.get_running_loop().time()
    return now + PLATFORM_SHARE * max(0.0, message.deadline - now)
