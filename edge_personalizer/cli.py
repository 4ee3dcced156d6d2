"""Command line: parse flags, build Settings, call one function, map our errors to exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .classify.classifier import Classifier
from .config import Settings, load_settings, setting_given, unknown_environment
from .config.sources import CLASSIFY_FLAGS, SERVER_FLAGS, add_setting_flags, flag_overrides
from .errors import EdgePersonalizerError, RuleError, RuleSetInvalid, SettingsError, StoreError
from .report import (
    FIRST_TIME,
    LAST_TIME,
    classify_lines,
    explain_notes,
    explained_request,
    render_explanation,
    render_summary,
    summarize,
    url_problem,
    visitor_for,
)
from .rules.book import NO_RULE_FILES, check_rules, load_rules
from .rules.durations import seconds_in
from .rules.evaluator import explain
from .rules.model import counted
from .rules.notices import notices
from .rules.preview import PreviewSigner, check_preview
from .serving import serve_settings

if TYPE_CHECKING:
    from .learn.bandit import WeightsTable

Command = Callable[[argparse.Namespace], int]


def _server_flags(parser: argparse.ArgumentParser) -> None:
    add_setting_flags(parser, SERVER_FLAGS)
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")


def _classify_flags(parser: argparse.ArgumentParser) -> None:
    add_setting_flags(parser, CLASSIFY_FLAGS)
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    """Settings from the command's flags over the environment and config file; unknown
    EP_* variables are warned about, not fatal."""
    for warning in unknown_environment(os.environ):
        logging.getLogger(__name__).warning(warning)
    return load_settings(os.environ, config_file=args.config,
                         **{**flag_overrides(args), **extra})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-personalizer",
        description="Personalize any website per visitor, in front of it.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the proxy in front of a site")
    _server_flags(serve)
    serve.set_defaults(run=cmd_serve)

    validate = commands.add_parser("validate", aliases=["check"],
                                   help="check a rules directory; exit 1 on errors")
    validate.add_argument("directory", type=Path)
    validate.add_argument("--format", choices=["text", "json"], default="text")
    validate.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    validate.add_argument("--keyed-caching", action="store_true", help="warn of pages it "
                          "cannot share (default: EP_KEYED_CACHING, EP_CONFIG's)")
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
    # A bandit experiment is explained with the weights the servers use: the store's.
    add_setting_flags(explain, ("store_url", "data_dir"))
    explain.set_defaults(run=cmd_explain)

    classify = commands.add_parser(
        "classify", help="classify requests given as JSON lines on stdin, one visitor a line out")
    classify.add_argument("--summary", action="store_true",
                          help="print the segment distribution instead of each visitor")
    classify.add_argument("--format", choices=["text", "json"], default="text",
                          help="format of --summary")
    _classify_flags(classify)
    classify.set_defaults(run=cmd_classify)

    replay = commands.add_parser(
        "replay", help="run a log of requests (JSON lines on stdin: url, and optionally "
                       "method, headers, ip, time as epoch seconds or ISO 8601, visitor, "
                       "status, response_headers) through the rules, goals and counting "
                       "into the store, without an origin")
    add_setting_flags(replay, ("rules_dir", "geo_db", "store_url", "data_dir"))
    replay.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    replay.add_argument("--again", action="store_true",
                        help="count a log already replayed into the same store once more")
    replay.set_defaults(run=cmd_replay)

    report = commands.add_parser(
        "report", help="print the experiments' results from the store (as /__ep/results), "
                       "or write the dashboard's pages as one HTML file")
    add_setting_flags(report, ("rules_dir", "store_url", "data_dir"))
    report.add_argument("--format", choices=["text", "json"], default="text")
    report.add_argument("--html", type=Path, metavar="FILE",
                        help="write every dashboard page into FILE (self-contained) instead")
    report.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    report.set_defaults(run=cmd_report)

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
                         help="the rules directory the server serves, to check the names "
                              "against (default: rules_dir, EP_RULES_DIR)")
    preview.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    preview.set_defaults(run=cmd_preview_link)

    demo = commands.add_parser("demo", help="run the bundled demo shop with the proxy in front")
    _server_flags(demo)
    demo.add_argument("--origin-port", type=int,
                      help="port of the demo shop itself (default: the proxy's port + 1)")
    demo.set_defaults(run=cmd_demo)
    for command in commands.choices.values():
        command.set_defaults(command_parser=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:   # said with the command's own usage (its flags), not the program's
        command: argparse.ArgumentParser = args.command_parser
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    run: Command = args.run
    try:
        code = run(args)
        sys.stdout.flush()   # a reader that went away shows here, not at exit
        return code
    except BrokenPipeError:
        # `edge-personalizer schema | head`: the reader had what it wanted. Later writes
        # (the flush at exit) go nowhere instead of printing a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except EdgePersonalizerError as exc:   # bad rules: every mistake, as validate lists them
        errors = exc.errors if isinstance(exc, RuleSetInvalid) else [exc]
        print("\n".join(f"edge-personalizer: {error}" for error in errors), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def cmd_serve(args: argparse.Namespace) -> int:
    serve_settings(settings_from(args))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    ruleset, errors = check_rules(args.directory)
    if not ruleset.file_count:
        errors.append(RuleError(NO_RULE_FILES, source=args.directory))
    keyed = args.keyed_caching or setting_given("keyed_caching", os.environ)
    warnings = notices(ruleset, datetime.now(UTC), keyed_caching=keyed)   # (--strict: refused)
    if args.format == "json":
        print(json.dumps({
            "valid": not errors, "version": ruleset.version, "files": ruleset.file_count,
            "rules": len(ruleset.rules), "experiments": len(ruleset.experiments),
            "errors": [{"file": str(e.source), "line": e.line, "column": e.column,
                        "message": e.reason} for e in errors],
            "warnings": [{"file": w.file, "line": w.line, "where": w.where, "kind": w.kind,
                          "message": w.message} for w in warnings],
        }, indent=2))
    else:
        for error in errors:
            print(error)
        for warning in warnings:
            print(f"warning: {warning}")
        files = counted(ruleset.file_count, "file")
        rules = counted(len(ruleset.rules), "rule")
        experiments = counted(len(ruleset.experiments), "experiment")
        # A rule or an experiment with an error is not compiled: the counts then say so.
        compiled = (f" ({rules} and {experiments} compile without errors)"
                    if ruleset.file_count else "")
        told = f"; {counted(len(warnings), 'warning')}" if warnings else ""
        print(f"{files}: {counted(len(errors), 'error')}{compiled}{told}" if errors
              else f"{files}, {rules}, {experiments}: valid (version {ruleset.version}){told}")
    return 1 if errors or (warnings and args.strict) else 0


def _classifier(settings: Settings) -> Classifier:
    from .app import open_classifier

    return open_classifier(settings)


def _checked_url(url: str) -> str:
    """The --url given, or a SettingsError saying why it is no URL (`http://[::1/`)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port   # noqa: B018 (reading it checks it)
    except ValueError as exc:
        raise SettingsError(f"--url {url!r} is not a URL ({exc}); write one such as "
                            "https://shop.example/sale?utm_source=facebook") from exc
    problem = url_problem(url)
    if problem is not None:
        raise SettingsError(f"--url {url!r} {problem}")
    return url


