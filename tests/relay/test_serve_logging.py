"""What the real ``serve`` process logs: libraries quiet at INFO (no API query strings
with organizers' addresses), more with ``--log-level debug``, and one ERROR a minute
while the platform rejects the token."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support.relay import REPO
from tests.support.serve import running_serve
from tests.support.smtp import WireClient, dot_stuff, running_next_hop
from webinar_proxy.testing.fake_webinar import running_fake_webinar

TOKEN = "serve-logging-token-6a2f9c0d"
INVITATION = (REPO / "examples" / "invitation.eml").read_bytes()
ORGANIZER = "organizer@example.org"
PROMPTLY = 60.0


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, api_url: str, hop_port: int, token: str,
                  *args: str) -> AsyncIterator[tuple[int, list[str]]]:
    """``serve`` as a child; yields its SMTP port and the log lines read so far (growing)."""
    env = {
        "WEBINAR_PROXY_SMTP__LISTEN": "127.0.0.1:0",
        "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{hop_port}",
        "WEBINAR_PROXY_SMTP__SHUTDOWN_GRACE_SECONDS": "1",
        "WEBINAR_PROXY_WEBINAR__TOKEN": token,
        "WEBINAR_PROXY_WEBINAR__API_URL": api_url,
        "WEBINAR_PROXY_STORE__URL": f"sqlite:///{tmp_path}/state.db",
    }
    async with running_serve(env, *args) as serve:
        yield serve.smtp_port, serve.lines


async def send(port: int, message: bytes) -> int:
    client = await WireClient.connect("127.0.0.1", port)
    try:
        await client.reply()
        await client.command("EHLO client.test")
        code, _ = await client.transaction(ORGANIZER, ["anna@example.net"], dot_stuff(message))
        return code
    finally:
        await client.close()


async def test_at_info_the_api_calls_and_addresses_in_query_strings_stay_out_of_the_log(tmp_path):
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        async with serving(tmp_path, fake.api_url, hop.port, TOKEN) as (port, lines):
            assert await send(port, INVITATION) == 250
            await hop.handler.wait_delivered(2)  # the invitation and the organizer's notice
        queried = [r.path for r in fake.requests if r.path.endswith("/organization/members")]
    assert queried  # the organizer was looked up by address...
    log = "".join(lines)
    assert "action=ensure" in log and "created event" in log
    assert "HTTP Request:" not in log  # ...but httpx's request lines stay out at INFO
    assert "organization/members?" not in log and "email=" not in log


async def test_log_level_debug_lets_the_libraries_speak(tmp_path):
    async with (
        running_fake_webinar(token=TOKEN) as fake,
        running_next_hop() as hop,
        serving(tmp_path, fake.api_url, hop.port, TOKEN, "--log-level", "debug") as (port, lines),
    ):
        assert await send(port, INVITATION) == 250
        await hop.handler.wait_delivered(2)
    assert "HTTP Request:" in "".join(lines)


async def test_a_rejected_token_is_one_error_line_for_many_invitations(tmp_path):
    wrong = "rejected-token-1f2e3d4c5b"
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        async with serving(tmp_path, fake.api_url, hop.port, wrong) as (port, lines):
            codes = [await send(port, INVITATION.replace(b"weekly-sales-1@", f"m{n}@".encode()))
                     for n in range(3)]
        assert {r.status for r in fake.requests} == {403}
    assert codes == [451, 451, 451]  # kept by the MTA until the token is fixed
    errors = [line for line in lines if " ERROR " in line and "the API token is not accepted" in line]
    assert len(errors) == 1, "".join(lines)
    assert "check-config --online" in errors[0]
    assert wrong not in "".join(lines)
    assert hop.handler.delivered == []
