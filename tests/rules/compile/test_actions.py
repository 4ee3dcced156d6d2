"""`then` -> slot contents and page actions: what may reach a response, checked at load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_personalizer.rules.book import check_rules, load_rules

from ...factories import make_visitor
from ..test_loader import validate


def then(tmp_path: Path, actions: str) -> Path:
    (tmp_path / "r.yaml").write_text(
        f"slots: {{hero: {{}}}}\nrules:\n  - name: r\n    then: {actions}\n")
    return tmp_path


@pytest.mark.parametrize("cookies", [
    '{promo: "spring sale; Path=/evil"}',     # issue 18, bug 4
    '{promo: "a,b"}', '{promo: "say \\"hi\\""}', '{promo: "tab\\there"}',
    '{promo: "caf\\u00e9"}', '{"pro mo": x}', '{"a;b": x}', '{"a=b": x}', '{"": x}',
    '{promo: "spring\\n"}', '{"promo\\n": x}',   # a line break at the end is one too
])
def test_cookies_that_would_break_set_cookie_are_refused(tmp_path: Path, cookies: str) -> None:
    _, errors = check_rules(then(tmp_path, f"{{cookies: {cookies}}}"))
    assert len(errors) == 1 and errors[0].line == 4 and "cookies:" in errors[0].reason


def test_plain_cookies_are_set_as_written(tmp_path: Path) -> None:
    rule = load_rules(then(tmp_path, "{cookies: {promo: spring%20sale, seen: 1}}")).rules[0]
    assert rule.cookies == (("promo", "spring%20sale"), ("seen", "1"))


@pytest.mark.parametrize(("actions", "message"), [
    ("{headers: {X-A: \"caf\\u20ac\"}}", "must be one line of text"),
    ("{headers: {X-A: \"a\\u0007b\"}}", "must be one line of text"),
    ("{headers: {X-A: \"spring\\n\"}}", "must be one line of text"),   # YAML's | ends so
    ("{headers: {Set-Cookie: a}}", "'Set-Cookie' cannot be set by a rule"),
    ("{headers: {'Bad Header': a}}", "'Bad Header' is not a header name"),
    ("{headers: {X-EP-Segment: everyone}}", "'X-EP-Segment' is the product's to set"),
    ("{headers: {Surrogate-Control: max-age=3600}}", "a CDN's own cache controls"),
    ("{headers: {CDN-Cache-Control: public}}", "a CDN's own cache controls"),
    ("{headers: {X-Kw: '{{ referral.keywords }}'}}", "is sent as written: templates"),
    ("{cookies: {kw: '{{referral.keywords}}'}}", "is sent as written: templates"),
    ("{cookies: {ep_profile: gone}}", "names starting ep_ are the product's"),
    ("{redirect: \"/caf\\u20ac\"}", "must be a path"),
    ("{redirect: {to: /a, status: true}}", "redirect status is one of"),
])
def test_headers_and_redirects_that_cannot_go_out_are_refused(
        tmp_path: Path, actions: str, message: str) -> None:
    _, errors = check_rules(then(tmp_path, actions))
    assert len(errors) == 1 and message in errors[0].reason


def test_every_wrong_header_and_cookie_is_named_at_once(tmp_path: Path) -> None:
    _, errors = check_rules(then(tmp_path, "{headers: {Content-Length: '3', X-EP-A: b, "
                                           "X-Ok: fine}, cookies: {ep_x: y, 'a b': c}}"))
    assert [e.reason.split(": ", 2)[1:] for e in errors] == [
        ["headers", "'Content-Length' cannot be set by a rule"],
        ["headers", "'X-EP-A' is the product's to set (X-EP-* headers, and a CDN's own cache "
                    "controls: Cache-Control is what every cache is told)"],
        ["cookies", "'ep_x': names starting ep_ are the product's (the visitor's profile is "
                    "ep_profile); choose another"],
        ["cookies", "'a b' is not a cookie name (letters, digits and !#$%&'*+-.^_`|~; no "
                    "spaces, '=', ';' or ',')"]]
    # Each named at its name, where the fix goes.
    line = (tmp_path / "r.yaml").read_text().splitlines()[3]
    assert [line[(e.column or 0) - 1:].split(":")[0] for e in errors] == [
        "Content-Length", "X-EP-A", "ep_x", "'a b'"]


@pytest.mark.parametrize(("actions", "message"), [
    # issue 20, item 15: visitor data never lands where a browser runs it
    ("{hero: {action: set_attribute, attribute: onclick, value: '{{ request.query.x }}'}}",
     "event handler"),
    ("{hero: {action: set_attribute, attribute: style, value: 'color: {{ request.query.x }}'}}",
     "CSS"),
    ("{hero: {html: '<script>var q = \"{{ request.query.x }}\"</script>'}}", "inside <script>"),
    ("{hero: {html: '<style>a {color: {{ request.query.x }} }</style>'}}", "inside <style>"),
    ("{hero: {html: '<a onmouseover=\"go({{ request.query.x }})\">x</a>'}}", "event handler"),
    ("{hero: {html: '<a href={{ request.query.x }}>x</a>'}}", "unquoted value"),
    ("{hero: {html: '<a {{ request.query.x }}>x</a>'}}", "inside a tag"),
    ("{hero: {html: '<{{ request.query.x }}>'}}", "right after '<'"),
    ("{hero: {html: '<a href=\"javascript:{{ request.query.x }}\">x</a>'}}", "javascript: URL"),
    ("{hero: {html: '<a href=\"{{ request.query.x }}{{ request.query.y }}\">x</a>'}}",
     "two visitor fields"),
    ("{hero: {action: set_attribute, attribute: href, "
     "value: '{{ request.query.x | default: \"javascript:go()\" }}'}}", "the default"),
])
def test_visitor_fields_where_escaping_cannot_help_are_refused_at_load(
        tmp_path: Path, actions: str, message: str) -> None:
    _, errors = check_rules(then(tmp_path, actions))
    assert len(errors) == 1 and errors[0].line == 4, errors
    assert message in errors[0].reason


def test_text_variants_print_visitor_values_as_they_are(tmp_path: Path) -> None:
    # The page writer (and the fragment endpoint) escape a text variant once (issue 20,
    # item 13): the template must not escape it a first time.
    rule = load_rules(then(tmp_path, "{hero: {text: 'Hi {{ request.query.n }} & co'}}")).rules[0]
    template = rule.slots["hero"].template
    assert rule.slots["hero"].action == "text" and template is not None
    assert template.render(make_visitor(query="n=Tom+%26+Jerry")) == "Hi Tom & Jerry & co"


def test_html_variants_escape_visitor_values(tmp_path: Path) -> None:
    rule = load_rules(then(tmp_path, "{hero: {html: '<b>{{ request.query.n }}</b>'}}")).rules[0]
    template = rule.slots["hero"].template
    assert template is not None
    assert template.render(make_visitor(query="n=Tom+%26+Jerry")) == "<b>Tom &amp; Jerry</b>"


def test_injections_take_html(tmp_path: Path) -> None:
    rule = load_rules(then(tmp_path, "{head: '<meta name=x>', body_end: '<p>x</p>'}")).rules[0]
    assert {k: c.action for k, c in rule.slots.items()} == {"head": "append",
                                                             "body_end": "append"}
    _, errors = check_rules(then(tmp_path, "{head: {action: remove}}"))
    assert "head takes HTML" in errors[0].reason


def test_a_text_variant_reaches_the_page_escaped_once(tmp_path: Path) -> None:
    # issue 20, item 13: "Tom & Jerry" arrived as "Tom &amp;amp; Jerry"
    from edge_personalizer.rewrite.edits import Edit
    from edge_personalizer.rewrite.html import Rewriter

    rule = load_rules(then(tmp_path, "{hero: {text: '{{ request.query.n }} <3'}}")).rules[0]
    content = rule.slots["hero"]
    assert content.template is not None
    payload = content.template.render(make_visitor(query="n=Tom+%26+Jerry"))
    rewriter = Rewriter([Edit('[data-ep-slot="hero"]', content.action, payload)])
    page = rewriter.feed(b'<div data-ep-slot="hero">x</div>') + rewriter.finish()
    assert page == b'<div data-ep-slot="hero">Tom &amp; Jerry &lt;3</div>'


def _hero(tmp_path: Path, fragment: str = "fragments/hero.html") -> str:
    """The hero the rules show, as its template's text."""
    template = load_rules(then(tmp_path, f"{{hero: {fragment}}}")).rules[0].slots["hero"].template
    assert template is not None
    return "".join(part for part in template.parts if isinstance(part, str))