def cmd_explain(args: argparse.Namespace) -> int:
    _checked_url(args.url)
    try:
        headers = explained_request(args.header, args.cookie, args.ip)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    now = _when(args.time)
    settings = settings_from(args)
    ruleset = load_rules(settings.rules_dir) if settings.rules_dir else None
    for note in explain_notes(headers, ip=args.ip, geo=settings.geo_db is not None):
        print(f"note: {note}", file=sys.stderr)
    visitor = visitor_for(_classifier(settings), url=args.url, headers=headers, ip=args.ip,
                          now=now)
    report: dict[str, Any] = {"visitor": visitor.to_dict()}
    if ruleset is not None:
        weights = None
        if any(e.allocation == "bandit" for e in ruleset.experiments):
            import anyio

            weights = anyio.run(_published_weights, settings.store_location())
        report.update(explain(ruleset, visitor, allocations=weights))
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.format == "json"
          else render_explanation(report))
    return 0


async def _published_weights(store_url: str) -> WeightsTable | None:
    """The bandit weights the servers sharing `store_url` use; None (the starting weights)
    when nothing was published there yet, or the store does not answer (said on stderr)."""
    from urllib.parse import unquote, urlsplit

    from .learn.bandit import TABLE_NAME, WeightsTable
    from .learn.store import decoded, open_store, read_table

    parts = urlsplit(store_url)
    if parts.scheme == "sqlite" and not Path(unquote(parts.path)).exists():
        return None
    try:
        store = open_store(store_url)
        try:
            published = await read_table(store, TABLE_NAME)
        finally:
            await store.close()
        return decoded(published, WeightsTable.decode) if published else None
    except StoreError as exc:   # (an outage, or a copy that does not read)
        print(f"edge-personalizer: the bandit weights could not be read ({exc}); "
              "explaining with the starting weights", file=sys.stderr)
        return None


