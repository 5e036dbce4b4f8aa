"""The shipped Postfix snippets, loaded into a real (private) Postfix in front of the real relay.

After the queue (content_filter sandwich): ordinary mail arrives intact; with the relay
down Postfix defers and keeps the mail, and ``postqueue -f`` delivers it once the relay
is back. Before the queue (smtpd_proxy_filter): ordinary mail arrives intact; with the
relay down the submitting client gets a temporary error and keeps the mail.
"""

from __future__ import annotations

import re
import smtplib
import uuid

import pytest

from tests.support.postfix import PostfixInstance

pytestmark = pytest.mark.postfix

SENDER = "organizer@example.org"
RCPTS = ["alice@example.net", "bob@example.net"]


def ordinary_mail(tag: str) -> tuple[str, bytes]:
    """A message that shows any rewriting: 8-bit UTF-8 text, a leading dot, a line that
    starts with "From ", trailing blanks, a long line, and a base64 attachment."""
    message_id = f"<{tag}.{uuid.uuid4().hex}@example.org>"
    boundary = "b-" + uuid.uuid4().hex
    text = (
        f"From: Organizer <{SENDER}>\r\n"
        f"To: {', '.join(RCPTS)}\r\n"
        "Subject: quarterly numbers\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0300\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Привет, коллеги — цифры за квартал.\r\n"
        ".a line that starts with a dot\r\n"
        "..and one with two\r\n"
        "From the start of a line\r\n"
        "trailing blanks   \r\n"
        + "x" * 900 + "\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: application/octet-stream; name=numbers.bin\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="numbers.bin"\r\n'
        "\r\n"
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v\r\n"
        f"--{boundary}--\r\n"
    )
    return message_id, text.encode("utf-8")


def assert_arrived_intact(pf: PostfixInstance, message_id: str, original: bytes) -> None:
    copies = pf.wait_delivered(len(RCPTS), message_id=message_id)
    assert sorted(mail.recipient for mail in copies) == sorted(RCPTS)
    for mail in copies:
        # Postfix only prepends trace headers (Return-Path, Delivered-To, Received);
        # the message itself, headers and body, is byte for byte the one submitted.
        assert mail.wire.endswith(original), mail.wire[:2000]
        assert mail.body == original.split(b"\r\n\r\n", 1)[1]


def test_shipped_snippets_load_as_postfix_reads_them(after_queue: PostfixInstance):
    # configure() already ran `postconf -n` and every edit with warnings treated as errors.
    submission = after_queue.service_parameters("submission/inet")
    assert submission["content_filter"] == "$webinar_proxy_content_filter"
    assert submission["receive_override_options"] == "no_address_mappings"
    reinject = after_queue.service_parameters("reinject/inet")
    assert reinject["content_filter"] == ""
    assert "no_milters" in reinject["receive_override_options"]
    transport = after_queue.service_parameters("webinar-proxy/unix")
    assert transport["smtp_send_xforward_command"] == "yes"
    assert transport["disable_mime_output_conversion"] == "yes"


def test_ordinary_mail_passes_byte_identical(after_queue: PostfixInstance):
    message_id, original = ordinary_mail("after")
    queue_id = after_queue.submit(original, SENDER, RCPTS, mail_options=("BODY=8BITMIME",))
    assert queue_id
    assert_arrived_intact(after_queue, message_id, original)
    log = after_queue.maillog()
    # It went through the relay (the webinar-proxy transport) and came back at 10026
    # with XFORWARD, which names the submission's queue id.
    assert re.search(rf"{queue_id}: to=<{RCPTS[0]}>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
                     rf"{after_queue.relay_port}.*status=sent", log), log
    assert f"orig_queue_id={queue_id}" in log
    assert f"queue_id={queue_id}" in after_queue.relay_log()
    after_queue.wait_queue(lambda entries: not entries, "an empty queue")


def test_relay_down_means_deferred_not_bounced_and_flush_delivers_later(after_queue: PostfixInstance):
    assert after_queue.stop_relay() == 0
    message_id, original = ordinary_mail("deferred")
    queue_id = after_queue.submit(original, SENDER, RCPTS)

    entries = after_queue.wait_queue(
        lambda entries: any(e["queue_id"] == queue_id and e["queue_name"] == "deferred" for e in entries),
        "the mail in the deferred queue",
    )
    [entry] = entries  # the mail itself and nothing else: no bounce was generated
    assert entry["sender"] == SENDER
    assert sorted(r["address"] for r in entry["recipients"]) == sorted(RCPTS)
    for recipient in entry["recipients"]:
        assert "Connection refused" in recipient["delay_reason"], recipient
    assert after_queue.delivered() == []
    assert "status=bounced" not in after_queue.maillog()
    assert re.search(rf"{queue_id}: to=<[^>]+>.*status=deferred", after_queue.maillog())

    after_queue.start_relay()
    after_queue.flush()
    assert_arrived_intact(after_queue, message_id, original)
    after_queue.wait_queue(lambda entries: not entries, "an empty queue")
    assert "status=bounced" not in after_queue.maillog()


def test_before_queue_ordinary_mail_passes_byte_identical(before_queue: PostfixInstance):
    message_id, original = ordinary_mail("before")
    before_queue.submit(original, SENDER, RCPTS, mail_options=("BODY=8BITMIME",))
    assert_arrived_intact(before_queue, message_id, original)
    # The relay saw the mail inside the client's session, before Postfix queued it.
    assert f"message-id={message_id}" in before_queue.maillog()
    assert "outcome=relayed" in before_queue.relay_log()


def test_before_queue_does_not_offer_dsn(before_queue: PostfixInstance):
    with smtplib.SMTP("127.0.0.1", before_queue.submission_port, timeout=30) as client:
        code, _ = client.ehlo("client.test")
        assert code == 250
        assert not client.has_extn("dsn")
        assert client.has_extn("8bitmime")


def test_before_queue_relay_down_is_a_temporary_error_for_the_client(before_queue: PostfixInstance):
    assert before_queue.stop_relay() == 0
    message_id, original = ordinary_mail("refused")
    # (compare with what was queued before: a previous test's mail may still be leaving)
    queued_before = {entry["queue_id"] for entry in before_queue.queue()}
    with pytest.raises(smtplib.SMTPResponseException) as refused:
        before_queue.submit(original, SENDER, RCPTS)
    # 4xx: the client keeps the mail and retries; Postfix queued nothing of it.
    # (Postfix does tell its postmaster about the unreachable proxy: notify_classes.)
    assert 400 <= refused.value.smtp_code < 500, refused.value
    assert "connect to proxy filter" in before_queue.maillog()
    assert [e for e in before_queue.queue()
            if e["sender"] == SENDER and e["queue_id"] not in queued_before] == []
    assert [m for m in before_queue.delivered() if m.message_id == message_id] == []
