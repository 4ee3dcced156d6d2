"""Visitors for requests described as data: `explain` for one, `classify` for a log."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from .classify.classifier import Classifier, request_info
from .classify.visitor import Visitor
from .rules.fields import as_written, rules_can_read

# The fields whose distribution `classify --summary` reports.
SUMMARY_FIELDS = ("referral.medium", "referral.source", "geo.country", "geo.continent",
                  "device.type", "device.os", "device.browser", "device.bot_category",
                  "language.primary", "time.daypart", "time.weekday", "profile.new")


# A field's value as `classify --summary` counts it (None: the visitor has none)
SummaryValue = str | bool | int | float | None


class RequestLineError(ValueError):
    """One input line of `classify` is not a request description."""


def url_problem(url: str) -> str | None:
    """Why `url` names no page a visitor asks for (None: it does): it is an http(s) URL or
    a path. `shop.example/sale` would read as a path, `localhost:8080/sale` as a scheme."""
    if url.startswith("/") or urlsplit(url).scheme in ("http", "https"):
        return None
    if "//" in url:
        return "is no http(s) URL"
    return f"is no http(s) URL; write https://{url} (or a path starting with /)"


def explained_request(header_lines: Iterable[str], cookies: Iterable[str],
                      ip: str | None) -> dict[str, str]:
    """The headers of a request `explain` is told of (`Name: value` lines, and cookies
    `name=value`); ValueError naming what is not of that form, or an --ip that is no IP
    address."""
    if ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"--ip {ip!r} is not an IP address, such as 81.2.69.142 or "
                             "2001:db8::1") from None
    headers: dict[str, str] = {}
    for header in header_lines:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--header {header!r}: expected 'Name: value'")
        headers[name.strip()] = value.strip()
    cookies = list(cookies)
    if cookies:
        headers["cookie"] = "; ".join([*filter(None, [headers.get("cookie")]), *cookies])
    return headers


def explain_notes(headers: Mapping[str, str], *, ip: str | None, geo: bool) -> list[str]:
    """What `explain` says on stderr of a request unlike a browser's, or of a field it
    cannot know here (and how to give it)."""
    notes = []
    if not any(name.lower() == "user-agent" for name in headers):
        notes.append("no User-Agent given; the proxy takes a request without one for a bot "
                     "(explain a browser with --header 'User-Agent: ...')")
    if ip is not None and not geo:
        notes.append(f"no geo database, so geo.* are unknown for --ip {ip} (give one with "
                     "--geo-db FILE or EP_GEO_DB: a MaxMind GeoIP2 or GeoLite2 City or "
                     "Country .mmdb)")
    return notes


def visitor_for(classifier: Classifier, *, url: str, headers: Mapping[str, str] | None = None,
                ip: str | None = None, now: float, page_view: bool = True) -> Visitor:
    """The Visitor a request to `url` with these headers, from `ip`, would be."""
    problem = url_problem(url)
    if problem is not None:
        raise RequestLineError(f"{url!r} {problem}")
    parts = urlsplit(url if "//" in url else "http://site.invalid" + url)
    request = request_info(method="GET", path=parts.path or "/", query_string=parts.query,
                           host=parts.netloc, headers=list((headers or {}).items()),
                           client_ip=ip)
    return classifier.visitor(request, now=now, page_view=page_view)


def _timestamp(value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        return log_time(value)
    except ValueError as exc:
        raise RequestLineError(str(exc)) from exc


# The times a logged request can be at: from the Unix epoch to the last day whose clock
# every time zone can show (a visitor's hour and day are read in their own zone).
FIRST_TIME = 0                    # 1970-01-01T00:00:00Z
LAST_TIME = 253_402_214_400       # 9999-12-31T00:00:00Z


def log_time(value: Any) -> float:
    """A logged request's time: epoch seconds, or ISO 8601 ("2026-12-01T19:00:00Z"), from
    1970-01-01T00:00:00Z to 9999-12-31T00:00:00Z; ValueError for any other."""
    written = repr(value) if isinstance(value, str) and len(value) <= 40 else as_written(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds: float = value
    else:
        try:
            seconds = datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError):
            raise ValueError(f"time {written} is neither epoch seconds nor ISO 8601") from None
    if not FIRST_TIME <= seconds <= LAST_TIME:   # (NaN too: it compares false to all)
        raise ValueError(f"time {written} is out of range: epoch seconds from {FIRST_TIME} "
                         f"to {LAST_TIME}, or ISO 8601 from 1970-01-01T00:00:00Z to "
                         "9999-12-31T00:00:00Z")
    return float(seconds)


def log_line(line: str) -> dict[str, Any]:
    """One line of a request log: a JSON object with a "url" string, all of it text that
    can be written out again; ValueError for any other."""
    try:
        item = json.loads(line)
    except RecursionError:
        raise RequestLineError("JSON nested too deeply to read") from None
    if not isinstance(item, dict) or not isinstance(item.get("url"), str):
        raise RequestLineError('expected an object with a "url" string')
    try:
        json.dumps(item, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:   # "\ud800": half of a UTF-16 pair, no character
        raise RequestLineError(f"{exc.object[exc.start:exc.end]!r} is no character (half "
                               "of a UTF-16 pair alone)") from None
    return item


def log_headers(value: Any, field: str = "headers") -> dict[str, str]:
    """A logged request's (or response's) headers: an object of names and text values,
    by name as written. A header whose value is null is one the request did not have, as
    a field of the line that is null is one the line does not give."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be an object of names and values")
    for name, text in value.items():
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{field}: {name!r} must be a string (or null: not sent), "
                             f"not {as_written(text)}")
    return {name: text for name, text in value.items() if text is not None}


