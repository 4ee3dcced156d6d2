"""The line reader of rule files gives exactly what the YAML node reader gives (values, their
types, and the line and column of every value and key), or declines."""

from __future__ import annotations

import datetime
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_personalizer.rules import quick_yaml
from edge_personalizer.rules.loader import _DuplicateKey, _PlainBuilder
from edge_personalizer.rules.yaml_scalars import RuleFileLoader

ROOT = Path(__file__).resolve().parents[2]


def node_reader(text: str) -> tuple[Any, dict[Any, Any]] | None:
    """What the loader's YAML node reader makes of `text` (None when YAML refuses it)."""
    builder = _PlainBuilder()
    try:
        node = yaml.compose(text, Loader=RuleFileLoader)
        data = None if node is None else builder.build(node, ())
    except Exception:   # any refusal: the loader reports it, the line reader must decline
        return None
    return data, builder.marks


def same_as_node_reader(text: str) -> bool:
    """True when the line reader read `text`, False when it declined; fails on a difference."""
    quick = quick_yaml.read(text)
    if quick is None:
        return False
    if isinstance(quick, quick_yaml.Repeated):   # the node reader stops at the same key
        node = yaml.compose(text, Loader=RuleFileLoader)
        assert node is not None
        with pytest.raises(_DuplicateKey) as raised:
            _PlainBuilder().build(node, ())
        mark = raised.value.mark
        assert (raised.value.key, mark.line + 1, mark.column + 1) == \
            (quick.key, quick.line, quick.column), text
        return True
    full = node_reader(text)
    assert full is not None, f"read what YAML refuses: {text!r}"
    if full[0] is None:   # only comments and markers: an empty file either way
        assert quick[0] is None, text
        return True
    assert repr(quick[0]) == repr(full[0]), text   # repr: 1, 1.0 and True differ
    assert quick[1] == full[1], text
    return True


def rule_texts() -> list[str]:
    texts = [p.read_text() for p in [*ROOT.glob("rules/*.yaml"), *ROOT.glob("bench/*/*.yaml"),
                                     *ROOT.glob("tests/data/rules/*.yaml")]]
    texts += [yaml.safe_load(p.read_text())["rules"]
              for p in sorted((ROOT / "tests" / "rules" / "cases").glob("*.yaml"))]
    return texts


def test_the_projects_rule_files_read_the_same() -> None:
    texts = rule_texts()
    assert len(texts) > 15
    assert all(same_as_node_reader(text) for text in texts)


def test_values_mean_what_yaml_says() -> None:
    text = ('a: yes\nb: 3\nc: 2026-12-24\nd: ~\ne: 0x1F\nf: 1:20\ng: "3"\nh: \'yes\'\n'
            'i: {x: [1, 2.5, off, "a, b"], y: {}}\nj: a #not a value\nk: a#b\n'
            'l: "\\u00e9\\t\\"q\\""\nm: \'it\'\'s\'\nn:\nno: x\n1: one\n')
    quick = quick_yaml.read(text)
    assert isinstance(quick, tuple)
    data, marks = quick
    assert data == {"a": "yes", "b": 3, "c": datetime.date(2026, 12, 24), "d": None,
                    "e": "0x1F", "f": "1:20", "g": "3", "h": "yes",
                    "i": {"x": [1, 2.5, "off", "a, b"], "y": {}}, "j": "a", "k": "a#b",
                    "l": 'é\t"q"', "m": "it's", "n": None, "no": "x", 1: "one"}
    assert marks[("i", "x", 3)] == (9, 22)
    assert marks[("n",)] == (14, 3)   # an empty value: just after its colon
    assert marks[("no", quick_yaml.KEY)] == (15, 1)
    assert same_as_node_reader(text)


