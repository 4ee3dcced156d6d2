"""The declarations rules refer to: slots, interests and named segments."""

from __future__ import annotations

import re
from typing import Any

import lolhtml

from ..fields import suggest
from ..loader import KeyPath, RuleFile, RuleFiles
from ..model import INJECTIONS, PAGE_ACTIONS, Slot
from .context import (
    NAME,
    NAME_RULE,
    UNPRINTABLE_RULE,
    CompileContext,
    SegmentSource,
    kind_of,
    sections,
    unprintable,
)

_TAG = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
# HTML's elements (the living standard's, and the obsolete ones pages still carry) and
# SVG's that hold content: a slot's tag is one of them, or a custom element (with a "-").
HTML_ELEMENTS = frozenset("""
a abbr address area article aside audio b base bdi bdo blockquote body br button canvas
caption cite code col colgroup data datalist dd del details dfn dialog div dl dt em embed
fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 head header hgroup hr html i
iframe img input ins kbd label legend li link main map mark math menu meta meter nav
noscript object ol optgroup option output p picture pre progress q rp rt ruby s samp
script search section select slot small source span strong style sub summary sup svg table
tbody td template textarea tfoot th thead time title tr track u ul var video wbr
selectedcontent fencedframe portal
acronym applet basefont bgsound big blink center dir font frame frameset image isindex
keygen listing marquee menuitem nobr noembed noframes param plaintext rb rtc spacer strike
tt xmp
g text tspan foreignobject symbol use
mi mn mo ms mtext mrow mfrac msqrt mroot msub msup msubsup mtable mtr mtd semantics
""".split())
_SLOT_KEYS = frozenset({"selector", "tag", "description"})


def _mapping(ctx: CompileContext, rule_file: RuleFile, value: Any,
             section: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        ctx.fail(rule_file, f"{section} is a mapping (name: ...), got {kind_of(value)}",
                 (section,), None)
        return {}
    return value


def collect_slots(ctx: CompileContext, rule_files: RuleFiles) -> None:
    for rule_file, section in sections(rule_files, "slots"):
        for name, spec in _mapping(ctx, rule_file, section, "slots").items():
            at: KeyPath = ("slots", str(name))
            before = ctx.defined_before("slot", str(name), rule_file, at)
            if before is not None:
                ctx.fail(rule_file, f"slot {name!r} is defined twice (first at {before})",
                         at, None)
            elif name in (*INJECTIONS, *PAGE_ACTIONS):
                ctx.fail(rule_file, f"{name!r} is reserved for a page action; name the slot "
                         "differently", at, None, on_key=True)
            elif not NAME.match(str(name)):
                ctx.fail(rule_file, f"slot name {name!r}: {NAME_RULE}", at, None)
            else:
                selector = _selector(ctx, rule_file, str(name), spec, at)
                if selector is not None:
                    ctx.slots[str(name)] = Slot(name=str(name), selector=selector)
                else:   # its error said what to fix: rules showing it are not told again
                    ctx.slots_in_error.add(str(name))


def _selector(ctx: CompileContext, rule_file: RuleFile, name: str, spec: Any,
              at: KeyPath) -> str | None:
    if spec is None:
        return f'[data-ep-slot="{name}"]'
    unknown = sorted(str(key) for key in spec if key not in _SLOT_KEYS) \
        if isinstance(spec, dict) else []
    if unknown:
        ctx.fail(rule_file, f"slot {name!r}: unknown key {unknown[0]!r}; a slot has "
                 + ", ".join(sorted(_SLOT_KEYS)) + suggest(unknown[0], _SLOT_KEYS),
                 (*at, unknown[0]), None, on_key=True)
        return None
    if not isinstance(spec, dict):
        ctx.fail(rule_file, "a slot is {} (the data-ep-slot marker), {tag: div} "
                 '(the marker on that element: faster) or {selector: "css"}', at, None)
        return None
    selector = f'[data-ep-slot="{name}"]'
    if "tag" in spec and "selector" in spec:   # (the selector alone would be looked for)
        ctx.fail(rule_file, f"slot {name!r}: tag names the element of the data-ep-slot "
                 "marker, selector any element: write one of them", (*at, "tag"), None)
        return None
    if "tag" in spec:
        tag = spec["tag"]
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            ctx.fail(rule_file, f"slot {name!r}: tag is an element name such as div or "
                     "section", (*at, "tag"), None)
            return None
        if tag.lower() not in HTML_ELEMENTS and "-" not in tag:
            ctx.fail(rule_file, f"slot {name!r}: {tag!r} is no HTML element (a custom "
                     "element's name has a \"-\"), so no page would have the slot"
                     + suggest(tag.lower(), HTML_ELEMENTS), (*at, "tag"), None)
            return None
        selector = f"{tag.lower()}{selector}"
    if "selector" in spec:
        if not isinstance(spec["selector"], str) or not spec["selector"].strip():
            ctx.fail(rule_file, f"slot {name!r}: selector must be a CSS selector",
                     (*at, "selector"), None)
            return None
        selector = spec["selector"].strip()
        problem = _selector_problem(selector)
        if problem is not None:
            ctx.fail(rule_file, f"slot {name!r}: selector {selector!r} cannot be used: "
                     f"{problem} (the "
                     "rewriter takes CSS selectors of elements, their attributes and "
                     "combinators; no :has(), :hover or pseudo-elements)",
                     (*at, "selector"), None)
            return None
    return selector


class _Untouched:
    def element(self, element: Any) -> None:
        pass


def _selector_problem(selector: str) -> str | None:
    """What the HTML rewriter says is wrong with `selector` (None: it takes it). It reads a
    selector when it is first given a page: one that it refuses would otherwise turn up
    as a rewriter giving up on every page the slot's rules apply to."""
    rewriter = lolhtml.HTMLRewriter(lambda chunk: None)
    try:
        rewriter.on(selector, _Untouched())
        rewriter.write(b"<p></p>")
        rewriter.end()
    except RuntimeError as exc:
        return str(exc).rstrip(".").lower() or "refused"
    return None


def _refused_name(ctx: CompileContext, rule_file: RuleFile, kind: str, name: str,
                  at: KeyPath) -> bool:
    """Whether a name written freely (an interest's, a segment's) is refused, and told so:
    defined before, blank, or holding a character of UNPRINTABLE."""
    before = ctx.defined_before(kind, name, rule_file, at)
    if before is not None:
        ctx.fail(rule_file, f"{kind} {name!r} is defined twice (first at {before})", at, None)
    elif not name.strip():
        ctx.fail(rule_file, f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} needs a name", at,
                 None, on_key=True)
    elif unprintable(name):
        ctx.fail(rule_file, f"{kind} {name!r}: {UNPRINTABLE_RULE}", at, None, on_key=True)
    else:
        return False
    return True


