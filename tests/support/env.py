"""The environment a spawned command gets: ours, without the caller's WEBINAR_PROXY_* settings."""

from __future__ import annotations

import os

#: Variables that would leak the developer's configuration or systemd's into a spawned relay.
STRIPPED = ("WEBINAR_PROXY_",)
#: ``serve`` as one process unless a test asks for a group (``smtp.workers`` defaults to one per core).
ONE_PROCESS = {"WEBINAR_PROXY_SMTP__WORKERS": "1"}


def clean_env(*also: str, **overrides: str) -> dict[str, str]:
    """``os.environ`` without variables starting with ``WEBINAR_PROXY_`` (or ``also``), plus ``overrides``."""
    prefixes = STRIPPED + also
    env = {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}
    env.update(overrides)
    return env


def serve_env(*also: str, **overrides: str) -> dict[str, str]:
    """``clean_env`` for ``serve``: one process (``ONE_PROCESS``) unless ``overrides`` say otherwise."""
    return clean_env(*also, **{**ONE_PROCESS, **overrides})
