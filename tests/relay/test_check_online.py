"""``check-config --online`` as a real process against the fake Webinar API over HTTP:
the token proven, the API reached, organizers looked up; exit codes 0, 2 and 1."""

from __future__ import annotations

import asyncio
import sys

from tests.support.env import clean_env
from tests.support.relay import REPO
from webinar_proxy.testing.fake_webinar import running_fake_webinar

TOKEN = "online-check-token-4e7a9b1c"
PROMPTLY = 60.0


async def check_online(api_url: str, token: str, **extra: str) -> tuple[int, str, str]:
    env = clean_env()
    env.pop("CREDENTIALS_DIRECTORY", None)
    env.update({"WEBINAR_PROXY_WEBINAR__API_URL": api_url, "WEBINAR_PROXY_WEBINAR__TOKEN": token,
                **extra})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webinar_proxy", "check-config", "--online", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(PROMPTLY):
        stdout, stderr = await process.communicate()
    return process.returncode, stdout.decode(), stderr.decode()


async def test_a_good_token_passes_every_online_check():
    async with running_fake_webinar(token=TOKEN) as fake:
        code, stdout, stderr = await check_online(fake.api_url, TOKEN)
        paths = [request.path for request in fake.requests]
    assert code == 0, stderr
    assert f"Webinar API at {fake.api_url}: reachable" in stdout
    assert "API token: accepted" in stdout
    assert "organizer lookup: works" in stdout
    assert stdout.strip().endswith("configuration OK (online checks passed)")
    assert any(path.endswith("/organization/members") for path in paths), paths
    assert TOKEN not in stdout + stderr


async def test_a_rejected_token_is_a_configuration_problem():
    wrong = "wrong-token-9d8c7b6a5f"
    async with running_fake_webinar(token=TOKEN) as fake:
        code, stdout, stderr = await check_online(fake.api_url, wrong)
    assert code == 2
    assert "the API token is not accepted (HTTP 403" in stderr
    assert "set webinar.token" in stderr
    assert wrong not in stdout + stderr and TOKEN not in stdout + stderr


async def test_an_unreachable_api_is_a_runtime_failure_named_as_such():
    async with running_fake_webinar(token=TOKEN) as gone:
        url = gone.api_url  # nothing listens there any more
    code, stdout, stderr = await check_online(url, TOKEN, WEBINAR_PROXY_WEBINAR__CALL_DEADLINE_SECONDS="2")
    assert code == 1
    assert f"the Webinar API at {url} cannot be reached" in stderr
    assert "configuration OK" not in stdout


async def test_without_online_nothing_is_called():
    async with running_fake_webinar(token=TOKEN) as fake:
        env = clean_env()
        env.update({"WEBINAR_PROXY_WEBINAR__API_URL": fake.api_url, "WEBINAR_PROXY_WEBINAR__TOKEN": "x"})
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "webinar_proxy", "check-config", cwd=REPO, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(PROMPTLY):
            stdout, _ = await process.communicate()
        lines = stdout.decode().strip().splitlines()
        assert process.returncode == 0 and lines[-1] == "configuration OK"
        assert lines[0].startswith("engine: ") and "worker processes" in lines[0]
        assert lines[1].startswith("relay: ")
        assert list(fake.requests) == []
