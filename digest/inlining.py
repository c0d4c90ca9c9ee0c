"""CSS inlining: the one function behind which the inliner sits.

Gmail and Outlook need styles in ``style=""`` attributes; a ``<style>`` block
in ``<head>`` only carries what cannot be inlined: ``@media`` rules (phones,
``prefers-color-scheme``) and state rules such as ``a:hover``. The inlined page
must mean what the stylesheet meant: every element gets the computed values a
browser gives the original page (``tests/test_inlining_browser.py`` checks it
in Chromium).

The default inliner is css-inline (maintained, Rust): it applies the cascade
(specificity, source order, ``!important`` over an existing ``style``, and
shorthand/longhand order). premailer (``inliner = "premailer"``) is still
offered; it is not cascade-true: it makes every kept ``@media``/``:hover``
rule ``!important``, so such a rule also wins where a more specific ordinary
rule should hold (5 of the 12 cascade cases of the test differ in Chromium,
``benchmarks/inliner_bench.py``), and it offers no way to tell where.

What no inliner does by itself, done here around the call:

- the rules that stay in ``<head>`` (``@media``, ``:hover``...) are kept and
  their declarations marked ``!important``, so that they beat the inlined
  values where they apply...
- ...but not where the browser would not have let them win (a media rule
  less specific than an ordinary rule on the same element): there the
  inlined value is marked ``!important`` too (an inline ``!important`` beats
  any stylesheet's). Which rule wins where is asked of css-inline itself, by
  inlining once more with the kept rules unconditional and their values
  replaced by markers;
- links and image sources are made absolute against the site's URL, except
  the per-person placeholders, ``mailto:``/``tel:`` links and in-email anchors
  (``href="#latest"`` whose target is in the email).

Limits: when two kept rules of different conditions meet on one element and
property, and only one of them beats the ordinary rule there, the other one
wins too while its condition alone holds; an at-rule nested in another
(``@supports`` inside ``@media``) is kept as written, not made ``!important``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urljoin

import tinycss2

INLINERS = ("css-inline", "premailer")

# State pseudo-classes: a rule with one of them applies only sometimes, so it
# cannot be inlined. Replaced by an always-true pseudo-class of the same
# specificity (0,1,0) when asking css-inline where the rule would win.
_STATE = re.compile(r":(?:hover|focus-visible|focus-within|focus|active|visited|target|checked)\b", re.IGNORECASE)
_ALWAYS = ":not(.dg-never)"
# Pseudo-elements style boxes that have no style attribute: kept as written.
_PSEUDO_ELEMENT = re.compile(r"::?(?:before|after|first-line|first-letter|placeholder|selection|marker)\b|::[a-z-]+", re.IGNORECASE)
_MARKER = "dgmark{}x"
_MARKER_VALUE = re.compile(r"^dgmark\d+x$")
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TAG = re.compile(r"""<([a-zA-Z][^\s/>]*)((?:\s+[^\s=/>]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?)*)\s*/?>""")
_STYLE_ATTR = re.compile(r"""(\sstyle=)("[^"]*"|'[^']*')""", re.IGNORECASE)
_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)
# Shorthands and the longhands they set ("border" sets border-top-width...
# but not border-collapse or border-spacing).
_NOT_SET_BY_SHORTHAND = {"border-collapse", "border-spacing", "border-image"}


def inline_css(html: str, base_url: str | None, inliner: str = "css-inline") -> str:
    """``html`` with its ``<style>`` rules copied into ``style=""``
    attributes, cascade-true (module doc); ``@media`` and state rules kept
    in one ``<style>`` at the end of ``<head>``. Style blocks inside
    comments (Outlook's ``<!--[if mso]>``) are left alone. Never fetches
    remote CSS. Relative links and image sources are made absolute against
    ``base_url`` (http(s), or None to leave them).

    ``inliner``: ``"css-inline"`` (default) or ``"premailer"``. Raises
    ``ValueError`` for another name (settings only allow those two).
    """
    if inliner == "premailer":
        out = _premailer(html)
    elif inliner == "css-inline":
        out = _cascade_true(html)
    else:
        raise ValueError(f"unknown inliner {inliner!r}: use one of {', '.join(INLINERS)}")
    return absolute_links(out, base_url) if base_url else out


# --- the stylesheet, split ---------------------------------------------------------------