@pytest.mark.parametrize("text", [
    "a: >\n  text\n",                       # folded blocks
    "a: |2\n  html\n",                     # an indentation digit
    "a: &x 1\nb: *x\n",                     # anchors and aliases
    "a: !!str 1\n",                         # tags
    "a: one\n  two\n",                      # a value continued on the next line
    "a: [1,\n  2]\n",                       # a collection over several lines
    "a:\tb\n",                              # tabs
    "a: 1\r\nb: 2\r\n",                     # Windows line ends
    "a: x\u2028y\n", "a: x\x85y\n",          # the other line breaks YAML knows
    "\ufeffa: 1\n",                          # a byte order mark
    "<<: {a: 1}\n",                         # merge keys
    "- a\n",                                # not a mapping of sections
    "a: b: c\n",                            # a mistake
    "a: 1\n---\nb: 2\n",                    # a second document
    "a: 1\n b: 2\n",                        # an indentation the file does not use
    "a: [1, 2,]\n",                         # a trailing comma
    "? a\n: b\n",                           # an explicit key
])
def test_declines_what_it_does_not_read(text: str) -> None:
    assert quick_yaml.read(text) is None


@pytest.mark.parametrize("text", [
    "a: 2026-13-45\n", "a: {start: 2026-02-30}\n", "a:\n  - 2026-02-30 10:00:00\n",
    "a: " + "1" * 5000 + "\n"])
def test_values_yaml_cannot_make_are_read_as_written_by_both_readers(text: str) -> None:
    assert same_as_node_reader(text)   # read (not declined), and as the node reader does


SCALARS = ["a", "yes", "No", "on", "OFF", "true", "null", "~", "", "1", "-1", "+1", "0x1F",
           "0o17", "017", "08", "1_000", "1:20", "1.5", ".5", "1e3", "1.0e+3", ".inf", "-.Inf",
           ".NaN", "2026-12-24", "2026-12-24 10:00:00", "2026-1-2", "a b", "a  b", "a#b", "a #b",
           "http://x.com/a", "a:b", "a: b", "-a", "- a", "?a", ":a", "<<", "=", "!x", "&a", "*a",
           "{x}", "[x]", "a,b", "a]", "<b>1</b>", "{{ geo.city }}", "é", "日本", "a'b", 'a"b',
           "a\\b", "%x", "@x", "`x", "|", ">", "a?b", "a{b", "#x", "true ", " a", "-", "--",
           "---", "...", "1.", "+.5", "0b101", "-0", "12:30:45", "0.", "Null", "y", "=x",
           "a\xa0b", "\u3000", "a:\xa0b"]
KEYS = ["a", "b", "geo.country", "1", "yes", "null", "a b", "x-y", "<<", "k:v", "http://a",
        "'q'", "2026-01-01", "1.5", "~", "-k", "?k", ":k", "a#b", "a #b"]


