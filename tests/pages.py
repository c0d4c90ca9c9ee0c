"""Checks every page of ``digest serve`` passes: it parses as HTML5 without
a single parse error (html5lib, the WHATWG parsing algorithm browsers use),
and every form control a person fills in has a label (WCAG 2.2 SC 1.3.1 and
3.3.2): a ``<label for>`` naming its id, or a ``<label>`` around it."""

from __future__ import annotations

import html5lib

UNLABELLED_TYPES = {"hidden", "submit", "button", "reset", "image"}


def check_page(text: str) -> list[str]:
    """The problems of page ``text``: html5lib's parse errors (with their
    line and column) and the controls without a label; empty when fine."""
    parser = html5lib.HTMLParser(tree=html5lib.getTreeBuilder("etree"), namespaceHTMLElements=False)
    root = parser.parse(text)
    problems = [f"parse error {code} at {line}:{column} {data or ''}" for (line, column), code, data in parser.errors]
    labelled_ids = {label.get("for") for label in root.iter("label") if label.get("for")}
    wrapped = {id(control) for label in root.iter("label") for control in label.iter() if control is not label}
    for control in [*root.iter("input"), *root.iter("select"), *root.iter("textarea")]:
        if control.tag == "input" and control.get("type", "text").lower() in UNLABELLED_TYPES:
            continue
        if id(control) not in wrapped and control.get("id") not in labelled_ids:
            problems.append(f"<{control.tag} name={control.get('name')!r}> has no label")
    return problems
