"""``pip install .`` ships what an administrator needs: the wheel built from the tree
carries the example config, the systemd unit, the Postfix snippets, the deployment
guide and the man page webinar-proxy(8) (under ``<prefix>/share``), besides the package
and its templates."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.systemd import REPO

SHARE = "webinar_proxy-{version}.data/data/share/"
SHIPPED = {
    "webinar-proxy/webinar-proxy.toml": "config/webinar-proxy.toml",
    "webinar-proxy/systemd/webinar-proxy.service": "systemd/webinar-proxy.service",
    "webinar-proxy/postfix/after-queue/main.cf": "config/postfix/after-queue/main.cf",
    "webinar-proxy/postfix/after-queue/master.cf": "config/postfix/after-queue/master.cf",
    "webinar-proxy/postfix/before-queue/main.cf": "config/postfix/before-queue/main.cf",
    "webinar-proxy/postfix/before-queue/master.cf": "config/postfix/before-queue/master.cf",
    "webinar-proxy/postfix/milter/main.cf": "config/postfix/milter/main.cf",
    "webinar-proxy/postfix/milter/master.cf": "config/postfix/milter/master.cf",
    "doc/webinar-proxy/deployment.md": "docs/deployment.md",
    "doc/webinar-proxy/sogo.md": "docs/sogo.md",
    "man/man8/webinar-proxy.8": "man/webinar-proxy.8",
}


def _can_build_wheels_offline() -> bool:
    # setuptools before 70.1 needs the separate ``wheel`` package for bdist_wheel.
    return (importlib.util.find_spec("wheel") is not None
            or importlib.util.find_spec("setuptools.command.bdist_wheel") is not None)


def _build_wheel(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(out)]
    if _can_build_wheels_offline():
        command += ["--no-build-isolation", "--no-index"]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)
    # Like `pip install .` does: fetch the build requirements into an isolated env.
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and "build dependencies" in result.stdout + result.stderr:
        pytest.skip("no bdist_wheel here and the build requirements cannot be fetched: "
                    + (result.stderr.strip().splitlines() or ["?"])[-1])
    return result


@pytest.mark.slow
def test_wheel_carries_config_unit_and_postfix_snippets(tmp_path: Path):
    # Build from a snapshot of the tree: setuptools writes build/ and *.egg-info next to
    # pyproject.toml, which must not happen in a working tree other people use.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("webinar_proxy", "config", "systemd", "docs", "man"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    out = tmp_path / "dist"
    result = _build_wheel(source, out)
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = out.glob("webinar_proxy-*.whl")
    version = wheel.name.split("-")[1]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for installed, origin in SHIPPED.items():
            member = SHARE.format(version=version) + installed
            assert member in names, sorted(n for n in names if ".data/" in n)
            assert archive.read(member) == (REPO / origin).read_bytes(), member
        templates = {n for n in names if n.startswith("webinar_proxy/templates/")}
        assert {f"webinar_proxy/templates/{p.name}" for p in (REPO / "webinar_proxy" / "templates").iterdir()
                if p.is_file()} <= templates
        assert "webinar_proxy/sdnotify.py" in names
        entry_points = archive.read(f"webinar_proxy-{version}.dist-info/entry_points.txt").decode()
        assert "webinar-proxy = webinar_proxy.cli:main" in entry_points


def test_the_shipped_man_page_is_current_and_names_every_command():
    from webinar_proxy.cli import build_parser
    from webinar_proxy.cli.manpage import render

    shipped = (REPO / "man" / "webinar-proxy.8").read_text()
    assert shipped == render(), "man/webinar-proxy.8 is stale: run `make man`"
    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) >= {"serve", "check-config", "inspect", "conferences", "sink"}
    for name, parser in commands.choices.items():
        assert f'.SS "webinar\\-proxy {name.replace("-", chr(92) + "-")}"' in shipped, name
        for action in parser._actions:
            for option in action.option_strings:
                if option in ("-h", "--help"):
                    continue
                assert option.replace("-", "\\-") in shipped, (name, option)
    for verb in ("list", "show", "forget"):
        assert f'.B "webinar\\-proxy conferences {verb}"' in shipped
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "FILES", "SEE ALSO"):
        assert f".SH {section}" in shipped


@pytest.mark.skipif(shutil.which("groff") is None, reason="needs groff to format the page")
def test_the_man_page_formats_without_warnings():
    result = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(REPO / "man" / "webinar-proxy.8")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