@dataclass(frozen=True)
class _Split:
    """One document's CSS: ``inline`` (rules to inline), ``kept`` (for
    ``<head>``, declarations made !important), and the two probes: ``probe``
    (every rule in source order, the kept ones unconditional with marker
    values) and ``reach`` (the kept ones alone, markers, all !important)."""

    inline: str
    kept: str
    probe: str
    reach: str
    markers: int


def _split_css(css: str) -> _Split:
    inline, kept, probe, reach = [], [], [], []
    count = 0

    def marked(content: list, important: bool | None) -> str:
        nonlocal count
        parts = []
        for decl in _declarations(content):
            count += 1
            bang = decl.important if important is None else important
            parts.append(f"{decl.lower_name}: {_MARKER.format(count)}{' !important' if bang else ''}")
        return "; ".join(parts)

    def keep_rule(rule) -> None:
        """A qualified rule that only applies sometimes (in @media, or :hover)."""
        selectors = [s for s in _selectors(rule.prelude) if not _PSEUDO_ELEMENT.search(s)]
        kept.append(f"{tinycss2.serialize(rule.prelude).strip()} {{ {_important(rule.content)} }}")
        if selectors:
            joined = ", ".join(_STATE.sub(_ALWAYS, s) for s in selectors)
            probe.append(f"{joined} {{ {marked(rule.content, None)} }}")
            reach.append(f"{joined} {{ {marked(rule.content, True)} }}")

    for rule in tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True):
        if rule.type == "qualified-rule":
            plain = [s for s in _selectors(rule.prelude) if not _STATE.search(s) and not _PSEUDO_ELEMENT.search(s)]
            other = [s for s in _selectors(rule.prelude) if s not in plain]
            body = tinycss2.serialize(rule.content).strip()
            if plain:
                inline.append(f"{', '.join(plain)} {{ {body} }}")
                probe.append(inline[-1])
            if other:
                state = [s for s in other if not _PSEUDO_ELEMENT.search(s)]
                if state:
                    keep_rule(_Rule(", ".join(state), rule.content))
                for s in other:
                    if _PSEUDO_ELEMENT.search(s):
                        kept.append(f"{s} {{ {body} }}")
        elif rule.type == "at-rule" and rule.lower_at_keyword in ("media", "supports", "container") and rule.content is not None:
            inner = tinycss2.parse_rule_list(rule.content, skip_comments=True, skip_whitespace=True)
            start = len(kept)
            for sub in inner:
                if sub.type == "qualified-rule":
                    keep_rule(sub)
                elif sub.type == "at-rule":  # nested (@supports in @media): kept as written
                    kept.append(tinycss2.serialize([sub]).strip())
            block = " ".join(kept[start:])
            del kept[start:]
            kept.append(f"@{rule.at_keyword} {tinycss2.serialize(rule.prelude).strip()} {{ {block} }}")
        elif rule.type == "at-rule":  # @font-face, @import, @keyframes...: kept as written
            kept.append(tinycss2.serialize([rule]).strip())
    return _Split("\n".join(inline), "\n".join(kept), "\n".join(probe), "\n".join(reach), count)


@dataclass(frozen=True)
class _Rule:
    """A rule rebuilt from some of another's selectors."""

    text: str
    content: list

    @property
    def prelude(self) -> list:
        return tinycss2.parse_component_value_list(self.text)


def _selectors(prelude: list) -> list[str]:
    """The comma-separated selectors of a rule's prelude, as text."""
    out, current = [], []
    for token in prelude:
        if token.type == "literal" and token.value == ",":
            out.append(tinycss2.serialize(current).strip())
            current = []
        else:
            current.append(token)
    out.append(tinycss2.serialize(current).strip())
    return [s for s in out if s]


def _declarations(content: list) -> Iterable:
    return [d for d in tinycss2.parse_blocks_contents(content, skip_comments=True, skip_whitespace=True) if d.type == "declaration"]


def _important(content: list) -> str:
    """The declarations of a kept rule, each !important: inline styles would
    beat them otherwise (CSS Cascade 4 §6.1: an inline normal declaration
    beats every normal stylesheet one)."""
    return "; ".join(f"{d.lower_name}: {tinycss2.serialize(d.value).strip()} !important" for d in _declarations(content))


# --- css-inline, cascade-true -----------------------------------------------------------


@lru_cache(maxsize=1)
def _css_inline():
    import css_inline

    return css_inline.CSSInliner(load_remote_stylesheets=False, keep_style_tags=False, keep_link_tags=True)


