"""README's configuration reference names every setting the model accepts."""

from __future__ import annotations

import re
from pathlib import Path

from webinar_proxy.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _described() -> set[str]:
    """Settings named in the first cell of a README table row."""
    names: set[str] = set()
    for line in README.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([a-z_]+\.[a-z_]+)`", line.split("|")[1]))
    return names


def test_every_setting_is_in_the_configuration_reference() -> None:
    described = _described()
    missing = [
        f"{section}.{name}"
        for section, field in Settings.model_fields.items()
        for name in field.annotation.model_fields
        if f"{section}.{name}" not in described
    ]
    assert not missing, f"settings the README does not describe: {missing}"
