"""Command line: parse flags, build Settings, call one function, map our errors to exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import EdgePersonalizerError
from .rules.loader import check_rule_directory
from .settings import Settings, load_settings

# Worker processes (serve --workers N) receive the resolved settings through this variable.
WORKER_SETTINGS_ENV = "EDGE_PERSONALIZER_WORKER_SETTINGS"

Command = Callable[[argparse.Namespace], int]


def _server_flags(parser: argparse.ArgumentParser) -> None:
    # Defaults live in Settings; None here means "not given on the command line".
    parser.add_argument("--origin", dest="origin_url", metavar="URL",
                        help="the site to forward to, e.g. http://127.0.0.1:8000")
    parser.add_argument("--rules", dest="rules_dir", type=Path, metavar="DIR",
                        help="rules directory")
    parser.add_argument("--geo-db", dest="geo_db", type=Path, metavar="FILE",
                        help="MaxMind-format City or Country database (.mmdb)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument("--workers", type=int, help="worker processes (default 1)")
    parser.add_argument("--trusted-proxy", dest="trusted_proxies", action="append",
                        metavar="CIDR", help="address or network whose X-Forwarded-For and "
                        "edge headers are believed; repeat for several")
    parser.add_argument("--connect-timeout", type=float, metavar="SECONDS")
    parser.add_argument("--read-timeout", type=float, metavar="SECONDS")
    parser.add_argument("--max-body-bytes", type=int, metavar="N")
    parser.add_argument("--log-format", choices=["text", "json"])
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--no-access-log", dest="access_log", action="store_const", const=False)
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")


_SETTING_FLAGS = ("origin_url", "rules_dir", "geo_db", "host", "port", "workers",
                  "trusted_proxies", "connect_timeout", "read_timeout", "max_body_bytes",
                  "log_format", "log_level", "access_log")


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {name: getattr(args, name, None) for name in _SETTING_FLAGS}
    return load_settings(os.environ, config_file=args.config, **{**overrides, **extra})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-personalizer",
        description="Personalize any website per visitor, in front of it.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the proxy in front of a site")
    _server_flags(serve)
    serve.set_defaults(run=cmd_serve)

    validate = commands.add_parser("validate", help="check a rules directory; exit 1 on errors")
    validate.add_argument("directory", type=Path)
    validate.add_argument("--format", choices=["text", "json"], default="text")
    validate.set_defaults(run=cmd_validate)

    demo = commands.add_parser("demo", help="run the bundled demo shop with the proxy in front")
    _server_flags(demo)
    demo.add_argument("--origin-port", type=int, default=8081,
                      help="port of the demo shop itself (default 8081)")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except EdgePersonalizerError as exc:
        print(f"edge-personalizer: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    serve(settings_from(args), worker_env=WORKER_SETTINGS_ENV)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    rule_files, errors = check_rule_directory(args.directory)
    if args.format == "json":
        print(json.dumps({
            "valid": not errors, "version": rule_files.version,
            "files": [str(f.path) for f in rule_files.files],
            "errors": [{"file": str(e.source), "line": e.line, "column": e.column,
                        "message": e.reason} for e in errors],
        }, indent=2))
    else:
        for error in errors:
            print(error)
        print(f"{len(rule_files.files)} files, {rule_files.rule_count} rules, "
              f"{len(errors)} errors" + ("" if errors else f" (version {rule_files.version})"))
    return 1 if errors else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo.run import run_demo

    origin = f"http://127.0.0.1:{args.origin_port}"
    run_demo(settings_from(args, origin_url=origin), origin_port=args.origin_port)
    return 0


def worker_app() -> Any:
    """Factory each worker process calls (serve --workers N)."""
    from .app import create_app
    from .logs import configure_logging

    settings = Settings.from_json(os.environ[WORKER_SETTINGS_ENV])
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return create_app(settings)