@pytest.mark.parametrize("written", ["fragments/hero.html", "{file: fragments/hero.html}"])
def test_a_mistake_inside_a_fragment_names_the_fragment(tmp_path: Path, written: str) -> None:
    # It was told at the rule, as if the rule itself held the placeholder.
    (tmp_path / "fragments").mkdir()
    (tmp_path / "fragments" / "hero.html").write_text("<p>Hi from {{ geo.cty }}</p>")
    _, errors = check_rules(then(tmp_path, f"{{hero: {written}}}"))
    assert [e.reason for e in errors] == [
        "rule 'r': fragment 'fragments/hero.html': placeholder '{{ geo.cty }}': unknown "
        "field 'geo.cty'; did you mean 'geo.city'?"]


def test_a_fragment_saved_with_a_byte_order_mark_shows_without_it(tmp_path: Path) -> None:
    (tmp_path / "fragments").mkdir()
    (tmp_path / "fragments" / "hero.html").write_bytes(b"\xef\xbb\xbf<b>caf\xc3\xa9</b>\n")
    assert _hero(tmp_path) == "<b>caf\u00e9</b>\n"


def test_a_windows_1252_fragment_is_named_at_the_line_of_its_first_bad_byte(
        tmp_path: Path) -> None:
    (tmp_path / "fragments").mkdir()
    (tmp_path / "fragments" / "hero.html").write_bytes(
        "<h1>Soldes</h1>\n<p>\u00e9t\u00e9 \u20ac</p>\n".encode("cp1252"))
    _, errors = check_rules(then(tmp_path, "{hero: fragments/hero.html}"))
    assert [(e.line, e.reason) for e in errors] == [
        (4, "rule 'r': fragment 'fragments/hero.html' cannot be read as UTF-8: byte 0xe9 at "
            "line 2, column 4 is not UTF-8 (Windows-1252 or Latin-1?); save it as UTF-8")]