def _cascade_true(html: str) -> str:
    comments = [(m.start(), m.end()) for m in _COMMENT.finditer(html)]
    blocks = [m for m in _STYLE_BLOCK.finditer(html) if not any(a <= m.start() < b for a, b in comments)]
    css = "\n".join(m.group(1) for m in blocks)
    split = _split_css(css)
    stripped, offset = html, 0
    for m in blocks:  # the style blocks leave; their CSS is given to css-inline apart
        stripped = stripped[: m.start() - offset] + stripped[m.end() - offset :]
        offset += m.end() - m.start()
    inliner = _css_inline()
    out = inliner.inline(_with_style(stripped, split.inline))
    if split.markers:
        probe = _styles(inliner.inline(_with_style(stripped, split.probe)))
        reach = _styles(inliner.inline(_with_style(stripped, split.reach)))
        out = _guard(out, probe, reach)
    out = _escape_brackets(_compact_styles(out))
    if split.kept:
        style = f"<style>\n{split.kept}\n</style>\n"
        head = _HEAD_END.search(out)
        out = out[: head.start()] + style + out[head.start() :] if head else style + out
    return out


def _with_style(html: str, css: str) -> str:
    style = f"<style>{css}</style>"
    head = _HEAD_END.search(html)
    return html[: head.start()] + style + html[head.start() :] if head else style + html


def _styles(html: str) -> list[dict[str, tuple[str, bool]]]:
    """Each start tag's style attribute, in document order, as property ->
    (value, important) with the last declaration of a property winning."""
    return [_parse_style(_attr_style(m.group(2))) for m in _tag_matches(html)]


def _tag_matches(html: str) -> list[re.Match[str]]:
    comments = [(m.start(), m.end()) for m in _COMMENT.finditer(html)]
    return [m for m in _TAG.finditer(html) if not any(a <= m.start() < b for a, b in comments)]


def _attr_style(attrs: str) -> str:
    match = _STYLE_ATTR.search(attrs)
    return match.group(2)[1:-1] if match else ""


def _parse_style(style: str) -> dict[str, tuple[str, bool]]:
    out: dict[str, tuple[str, bool]] = {}
    for decl in tinycss2.parse_blocks_contents(style.replace("&quot;", '"'), skip_comments=True, skip_whitespace=True):
        if decl.type == "declaration":
            out.pop(decl.lower_name, None)  # later declarations come last, as in the attribute
            out[decl.lower_name] = (tinycss2.serialize(decl.value).strip(), decl.important)
    return out


def _sets(shorthand: str, longhand: str) -> bool:
    """Whether declaring ``shorthand`` sets ``longhand`` (same name included)."""
    if shorthand == longhand:
        return True
    if longhand in _NOT_SET_BY_SHORTHAND:
        return False
    if shorthand == "border-radius":
        return longhand.startswith("border-") and longhand.endswith("-radius")
    if shorthand in ("border-color", "border-style", "border-width"):
        return longhand.startswith("border-") and longhand.endswith(shorthand.removeprefix("border"))
    return longhand.startswith(shorthand + "-") or (shorthand == "border" and longhand.startswith("border-") and not longhand.endswith("radius"))


def _decider(style: dict[str, tuple[str, bool]], prop: str) -> str | None:
    """The name of the declaration that decides ``prop`` in a style attribute."""
    found = None
    for name in style:
        if _sets(name, prop):
            found = name
    return found


def _winner(style: dict[str, tuple[str, bool]], prop: str) -> str | None:
    """The value that decides ``prop`` (the declarations are in cascade order)."""
    decider = _decider(style, prop)
    return style[decider][0] if decider else None


