"""The ``webinar-proxy`` command: argument parsing and dispatch to the subcommands.

Exit codes: 0 success, 1 a runtime failure, 2 a bad configuration or bad usage
(systemd's ``RestartPreventExitStatus=2`` relies on that).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from webinar_proxy import __version__
from webinar_proxy.settings import ConfigError, Settings, load_settings, serve_problems

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="TOML configuration file (default: $WEBINAR_PROXY_CONFIG, else built-in defaults)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webinar-proxy",
        description=(
            "Outbound SMTP relay that gives calendar invitations a Webinar (MTS Link) "
            "conference. Settings come from --config and WEBINAR_PROXY_<SECTION>__<KEY> "
            "environment variables (the environment wins)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the relay (the systemd service runs this)")
    _add_config_option(serve)

    check = commands.add_parser(
        "check-config", help="validate the configuration: exit 0 if usable, 2 with one line per problem"
    )
    _add_config_option(check)

    inspect = commands.add_parser(
        "inspect", help="dry run: show how the relay reads a mail or .ics file (no network)"
    )
    _add_config_option(inspect)
    inspect.add_argument("file", metavar="FILE", help="a mail (.eml) or a bare .ics file; '-' for stdin")
    inspect.add_argument("--mail-from", metavar="ADDR", help="envelope sender to assume")
    inspect.add_argument("--now", metavar="ISO8601", help="the instant 'next occurrence' is after")
    inspect.add_argument(
        "--link", metavar="URL", help="write the mail rewritten with this join link to stdout"
    )
    inspect.add_argument("--json", action="store_true", help="print the classification as JSON")

    fake = commands.add_parser(
        "fake-webinar", help="run an in-memory fake of the Webinar API v3 (tests and demos)"
    )
    fake.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    fake.add_argument("--token", required=True, help="the x-auth-token the fake accepts")
    fake.add_argument(
        "--rate-limit", type=float, default=0.0, metavar="PER_SECOND",
        help="answer 429 above this many requests per second (0 = off)",
    )
    fake.add_argument("--organization", default="demo-org", help="organization slug in links")

    demo = commands.add_parser(
        "demo", help="run the relay end to end on this machine with sample mail (no setup)"
    )
    demo.add_argument("--keep", metavar="DIR", help="keep delivered mail in DIR (default: a temp dir)")

    conferences = commands.add_parser(
        "conferences", help="administer the conference store (reads the store, not the platform)"
    )
    _add_config_option(conferences)
    actions = conferences.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="one line per stored conference")
    listing.add_argument("--state", choices=["creating", "active", "pending_delete", "deleted"])
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="everything stored about one conference")
    show.add_argument("uid")
    show.add_argument("--organizer", metavar="ADDR", help="needed when several organizers share the UID")
    show.add_argument("--json", action="store_true")
    forget = actions.add_parser("forget", help="drop a stale row without touching the platform")
    forget.add_argument("uid")
    forget.add_argument("--organizer", metavar="ADDR", help="needed when several organizers share the UID")
    return parser


def _print_problems(problems: Sequence[str]) -> None:
    for problem in problems:
        print(f"webinar-proxy: {problem}", file=sys.stderr)


def _runtime_problems(settings: Settings) -> list[str]:
    """What ``serve`` needs beyond a valid file: the token, loadable templates and zones."""
    problems = serve_problems(settings)
    from webinar_proxy.engine import EngineOptions

    try:
        EngineOptions.from_settings(settings)
    except ValueError as exc:
        problems.append(f"policy: {exc}")
    return problems


def _settings(args: argparse.Namespace, *, to_serve: bool = False) -> Settings | None:
    """The settings, or None after printing one line per problem."""
    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        _print_problems(exc.problems)
        return None
    problems = _runtime_problems(settings) if to_serve else []
    if problems:
        _print_problems(problems)
        return None
    return settings


def cmd_check_config(args: argparse.Namespace) -> int:
    if _settings(args, to_serve=True) is None:
        return EXIT_CONFIG
    print("configuration OK")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, to_serve=True)
    if settings is None:
        return EXIT_CONFIG
    from webinar_proxy.service import run_service

    def reread() -> Settings:
        settings = load_settings(getattr(args, "config", None))
        if problems := _runtime_problems(settings):
            raise ConfigError(problems)
        return settings

    return run_service(settings, reread)


def cmd_inspect(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return EXIT_CONFIG
    from webinar_proxy.inspect import run_inspect

    return run_inspect(args, settings)


def cmd_fake_webinar(args: argparse.Namespace) -> int:
    from webinar_proxy.webinar.fake import run_fake_webinar

    return run_fake_webinar(args)


def cmd_conferences(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return EXIT_CONFIG
    from webinar_proxy.store.admin import run_conferences

    return run_conferences(args, settings)


def cmd_demo(args: argparse.Namespace) -> int:
    from webinar_proxy.demo import run_demo

    return run_demo(args.keep)


COMMANDS = {
    "demo": cmd_demo,
    "conferences": cmd_conferences,
    "serve": cmd_serve,
    "check-config": cmd_check_config,
    "inspect": cmd_inspect,
    "fake-webinar": cmd_fake_webinar,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