def collect_interests(ctx: CompileContext, rule_files: RuleFiles) -> None:
    for rule_file, section in sections(rule_files, "interests"):
        for name, patterns in _mapping(ctx, rule_file, section, "interests").items():
            at: KeyPath = ("interests", str(name))
            if _refused_name(ctx, rule_file, "interest", str(name), at):
                continue
            if not isinstance(patterns, list) or not patterns:
                ctx.fail(rule_file, "an interest is a list of path patterns such as "
                         '["/running", "/running/*"]', at, None)
            elif wrong := [(i, p) for i, p in enumerate(patterns)
                           if not isinstance(p, str) or not p.startswith("/")]:
                for i, pattern in wrong:   # (each at its place)
                    ctx.fail(rule_file, f"interest {name!r}: {pattern!r} is no path pattern: "
                             f"a pattern starts with /, e.g. {'/' + str(pattern)!r}",
                             (*at, i), None)
            else:
                ctx.interests[str(name)] = tuple(patterns)


def collect_segments(ctx: CompileContext, rule_files: RuleFiles) -> None:
    for rule_file, section in sections(rule_files, "segments"):
        for name, spec in _mapping(ctx, rule_file, section, "segments").items():
            at: KeyPath = ("segments", str(name))
            if _refused_name(ctx, rule_file, "segment", str(name), at):
                continue
            if isinstance(spec, dict) and set(spec) - {"when", "description"}:
                key = sorted(str(k) for k in spec if k not in ("when", "description"))[0]
                ctx.fail(rule_file, f"segment {name!r}: unknown key {key!r}; a segment has "
                         "when, description" + suggest(key, ("when", "description")),
                         (*at, key), None, on_key=True)
            elif not isinstance(spec, dict) or "when" not in spec:
                ctx.fail(rule_file, "a segment is {when: {...conditions...}}", at, None)
            else:
                ctx.segment_sources[str(name)] = SegmentSource(rule_file, (*at, "when"),
                                                               spec["when"])