class _Documents:
    """Random small YAML documents in the shapes rule files take and many they do not."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def scalar(self) -> str:
        text = self.random.choice(SCALARS)
        roll = self.random.random()
        if roll < 0.2:
            return "'" + text.replace("'", "''") + "'"
        if roll < 0.4:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if roll < 0.45:
            return '"' + self.random.choice(["\\x41", "\\u00e9", "\\n", "\\/", "\\q",
                                             "\\U0001F600", "\\_", "\\ "]) + text + '"'
        return text

    def key(self) -> str:
        key = self.random.choice(KEYS)
        key += str(self.random.randint(0, 99)) if self.random.random() < 0.7 else ""
        return f'"{key}"' if self.random.random() < 0.1 else key

    def flow(self, depth: int) -> str:
        if depth > 2 or self.random.random() < 0.5:
            return self.scalar()
        space = self.random.choice(["", " ", "  "])
        if self.random.random() < 0.5:
            items = [self.flow(depth + 1) for _ in range(self.random.randint(0, 3))]
            return ("[" + space + ("," + self.random.choice([" ", "", "  "])).join(items)
                    + self.random.choice(["", ",", " "]) + "]")
        pairs = [self.key() + self.random.choice([": ", ":", " : ", ":  "]) + self.flow(depth + 1)
                 for _ in range(self.random.randint(0, 3))]
        return "{" + space + ", ".join(pairs) + space + "}"

    def comment(self) -> str:
        return self.random.choice(["", "", "", " # c", "  #c", "#c", " #: x"])

    def value(self) -> str:
        return self.flow(0) if self.random.random() < 0.3 else self.scalar()

    def block(self, indent: int, depth: int, lines: list[str]) -> None:
        pad = " " * indent
        if depth > 3 or self.random.random() < 0.1:
            lines.append(pad + self.key() + ":" + self.random.choice([" ", ""]) + self.comment())
            return
        if self.random.random() < 0.35:
            for _ in range(self.random.randint(1, 3)):
                if self.random.random() < 0.4:
                    lines.append(pad + "- " + self.value() + self.comment())
                    continue
                inner: list[str] = []
                self.block(indent + 2, depth + 1, inner)
                inner[0] = pad + "- " + inner[0][indent + 2:]
                lines.extend(inner)
            return
        for _ in range(self.random.randint(1, 3)):
            if self.random.random() < 0.5:
                lines.append(pad + self.key() + ": " + self.value() + self.comment())
                continue
            if self.random.random() < 0.2:
                lines.append(pad + self.key() + ": |" + self.random.choice(["", "-", "+", "2"])
                             + self.comment())
                lines.extend(self.literal(indent))
                continue
            lines.append(pad + self.key() + ":" + self.comment())
            if self.random.random() < 0.85:
                if self.random.random() < 0.7:
                    lines.append(self.random.choice(["", "  # x", "#y"]))
                step = self.random.choice([2, 2, 4, 1]) if self.random.random() < 0.9 else 0
                self.block(indent + step, depth + 1, lines)

    def literal(self, indent: int) -> list[str]:
        """The lines of a `|` block: HTML, blank lines, lines indented further or less."""
        step = indent + self.random.choice([1, 2, 2, 4])
        pieces = ["<p>", "</p>", "  <b>{{ geo.city }}</b>", "# not a comment", "", " ", "a: b",
                  "- x", "   ", "'q'"]
        out = []
        for _ in range(self.random.randint(0, 4)):
            piece = self.random.choice(pieces)
            shift = self.random.choice([0, 0, 0, 1, -1])
            out.append(" " * max(0, step + shift) + piece if piece.strip() else
                       self.random.choice(["", " " * step, " " * (step + 2)]))
        return out

    def document(self) -> str:
        lines: list[str] = []
        if self.random.random() < 0.1:
            lines.append(self.random.choice(["---", "--- # x", "%YAML 1.1\n---", "# top"]))
        self.block(0, 0, lines)
        text = "\n".join(lines) + self.random.choice(["\n", "", "\n\n"])
        if self.random.random() < 0.3:   # a typo
            at = self.random.randrange(len(text) + 1)
            if self.random.random() < 0.3:
                text = text[:at] + text[at + 1:]
            else:
                text = text[:at] + self.random.choice(
                    [" ", ":", "-", "\n", "#", "'", '"', "  ", "\n  ", "{", "]", "\t"]) + text[at:]
        return text


def test_literal_blocks_keep_their_lines() -> None:
    text = ("slots: {hero: {}}\nrules:\n  - name: a\n    then:\n      hero: |\n"
            "        <h1>Hi</h1>\n\n          <p>{{ geo.city }}</p>\n"
            "        # text, not a comment\n\n  - name: b\n    then: {hero: |-\n}\n")
    assert quick_yaml.read(text) is None   # `|-` inside {...}: the node reader says why
    text = text.replace("then: {hero: |-\n}", "then:\n      hero: |-\n        x\n\n")
    quick = quick_yaml.read(text)
    assert isinstance(quick, tuple)
    data, marks = quick
    assert data["rules"][0]["then"]["hero"] == \
        "<h1>Hi</h1>\n\n  <p>{{ geo.city }}</p>\n# text, not a comment\n"
    assert data["rules"][1]["then"]["hero"] == "x"
    assert marks[("rules", 0, "then", "hero")] == (5, 13)
    assert marks[("rules", 1, "name")] == (11, 11)
    assert same_as_node_reader(text)


def test_a_repeated_key_is_named_where_it_is_written_again() -> None:
    text = "rules:\n  - name: a\n    when: {geo.country: DE, geo.country: FR}\n    when: {}\n"
    assert quick_yaml.read(text) == quick_yaml.Repeated("geo.country", 3, 29)
    assert same_as_node_reader(text)
    assert quick_yaml.read("a: [1, 2\nb: 1\nb: 2\n") is None   # YAML refuses it first


@pytest.mark.parametrize("seed", range(4))
def test_random_documents_read_the_same_or_are_declined(seed: int) -> None:
    documents = _Documents(seed)
    read = sum(same_as_node_reader(documents.document()) for _ in range(600))
    assert read > 100   # most documents it reads; the rest, with odd shapes, it declines
