"""`then` (and experiment variants) -> slot contents and page actions: fragments are read
here, templates parsed, redirect targets, headers and cookies checked."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from ..fields import suggest
from ..loader import KeyPath, RuleFile, undecodable, wide_encoding
from ..model import (
    CDN_CACHE_CONTROLS,
    INJECTIONS,
    PAGE_ACTIONS,
    SLOT_ACTIONS,
    Content,
    Pairs,
    Redirect,
)
from ..template import Template, TemplateKind
from ..tree import read_at_most
from .context import CompileContext, Invalid, Invalids
from .fragment_hints import near_fragment

# RFC 7230 token: header names, attribute names.
_TOKEN: Final = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
FORBIDDEN_HEADERS: Final = frozenset({"connection", "content-length", "transfer-encoding", "host",
                                       "set-cookie", "keep-alive", "upgrade", "te", "trailer"})
# RFC 6265 cookie-octet: no space, '"', ',', ';', '\' or control character.
_COOKIE_VALUE: Final = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_HEADER_VALUE: Final = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# (matched whole: `$` would also take a value ending in a line break, as YAML's `|` gives)
_REDIRECT_STATUSES: Final = (301, 302, 303, 307, 308)
_VARIANT_KEYS: Final = frozenset({"action", "html", "file", "text", "attribute", "value", "class"})
# A value that reads as a file path rather than HTML or text: no '<', no space, a folder
# and a file suffix (fragments/hero.htm, img/sale.png), or a start in fragments/. Shown as
# text it would put the path on the page: a fragment's name mistyped.
_PATH_LIKE: Final = re.compile(r"fragments/[^<\s]*|[^<\s]*/[^<\s/]*\.[A-Za-z][A-Za-z0-9]{0,5}")
# A fragment larger than this is refused before it is read: it is added to every page it
# shows on, and held by every worker.
MAX_FRAGMENT_BYTES: Final = 1024 * 1024


@dataclass(frozen=True)
class Actions:
    """What one `then` does."""

    slots: MappingProxyType[str, Content]
    redirect: Redirect | None
    headers: Pairs
    cookies: Pairs


def compile_then(ctx: CompileContext, rule_file: RuleFile, then: dict[Any, Any], at: KeyPath,
                 owner: str) -> Actions | None:
    """Every key's action, or None when any is wrong (each error reported)."""
    slots: dict[str, Content] = {}
    redirect: Redirect | None = None
    headers: Pairs = ()
    cookies: Pairs = ()
    ok = True
    for raw_key, value in then.items():
        key = str(raw_key)
        key_at: KeyPath = (*at, key)
        try:
            if key == "redirect":
                redirect = _redirect(value, key_at)
            elif key == "headers":
                headers = _pairs(value, key_at, "headers", _header)
            elif key == "cookies":
                cookies = _pairs(value, key_at, "cookies",
                                 functools.partial(_cookie, own=ctx.own_cookies))
            elif key in ctx.slots:
                slots[key] = content(ctx, value, key_at)
            elif key in INJECTIONS:
                slots[key] = _injection(ctx, key, value, key_at)
            elif key in ctx.slots_in_error:
                ok = False   # the slot's own error says what to fix
            else:
                choices = [*ctx.slots, *PAGE_ACTIONS, *INJECTIONS]
                raise Invalid(f"unknown slot {key!r}; the slots section defines "
                              + (", ".join(sorted(ctx.slots)) or "none")
                              + " (page actions: redirect, headers, cookies, head, body_end)"
                              + suggest(key, choices), key_at, on_key=True)
        except Invalid as exc:
            ctx.reject(rule_file, exc, owner)
            ok = False
        except Invalids as several:   # (every wrong entry of a mapping)
            for one in several.errors:
                ctx.reject(rule_file, one, owner)
            ok = False
    if not ok:
        return None
    return Actions(slots=MappingProxyType(slots), redirect=redirect, headers=headers,
                   cookies=cookies)


def _injection(ctx: CompileContext, key: str, value: Any, at: KeyPath) -> Content:
    added = content(ctx, value, at)
    if added.action != "inner" or added.template is None:
        raise Invalid(f"{key} takes HTML (inline or a fragment file) to add", at)
    return Content(action="append", template=added.template, source=added.source)