@pytest.mark.parametrize("kind", ["a FIFO", "a device"])
def test_a_fragment_that_is_no_regular_file_says_so_never_read(tmp_path: Path,
                                                                kind: str) -> None:
    # A FIFO was said not to exist ("did you mean 'fragments/hero.html'?", its own name).
    (tmp_path / "fragments").mkdir()
    hero = tmp_path / "fragments" / "hero.html"
    if kind == "a FIFO":
        os.mkfifo(hero)   # (opened to read, it waits for a writer for good)
    else:
        hero.symlink_to("/dev/zero")   # (read, it never ends)
    checked = validate(then(tmp_path, "{hero: fragments/hero.html}"))
    assert checked.stdout.startswith(
        f"{tmp_path / 'r.yaml'}:4:18: rule 'r': fragment 'fragments/hero.html' cannot be "
        f"read: not a regular file ({kind})\n"), checked.stdout


def test_a_fragment_that_cannot_be_read_says_why(tmp_path: Path) -> None:
    (tmp_path / "fragments").mkdir()
    (tmp_path / "fragments" / "hero.html").write_text("<b>x</b>")
    (tmp_path / "fragments" / "hero.html").chmod(0)
    checked = validate(then(tmp_path, "{hero: fragments/hero.html}"))
    assert checked.stdout.startswith(
        f"{tmp_path / 'r.yaml'}:4:18: rule 'r': fragment 'fragments/hero.html' cannot be "
        "read: Permission denied\n"), checked.stdout


def test_a_fragment_in_a_linked_folder_outside_the_rules_directory_shows(
        tmp_path: Path) -> None:
    # A deploy that links fragments -> /srv/assets/v2: the rules see the folder as theirs.
    rules = tmp_path / "rules"
    rules.mkdir()
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "hero.html").write_text("<b>linked</b>")
    (rules / "fragments").symlink_to(tmp_path / "assets")
    assert _hero(rules) == "<b>linked</b>"
    _, errors = check_rules(then(rules, "{hero: fragments/../../assets/hero.html}"))
    assert len(errors) == 1 and "is outside the rules directory" in errors[0].reason


