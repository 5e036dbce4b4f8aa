"""The ``webinar-proxy`` command: argument parsing and dispatch to the subcommands.

Exit codes: 0 success, 1 a runtime failure, 2 a bad configuration or bad usage
(systemd's ``RestartPreventExitStatus=2`` relies on that).  Each command's ``--help``
ends with its exit codes, signals and files; ``webinar-proxy(8)`` is rendered from
this parser (``webinar_proxy.cli.manpage``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from webinar_proxy import __version__
from webinar_proxy.cli.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from webinar_proxy.logs import configure_logging
from webinar_proxy.settings import (
    ConfigError,
    Settings,
    load_settings,
    serve_problems,
    settings_warnings,
)

#: The log levels ``--log-level`` and ``logging.level`` accept.
LOG_LEVELS = ("debug", "info", "warning", "error")

_CONFIG_FILES = """\
  --config PATH or $WEBINAR_PROXY_CONFIG   the TOML configuration (the systemd unit uses
                                           /etc/webinar-proxy/webinar-proxy.toml)
  WEBINAR_PROXY_<SECTION>__<KEY>           settings from the environment; they win over the file
  $CREDENTIALS_DIRECTORY/webinar-token     the API token as a systemd credential"""

EPILOGS = {
    "serve": f"""\
exit status:
  0  stopped by SIGTERM or SIGINT after transactions in flight finished
  1  could not start (address in use, store unreachable, engine workers not started)
  2  the configuration is unusable (systemd does not restart on 2)

signals:
  SIGTERM, SIGINT  stop accepting, answer idle clients 421, let transactions finish
                   for smtp.shutdown_grace_seconds, kill the engine workers (a busy one
                   too), exit 0
  SIGHUP           re-read the configuration file: [policy] and the join-block templates
                   apply to the mail that follows; a bad file is refused and logged;
                   policy.engine_workers and policy.engine_memory_mb need a restart

engine workers:
  invitations are read and rewritten in policy.engine_workers processes in each relay
  process (default: the cores shared out over smtp.workers), each call within
  policy.engine_timeout_seconds (10) and each worker within
  policy.engine_memory_mb (512) of address space; a worker past either is killed and
  replaced, and its mail forwarded unchanged (metric webinar_proxy_engine_stopped_total)

files:
{_CONFIG_FILES}
  store.url                                conference state (SQLite file or PostgreSQL)""",
    "check-config": f"""\
exit status:
  0  the configuration is usable (warnings, if any, are printed on stderr); stdout
     names the engine workers, their time and memory limits, then "configuration OK"
  1  --online: the Webinar API could not be reached or answered unexpectedly
  2  a configuration problem (one line per problem, each naming its key), or
     --online: the API token is not accepted

--online makes a few read-only calls to webinar.api_url: it proves the token, that
the API is reachable and that organizers can be looked up.  Without it nothing leaves
this machine (the systemd unit's ExecStartPre runs it that way).

files:
{_CONFIG_FILES}""",
    "inspect": f"""\
the engine runs as in serve: in a worker process within policy.engine_timeout_seconds
and policy.engine_memory_mb; past them the mail reads "not processable: engine timeout"
(or "engine memory").

exit status:
  0  shown (also for mail the relay would forward unchanged)
  1  the file cannot be read, or --link: nothing to rewrite
  2  bad usage or configuration

files:
{_CONFIG_FILES}""",
    "fake-webinar": """\
exit status:
  0  stopped by SIGTERM or SIGINT
  1  cannot listen on --listen
  2  bad usage

The fake keeps everything in memory; GET /_fake/state shows it.""",
    "sink": """\
exit status:
  0  stopped by SIGTERM or SIGINT
  1  cannot listen on --listen or write into --folder
  2  bad usage

Each accepted message becomes FOLDER/NNNN.eml (numbering continues after the files
already there), with Return-Path and X-Envelope-To recording the envelope.""",
    "demo": """\
exit status:
  0  every step behaved as expected
  1  a step did not

Nothing outside a temporary directory (or --keep DIR) is written; only loopback is used.""",
    "conferences": f"""\
exit status:
  0  done
  1  no store at the configured path, no such conference, ambiguous UID, forget
     without --yes of a live conference, or the store failed
  2  bad usage, configuration or store URL

Reads and edits the relay's store only; the Webinar platform is never called.

files:
{_CONFIG_FILES}
  store.url                                the store it reads (never created here)""",
}


def _options_parent(*, config: bool) -> argparse.ArgumentParser:
    """``--log-level`` (and ``--config``) for a command and each of its verbs.

    Defaults are suppressed, so an option given before a verb is not undone by the verb.
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--log-level", choices=LOG_LEVELS, type=str.lower, default=argparse.SUPPRESS,
        help="log from this level up (default: logging.level, else info)",
    )
    if config:
        parent.add_argument(
            "--config", metavar="PATH", default=argparse.SUPPRESS,
            help="TOML configuration file (default: $WEBINAR_PROXY_CONFIG, else built-in defaults)",
        )
    return parent


