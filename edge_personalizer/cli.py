"""Command line: parse flags, build Settings, call one function, map our errors to exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .classify.classifier import Classifier
from .errors import EdgePersonalizerError, SettingsError
from .report import (
    classify_lines,
    render_explanation,
    render_summary,
    summarize,
    visitor_for,
)
from .rules.book import check_rules, load_rules
from .rules.evaluator import explain
from .rules.fields import suggest
from .rules.preview import PreviewSigner
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
    parser.add_argument("--anonymous-db", dest="anonymous_db", type=Path, metavar="FILE",
                        help="GeoIP2 Anonymous-IP database (.mmdb), for geo.anonymous")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument("--workers", type=int, help="worker processes (default 1)")
    parser.add_argument("--trusted-proxy", dest="trusted_proxies", action="append",
                        metavar="CIDR", help="address or network whose X-Forwarded-For and "
                        "edge headers are believed; repeat for several")
    parser.add_argument("--connect-timeout", type=float, metavar="SECONDS")
    parser.add_argument("--read-timeout", type=float, metavar="SECONDS")
    parser.add_argument("--keep-alive-timeout", type=float, metavar="SECONDS",
                        help="seconds an idle client connection stays open (default 5; "
                             "behind a load balancer, longer than its idle timeout)")
    parser.add_argument("--max-body-bytes", type=int, metavar="N")
    parser.add_argument("--log-format", choices=["text", "json"])
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--no-access-log", dest="access_log", action="store_const", const=False)
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")


def _classify_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", dest="rules_dir", type=Path, metavar="DIR",
                        help="rules directory (its interest categories feed the profile)")
    parser.add_argument("--geo-db", dest="geo_db", type=Path, metavar="FILE")
    parser.add_argument("--anonymous-db", dest="anonymous_db", type=Path, metavar="FILE")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")


_SETTING_FLAGS = ("origin_url", "rules_dir", "geo_db", "host", "port", "workers",
                  "trusted_proxies", "connect_timeout", "read_timeout", "keep_alive_timeout",
                  "max_body_bytes",
                  "log_format", "log_level", "access_log", "anonymous_db")


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {name: getattr(args, name, None) for name in _SETTING_FLAGS}
    if getattr(args, "trusted_proxies", None) is None:
        overrides.pop("trusted_proxies")
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

    explain = commands.add_parser("explain", help="show how a request's visitor is classified")
    explain.add_argument("--url", required=True, help="the URL visited, e.g. "
                         "'https://shop.example/running?utm_source=newsletter'")
    explain.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                         help="a request header; repeat for several")
    explain.add_argument("--cookie", action="append", default=[], metavar="NAME=VALUE")
    explain.add_argument("--ip", help="the visitor's address")
    explain.add_argument("--time", help="when (ISO 8601; default now)")
    explain.add_argument("--format", choices=["text", "json"], default="text")
    _classify_flags(explain)
    explain.set_defaults(run=cmd_explain)

    classify = commands.add_parser(
        "classify", help="classify requests given as JSON lines on stdin, one visitor a line out")
    classify.add_argument("--summary", action="store_true",
                          help="print the segment distribution instead of each visitor")
    classify.add_argument("--format", choices=["text", "json"], default="text",
                          help="format of --summary")
    _classify_flags(classify)
    classify.set_defaults(run=cmd_classify)

    schema = commands.add_parser("schema", help="print the JSON Schema of rule files")
    schema.set_defaults(run=cmd_schema)

    preview = commands.add_parser(
        "preview-link", help="print a signed, expiring URL that shows one rule's variant")
    preview.add_argument("--rule", required=True, help="a rule or experiment name")
    preview.add_argument("--variant", help="for an experiment: the variant to show")
    preview.add_argument("--url", required=True, help="the page to preview it on")
    preview.add_argument("--expires-in", default="24h", metavar="DURATION",
                         help="how long the link works: 30m, 24h, 7d (default 24h)")
    preview.add_argument("--rules", dest="rules_dir", type=Path, metavar="DIR",
                         help="rules directory, to check the name (default: from settings)")
    preview.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    preview.set_defaults(run=cmd_preview_link)

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
    ruleset, errors = check_rules(args.directory)
    if args.format == "json":
        print(json.dumps({
            "valid": not errors, "version": ruleset.version, "files": ruleset.file_count,
            "rules": len(ruleset.rules), "experiments": len(ruleset.experiments),
            "errors": [{"file": str(e.source), "line": e.line, "column": e.column,
                        "message": e.reason} for e in errors],
        }, indent=2))
    else:
        for error in errors:
            print(error)
        summary = (f"{ruleset.file_count} files, {len(ruleset.rules)} rules, "
                   f"{len(ruleset.experiments)} experiments")
        print(f"{summary}: {len(errors)} errors" if errors
              else f"{summary}: valid (version {ruleset.version})")
    return 1 if errors else 0


def _classifier(settings: Settings) -> Classifier:
    from .app import open_classifier

    return open_classifier(settings)


def cmd_explain(args: argparse.Namespace) -> int:
    headers: dict[str, str] = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise SettingsError(f"--header {header!r}: expected 'Name: value'")
        headers[name.strip()] = value.strip()
    if args.cookie:
        headers["cookie"] = "; ".join([*filter(None, [headers.get("cookie")]), *args.cookie])
    now = _when(args.time)
    settings = settings_from(args)
    ruleset = load_rules(settings.rules_dir) if settings.rules_dir else None
    visitor = visitor_for(_classifier(settings), url=args.url, headers=headers, ip=args.ip,
                          now=now)
    report: dict[str, Any] = {"visitor": visitor.to_dict()}
    if ruleset is not None:
        report.update(explain(ruleset, visitor))
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.format == "json"
          else render_explanation(report))
    return 0


def _when(text: str | None) -> float:
    if text is None:
        return time.time()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise SettingsError(f"--time {text!r}: expected ISO 8601 such as "
                            "2026-11-23T18:30:00+01:00") from exc


def cmd_classify(args: argparse.Namespace) -> int:
    visitors = classify_lines(_classifier(settings_from(args)), sys.stdin, now=time.time())
    if args.summary:
        summary = summarize(visitors)
        print(json.dumps(summary, indent=2, ensure_ascii=False) if args.format == "json"
              else render_summary(summary))
        return 0
    for visitor in visitors:
        sys.stdout.write(json.dumps(visitor, ensure_ascii=False) + "\n")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .rules.schema import build_schema

    print(json.dumps(build_schema(), indent=2))
    return 0


_DURATION = {"m": 60, "h": 3600, "d": 86400}


def cmd_preview_link(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if not settings.profile_keys:
        raise SettingsError("preview links are signed with the first profile key: set "
                            "EP_PROFILE_KEYS as the server has it")
    text = args.expires_in.strip().lower()
    if len(text) < 2 or text[-1] not in _DURATION or not text[:-1].isdigit():
        raise SettingsError(f"--expires-in {args.expires_in!r}: write 30m, 24h or 7d")
    if settings.rules_dir is not None:
        ruleset = load_rules(settings.rules_dir)
        names = {rule.name for rule in ruleset.rules}
        experiments = {e.name: e for e in ruleset.experiments}
        if args.rule not in names and args.rule not in experiments:
            raise SettingsError(f"no rule or experiment named {args.rule!r} in "
                                f"{settings.rules_dir}" + suggest(args.rule,
                                                                  [*names, *experiments]))
        experiment = experiments.get(args.rule)
        if experiment is not None and args.variant not in experiment.variants:
            raise SettingsError(f"experiment {args.rule!r} has the variants "
                                + ", ".join(experiment.variants) + "; pick one with --variant")
    signer = PreviewSigner(settings.profile_keys[0].reveal().encode())
    expires = time.time() + int(text[:-1]) * _DURATION[text[-1]]
    print(signer.link(args.url, args.rule, args.variant, expires))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo.run import run_demo

    origin = f"http://127.0.0.1:{args.origin_port}"
    run_demo(settings_from(args, origin_url=origin), origin_port=args.origin_port)
    return 0


def worker_app() -> Any:
    """Factory each worker process calls (serve --workers N)."""
    from .app import create_app
    from .logs import configure_logging
    from .server import tune_allocator

    settings = Settings.from_json(os.environ[WORKER_SETTINGS_ENV])
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    tune_allocator()
    return create_app(settings)