def _fragment(ctx: CompileContext, path_text: str, at: KeyPath) -> tuple[str, str]:
    """The fragment file's HTML; each file is read once a compile, however many rules
    show it."""
    read = fragment(ctx, path_text)
    if ctx.fragments_shown is not None:
        ctx.fragments_shown.add(path_text)
    if isinstance(read, str):
        raise Invalid(read, at)
    return read


def fragment(ctx: CompileContext, path_text: str) -> tuple[str, str] | str:
    """The fragment file's HTML and where it was found, or why it cannot be read (read
    once a compile)."""
    read = ctx.fragments.get(path_text)
    if read is None:
        try:
            read = _read_fragment(ctx.directory, path_text), path_text
        except Invalid as exc:
            read = exc.message
        ctx.fragments[path_text] = read
    return read


def _read_fragment(directory: Path, path_text: str) -> str:
    """The fragment's HTML (a UTF-8 byte order mark left out). Its path is taken as
    written, inside the rules directory, through folder links as the rules' version and
    the watcher see them (loader.walk)."""
    relative = os.path.normpath(path_text)
    if os.path.isabs(relative) or relative == os.pardir \
            or relative.startswith(os.pardir + os.sep):
        raise Invalid(f"fragment {path_text!r} is outside the rules directory", ())
    if any(part.startswith(".") for part in Path(relative).parts):
        # The rules' version and reloads leave hidden files and folders (.git, an editor's
        # swap files) out: an edit to a fragment there would never be served.
        raise Invalid(f"fragment {path_text!r} is hidden (a name starting with '.'), and "
                      "the rules directory leaves hidden files and folders out, so its "
                      "edits would never show; move it to a folder of its own", ())
    path = directory / relative
    try:
        if path.is_dir():
            raise Invalid(f"fragment {path_text!r} is a folder, not a file ({path})", ())
        if not path.exists():   # False too for a NUL in the name
            raise Invalid(f"fragment file {path_text!r} does not exist (looked for {path})"
                          + near_fragment(directory, path_text), ())
        raw = read_at_most(path, MAX_FRAGMENT_BYTES)   # (a FIFO or device: never read)
    except OSError as exc:
        raise Invalid(f"fragment {path_text!r} cannot be read: {exc.strerror or exc}",
                      ()) from exc
    if raw is None:
        raise Invalid(f"fragment {path_text!r} is larger than {MAX_FRAGMENT_BYTES >> 20} MiB, "
                      "the most a fragment may hold (it is added to every page it shows on): "
                      "link large content (images, scripts) instead of inlining it", ())
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        wide = wide_encoding(raw)
        if wide is not None:
            raise Invalid(f"fragment {path_text!r} cannot be read as UTF-8: it is saved as "
                          f"{wide} (it starts with a {wide} byte order mark); save it as UTF-8",
                          ()) from exc
        line, column, byte = undecodable(raw, exc)
        raise Invalid(f"fragment {path_text!r} cannot be read as UTF-8: {byte} at line "
                      f"{line}, column {column} is not UTF-8 (Windows-1252 or Latin-1?); "
                      "save it as UTF-8", ()) from exc


def _template(ctx: CompileContext, text: str, at: KeyPath, kind: TemplateKind = "html",
              attribute: str = "", *, fragment_file: str | None = None) -> Template:
    """The parsed template; the same text in the same place is parsed once a compile (a
    fragment shown by many rules, named in its error)."""
    if "{{" not in text:   # no placeholder: the text as it is (what parse makes of it)
        return Template((text,) if text else ())
    key = (text, kind, attribute)
    parsed = ctx.templates.get(key)
    if parsed is None:
        try:
            parsed = Template.parse(text, kind=kind, attribute=attribute)
        except ValueError as exc:
            parsed = str(exc)
        ctx.templates[key] = parsed
    if isinstance(parsed, str):
        raise Invalid(parsed if fragment_file is None else f"fragment {fragment_file!r}: "
                      f"{parsed}", at)
    return parsed


