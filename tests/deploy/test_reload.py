"""SIGHUP on the real ``serve`` process re-reads templates and policy without dropping
the listener or a connected client."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.invites import invitation
from tests.support.product import TOKEN, calendar_text
from tests.support.relay import free_port
from tests.support.serve import serve_process
from tests.support.smtp import WireClient, dot_stuff, running_next_hop
from webinar_proxy.testing.fake_webinar import running_fake_webinar

START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)




def _config(path: Path, language: str, port: int, hop: int, api_url: str, state: Path) -> None:
    path.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{port}"\nnext_hop = "127.0.0.1:{hop}"\n'
        f'[webinar]\napi_url = "{api_url}"\ntoken = "{TOKEN}"\nrate_limit = 100\n'
        f'[store]\nurl = "sqlite:///{state}"\n'
        f'[policy]\nlanguage = "{language}"\nnotify_organizer = false\n'
    )


async def test_sighup_switches_the_join_block_language_and_keeps_the_client_connected(tmp_path: Path):
    config = tmp_path / "relay.toml"
    port = free_port()
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        _config(config, "ru", port, hop.port, fake.api_url, tmp_path / "state.db")
        with serve_process({"WEBINAR_PROXY_CONFIG": str(config)}) as process:
            client = await WireClient.connect("127.0.0.1", port)
            await client.reply()
            await client.command("EHLO client.test")
            first = invitation(uid="one@example.org", start=START, end=START + timedelta(hours=1))
            code, _ = await client.transaction("boss@example.org", ["ann@example.net"], dot_stuff(first))
            assert code == 250

            _config(config, "en", port, hop.port, fake.api_url, tmp_path / "state.db")
            process.send_signal(signal.SIGHUP)
            await asyncio.to_thread(process.wait_for_line, "reloaded: templates and policy (language=en)")

            # the same connection goes on after the reload
            second = invitation(uid="two@example.org", start=START, end=START + timedelta(hours=1))
            code, _ = await client.transaction("boss@example.org", ["ann@example.net"], dot_stuff(second))
            assert code == 250
            await client.close()

            # a broken configuration is refused and the running one stays
            config.write_text("[smtp\n")
            process.send_signal(signal.SIGHUP)
            await asyncio.to_thread(process.wait_for_line, "reload refused")
            third = invitation(uid="three@example.org", start=START, end=START + timedelta(hours=1))
            client = await WireClient.connect("127.0.0.1", port)
            await client.reply()
            await client.command("EHLO client.test")
            code, _ = await client.transaction("boss@example.org", ["ann@example.net"], dot_stuff(third))
            assert code == 250
            await client.close()
    texts = [calendar_text(d.content).decode() for d in hop.handler.delivered]
    assert "Подключиться" in texts[0] and "Join:" not in texts[0]
    assert "Join:" in texts[1] and "Подключиться" not in texts[1]
    assert "Join:" in texts[2]