def test_a_fragment_larger_than_1_mib_is_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "fragments").mkdir()
    with (tmp_path / "fragments" / "hero.html").open("wb") as big:
        big.truncate(10 * 1024 * 1024)   # sparse: reading it would cost its size
    (tmp_path / "fragments" / "fits.html").write_text("<b>x</b>" * (1024 * 1024 // 8))
    _, errors = check_rules(then(tmp_path, "{hero: fragments/hero.html}"))
    assert [(e.line, e.reason) for e in errors] == [
        (4, "rule 'r': fragment 'fragments/hero.html' is larger than 1 MiB, the most a "
            "fragment may hold (it is added to every page it shows on): link large content "
            "(images, scripts) instead of inlining it")]
    assert len(_hero(tmp_path, "fragments/fits.html")) == 1024 * 1024


@pytest.mark.parametrize(("value", "reason"), [
    ("fragments/hero.htm", "no fragment file 'fragments/hero.htm' (fragments are .html files "
                           "in the rules directory; did you mean 'fragments/hero.html'?); to "
                           "show it as text, write {text: 'fragments/hero.htm'}"),
    ("fragments/../../../etc/passwd", "no fragment file 'fragments/../../../etc/passwd' "
                                      "(fragments are .html files in the rules directory); "
                                      "to show it as text, write {text: "
                                      "'fragments/../../../etc/passwd'}"),
    ("img/sale.png", "no fragment file 'img/sale.png' (fragments are .html files in the rules "
                     "directory); to show it as text, write {text: 'img/sale.png'}"),
])
def test_a_value_that_reads_as_a_path_but_names_no_fragment_is_an_error(
        tmp_path: Path, value: str, reason: str) -> None:
    (tmp_path / "fragments").mkdir()
    (tmp_path / "fragments" / "hero.html").write_text("<b>x</b>")
    _, errors = check_rules(then(tmp_path, f"{{hero: {value}}}"))
    assert [(e.line, e.reason) for e in errors] == [(4, f"rule 'r': {reason}")]


@pytest.mark.parametrize(("value", "reason"), [
    ("fragments/hero_sale.html", "fragment file 'fragments/hero_sale.html' does not exist "
                                 "(looked for {dir}/fragments/hero_sale.html); did you mean "
                                 "'fragments/hero-sale.html'?"),
    ("fragments/herosale", "no fragment file 'fragments/herosale' (fragments are .html files "
                           "in the rules directory; did you mean 'fragments/hero-sale.html'?); "
                           "to show it as text, write {{text: 'fragments/herosale'}}"),
    # A name that is no near miss is no typo: what the folder holds is listed instead (a
    # shared "hero-" start and ".html" end made hero-summer look like hero-sale).
    ("fragments/footer.html", "fragment file 'fragments/footer.html' does not exist (looked "
                              "for {dir}/fragments/footer.html); fragments/ holds "
                              "hero-sale.html"),
    ("fragments/hero-summer.html", "fragment file 'fragments/hero-summer.html' does not exist "
                                   "(looked for {dir}/fragments/hero-summer.html); fragments/ "
                                   "holds hero-sale.html"),
    # Written without its folder: the folder of the rules directory that holds it.
    ("hero-sale.html", "fragment file 'hero-sale.html' does not exist (looked for "
                       "{dir}/hero-sale.html); did you mean 'fragments/hero-sale.html'?"),
    ("../outside/hero_sale.html", "fragment '../outside/hero_sale.html' is outside the rules "
                                  "directory"),
    ("fragments/../../outside/hero_sale", "no fragment file 'fragments/../../outside/hero_sale'"
                                          " (fragments are .html files in the rules directory);"
                                          " to show it as text, write {{text: "
                                          "'fragments/../../outside/hero_sale'}}"),
    ("{html: fragments/hero-sale.html}", "html: holds inline HTML, and "
                                         "'fragments/hero-sale.html' is a file path; for a "
                                         "fragment file write {{file: "
                                         "'fragments/hero-sale.html'}}, to show the path as "
                                         "text {{text: 'fragments/hero-sale.html'}}"),
])
def test_a_misspelt_fragment_is_named_with_the_closest_one_of_its_folder(
        tmp_path: Path, value: str, reason: str) -> None:
    rules = tmp_path / "rules"
    (rules / "fragments").mkdir(parents=True)
    (rules / "fragments" / "hero-sale.html").write_text("<b>sale</b>")
    (tmp_path / "outside").mkdir()   # never searched: names outside the rules stay unsaid
    (tmp_path / "outside" / "hero-sale.html").write_text("<b>x</b>")
    _, errors = check_rules(then(rules, f"{{hero: {value}}}"))
    assert [e.reason for e in errors] == [f"rule 'r': {reason.format(dir=rules)}"]


@pytest.mark.parametrize("value", ["Hello world", "1/2.5", "and/or", "<b>a/b.png</b>",
                                   "{text: img/sale.png}",
                                   "'https://shop.example/sale.png'"])
def test_text_and_html_with_slashes_are_shown(tmp_path: Path, value: str) -> None:
    _, errors = check_rules(then(tmp_path, f"{{hero: {value}}}"))
    assert errors == []


def test_a_fragment_saved_as_utf_16_or_named_by_a_folder_is_called_so(tmp_path: Path) -> None:
    (tmp_path / "fragments" / "dir.html").mkdir(parents=True)
    (tmp_path / "fragments" / "hero.html").write_bytes("<b>x</b>".encode("utf-16"))
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}, banner: {}}\nrules:\n  - name: r\n"
        "    then: {hero: fragments/hero.html, banner: fragments/dir.html}\n")
    _, errors = check_rules(tmp_path)
    assert [e.reason for e in errors] == [
        "rule 'r': fragment 'fragments/hero.html' cannot be read as UTF-8: it is saved as "
        "UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8",
        f"rule 'r': fragment 'fragments/dir.html' is a folder, not a file "
        f"({tmp_path / 'fragments' / 'dir.html'})"]