def content(ctx: CompileContext, raw: Any, at: KeyPath, *,
            beside: frozenset[str] = frozenset()) -> Content:
    """One variant: a fragment file, inline HTML, or a mapping with an action. `beside`:
    keys read before (an experiment variant's weight), named among those expected."""
    if isinstance(raw, str):
        if raw.strip().endswith(".html") and "<" not in raw:
            html, source = _fragment(ctx, raw.strip(), at)
            return Content(action="inner", source=source,
                           template=_template(ctx, html, at, fragment_file=source))
        if _PATH_LIKE.fullmatch(raw.strip()) and "://" not in raw:   # a URL is text
            raise Invalid(_no_fragment(ctx, raw.strip()), at)
        return Content(action="inner", template=_template(ctx, raw, at), source="inline")
    if not isinstance(raw, dict):
        raise Invalid("a variant is a fragment file (x.html), inline HTML, or a mapping "
                      "such as {html: ...} or {action: remove}", at)
    for key in raw:
        if key not in _VARIANT_KEYS:
            expected = _VARIANT_KEYS | beside
            raise Invalid(f"unknown variant key {key!r}; expected one of "
                          + ", ".join(sorted(expected)) + suggest(str(key), expected),
                          (*at, str(key)), on_key=True)
    sources = [k for k in ("html", "file", "text") if k in raw]
    if len(sources) > 1:
        raise Invalid("a variant has one of html, file or text", at)
    action = raw.get("action", "text" if sources == ["text"] else "inner")
    if action not in SLOT_ACTIONS:
        raise Invalid(f"unknown action {action!r}; expected one of " + ", ".join(SLOT_ACTIONS)
                      + suggest(str(action), SLOT_ACTIONS), (*at, "action"))
    if action in ("set_attribute", "remove_attribute"):
        return _attribute_content(ctx, raw, action, at)
    if action in ("add_class", "remove_class"):
        names = raw.get("class")
        if not isinstance(names, str) or not names.strip():
            raise Invalid(f"{action} needs class: <name>", at)
        return Content(action=action, template=Template((names.strip(),)))
    # A text variant's placeholders are written as they are: the page writer escapes the
    # whole text once (issue 20, item 13).
    kind: TemplateKind = "text" if action == "text" else "html"
    template, source = None, "inline"
    if "file" in raw:
        html, source = _fragment(ctx, str(raw["file"]), (*at, "file"))
        template = _template(ctx, html, (*at, "file"), kind, fragment_file=source)
    elif "html" in raw or "text" in raw:
        key = "html" if "html" in raw else "text"
        written = str(raw[key]).strip()
        if key == "html" and _PATH_LIKE.fullmatch(written) and "://" not in written:
            # html: holds the HTML itself; a path there would show on the page as text.
            raise Invalid(f"html: holds inline HTML, and {written!r} is a file path; for a "
                          f"fragment file write {{file: {written!r}}}, to show the path "
                          f"as text {{text: {written!r}}}", (*at, "html"))
        template = _template(ctx, str(raw[key]), (*at, key), kind)
    if action != "remove" and template is None:
        raise Invalid(f"action {action} needs html, file or text", at)
    return Content(action=action, template=template, source=source)


def _no_fragment(ctx: CompileContext, path_text: str) -> str:
    """Why a value written as a file path shows no fragment (a typo of one, most likely)."""
    stem = path_text.rsplit(".", 1)[0] if "." in path_text.rsplit("/", 1)[-1] else path_text
    meant = f"{stem}.html"
    found = isinstance(fragment(ctx, meant), tuple) if meant != path_text else False
    hint = f"; did you mean {meant!r}?" if found else near_fragment(ctx.directory, meant)
    return (f"no fragment file {path_text!r} (fragments are .html files in the rules "
            f"directory{hint}); to show it as text, write {{text: {path_text!r}}}")


def _attribute_content(ctx: CompileContext, raw: dict[Any, Any], action: str,
                       at: KeyPath) -> Content:
    attribute = raw.get("attribute")
    if not isinstance(attribute, str) or not _TOKEN.fullmatch(attribute):
        raise Invalid(f"{action} needs attribute: <name>", at)
    if action == "remove_attribute":
        return Content(action="remove_attribute", attribute=attribute)
    if "value" not in raw:
        raise Invalid("set_attribute needs value: <text>", at)
    template = _template(ctx, str(raw["value"]), (*at, "value"), "attribute", attribute)
    return Content(action="set_attribute", template=template, attribute=attribute)


_REDIRECT_KEYS: Final = ("to", "status", "keep_query")