def _command(commands, name: str, help_text: str, *, config: bool = True) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
    return commands.add_parser(
        name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
        parents=[_options_parent(config=config)], epilog=EPILOGS[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webinar-proxy",
        description=(
            "Outbound SMTP relay that gives calendar invitations a Webinar (MTS Link) "
            "conference. Settings come from --config and WEBINAR_PROXY_<SECTION>__<KEY> "
            "environment variables (the environment wins)."
        ),
        epilog="Exit status: 0 success, 1 runtime failure, 2 bad configuration or usage. "
               "'webinar-proxy COMMAND --help' tells more; see also webinar-proxy(8).",
        parents=[_options_parent(config=True)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _command(commands, "serve", "run the relay (the systemd service runs this)")

    check = _command(
        commands, "check-config", "validate the configuration: exit 0 if usable, 2 with one line per problem"
    )
    check.add_argument(
        "--online", action="store_true",
        help="also call the Webinar API: prove the token, that the API is reachable and "
             "that organizers can be looked up",
    )

    inspect = _command(
        commands, "inspect", "dry run: show how the relay reads a mail or .ics file (no network)"
    )
    inspect.add_argument("file", metavar="FILE", help="a mail (.eml) or a bare .ics file; '-' for stdin")
    inspect.add_argument("--mail-from", metavar="ADDR", help="envelope sender to assume")
    inspect.add_argument("--now", metavar="ISO8601", help="the instant 'next occurrence' is after")
    inspect.add_argument(
        "--link", metavar="URL", help="write the mail rewritten with this join link to stdout"
    )
    inspect.add_argument("--json", action="store_true", help="print the classification as JSON")

    fake = _command(
        commands, "fake-webinar", "run an in-memory fake of the Webinar API v3 (tests and demos)",
        config=False,
    )
    fake.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    fake.add_argument("--token", required=True, help="the x-auth-token the fake accepts")
    fake.add_argument(
        "--rate-limit", type=float, default=0.0, metavar="PER_SECOND",
        help="answer 429 above this many requests per second (0 = off)",
    )
    fake.add_argument("--organization", default="demo-org", help="organization slug in links")

    sink = _command(
        commands, "sink", "a next hop for trials: an SMTP server writing each mail into a folder",
        config=False,
    )
    sink.add_argument("--listen", default="127.0.0.1:10026", metavar="HOST:PORT",
                      help="where to listen (default: the relay's default next hop)")
    sink.add_argument("--folder", required=True, metavar="DIR", help="where delivered mail goes")

    demo = _command(
        commands, "demo", "run the relay end to end on this machine with sample mail (no setup)",
        config=False,
    )
    demo.add_argument("--keep", metavar="DIR", help="keep delivered mail in DIR (default: a temp dir)")

    conferences = _command(
        commands, "conferences", "administer the conference store (reads the store, not the platform)"
    )
    actions = conferences.add_subparsers(dest="action", metavar="ACTION", required=True)
    verb_options = _options_parent(config=True)
    listing = actions.add_parser("list", help="one line per stored conference", parents=[verb_options])
    listing.add_argument("--state", choices=["creating", "active", "pending_delete", "deleted"])
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="everything stored about one conference", parents=[verb_options])
    show.add_argument("uid")
    show.add_argument("--organizer", metavar="ADDR", help="needed when several organizers share the UID")
    show.add_argument("--json", action="store_true")
    forget = actions.add_parser(
        "forget", help="drop a row from the store without touching the platform", parents=[verb_options]
    )
    forget.add_argument("uid")
    forget.add_argument("--organizer", metavar="ADDR", help="needed when several organizers share the UID")
    forget.add_argument(
        "--yes", action="store_true",
        help="needed for a live (creating or active) conference: its event stays on the platform",
    )
    return parser


def _print_problems(problems: Sequence[str]) -> None:
    for problem in problems:
        print(f"webinar-proxy: {problem}", file=sys.stderr)


def _runtime_problems(settings: Settings) -> list[str]:
    """What ``serve`` needs beyond a valid file: the token and loadable templates."""
    problems = serve_problems(settings)
    from webinar_proxy.invitation import EngineOptions

    try:
        EngineOptions.from_settings(settings)
    except (OSError, ValueError) as exc:
        problems.append(f"policy.template_dir: {exc}")
    return problems


def _settings(args: argparse.Namespace, *, to_serve: bool = False) -> Settings | None:
    """The settings, or None after printing one line per problem; sets up logging."""
    try:
        settings = load_settings(getattr(args, "config", None), for_serving=to_serve)
    except ConfigError as exc:
        _print_problems(exc.problems)
        return None
    problems = _runtime_problems(settings) if to_serve else []
    if problems:
        _print_problems(problems)
        return None
    configure_logging(getattr(args, "log_level", None) or settings.logging.level)
    return settings


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args, to_serve=True)
    if settings is None:
        return EXIT_CONFIG
    for warning in settings_warnings(settings):
        print(f"webinar-proxy: warning: {warning}", file=sys.stderr)
    policy = settings.policy
    relays = settings.smtp.worker_count()
    print(f"engine: {settings.engine_pool_size()} worker processes in each of {relays} relay processes, "
          f"{policy.engine_timeout_seconds:g} s per call, {policy.engine_memory_mb} MiB each")
    if relays == 1:
        print("relay: one process (smtp.workers = 1)")
    else:
        print(f"relay: a supervisor and {relays} worker processes; one silent for "
              f"{settings.smtp.worker_stall_seconds:g} s is replaced")
    if not args.online:
        print("configuration OK")
        return EXIT_OK
    from webinar_proxy.cli.check_online import check_online

    return check_online(settings)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, to_serve=True)
    if settings is None:
        return EXIT_CONFIG
    from webinar_proxy.cli.serve import run_service

    def reread() -> Settings:
        settings = load_settings(getattr(args, "config", None), for_serving=True)
        if problems := _runtime_problems(settings):
            raise ConfigError(problems)
        return settings

    return run_service(settings, reread)


