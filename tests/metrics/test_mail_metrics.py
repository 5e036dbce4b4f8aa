"""Mail outcome counters and DATA-phase latency, after real mail through a real relay,
read from the endpoint over real HTTP."""

from __future__ import annotations

import logging

from tests.metrics.helpers import scrape, serving_metrics, value
from tests.support.relay import running_relay, smtp_settings
from tests.support.smtp import WireClient, dot_stuff, running_next_hop
from webinar_proxy.metrics import Metrics
from webinar_proxy.seam import InboundMessage, Processed, TemporaryFailure


def _mail(subject: str, body: bytes = b"body\r\n") -> bytes:
    return f"From: <o@example.org>\r\nTo: <a@example.net>\r\nSubject: {subject}\r\n\r\n".encode() + body


class SubjectPipeline:
    """A real pipeline whose behaviour the subject picks: rewrite, copy, fail, or pass."""

    async def process(self, message: InboundMessage) -> Processed:
        if b"Subject: rewrite" in message.content:
            return Processed(message.content.replace(b"body", b"BODY"))
        if b"Subject: copy" in message.content:
            return Processed(bytes(bytearray(message.content)))  # equal bytes, another object
        if b"Subject: fail" in message.content:
            raise TemporaryFailure("platform unavailable")
        return Processed(message.content)


async def test_every_outcome_is_counted_and_scraped_over_http():
    metrics = Metrics()
    async with (
        running_next_hop() as hop,
        running_relay(smtp_settings(hop.port, max_message_size=2048), SubjectPipeline(), metrics) as relay,
        serving_metrics(metrics) as endpoint,
    ):
        client = await WireClient.connect("127.0.0.1", relay.port)
        try:
            await client.reply()
            assert (await client.command("EHLO client.test"))[0] == 250
            send = client.transaction
            assert (await send("o@example.org", ["a@example.net"], dot_stuff(_mail("plain"))))[0] == 250
            assert (await send("o@example.org", ["a@example.net"], dot_stuff(_mail("rewrite"))))[0] == 250
            assert (await send("o@example.org", ["a@example.net"], dot_stuff(_mail("copy"))))[0] == 250
            assert (await send("o@example.org", ["a@example.net"], dot_stuff(_mail("fail"))))[0] == 451
            hop.behaviour.data_reply = "451 4.3.0 next hop busy"
            assert (await send("o@example.org", ["a@example.net"], dot_stuff(_mail("later"))))[0] == 451
            hop.behaviour.data_reply = "554 5.7.1 refused by policy"
            assert (await send("o@example.org", ["a@example.net"], dot_stuff(_mail("refused"))))[0] == 554
            hop.behaviour.data_reply = "250 2.0.0 Ok"
            big = _mail("big", b"x" * 70 + b"\r\n") * 40
            assert (await send("o@example.org", ["a@example.net"], dot_stuff(big)))[0] == 552
        finally:
            await client.close()

        _, samples = await scrape(endpoint)

    mails = "webinar_proxy_mails_total"
    assert value(samples, mails, outcome="passed") == 2
    assert value(samples, mails, outcome="rewritten") == 1
    assert value(samples, mails, outcome="tempfailed") == 2
    assert value(samples, mails, outcome="rejected") == 2
    # Every mail that reached the end of DATA within the size limit was timed.
    assert value(samples, "webinar_proxy_data_phase_seconds_count") == 6
    assert value(samples, "webinar_proxy_data_phase_seconds_bucket", le="+Inf") == 6
    assert value(samples, "webinar_proxy_data_phase_seconds_sum") > 0
    assert [d.content for d in hop.handler.delivered][1] == _mail("rewrite").replace(b"body", b"BODY")


async def test_outcomes_and_build_info_exist_before_any_mail():
    metrics = Metrics()
    async with serving_metrics(metrics) as endpoint:
        _, samples = await scrape(endpoint)
    for outcome in ("passed", "rewritten", "tempfailed", "rejected"):
        assert ("webinar_proxy_mails_total", frozenset({("outcome", outcome)})) in samples
    [build] = [labels for name, labels in samples if name == "webinar_proxy_build_info"]
    assert dict(build)["version"]
    assert value(samples, "webinar_proxy_build_info", **dict(build)) == 1


async def test_two_relays_in_one_process_keep_separate_counts():
    first, second = Metrics(), Metrics()
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port), metrics=first) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        try:
            await client.reply()
            await client.command("EHLO client.test")
            assert (await client.transaction("o@example.org", ["a@example.net"],
                                             dot_stuff(_mail("plain"))))[0] == 250
        finally:
            await client.close()
    async with serving_metrics(first) as one, serving_metrics(second) as two:
        _, counted = await scrape(one)
        _, untouched = await scrape(two)
    assert value(counted, "webinar_proxy_mails_total", outcome="passed") == 1
    assert value(untouched, "webinar_proxy_mails_total", outcome="passed") == 0


async def test_lifecycle_and_scheduler_hooks_appear_with_bounded_labels():
    metrics = Metrics()
    metrics.conference_operation("create", "ok")
    metrics.conference_operation("delete", "deferred")
    metrics.conference_operation("roll_forward", "failed")
    metrics.conference_operation("Weird Kind/42", "maybe")  # a bug must not make new series
    metrics.set_scheduler_queue("pending_deletes", 3)
    metrics.set_scheduler_queue("due_rollovers", 1)
    metrics.set_scheduler_queue("pending_deletes", 2)
    async with serving_metrics(metrics) as endpoint:
        _, samples = await scrape(endpoint)
    ops = "webinar_proxy_conference_operations_total"
    assert value(samples, ops, kind="create", result="ok") == 1
    assert value(samples, ops, kind="delete", result="deferred") == 1
    assert value(samples, ops, kind="roll_forward", result="failed") == 1
    assert value(samples, ops, kind="other", result="other") == 1
    assert value(samples, ops, kind="update", result="ok") == 0
    assert value(samples, "webinar_proxy_scheduler_queue", queue="pending_deletes") == 2
    assert value(samples, "webinar_proxy_scheduler_queue", queue="due_rollovers") == 1


async def test_the_mail_log_line_is_unchanged_without_a_queue_id(caplog):
    caplog.set_level(logging.INFO, logger="webinar_proxy.smtp")
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        try:
            await client.reply()
            await client.command("EHLO client.test")
            await client.transaction("o@example.org", ["a@example.net"], dot_stuff(_mail("plain")))
        finally:
            await client.close()
    [line] = [r.getMessage() for r in caplog.records if "outcome=" in r.getMessage()]
    assert "queue_id=" not in line
    assert "outcome=relayed" in line