def _redirect(raw: Any, at: KeyPath) -> Redirect:
    if isinstance(raw, str):
        raw = {"to": raw}
    unknown = [str(key) for key in raw if key not in _REDIRECT_KEYS] \
        if isinstance(raw, dict) else []
    if unknown:
        raise Invalid(f"unknown key {unknown[0]!r}; a redirect has "
                      + ", ".join(_REDIRECT_KEYS) + suggest(unknown[0], _REDIRECT_KEYS),
                      (*at, unknown[0]), on_key=True)
    if not isinstance(raw, dict) or not isinstance(raw.get("to"), str) or not raw["to"]:
        raise Invalid("redirect is a URL or path, or {to: ..., status: 302}", at)
    location = raw["to"].strip()
    if not location.startswith(("/", "https://", "http://")) or location.startswith("//") \
            or not _HEADER_VALUE.fullmatch(location) or any(c in location for c in " \t\\"):
        raise Invalid(f"redirect target {location!r} must be a path (/landing) or an "
                      "absolute http(s) URL", (*at, "to"))
    status = raw.get("status", 302)
    if isinstance(status, bool) or status not in _REDIRECT_STATUSES:
        raise Invalid(f"redirect status is one of {', '.join(map(str, _REDIRECT_STATUSES))}",
                      (*at, "status"))
    keep = raw.get("keep_query", True)
    if not isinstance(keep, bool):
        raise Invalid("keep_query is true or false", (*at, "keep_query"))
    return Redirect(location, int(status), keep)


def _pairs(raw: Any, at: KeyPath, what: str,
           check: Callable[[str, str, KeyPath], None]) -> Pairs:
    """The mapping's names and values, each `check`ed; Invalids naming every wrong one."""
    if not isinstance(raw, dict) or not raw:
        raise Invalid(f"{what} is a mapping of names to values", at)
    out, errors = [], []
    for key, value in raw.items():
        where = (*at, str(key))
        try:
            if isinstance(value, (dict, list)) or value is None:
                raise Invalid(f"{what}: the value of {key!r} must be one line of text", where)
            # (true is sent as written, not as Python's True)
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            check(str(key), text, where)
        except Invalid as exc:
            errors.append(exc)
        else:
            out.append((str(key), text))
    if errors:
        raise Invalids(errors)
    return tuple(out)


def _header(name: str, value: str, where: KeyPath) -> None:
    folded = name.lower()
    if not _TOKEN.fullmatch(name):
        raise Invalid(f"headers: {name!r} is not a header name (letters, digits and "
                      "!#$%&'*+-.^_`|~; no spaces or ':')", where, on_key=True)
    if folded in FORBIDDEN_HEADERS:
        raise Invalid(f"headers: {name!r} cannot be set by a rule", where, on_key=True)
    if folded.startswith("x-ep-") or folded.encode() in CDN_CACHE_CONTROLS:
        raise Invalid(f"headers: {name!r} is the product's to set (X-EP-* headers, and "
                      "a CDN's own cache controls: Cache-Control is what every cache "
                      "is told)", where, on_key=True)
    if not _HEADER_VALUE.fullmatch(value):
        raise Invalid(f"headers: the value of {name!r} must be one line of text "
                      "(no control characters; non-ASCII as latin-1)", where)
    _no_template("headers", name, value, where)


def _cookie(name: str, value: str, where: KeyPath, *, own: Mapping[str, str]) -> None:
    if not _TOKEN.fullmatch(name):
        raise Invalid(f"cookies: {name!r} is not a cookie name (letters, digits and "
                      "!#$%&'*+-.^_`|~; no spaces, '=', ';' or ',')", where, on_key=True)
    if name.lower().startswith("ep_"):
        raise Invalid(f"cookies: {name!r}: names starting ep_ are the product's (the "
                      "visitor's profile is ep_profile); choose another", where,
                      on_key=True)
    if name in own:
        raise Invalid(f"cookies: {name!r} is the cookie this server names in {own[name]}; "
                      "choose another name", where, on_key=True)
    if not _COOKIE_VALUE.fullmatch(value):
        raise Invalid(f"cookies: the value of {name!r} may not hold spaces, quotes, "
                      "';', ',', '\\' or control characters (URL-encode them: "
                      "spring%20sale)", where)
    _no_template("cookies", name, value, where)


def _no_template(section: str, name: str, value: str, where: KeyPath) -> None:
    if "{{" in value or "{%" in value:
        raise Invalid(f"{section}: the value of {name!r} is sent as written: templates "
                      "({{ ... }}) fill HTML content only (html:, text:)", where)
