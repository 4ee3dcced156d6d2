"""Where in HTML each placeholder of a variant sits, so its value is escaped for that place.

A small HTML tokenizer (the states of the HTML standard that matter here) walks a
template's literal text, with each placeholder standing as one MARK character, and says
for every MARK: in text, in a comment, in a quoted attribute value (which attribute, and
the literal value before it), or somewhere no visitor data may go (a tag name, an
unquoted value, a script or a style). Run when rules load, never per request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

MARK: Final = "\ue000"   # a private-use character stands for each placeholder

# Attributes whose value is a URL (or a list of URLs): a visitor value there must not
# choose the scheme (javascript:, data:, vbscript:).
URL_ATTRIBUTES: Final = frozenset({
    "href", "src", "action", "formaction", "srcset", "poster", "cite", "data", "background",
    "codebase", "longdesc", "manifest", "ping", "usemap", "icon", "lowsrc", "dynsrc",
    "classid", "archive", "profile", "xlink:href", "imagesrcset",
})
# Attributes whose value is code (event handlers: every on* name), CSS or a whole document.
_CODE_ATTRIBUTES: Final = frozenset({"style", "srcdoc"})
# Elements whose content is script or CSS: escaping cannot make a value safe there.
_CODE_ELEMENTS: Final = frozenset({"script", "style"})
_TAG_NAME: Final = re.compile(r"[^\s/>]*")
_ATTRIBUTE_NAME: Final = re.compile(r"[^\s/>=]+")
_UNQUOTED: Final = re.compile(r"[^\s>]*")
_SCHEME: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_URL_NOISE: Final = re.compile(r"[\t\n\r]")   # browsers drop these anywhere in a URL
SAFE_SCHEMES: Final = frozenset({"http", "https"})

Place = Literal["text", "attribute"]


@dataclass(frozen=True)
class Spot:
    """Where one placeholder sits."""

    place: Place
    attribute: str = ""       # for "attribute": its lower-case name
    before: str = ""          # for "attribute": the value's text before the placeholder


def attribute_problem(attribute: str) -> str | None:
    """Why visitor data may not go into this attribute at all, or None."""
    name = attribute.lower()
    if name.startswith("on"):
        return f"the {name} attribute is an event handler (script)"
    if name in _CODE_ATTRIBUTES:
        return f"the {name} attribute holds {'CSS' if name == 'style' else 'a document'}"
    return None


def is_safe_url(url: str) -> bool:
    """A relative URL, or an absolute http(s) one: nothing a browser would run."""
    cleaned = _URL_NOISE.sub("", url).strip("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c"
                                            "\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19"
                                            "\x1a\x1b\x1c\x1d\x1e\x1f ")
    scheme = _SCHEME.match(cleaned)
    return scheme is None or scheme.group(1).lower() in SAFE_SCHEMES


def url_fixed(before: str) -> bool:
    """Whether the literal start of a URL already decides its scheme (or that it has
    none): a ':', '/', '?' or '#' written before any placeholder."""
    literal = _URL_NOISE.sub("", before.split(MARK, 1)[0]).lstrip()
    return any(c in literal for c in ":/?#")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.spots: list[Spot] = []

    def fail(self, why: str) -> ValueError:
        return ValueError(f"a visitor field cannot go {why}")

    def run(self) -> list[Spot]:
        while self.i < len(self.text):
            char = self.text[self.i]
            if char == MARK:
                self.spots.append(Spot("text"))
                self.i += 1
            elif char == "<":
                self._markup()
            else:
                self.i += 1
        return self.spots

    def _markup(self) -> None:
        text, start = self.text, self.i + 1
        if text.startswith("!--", start):
            end = text.find("-->", start + 3)
            comment = text[start + 3:] if end < 0 else text[start + 3:end]
            self.spots.extend(Spot("text") for _ in range(comment.count(MARK)))
            self.i = len(text) if end < 0 else end + 3
            return
        nxt = text[start:start + 1]
        if nxt == "/" or nxt == "!" or nxt == "?":
            end = text.find(">", start)
            inside = text[start:] if end < 0 else text[start:end]
            if MARK in inside:
                raise self.fail("inside a tag; put it in a quoted attribute value")
            self.i = len(text) if end < 0 else end + 1
            return
        if nxt == MARK:
            raise self.fail("right after '<' (it could start a tag); write &lt; for a "
                            "literal '<'")
        if not nxt.isalpha():
            self.i = start
            return
        self._tag(start)

    def _tag(self, start: int) -> None:
        text = self.text
        tag = _span(_TAG_NAME, text, start)
        if MARK in tag:
            raise self.fail("in a tag name")
        self.i = start + len(tag)
        while self.i < len(text):
            char = text[self.i]
            if char == ">":
                self.i += 1
                if tag.lower() in _CODE_ELEMENTS:
                    self._code(tag.lower())
                return
            if char.isspace() or char == "/":
                self.i += 1
            elif char == MARK:
                raise self.fail("inside a tag; put it in a quoted attribute value")
            else:
                self._attribute()

    def _attribute(self) -> None:
        text = self.text
        name = _span(_ATTRIBUTE_NAME, text, self.i) or text[self.i]
        if MARK in name:
            raise self.fail("in an attribute name")
        self.i += len(name)
        while self.i < len(text) and text[self.i].isspace():
            self.i += 1
        if self.i >= len(text) or text[self.i] != "=":
            return
        self.i += 1
        while self.i < len(text) and text[self.i].isspace():
            self.i += 1
        quote = text[self.i:self.i + 1]
        if quote not in ("'", '"'):
            value = _span(_UNQUOTED, text, self.i)
            if MARK in value:
                raise self.fail(f"in the unquoted value of {name}; quote the value")
            self.i += len(value)
            return
        end = text.find(quote, self.i + 1)
        value_text = text[self.i + 1:] if end < 0 else text[self.i + 1:end]
        position = value_text.find(MARK)
        while position >= 0:
            self.spots.append(Spot("attribute", name.lower(), value_text[:position]))
            position = value_text.find(MARK, position + 1)
        self.i = len(text) if end < 0 else end + 1

    def _code(self, tag: str) -> None:
        closing = re.compile(rf"</{tag}[\s/>]", re.IGNORECASE)
        found = closing.search(self.text, self.i)
        body = self.text[self.i:] if found is None else self.text[self.i:found.start()]
        if MARK in body:
            raise self.fail(f"inside <{tag}>: escaping cannot make a value safe in "
                            f"{'script' if tag == 'script' else 'CSS'}")
        self.i = len(self.text) if found is None else found.start()


def _span(pattern: re.Pattern[str], text: str, start: int) -> str:
    found = pattern.match(text, start)
    return found.group(0) if found else ""


def spots(text: str) -> list[Spot]:
    """Where each MARK in `text` sits, in order; ValueError for a place visitor data may
    not go."""
    return _Scanner(text).run()