def log_text(line: Mapping[str, Any], field: str) -> str | None:
    """A text field of a logged request (None: the line does not give it)."""
    value = line.get(field)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{field} must be a string, not {as_written(value)}")
    return value


def classify_lines(classifier: Classifier, lines: Iterable[str], *,
                   now: float) -> Iterator[dict[str, Any]]:
    """One visitor (as plain data) per JSON line `{"url", "headers", "ip", "time"}`; a bad
    line yields `{"line": n, "error": ...}` instead of stopping the run."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = log_line(line)
            visitor = visitor_for(classifier, url=item["url"],
                                  headers=log_headers(item.get("headers")),
                                  ip=log_text(item, "ip"), now=_timestamp(item.get("time"), now))
            yield visitor.to_dict()
        except (ValueError, RequestLineError) as exc:
            yield {"line": number, "error": str(exc)}


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def summarize(visitors: Iterable[Mapping[str, Any]], *, top: int = 10) -> dict[str, Any]:
    """The share of each value of SUMMARY_FIELDS over a stream of visitors."""
    counters = {name: Counter[SummaryValue]() for name in SUMMARY_FIELDS}
    total = errors = 0
    for visitor in visitors:
        if "error" in visitor:
            errors += 1
            continue
        total += 1
        for name, counter in counters.items():
            value = _lookup(visitor, name)
            counter[value if isinstance(value, (str, bool, int, float)) or value is None
                    else str(value)] += 1
    return {
        "visitors": total, "errors": errors,
        "fields": {name: [{"value": value, "count": count,
                           "share": round(count / total, 4) if total else 0.0}
                          for value, count in counter.most_common(top)]
                   for name, counter in counters.items()},
    }


def _shown(value: SummaryValue) -> str:
    """A summary value as text: JSON's words for booleans, "(none)" for a field the
    visitor does not have (no country known, no bot category for people)."""
    if value is None:
        return "(none)"
    return json.dumps(value) if isinstance(value, bool) else str(value)


def render_summary(summary: Mapping[str, Any]) -> str:
    lines = [f"{summary['visitors']} visitors, {summary['errors']} unreadable lines"]
    for name, rows in summary["fields"].items():
        lines.append(f"\n{name}")
        for row in rows:
            lines.append(f"  {_shown(row['value']):<24} {row['count']:>8}  "
                         f"{row['share'] * 100:5.1f}%")
    return "\n".join(lines)


def render_visitor(data: Mapping[str, Any]) -> str:
    """Text form of a visitor for `explain`: one `field: value` line each."""
    lines: list[str] = []
    for root, fields in data.items():
        lines.append(root)
        if isinstance(fields, Mapping):
            for name, value in fields.items():
                if value not in (None, {}, [], ""):
                    shown = json.dumps(value, ensure_ascii=False) \
                        if isinstance(value, (dict, list)) else value
                    field = f"{root}.{name}"
                    note = "" if rules_can_read(field) else "   (shown only: rules cannot read it)"
                    lines.append(f"  {field}: {shown}{note}")
    return "\n".join(lines)


def _allocation_line(experiment: Mapping[str, Any]) -> str:
    """How an experiment shares out new visitors: its weights (a bandit's for the visitor's
    cell, with their version and the period the visitor counts in) and why this variant."""
    shares = ", ".join(f"{name} {share:g}%" for name, share in experiment["weights"].items())
    if experiment["allocation"] != "bandit":
        return f"fixed weights: {shares}; {experiment['why']}"
    version = experiment["weights_version"]
    learned = f"version {version}" if version is not None else "the written ones"
    return (f"bandit, cell {experiment['cell']!r}: weights {learned} ({shares}), "
            f"period {experiment['period']}; {experiment['why']}")


def _holdout(experiment: Mapping[str, Any]) -> str:
    """The visitor's holdout bucket beside the share held out (those below it)."""
    share = experiment["holdout_share"]
    bucket = experiment["buckets"]["holdout"]
    if experiment["kept_held_out"]:
        return f"held out on an earlier visit, so still (holdout now {share:g}%)"
    if not share:
        return f"no holdout (bucket {bucket})"
    # As the decision placed the visitor: one who kept a variant is never held out.
    held = "held out" if experiment["held_out"] else "not held out"
    return f"holdout {share:g}% (buckets below {share / 100:g}): bucket {bucket}, {held}"


