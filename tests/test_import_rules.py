"""The rules of docs/architecture.md, checked against the code's imports (read with ``ast``).

Each module belongs to a room: its first folder under ``webinar_proxy/``, or its own
name for a top-level module.  Imports inside functions count too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "webinar_proxy"


def _imports() -> dict[str, set[str]]:
    """Room -> every module name it imports (ours as ``webinar_proxy.<room>...``)."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        room = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found[room].update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found[room].add(node.module)
                if node.module == "webinar_proxy":  # from webinar_proxy import sdnotify
                    found[room].update(f"webinar_proxy.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                pytest.fail(f"{relative}: relative import; the rules read absolute ones")
    return found


IMPORTS = _imports()


def _our_rooms(room: str) -> set[str]:
    return {name.split(".")[1] for name in IMPORTS[room]
            if name.startswith("webinar_proxy.")} - {room, "__version__"}


def _importers(prefix: str) -> set[str]:
    return {room for room, names in IMPORTS.items()
            if any(name == prefix or name.startswith(prefix + ".") for name in names)}


@pytest.mark.parametrize(("library", "rooms"), [
    ("aiosmtpd", {"smtp"}),
    ("aiosmtplib", set()),  # the tests' client only: smtp/nexthop.py speaks SMTP itself
    ("kilter", {"milter"}),
    ("httpx", {"webinar"}),
    ("psycopg", {"store"}),
    ("psycopg_pool", {"store"}),
    ("icalendar", {"calendar"}),
    ("recurring_ical_events", {"calendar"}),
    ("aiohttp", {"metrics", "testing"}),
])
def test_a_library_is_imported_by_its_room_only(library: str, rooms: set[str]) -> None:
    assert _importers(library) == rooms


def test_mail_and_calendar_import_nothing_of_ours_outside_themselves() -> None:
    assert _our_rooms("mail") == set()
    assert _our_rooms("calendar") == set()


def test_invitation_is_the_only_door_to_mail_and_calendar() -> None:
    assert _importers("webinar_proxy.mail") == {"mail", "invitation"}
    assert _importers("webinar_proxy.calendar") == {"calendar", "invitation"}
    assert _our_rooms("invitation") == {"mail", "calendar"}


ENGINE_MODULES = ("errors", "options", "classification", "occurrences", "rewriting")


def _module_imports(relative: str) -> set[str]:
    tree = ast.parse((PACKAGE / relative).read_text("utf-8"), relative)
    return {node.module for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module}


def test_other_rooms_use_the_engine_through_its_package() -> None:
    # The package's __init__ is the engine's public API; its modules are its insides.
    for module in ENGINE_MODULES:
        assert _importers(f"webinar_proxy.invitation.{module}") == {"invitation"}, module


def test_the_engine_modules_stand_in_layers() -> None:
    # errors and options below, the three steps above them, none of the steps on another.
    engine = {f"webinar_proxy.invitation.{module}" for module in ENGINE_MODULES}
    uses = {module: _module_imports(f"invitation/{module}.py") & engine for module in ENGINE_MODULES}
    assert uses["errors"] == set()
    assert uses["options"] == set()
    for step in ("classification", "occurrences", "rewriting"):
        assert uses[step] <= {"webinar_proxy.invitation.errors",
                              "webinar_proxy.invitation.options"}, step


def test_the_seam_stands_alone_and_both_front_doors_use_it() -> None:
    assert _our_rooms("seam") == set()
    assert _importers("webinar_proxy.seam") == {"smtp", "milter", "lifecycle"}


def test_front_doors_know_the_seam_not_the_use_case() -> None:
    allowed = {"seam", "settings", "metrics", "logs", "signals"}
    assert _our_rooms("smtp") <= allowed
    # The milter asks the invitation engine only whether a header block can hold a calendar.
    assert _our_rooms("milter") <= allowed | {"invitation"}
    assert "smtp" not in _our_rooms("milter") and "milter" not in _our_rooms("smtp")


def test_the_use_case_knows_no_front_door() -> None:
    assert _our_rooms("lifecycle") <= {"invitation", "store", "webinar", "seam", "settings", "metrics"}


def test_the_leaves_stay_leaves() -> None:
    assert _our_rooms("webinar") <= {"settings", "metrics"}
    assert _our_rooms("store") <= {"settings"}
    assert _our_rooms("testing") <= {"webinar"}


def test_commands_and_the_composition_root_are_imported_by_nobody_else() -> None:
    assert _importers("webinar_proxy.cli") == {"cli", "__main__"}
    assert _importers("webinar_proxy.wiring") == {"cli"}
    # The fakes are for tests, the demo and the fake-webinar command; serve never loads them.
    assert _importers("webinar_proxy.testing") == {"cli", "testing"}


def test_settings_reads_only_the_template_checks_of_the_engine() -> None:
    # Validating [templates] needs the engine's template parser (a lazy import).
    assert _our_rooms("settings") <= {"invitation"}


def test_the_use_case_reaches_the_engine_through_the_package_only() -> None:
    # The lifecycle calls the engine through ``invitation.EnginePool`` (worker processes);
    # importing the engine's modules directly is how a call in the event loop would creep back.
    assert {name for name in IMPORTS["lifecycle"] if name.startswith("webinar_proxy.invitation.")} == set()