def _when(text: str | None) -> float:
    if text is None:
        return time.time()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError) as exc:
        raise SettingsError(f"--time {text!r}: expected ISO 8601 such as "
                            "2026-11-23T18:30:00+01:00") from exc
    if not FIRST_TIME <= when <= LAST_TIME:   # a visitor's clock shows no other
        raise SettingsError(f"--time {text!r} is out of range: from 1970-01-01T00:00:00Z "
                            "to 9999-12-31T00:00:00Z")
    return when


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


def cmd_replay(args: argparse.Namespace) -> int:
    import anyio

    from .replay import replay

    settings = settings_from(args)
    summary = anyio.run(functools.partial(replay, settings, sys.stdin, again=args.again))
    print(f"{counted(summary.requests, 'request')} from {counted(summary.visitors, 'visitor')}: "
          f"{counted(summary.exposures, 'exposure')} and "
          f"{counted(summary.conversions, 'conversion')} counted into {summary.store}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import anyio

    from .endpoints.dashboard import Pages
    from .endpoints.dashboard_views import snapshot_of
    from .endpoints.report import render_text

    settings = settings_from(args)
    if settings.rules_dir is None:
        raise SettingsError("report judges the experiments of a rules directory: pass "
                            "--rules DIR or set EP_RULES_DIR")
    snapshot = anyio.run(snapshot_of, settings.store_location(), load_rules(settings.rules_dir))
    if args.html is not None:
        args.html.write_text(Pages().one_file(snapshot), encoding="utf-8")
        count = len(snapshot.results["experiments"])   # the stopped ones too
        print(f"wrote {args.html}: the results of {count} experiment"
              f"{'' if count == 1 else 's'} from {snapshot.store}")
    elif args.format == "json":
        print(json.dumps({**snapshot.results, "reload_error": None}, indent=2, ensure_ascii=False))
    else:
        print(render_text(snapshot.results))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .rules.schema import build_schema

    print(json.dumps(build_schema(), indent=2))
    return 0


_LONGEST_PREVIEW = 30 * 86400


def cmd_preview_link(args: argparse.Namespace) -> int:
    _checked_url(args.url)
    settings = settings_from(args)
    if not settings.profile_keys:
        raise SettingsError("preview links are signed with the first profile key: set "
                            "EP_PROFILE_KEYS as the server has it")
    lifetime = seconds_in(args.expires_in)
    if lifetime is None:
        raise SettingsError(f"--expires-in {args.expires_in!r}: write 30m, 24h or 7d")
    if not 60 <= lifetime <= _LONGEST_PREVIEW:
        raise SettingsError(f"--expires-in {args.expires_in!r}: a preview link lasts from a "
                            "minute to 30 days (it shows content to whoever holds it)")
    if settings.rules_dir is None:
        raise SettingsError("preview-link checks the rule against the rules the server "
                            "serves: pass --rules DIR, or set EP_RULES_DIR (or rules_dir in "
                            "the config file) as the server has it")
    try:
        check_preview(load_rules(settings.rules_dir), args.rule, args.variant,
                      directory=settings.rules_dir)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    signer = PreviewSigner(settings.profile_keys[0].reveal().encode())
    expires = time.time() + lifetime
    print(signer.link(args.url, args.rule, args.variant, expires))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo.run import run_demo

    settings = settings_from(args, origin_url="http://127.0.0.1")   # the shop's port next
    port = settings.port + 1 if args.origin_port is None else args.origin_port
    if not 1 <= port <= 65535 or port == settings.port:
        mine = " (the proxy's)" if port == settings.port else ""
        raise SettingsError(f"the demo shop cannot take port {port}{mine}: give it another "
                            "with --origin-port (make demo ORIGIN_PORT=...)")
    run_demo(dataclasses.replace(settings, origin_url=f"http://127.0.0.1:{port}"),
             origin_port=port, serve=serve_settings)
    return 0