def _guard(html: str, probe: list[dict], reach: list[dict]) -> str:
    """Mark ``!important`` the inlined declarations that a kept rule reaches
    but would not beat in the browser, and normal those it would beat (an
    inlined stylesheet ``!important`` less specific than a kept one): see
    the module doc."""
    tags = _tag_matches(html)
    if len(tags) != len(probe) or len(tags) != len(reach):  # never expected: css-inline keeps the tree
        logging.getLogger(__name__).warning("inlining: the document changed shape between passes; kept rules unguarded")
        return html
    pieces, last = [], 0
    for match, probed, reach_style in zip(tags, probe, reach, strict=True):
        reached = {prop for prop, (value, _) in reach_style.items() if _MARKER_VALUE.match(value)}
        if not reached:
            continue
        attrs = match.group(2)
        style = _parse_style(_attr_style(attrs))
        # For each property a kept rule sets (its longhands found here too),
        # the inlined declaration deciding it must stay normal where the
        # kept rule wins, and become !important where it loses.
        beaten, holding = set(), set()
        for prop in reached:
            for longhand in {prop} | {name for name in style if _sets(prop, name)}:
                decider = _decider(style, longhand)
                if decider is not None:
                    (beaten if _MARKER_VALUE.match(_winner(probed, longhand) or "") else holding).add(decider)
        # A declaration both beaten and holding stays normal: the limit in the module doc.
        wanted = {name: name in holding - beaten for name in beaten | holding}
        changed = any(style[name][1] != important for name, important in wanted.items())
        for name, important in wanted.items():
            style[name] = (style[name][0], important)
        if changed:
            new_attrs = _STYLE_ATTR.sub(lambda m, s=style: f'{m.group(1)}"{_serialize(s)}"', attrs, count=1)
            pieces.append(html[last : match.start(2)] + new_attrs)
            last = match.end(2)
    pieces.append(html[last:])
    return "".join(pieces)


def _serialize(style: dict[str, tuple[str, bool]]) -> str:
    return ";".join(f"{name}:{value}{' !important' if important else ''}" for name, (value, important) in style.items()).replace('"', "&quot;")


def _compact_styles(html: str) -> str:
    """Style attributes written ``name:value;name:value`` (css-inline writes
    ``name: value;``): fewer bytes under Gmail's clip, same meaning."""

    def compact(match: re.Match[str]) -> str:
        raw = match.group(2)[1:-1]
        parts = [p.strip() for p in re.split(r";(?![^(]*\))", raw) if p.strip()]
        out = ";".join(re.sub(r"^([-\w]+)\s*:\s*", r"\1:", p) for p in parts)
        return f'{match.group(1)}"{out}"'

    return _STYLE_ATTR.sub(compact, html)


def _escape_brackets(html: str) -> str:
    """``<`` and ``>`` in attribute values as ``&lt;``/``&gt;``: HTML's
    serializer leaves them (valid HTML), but an escaped title in an
    ``aria-label`` must not look like a tag to a mail app's filter."""
    pieces, last = [], 0
    for match in _tag_matches(html):
        attrs = match.group(2)
        if "<" in attrs or ">" in attrs:
            pieces.append(html[last : match.start(2)] + attrs.replace("<", "&lt;").replace(">", "&gt;"))
            last = match.end(2)
    pieces.append(html[last:])
    return "".join(pieces)


# --- premailer ----------------------------------------------------------------------------


def _premailer(html: str) -> str:
    from premailer import Premailer  # imported here: cssutils is slow to import

    logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)
    inliner = Premailer(
        allow_network=False,
        disable_validation=True,
        strip_important=False,  # keeps the !important premailer adds to the @media rules it leaves
        cssutils_logging_level=logging.CRITICAL,
        remove_classes=False,
        # The templates set img/table width and height attributes themselves; premailer
        # would otherwise copy CSS widths into them (width="100%" on an <img>).
        disable_basic_attributes=["width", "height"],
    )
    return inliner.transform(html)


# --- links ----------------------------------------------------------------------------------

_LINK_ATTR = re.compile(r"""(<(?:a|area|img)\b[^>]*?\s(?:href|src)=)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_ID_ATTR = re.compile(r"""\s(?:id|name)=["']([^"']+)["']""", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def absolute_links(html: str, base_url: str) -> str:
    """Relative ``href``/``src`` values of links and images resolved against
    ``base_url`` (RFC 3986 §5). Left as they are: placeholders, values with a
    scheme (``https:``, ``mailto:``, ``tel:``) and ``#fragment`` links whose
    target (an ``id`` or ``name``) is in ``html``: an in-email anchor must
    not send the reader to the web."""
    targets = set(_ID_ATTR.findall(html))

    def resolve(match: re.Match[str]) -> str:
        value = match.group(3)
        stripped = value.strip()
        # A placeholder is %%...%% (digest.personalization); no relative URL starts with "%%".
        if not stripped or stripped.startswith("%%") or _SCHEME.match(stripped):
            return match.group(0)
        if stripped.startswith("#") and stripped[1:] in targets:
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{urljoin(base_url, stripped)}{match.group(2)}"

    return _LINK_ATTR.sub(resolve, html)
