"""``webinar-proxy conferences list|show|forget`` run as a real subprocess against a real store."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime

from tests.support.env import clean_env
from webinar_proxy.store import (
    ConferenceRecord,
    ConferenceState,
    PendingRegistration,
    Registration,
    RegistrationAction,
)

PROMPTLY = 60.0


async def run_cli(store_url: str, *arguments: str) -> tuple[int, str, str]:
    # Only the store URL of ours reaches the child: a stray WEBINAR_PROXY_* variable
    # (the test's own PG URL among them) would be an unknown setting to it.
    environment = clean_env()
    environment["WEBINAR_PROXY_STORE__URL"] = store_url
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webinar_proxy", "conferences", *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    async with asyncio.timeout(PROMPTLY):
        stdout, stderr = await process.communicate()
    return process.returncode, stdout.decode(), stderr.decode()


async def fill(store) -> None:
    await store.put(
        ConferenceRecord(
            "boss@example.org",
            "weekly@example.org",
            state=ConferenceState.ACTIVE,
            link="https://my.mts-link.ru/j/demo/1",
            booked_start=datetime(2030, 5, 6, 10, tzinfo=UTC),
            summary="Weekly",
            calendar=b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
            registrations=(Registration("ann@example.org", "GUEST", 7),),
        )
    )
    await store.put(ConferenceRecord("a@example.org", "one-uid", state="pending_delete"))
    await store.put(ConferenceRecord("b@example.org", "one-uid", state="deleted"))


async def test_list_as_json(store, store_url):
    await fill(store)
    code, stdout, stderr = await run_cli(store_url, "list", "--json")
    assert code == 0, stderr
    listed = json.loads(stdout)
    assert {(item["organizer"], item["uid"]) for item in listed} == {
        ("boss@example.org", "weekly@example.org"),
        ("a@example.org", "one-uid"),
        ("b@example.org", "one-uid"),
    }
    weekly = next(item for item in listed if item["uid"] == "weekly@example.org")
    assert weekly["state"] == "active"
    assert weekly["booked_start"] == "2030-05-06T10:00:00+00:00"
    assert weekly["registrations"] == [
        {"address": "ann@example.org", "role": "GUEST", "participation_id": 7}
    ]


async def test_list_filters_by_state_as_text(store, store_url):
    await fill(store)
    code, stdout, _ = await run_cli(store_url, "list", "--state", "active")
    assert code == 0
    lines = stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split("\t") == ["STATE", "ORGANIZER", "UID", "BOOKED_START", "LINK", "SUMMARY"]
    assert lines[1].split("\t")[:3] == ["active", "boss@example.org", "weekly@example.org"]


async def test_show(store, store_url):
    await fill(store)
    code, stdout, _ = await run_cli(store_url, "show", "weekly@example.org", "--json")
    assert code == 0
    shown = json.loads(stdout)
    assert shown["link"] == "https://my.mts-link.ru/j/demo/1"
    assert shown["calendar"].startswith("BEGIN:VCALENDAR")

    code, stdout, _ = await run_cli(store_url, "show", "weekly@example.org")
    assert code == 0
    assert "link: https://my.mts-link.ru/j/demo/1" in stdout.splitlines()


async def test_show_counts_registered_and_queued_attendees(store, store_url):
    await fill(store)
    await store.change_registrations("boss@example.org", "weekly@example.org", [
        PendingRegistration(f"p{n}@example.org", RegistrationAction.ADD, "GUEST", None, n)
        for n in range(3)
    ] + [PendingRegistration("old@example.org", RegistrationAction.REMOVE)])
    code, stdout, _ = await run_cli(store_url, "show", "weekly@example.org")
    assert code == 0
    lines = stdout.splitlines()
    assert "registered: 1" in lines
    assert "pending_registrations: 3" in lines
    assert "pending_unregistrations: 1" in lines
    code, stdout, _ = await run_cli(store_url, "show", "weekly@example.org", "--json")
    assert json.loads(stdout)["pending_registrations"] == 3


async def test_show_not_found_and_ambiguous(store, store_url):
    await fill(store)
    code, stdout, stderr = await run_cli(store_url, "show", "missing")
    assert (code, stdout) == (1, "")
    assert "no stored conference" in stderr

    code, _, stderr = await run_cli(store_url, "show", "one-uid")
    assert code == 1
    assert "--organizer" in stderr and "a@example.org" in stderr

    code, stdout, _ = await run_cli(store_url, "show", "one-uid", "--organizer", "B@example.org")
    assert code == 0
    assert "state: deleted" in stdout.splitlines()


async def test_forget(store, store_url):
    await fill(store)
    code, _, stderr = await run_cli(store_url, "forget", "one-uid")
    assert code == 1 and "several organizers" in stderr

    code, stdout, _ = await run_cli(store_url, "forget", "one-uid", "--organizer", "b@example.org")
    assert code == 0 and "forgot deleted conference" in stdout  # nothing left on the platform
    assert await store.get("b@example.org", "one-uid") is None
    assert await store.get("a@example.org", "one-uid") is not None

    code, _, _ = await run_cli(store_url, "forget", "one-uid", "--organizer", "b@example.org")
    assert code == 1


async def test_forgetting_a_live_conference_needs_yes_and_says_the_event_stays(store, store_url):
    await fill(store)
    code, stdout, stderr = await run_cli(store_url, "forget", "weekly@example.org")
    assert (code, stdout) == (1, "")
    assert "stays on the Webinar platform" in stderr and "--yes" in stderr
    assert await store.get("boss@example.org", "weekly@example.org") is not None

    code, stdout, stderr = await run_cli(store_url, "forget", "weekly@example.org", "--yes")
    assert code == 0, stderr
    assert "forgot active conference weekly@example.org of boss@example.org" in stdout
    assert "stays on the Webinar platform" in stdout
    assert await store.get("boss@example.org", "weekly@example.org") is None


async def test_unusable_store_url_is_a_config_error(tmp_path):
    code, _, stderr = await run_cli("postgresql://127.0.0.1:5432/test?nonsense=1", "list")
    assert code == 2 and "store.url" in stderr

    code, _, stderr = await run_cli("mysql://somewhere/db", "list")
    assert code == 2 and "store.url" in stderr


async def test_unreachable_store_fails_without_leaking_the_password(tmp_path):
    code, _, stderr = await run_cli("postgresql://relay:hunter2-secret@127.0.0.1:1/x", "list")
    assert code == 1
    assert "hunter2-secret" not in stderr
    assert "relay:***@127.0.0.1" in stderr


async def test_read_only_verbs_never_create_a_store(tmp_path):
    missing = tmp_path / "typo" / "state.db"
    for verb in (["list"], ["list", "--json"], ["show", "x"], ["forget", "x", "--yes"]):
        code, stdout, stderr = await run_cli(f"sqlite://{missing}", *verb)
        assert (code, stdout) == (1, ""), verb
        assert f"no store at {missing}" in stderr
    assert not missing.parent.exists()


async def test_config_is_accepted_before_and_after_the_verb(store, store_url, tmp_path):
    await fill(store)
    config = tmp_path / "relay.toml"
    config.write_text(f'[store]\nurl = "{store_url}"\n')
    environment = clean_env()
    for arguments in (["--config", str(config), "conferences", "list", "--json"],
                      ["conferences", "--config", str(config), "list", "--json"],
                      ["conferences", "list", "--json", "--config", str(config)],
                      ["conferences", "list", "--config", str(config), "--json", "--log-level", "warning"]):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "webinar_proxy", *arguments,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environment,
        )
        async with asyncio.timeout(PROMPTLY):
            stdout, stderr = await process.communicate()
        assert process.returncode == 0, (arguments, stderr.decode())
        assert len(json.loads(stdout)) == 3, arguments


async def test_a_closed_pipe_ends_the_listing_without_a_traceback(store, store_url):
    for number in range(1500):  # far more than a pipe buffer holds
        await store.put(ConferenceRecord(f"o{number}@example.org", f"uid-{number}",
                                         state=ConferenceState.ACTIVE, summary="S" * 80))
    environment = clean_env()
    environment["WEBINAR_PROXY_STORE__URL"] = store_url
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", '"$0" -m webinar_proxy conferences list --json | head -1; exit "${PIPESTATUS[0]}"',
        sys.executable,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environment,
    )
    async with asyncio.timeout(PROMPTLY):
        stdout, stderr = await process.communicate()
    assert stdout == b"[\n"
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()
    assert process.returncode == 1