def render_explanation(report: Mapping[str, Any]) -> str:
    """Text form of `explain`: the visitor, then each rule, experiment and slot."""
    lines = [render_visitor(report["visitor"])]
    if "rules" in report:
        lines.append("rules")
        for rule in report["rules"]:
            lines.append(f"  {rule['outcome']:<8} {rule['name']}: {rule['condition']}")
            if rule["outcome"] != "won" or rule["detail"].startswith("won "):
                lines.append(f"           {rule['detail']}    [{rule['source']}]")
        if not report["rules"]:
            lines.append("  (none)")
        lines.append("experiments")
        for experiment in report["experiments"]:
            shown = experiment["variant"] or "the page as it is"
            where = (experiment["why"] if experiment["paused"] else   # (explain's words)
                     "not in the audience: " + str(experiment["audience_failed"])
                     if not experiment["in_audience"] else
                     f"not placed: {experiment['why']}" if experiment["taken_by"] else
                     f"{_holdout(experiment)}, variant bucket "
                     f"{experiment['buckets']['variant']} -> {shown}"
                     if experiment["buckets"] is not None else
                     f"not bucketed (bot or no profile) -> {shown}")
            lines.append(f"  {experiment['name']} ({', '.join(experiment['slots'])}): {where}")
            if experiment["in_audience"] and experiment["buckets"] is not None \
                    and not experiment["paused"] and not experiment["taken_by"]:
                lines.append("    held out: shown the page as it is, in no variant"
                             if experiment["held_out"] else
                             f"    {_allocation_line(experiment)}")
        if not report["experiments"]:
            lines.append("  (none)")
        decision = report["decision"]
        lines.append("decision")
        for slot, choice in decision["slots"].items():
            lines.append(f"  {slot}: {choice['variant']} ({choice['reason']} {choice['by']})")
        for key in ("redirect", "headers", "cookies"):
            if decision[key]:
                lines.append(f"  {key}: {json.dumps(decision[key])}")
        if report.get("as_is"):
            lines.append(f"  none: {report['as_is']}")
        elif not decision["slots"] and not any(decision[k] for k in ("redirect", "headers",
                                                                    "cookies")):
            lines.append("  no rule matched: the page is served as it is")
    return "\n".join(lines)
