"""``webinar-proxy check-config --online``: prove the settings against the Webinar API.

Read-only calls only: ``GET /timezones`` (the API answers at ``webinar.api_url``) and
one page of ``GET /organization/members`` (the token is accepted, and organizers can be
looked up to own their conferences).  Exit 0 when all pass, 2 when the token is not
accepted (a configuration problem), 1 when the API cannot be reached or answers
unexpectedly.
"""

from __future__ import annotations

import asyncio
import sys

from webinar_proxy.cli.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from webinar_proxy.settings import Settings
from webinar_proxy.webinar.client import TOKEN_REJECTED, WebinarClient
from webinar_proxy.webinar.errors import TemporaryError, UnauthorizedError, WebinarError

#: Longest an online check waits for one call (retries included).
CHECK_DEADLINE_SECONDS = 20.0


def check_online(settings: Settings) -> int:
    return asyncio.run(_check(settings))


def _fail(message: str) -> None:
    print(f"webinar-proxy: {message}", file=sys.stderr)


async def _check(settings: Settings) -> int:
    url = settings.webinar.api_url
    client = WebinarClient.from_settings(
        settings.webinar,
        call_deadline=min(settings.webinar.call_deadline_seconds, CHECK_DEADLINE_SECONDS),
        auth_alert_interval=None,
    )
    async with client:
        try:
            zones = await client.timezones()
            print(f"Webinar API at {url}: reachable")
            members = await client.first_members()
        except UnauthorizedError as exc:
            _fail(f"{TOKEN_REJECTED} (HTTP {exc.status} on {exc.operation}): set webinar.token "
                  "to an API token of your organization's account, then run this check again")
            return EXIT_CONFIG
        except TemporaryError as exc:
            _fail(f"the Webinar API at {url} cannot be reached ({exc}); check webinar.api_url, "
                  "DNS, the firewall and any proxy between this host and the platform")
            return EXIT_FAILURE
        except WebinarError as exc:
            _fail(f"the Webinar API at {url} answered unexpectedly ({exc}); is webinar.api_url "
                  "the API's base URL (ending in /v3)?")
            return EXIT_FAILURE
    print("API token: accepted")
    print(f"organizer lookup: works ({len(members)} organization member(s) on the first page)")
    zone = settings.webinar.default_timezone
    if zone not in {item.name for item in zones}:
        print(f"webinar-proxy: warning: webinar.default_timezone: the platform does not list "
              f"{zone!r}; events in it fall back to the platform's Moscow time", file=sys.stderr)
    print("configuration OK (online checks passed)")
    return EXIT_OK
