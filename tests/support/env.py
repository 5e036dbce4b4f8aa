"""The environment a spawned command gets: ours, without the caller's WEBINAR_PROXY_* settings."""

from __future__ import annotations

import os

#: Variables that would leak the developer's configuration or systemd's into a spawned relay.
STRIPPED = ("WEBINAR_PROXY_",)


def clean_env(*also: str, **overrides: str) -> dict[str, str]:
    """``os.environ`` without variables starting with ``WEBINAR_PROXY_`` (or ``also``), plus ``overrides``."""
    prefixes = STRIPPED + also
    env = {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}
    env.update(overrides)
    return env
