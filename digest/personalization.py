"""Personalization: the per-person values of a message (name, address,
unsubscribe and preferences links) and the placeholders that stand for them.

A variant is rendered once with placeholders in place of the per-person
values; each message fills them in (the outbox and SMTP here, SendGrid
through its substitutions).

The two links (unsubscribe and preferences) have one placeholder for both
parts, ``%%digest.link.<field>.<nonce>%%``, and so one SendGrid
substitution each: they are https URLs of our own making that HTML
escaping leaves as they are (:func:`digest.unsubscribe.public_base`
refuses a base with ``&<>"'``; tokens are base64url and dots), which
:func:`fill_placeholders` and :func:`substitutions` check.

Every render draws a fresh random nonce (64 bits, :func:`new_nonce`) that
is part of each placeholder (``%%digest.html.email.<nonce>%%``). Content
(a feed's title, link, image URL; a post's body) is read before the nonce
exists, so it can never spell a placeholder: text that looks like one stays
as written in every part, the subject and the headers, for the outbox and
SMTP as for SendGrid's substitutions (which apply to the whole message).
Otherwise a feed could put ``%%digest.html.unsubscribe_url%%`` in a remote
image's URL and collect every reader's address and token when they open
the email.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from functools import lru_cache

from markupsafe import escape

from digest.recipients import Recipient

PERSON_FIELDS = ("name", "email", "unsubscribe_url", "preferences_url")
LINK_FIELDS = ("unsubscribe_url", "preferences_url")  # one placeholder for both parts (see above)
_NONCE = re.compile(r"[0-9a-f]{16}")


def new_nonce() -> str:
    """A fresh nonce for one render: 16 hex digits from :mod:`secrets`."""
    return secrets.token_hex(8)


def _checked(nonce: str) -> str:
    # A variant without a real nonce would make placeholders content can spell.
    if not _NONCE.fullmatch(nonce):
        raise ValueError(f"not a placeholder nonce from new_nonce(): {nonce!r}")
    return nonce


@lru_cache(maxsize=64)
def _placeholders(part: str, nonce: str) -> tuple[tuple[str, str], ...]:
    # Made once per render (a send asks for them once per recipient).
    return tuple(
        (name, f"%%digest.{'link' if name in LINK_FIELDS else part}.{name}.{_checked(nonce)}%%") for name in PERSON_FIELDS
    )


def html_placeholders(nonce: str) -> dict[str, str]:
    """Field name -> its placeholder in the HTML of a render with ``nonce``."""
    return dict(_placeholders("html", nonce))


def text_placeholders(nonce: str) -> dict[str, str]:
    """Field name -> its placeholder in the text part of a render with ``nonce``."""
    return dict(_placeholders("text", nonce))


def fill_placeholders(html: str, text: str, recipient: Recipient, nonce: str) -> tuple[str, str]:
    """(html, text) with ``recipient``'s values in place of the placeholders
    of the render with ``nonce`` (HTML-escaped in the HTML, as-is in the
    text). One pass per part, so a value that looks like a placeholder is
    never expanded again; look-alikes without the nonce are left alone."""
    values = person_values(recipient)
    escaped = {name: _escaped(name, value) for name, value in values.items()}
    pattern = re.compile(r"%%digest\.(html|text|link)\.([a-z_]+)\." + re.escape(_checked(nonce)) + "%%")

    def fill(part: str, table: dict[str, str]) -> Callable[[re.Match[str]], str]:
        return lambda match: table.get(match[2], match[0]) if match[1] in (part, "link") else match[0]

    return pattern.sub(fill("html", escaped), html), pattern.sub(fill("text", values), text)


def _escaped(name: str, value: str) -> str:
    """``value`` HTML-escaped; a link must come out as it went in (one
    placeholder stands for it in both parts). Raises ValueError otherwise."""
    escaped = str(escape(value))
    if name in LINK_FIELDS and escaped != value:
        raise ValueError(f"the {name} {value!r} has characters HTML escaping changes (&<>\"'): links must not")
    return escaped


def person_values(recipient: Recipient) -> dict[str, str]:
    """The per-person values of ``recipient``, by field name (raw, not escaped).
    A recipient without a name is greeted as "there"; without a preferences
    link, the unsubscribe page (which offers the choices) stands in."""
    return {
        "name": recipient.name.strip() or "there",
        "email": recipient.email,
        "unsubscribe_url": recipient.unsubscribe_url,
        "preferences_url": recipient.preferences_url or recipient.unsubscribe_url,
    }


def substitutions(recipient: Recipient, nonce: str) -> dict[str, str]:
    """SendGrid substitutions for ``recipient`` in a render with ``nonce``:
    placeholder -> value, for both parts (the HTML ones escaped). SendGrid's
    limit is 10,000 bytes of substitutions per personalization (Mail Send
    "Limitations")."""
    values = person_values(recipient)
    table = {placeholder: _escaped(name, values[name]) for name, placeholder in _placeholders("html", nonce)}
    for name, placeholder in _placeholders("text", nonce):
        if name not in LINK_FIELDS:  # the links' one placeholder is in already
            table[placeholder] = values[name]
    return table
