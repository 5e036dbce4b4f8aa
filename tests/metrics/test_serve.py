"""The real ``webinar-proxy serve`` process with ``metrics.listen`` set: the endpoint
comes up with the relay, counts the mail it relays, reports health, and goes away on
SIGTERM."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from tests.metrics.helpers import Samples
from tests.support.env import clean_env
from tests.support.relay import REPO
from tests.support.smtp import WireClient, dot_stuff, running_next_hop
from webinar_proxy.testing.fake_webinar import running_fake_webinar

TOKEN = "serve-metrics-token-0b8d6f4c"
MESSAGE = b"From: <o@example.org>\r\nTo: <a@example.net>\r\nSubject: plain\r\n\r\nbody\r\n"
ADDRESS = re.compile(r"on (?:http://)?127\.0\.0\.1:(\d+)")


async def _read_until_listening(stdout: asyncio.StreamReader) -> list[str]:
    lines: list[str] = []
    async with asyncio.timeout(30):
        while True:
            line = (await stdout.readline()).decode("utf-8", "replace")
            if not line:
                raise AssertionError("serve exited before it was ready:\n" + "".join(lines))
            lines.append(line)
            if "listening on" in line:
                return lines


def _port(lines: list[str], marker: str) -> int:
    [line] = [line for line in lines if marker in line]
    match = ADDRESS.search(line)
    assert match, line
    return int(match[1])


async def test_serve_exposes_metrics_and_health_on_its_own_loop(tmp_path: Path):
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = clean_env()
        env.update({
            "WEBINAR_PROXY_SMTP__LISTEN": "127.0.0.1:0",
            "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{hop.port}",
            "WEBINAR_PROXY_SMTP__SHUTDOWN_GRACE_SECONDS": "1",
            "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
            "WEBINAR_PROXY_WEBINAR__API_URL": fake.api_url,
            "WEBINAR_PROXY_STORE__URL": f"sqlite:///{tmp_path}/state.db",
            "WEBINAR_PROXY_METRICS__LISTEN": "127.0.0.1:0",
        })
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "webinar_proxy", "serve", cwd=REPO, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            assert process.stdout is not None
            lines = await _read_until_listening(process.stdout)
            smtp_port = _port(lines, "listening on")
            metrics_port = _port(lines, "metrics and health on")

            client = await WireClient.connect("127.0.0.1", smtp_port)
            try:
                await client.reply()
                await client.command("EHLO client.test")
                code, _ = await client.transaction("o@example.org", ["a@example.net"], dot_stuff(MESSAGE))
                assert code == 250
            finally:
                await client.close()

            async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
                health = await http.get(f"http://127.0.0.1:{metrics_port}/healthz")
                scraped = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert health.status_code == 200, health.text
            assert health.json() == {"status": "ok", "listener": True, "store": True}
            samples: Samples = {}
            for family in text_string_to_metric_families(scraped.text):
                for sample in family.samples:
                    samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
            assert samples[("webinar_proxy_mails_total", frozenset({("outcome", "passed")}))] == 1
            assert TOKEN not in scraped.text

            process.terminate()
            async with asyncio.timeout(30):
                rest = (await process.stdout.read()).decode("utf-8", "replace")
                assert await process.wait() == 0, rest
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert [d.content for d in hop.handler.delivered] == [MESSAGE]
    # The endpoint is gone with the process.
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        try:
            await http.get(f"http://127.0.0.1:{metrics_port}/healthz")
        except httpx.ConnectError:
            pass
        else:
            raise AssertionError("the metrics endpoint outlived the process")
