"""Inlining keeps the cascade: each page below is loaded twice in headless
Chromium, as written and as ``inline_css`` leaves it, and getComputedStyle of
every element must be the same, property by property: on a desktop, on a
phone (the @media rules apply), in dark mode (prefers-color-scheme) and with
the pointer over each link or hover target (:hover). The stylesheets are our
own, each written for one hard case of the cascade; the packaged templates
are checked the same way."""

from __future__ import annotations

import pytest
from rendering_samples import article, issue

from digest import rendering
from digest.errors import DigestError
from digest.inlining import inline_css

try:
    from playwright.sync_api import sync_playwright

    from digest.preview import CHROMIUM_ARGS, find_chromium

    CHROMIUM = find_chromium()
except (ImportError, DigestError) as exc:
    pytest.skip(f"headless Chromium is not available: {exc}", allow_module_level=True)

# Every element of the page (not <head>'s), with every computed property.
STYLES_OF = """(elements) => elements.map(e => { const cs = getComputedStyle(e); const out = {};
  for (const p of cs) out[p] = cs.getPropertyValue(p);
  return [e.tagName + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : ''), out]; })"""
COMPUTED = f"() => ({STYLES_OF})(Array.from(document.body.querySelectorAll('*')).concat([document.documentElement, document.body]))"
# The hovered element and what it holds: all that :hover can change here.
HOVER_COMPUTED = f"(e) => ({STYLES_OF})([e, ...e.querySelectorAll('*')])"
HOVERED = "a, .hover"

PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><style>{css}</style></head><body>{body}</body></html>"""

CASES = {
    "stylesheet !important beats an inline value": (
        "img.hero { width: 100% !important; height: auto } img { width: 50px; border: 3px solid red }",
        '<div style="width:300px"><img class="hero" style="width:640px;border:0" src="https://x.invalid/a.png" alt="a"></div>',
    ),
    "an inline !important beats a stylesheet !important": (
        ".note { color: #123456 !important; margin: 4px !important } #n { color: #abcdef !important }",
        '<p class="note" id="n" style="color:#ff0000 !important;margin-left:9px">note</p>',
    ),
    "a more specific shorthand beats a later, less specific longhand": (
        "td.cell { padding: 20px } .last { padding-right: 0 } .first { padding: 1px 2px 3px 4px } td.cell.first { padding-left: 30px }",
        '<table><tr><td class="cell last">a</td><td class="cell first">b</td><td class="first cell">c</td></tr></table>',
    ),
    "a later longhand beats an earlier shorthand of the same specificity, and the reverse": (
        ".a { margin: 10px } .b { margin-top: 1px } .c { border-top: 2px dashed blue } .d { border: 1px solid green }",
        '<div class="a b">ab</div><div class="b a">ba</div><div class="c d">cd</div><div class="d c">dc</div>',
    ),
    "specificity, then source order": (
        "p { color: red } .x { color: blue } p { color: green } #only { color: purple } p.x { font-weight: bold } .x { font-weight: normal }"
        " div p { font-size: 20px } p { font-size: 12px } body div > p.x { letter-spacing: 2px } .x { letter-spacing: 0 }",
        '<div><p class="x">x</p><p>plain</p><p class="x" id="only">only</p></div>',
    ),
    "inherited properties come from the parent, not copied": (
        ".card { color: #1f2933; font-family: Georgia, serif; font-size: 18px; line-height: 1.5 } .card em { color: inherit; font-weight: bold }"
        " .muted { color: #888 } span { font-size: inherit }",
        '<div class="card"><p>text <em>em</em> <span>span</span></p><p class="muted">muted <em>em</em></p><table><tr><td>cell</td></tr></table></div>',
    ),
    "structural pseudo-classes and attribute selectors are inlined": (
        "li:first-child { color: red } li:nth-child(2n) { color: blue } li:not(.skip) { margin-left: 3px } [lang] { font-style: italic } a[href^='mailto'] { color: green }",
        '<ul><li>1</li><li class="skip">2</li><li>3</li><li lang="fr">4</li></ul><a href="mailto:a@example.org">mail</a>',
    ),
    "a phone @media rule wins where the browser lets it, and loses to a more specific rule": (
        ".cell { padding: 0 24px; font-size: 16px } td.cell.tight { padding-left: 2px } p { margin: 10px }"
        " @media screen and (max-width: 620px) { .cell { padding-left: 16px; padding-right: 16px } p { margin: 0 } .big { font-size: 30px } }",
        '<table><tr><td class="cell">a</td><td class="cell tight">b</td><td class="cell big">c</td></tr></table><p>p</p><p style="margin:5px">inline</p>',
    ),
    "an @media shorthand against a more specific longhand": (
        "div.box.wide { margin-left: 40px } .box { margin: 8px } @media (max-width: 620px) { .box { margin: 1px } }",
        '<div class="box">box</div><div class="box wide">wide</div>',
    ),
    "important rules inside @media and out": (
        ".t { color: red !important } .u { color: olive } @media (max-width: 620px) { .t { color: blue } .u { color: teal !important } p.t { color: navy !important } }",
        '<p class="t">t</p><span class="t">t</span><p class="u">u</p>',
    ),
    "dark mode rules win over the inlined colours, except where a more specific rule holds": (
        "body { background-color: #fff; color: #111 } .title a { color: #2456c2 } a { color: #00e } .brand { color: #c00 }"
        " @media (prefers-color-scheme: dark) { body { background-color: #000; color: #eee } a { color: #8ab4f8 } .brand { color: #f88 } }",
        '<h2 class="title"><a href="https://example.org/">title</a></h2><p><a href="https://example.org/x">link</a> <a class="brand" href="https://example.org/b">brand</a></p>',
    ),
    ":hover wins on hover, and loses to a more specific rule": (
        "a { color: blue; text-decoration: none } a:hover { color: red; text-decoration: underline } .nav a { color: green }"
        " .hover { background-color: #eee } .hover:hover { background-color: #333 } a.btn, a.btn:hover { border: 1px solid black }",
        '<a href="https://example.org/1">plain</a><div class="nav"><a href="https://example.org/2">nav</a></div>'
        '<div class="hover">box</div><a class="btn" href="https://example.org/3">btn</a>',
    ),
}


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module, and pages opened once per situation
    (opening a page costs more than loading one): ``browser[(width,
    scheme)]`` is a pair of pages, one for each version of a page."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        pages = {}
        for width, scheme in SITUATIONS:
            pair = []
            for _ in range(2):
                page = launched.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
                page.route("**/*", lambda route: route.abort())
                pair.append(page)
            pages[width, scheme] = pair
        yield pages
        launched.close()


SITUATIONS = ((800, "light"), (375, "light"), (800, "dark"))  # desktop; phone (@media max-width); dark mode


def differences(browser, original: str, inlined: str) -> list[str]:
    """Where the two pages' computed styles differ: on a desktop, a phone, in
    dark mode, and hovering each link or hover target (on the desktop)."""
    found = []
    for situation in SITUATIONS:
        pages = browser[situation]
        for page, html in zip(pages, (original, inlined), strict=True):
            page.set_content(html, wait_until="load")
        found += _compare(*(page.evaluate(COMPUTED) for page in pages), f"{situation[0]}px {situation[1]}")
    pages = browser[SITUATIONS[0]]
    count = pages[0].locator(HOVERED).count()
    assert pages[1].locator(HOVERED).count() == count
    for index in range(count):
        styles = []
        for page in pages:
            target = page.locator(HOVERED).nth(index)
            target.hover()
            styles.append(target.evaluate(HOVER_COMPUTED))
        found += _compare(styles[0], styles[1], f"hovering {HOVERED} #{index}")
    return found


def _compare(before: list, after: list, situation: str) -> list[str]:
    assert [tag for tag, _ in before] == [tag for tag, _ in after], f"{situation}: the elements differ"
    return [
        f"{situation}: {tag} {prop}: {styles[prop]!r} became {other.get(prop)!r}"
        for (tag, styles), (_, other) in zip(before, after, strict=True)
        for prop in styles
        if styles[prop] != other.get(prop)
    ]


@pytest.mark.parametrize("case", list(CASES))
def test_inlining_keeps_every_computed_style(browser, case):
    css, body = CASES[case]
    original = PAGE.format(css=css, body=body)
    inlined = inline_css(original, None)
    assert "<style>" not in inlined or "@media" in inlined or ":hover" in inlined  # only what cannot be inlined stays
    assert differences(browser, original, inlined) == []


def test_the_packaged_templates_keep_every_computed_style(browser, settings_for, monkeypatch):
    pages = []
    original_inline = rendering.inline_css
    monkeypatch.setattr(rendering, "inline_css", lambda html, *args: pages.append(html) or original_inline(html, *args))
    settings = settings_for(
        sections=["python", "privacy"], articles_per_section=2, postal_address="1 Lane, Springfield",
        logo_url="https://gazette.example.org/logo.png", logo_dark_url="https://gazette.example.org/logo-dark.png",
    )
    items = [article(n, image=f"https://gazette.example.org/images/{n}.jpg" if n % 2 else None) for n in range(8)]
    rendered = rendering.render_variant(items, issue("A **note** with [a link](https://example.org/)."), settings, variant_key="v")
    assert len(pages) == 1
    assert differences(browser, pages[0], rendered.html) == []


def test_the_comparison_sees_an_inliner_that_breaks_the_cascade(browser):
    """premailer (still offered by the 'inliner' setting) makes every kept
    @media rule win, also where a more specific rule holds: the comparison
    must see it, or its zero differences above would mean nothing."""
    pytest.importorskip("premailer")
    css, body = CASES["a phone @media rule wins where the browser lets it, and loses to a more specific rule"]
    page = PAGE.format(css=css, body=body)
    found = differences(browser, page, inline_css(page, None, "premailer"))
    assert any(line.startswith("375px light: TD.cell tight padding-left") for line in found), found