def cmd_inspect(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return EXIT_CONFIG
    from webinar_proxy.cli.inspect import run_inspect

    return run_inspect(args, settings)


def cmd_fake_webinar(args: argparse.Namespace) -> int:
    from webinar_proxy.cli.fake_webinar import run_fake_webinar

    configure_logging(getattr(args, "log_level", None) or "info")
    return run_fake_webinar(args)


def cmd_sink(args: argparse.Namespace) -> int:
    from webinar_proxy.smtp.sink import run_sink

    configure_logging(getattr(args, "log_level", None) or "info")
    return run_sink(args.listen, args.folder)


def cmd_conferences(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return EXIT_CONFIG
    from webinar_proxy.cli.conferences import run_conferences

    return run_conferences(args, settings)


def cmd_demo(args: argparse.Namespace) -> int:
    from webinar_proxy.cli.demo import run_demo

    configure_logging(getattr(args, "log_level", None) or "info")
    return run_demo(args.keep)


COMMANDS = {
    "demo": cmd_demo,
    "conferences": cmd_conferences,
    "serve": cmd_serve,
    "check-config": cmd_check_config,
    "inspect": cmd_inspect,
    "fake-webinar": cmd_fake_webinar,
    "sink": cmd_sink,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:
        # The reader went away (``... | head``): stop quietly.  Python would flush
        # stdout again at exit and fail once more, so point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
