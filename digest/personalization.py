"""Personalization: the per-person values of a message (name, address,
unsubscribe and preferences links) and the placeholders that stand for them.

A variant is rendered once with placeholders in place of the per-person
values; each message fills them in (the outbox and SMTP here, SendGrid
through its substitutions).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from markupsafe import escape

from digest.recipients import Recipient

PERSON_FIELDS = ("name", "email", "unsubscribe_url", "preferences_url")
HTML_PLACEHOLDERS = {name: f"%%digest.html.{name}%%" for name in PERSON_FIELDS}
TEXT_PLACEHOLDERS = {name: f"%%digest.text.{name}%%" for name in PERSON_FIELDS}
_HTML_PLACEHOLDER = re.compile(r"%%digest\.html\.([a-z_]+)%%")
_TEXT_PLACEHOLDER = re.compile(r"%%digest\.text\.([a-z_]+)%%")


def fill_placeholders(html: str, text: str, recipient: Recipient) -> tuple[str, str]:
    """(html, text) with ``recipient``'s values in place of the placeholders
    (HTML-escaped in the HTML, as-is in the text). One pass per part, so a
    value that looks like a placeholder is never expanded again."""
    values = person_values(recipient)
    escaped = {name: str(escape(value)) for name, value in values.items()}

    def fill(table: dict[str, str]) -> Callable[[re.Match[str]], str]:
        return lambda match: table.get(match[1], match[0])

    return _HTML_PLACEHOLDER.sub(fill(escaped), html), _TEXT_PLACEHOLDER.sub(fill(values), text)


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


def substitutions(recipient: Recipient) -> dict[str, str]:
    """SendGrid substitutions for ``recipient``: placeholder -> value, for
    both parts (the HTML ones escaped). SendGrid's limit is 10,000 bytes of
    substitutions per personalization (Mail Send "Limitations")."""
    values = person_values(recipient)
    table = {HTML_PLACEHOLDERS[name]: str(escape(value)) for name, value in values.items()}
    table.update({TEXT_PLACEHOLDERS[name]: value for name, value in values.items()})
    return table
