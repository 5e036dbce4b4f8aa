"""The real ``webinar-proxy serve`` process with ``metrics.listen`` set: the endpoint
comes up with the relay, counts the mail it relays, reports health, and goes away on
SIGTERM."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.metrics.helpers import Samples
from tests.support.serve import running_serve
from tests.support.smtp import WireClient, dot_stuff, running_next_hop
from webinar_proxy.testing.fake_webinar import running_fake_webinar

TOKEN = "serve-metrics-token-0b8d6f4c"
MESSAGE = b"From: <o@example.org>\r\nTo: <a@example.net>\r\nSubject: plain\r\n\r\nbody\r\n"


async def test_serve_exposes_metrics_and_health_on_its_own_loop(tmp_path: Path):
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = {
            "WEBINAR_PROXY_SMTP__LISTEN": "127.0.0.1:0",
            "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{hop.port}",
            "WEBINAR_PROXY_SMTP__SHUTDOWN_GRACE_SECONDS": "1",
            "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
            "WEBINAR_PROXY_WEBINAR__API_URL": fake.api_url,
            "WEBINAR_PROXY_STORE__URL": f"sqlite:///{tmp_path}/state.db",
            "WEBINAR_PROXY_METRICS__LISTEN": "127.0.0.1:0",
        }
        async with running_serve(env) as serve:
            smtp_port = serve.smtp_port
            assert serve.metrics_port is not None
            metrics_port = serve.metrics_port

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

            serve.process.terminate()
            async with asyncio.timeout(30):
                assert await serve.process.wait() == 0, serve.output
    assert [d.content for d in hop.handler.delivered] == [MESSAGE]
    # The endpoint is gone with the process.
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        try:
            await http.get(f"http://127.0.0.1:{metrics_port}/healthz")
        except httpx.ConnectError:
            pass
        else:
            raise AssertionError("the metrics endpoint outlived the process")
