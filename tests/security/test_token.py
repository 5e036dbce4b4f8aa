"""The API token never leaves the process except in the ``x-auth-token`` header.

The real ``serve`` runs with a distinctive token against the fake Webinar API, handles
invitations while the API answers normally, with 500s, with garbled JSON, and (with a
wrong token) 401; then every output of ours is searched for the token: the relay's
whole log, ``check-config`` on bad configurations, ``inspect``, ``conferences list
--json`` and ``/metrics`` and ``/healthz``.  (The fake receives the token legitimately;
only our outputs are searched.)
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.env import serve_env
from tests.support.invites import invitation
from tests.support.relay import REPO
from tests.support.serve import running_serve
from tests.support.smtp import running_next_hop, send_one
from webinar_proxy.testing.fake_webinar import running_fake_webinar

TOKEN = "tok-SECRET-7f3e9b21c4d8a6e0"
WRONG_TOKEN = "tok-WRONG-5a1c8e2f9d0b7364"
START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)


def _invite(n: int) -> bytes:
    return invitation(uid=f"token-{n}@example.org", start=START, end=START + timedelta(hours=1))


async def _run(*args: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webinar_proxy", *args, cwd=REPO, env=serve_env(**env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8", "replace")


def _env(api_url: str, hop_port: int, state: Path, token: str) -> dict[str, str]:
    return {
        "WEBINAR_PROXY_SMTP__LISTEN": "127.0.0.1:0",
        "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{hop_port}",
        "WEBINAR_PROXY_SMTP__SHUTDOWN_GRACE_SECONDS": "1",
        "WEBINAR_PROXY_WEBINAR__TOKEN": token,
        "WEBINAR_PROXY_WEBINAR__API_URL": api_url,
        "WEBINAR_PROXY_WEBINAR__RATE_LIMIT": "100",
        "WEBINAR_PROXY_WEBINAR__CALL_DEADLINE_SECONDS": "1.5",
        "WEBINAR_PROXY_STORE__URL": f"sqlite:///{state}",
        "WEBINAR_PROXY_METRICS__LISTEN": "127.0.0.1:0",
    }


def _assert_clean(where: str, text: str) -> None:
    for secret in (TOKEN, WRONG_TOKEN):
        assert secret not in text, f"{where} shows the token"
        # nor a recognisable piece of it
        assert secret[4:20] not in text, f"{where} shows part of the token"


@pytest.mark.slow
async def test_the_token_is_in_no_output_of_ours(tmp_path: Path):
    outputs: dict[str, str] = {}
    state = tmp_path / "state.db"
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = _env(fake.api_url, hop.port, state, TOKEN)
        async with running_serve(env) as serve, httpx.AsyncClient(trust_env=False, timeout=10) as http:
            assert await send_one(serve.smtp_port, _invite(1)) == 250  # a conference is made
            faults = f"{fake.root_url}/_fake/faults"
            for kind in ("500", "bad_json", "drop"):
                response = await http.post(faults, json={"kind": kind, "times": None, "method": "POST"})
                assert response.status_code < 300, response.text
                assert await send_one(serve.smtp_port, _invite(2)) == 451
                assert (await http.delete(faults)).status_code < 300
            assert await send_one(serve.smtp_port, _invite(2)) == 250  # after the storm
            assert serve.metrics_port is not None
            for page in ("metrics", "healthz"):
                response = await http.get(f"http://127.0.0.1:{serve.metrics_port}/{page}")
                assert response.status_code == 200
                outputs[f"/{page}"] = response.text
        outputs["serve log (right token, API faults)"] = serve.output
        assert "HTTP 500" in serve.output or "500" in serve.output  # the failures were logged

        wrong = _env(fake.api_url, hop.port, tmp_path / "wrong.db", WRONG_TOKEN)
        async with running_serve(wrong) as serve:
            assert await send_one(serve.smtp_port, _invite(3)) == 451  # 401/403 from the platform
        outputs["serve log (wrong token, 401)"] = serve.output
        assert "HTTP 403" in serve.output or "HTTP 401" in serve.output, serve.output

    invite_file = tmp_path / "invite.eml"
    invite_file.write_bytes(_invite(4))
    token_env = {"WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN, "WEBINAR_PROXY_STORE__URL": f"sqlite:///{state}"}
    for args in (["inspect", str(invite_file)], ["inspect", str(invite_file), "--json"],
                 ["inspect", str(invite_file), "--link", "https://events.webinar.ru/x/1"],
                 ["conferences", "list", "--json"], ["conferences", "show", "token-1@example.org", "--json"]):
        code, output = await _run(*args, env=token_env)
        assert code == 0, output
        outputs[" ".join(args[:2])] = output
    assert "token-1@example.org" in outputs["conferences list"]

    # check-config with the token where it belongs and where it does not
    bad_configs = {
        "token pasted into other keys": (
            f'[webinar]\ntoken = "{TOKEN}"\napi_url = "{TOKEN}"\n'
            f'[smtp]\nlisten = "{TOKEN}"\nmax_connections = "{TOKEN}"\n'
            f'[store]\nurl = "{TOKEN}"\n[policy]\nlanguage = "{TOKEN}"\n'
        ),
        "unknown key named like the token": f'[webinar]\ntoken = "{TOKEN}"\n{TOKEN.replace("-", "_")} = 1\n',
        "not TOML": f'[webinar]\ntoken = "{TOKEN}\n',
    }
    for name, text in bad_configs.items():
        path = tmp_path / "bad.toml"
        path.write_text(text)
        code, output = await _run("check-config", "--config", str(path), env={})
        assert code == 2, output
        outputs[f"check-config, {name}"] = output
    code, output = await _run("check-config", env={
        "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN, "WEBINAR_PROXY_WEBINAR__API_URL": TOKEN,
        "WEBINAR_PROXY_SMTP__LISTEN": TOKEN,
    })
    assert code == 2, output
    outputs["check-config, bad environment"] = output

    for where, text in outputs.items():
        _assert_clean(where, text)
