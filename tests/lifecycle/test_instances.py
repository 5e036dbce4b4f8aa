"""Several relay instances on one PostgreSQL store: one conference per invitation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.invites import invitation
from tests.support.product import TOKEN, calendar_text, running_product
from tests.support.relay import free_port
from tests.support.serve import serve_process
from tests.support.smtp import running_next_hop, send_one
from webinar_proxy.testing.fake_webinar import running_fake_webinar

pytestmark = pytest.mark.postgres

START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)




async def test_two_relay_processes_racing_on_one_invitation_make_one_conference(pg_url):
    invite = invitation(start=START, end=START + timedelta(hours=1), uid="race@example.org")
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        ports = [free_port(), free_port()]
        envs = [{
            "WEBINAR_PROXY_SMTP__LISTEN": f"127.0.0.1:{port}",
            "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{hop.port}",
            "WEBINAR_PROXY_WEBINAR__API_URL": fake.api_url,
            "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
            "WEBINAR_PROXY_WEBINAR__RATE_LIMIT": "1000",
            "WEBINAR_PROXY_STORE__URL": pg_url,
            "WEBINAR_PROXY_POLICY__NOTIFY_ORGANIZER": "false",
        } for port in ports]
        with serve_process(envs[0]), serve_process(envs[1]):
            codes = await asyncio.gather(*(send_one(port, invite) for port in ports * 2))
        state = fake.state()
    assert codes == [250, 250, 250, 250]
    assert len(state["events"]) == 1 and len(state["sessions"]) == 1
    link = state["events"][0]["link"].encode()
    assert len(hop.handler.delivered) == 4
    assert all(link in calendar_text(d.content) for d in hop.handler.delivered)


async def test_lifecycle_on_postgresql_create_then_cancel(tmp_path, pg_url):
    invite = invitation(start=START, end=START + timedelta(hours=1))
    cancel = invitation(start=START, end=START + timedelta(hours=1), method="CANCEL", status="CANCELLED",
                        sequence=1)
    async with running_product(tmp_path, datetime.now(UTC), store_url=pg_url) as product:
        assert (await product.send(invite, "boss@example.org", ["ann@example.net"]))[0] == 250
        assert len(product.state()["events"]) == 1
        assert (await product.send(cancel, "boss@example.org", ["ann@example.net"]))[0] == 250
        assert product.state()["events"] == []
