"""Messages: one rendered variant + one recipient -> a MIME message.

Built with the standard library's :mod:`email` package: a
``multipart/alternative`` with ``text/plain`` first and ``text/html`` last
(RFC 2046 §5.1.4: the last part is the preferred one), UTF-8, and the headers
bulk mail needs to be accepted by Gmail and Yahoo (one-click List-Unsubscribe,
RFC 2369 and RFC 8058). Non-ASCII names and subjects are encoded by the
library (RFC 2047).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import urlsplit

from digest.errors import DigestError
from digest.recipients import Recipient
from digest.rendering import RenderedVariant, personalize
from digest.settings import Settings

MAX_LINE_OCTETS = 998  # RFC 5322 §2.1.1, without the CRLF


class HeaderError(DigestError):
    """A header value would contain CR or LF (header injection) or is not a
    usable address. The message names the header."""


def _checked(header: str, value: str) -> str:
    # RFC 5322 §2.2: a header field is one line; CR/LF in a value would start a new header.
    if "\r" in value or "\n" in value:
        raise HeaderError(f"the {header} header may not contain a line break (CR or LF): {value!r}")
    return value


def _address(header: str, name: str, email: str) -> Address:
    _checked(header, name)
    _checked(header, email)
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        raise HeaderError(f"the {header} header needs an address like name@example.org, not {email!r}")
    try:
        return Address(display_name=name, username=local, domain=domain)
    except (ValueError, IndexError) as exc:  # the email package rejects malformed parts
        raise HeaderError(f"the {header} header cannot hold {email!r}: {exc}") from None


def list_unsubscribe_headers(recipient: Recipient) -> dict[str, str]:
    """``List-Unsubscribe`` (the https one-click URL, then the mailto if any,
    each in angle brackets: RFC 2369 §2) and ``List-Unsubscribe-Post:
    List-Unsubscribe=One-Click`` (RFC 8058 §3.1), as a header -> value dict;
    empty for a transactional message (a sign-up confirmation: the recipient
    is on no list yet, and has no unsubscribe link). Raises
    :class:`HeaderError` for CR/LF in a URL."""
    if not recipient.unsubscribe_url:
        return {}
    uris = [_checked("List-Unsubscribe", recipient.unsubscribe_url)]
    if recipient.unsubscribe_mailto:
        uris.append(_checked("List-Unsubscribe", recipient.unsubscribe_mailto))
    return {
        "List-Unsubscribe": ", ".join(f"<{uri}>" for uri in uris),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def list_id(settings: Settings, list_name: str) -> str:
    """``List-Id`` (RFC 2919): the site name and ``<list.host>``, where
    ``list`` is the subscriber list's name made a DNS label."""
    host = urlsplit(settings.site_url).hostname or urlsplit(f"//{settings.sender_email.split('@')[-1]}").hostname
    label = re.sub(r"[^a-z0-9-]+", "-", list_name.lower()).strip("-") or "digest"
    return f"{settings.site_name} <{label}.{host}>"


def _transfer_encoding(body: str) -> str | None:
    """``8bit`` (or ``7bit`` when ASCII) for a body whose lines all fit in
    998 octets, so the HTML travels at its own size: Gmail's ~102 KB clip
    counts the message as received, and quoted-printable would add a third
    (``=`` becomes ``=3D``). None (the library picks quoted-printable or
    base64) for longer lines. Every SMTP server of our time offers 8BITMIME
    (RFC 6152)."""
    if any(len(line.encode("utf-8")) > MAX_LINE_OCTETS for line in body.splitlines()):
        return None
    return "7bit" if body.isascii() else "8bit"


def build_message(
    rendered: RenderedVariant,
    recipient: Recipient,
    settings: Settings,
    *,
    issue_key: str,
    message_id_domain: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """The message ``recipient`` gets for ``rendered`` (personalized).

    Headers: From (``sender_name <sender_email>``), To, Subject, Date
    (``date``, default now, in UTC), Message-ID (``make_msgid`` on
    ``message_id_domain``, default the sender's domain), Reply-To when set,
    List-Unsubscribe and List-Unsubscribe-Post (RFC 2369, RFC 8058), List-Id
    (RFC 2919), ``Precedence: bulk`` (keeps vacation auto-replies away, RFC
    3834 §2) and ``X-Digest-Issue``; a recipient without an unsubscribe link
    gets a transactional message, without the list headers. Serializes with CRLF line ends
    (``email.policy.SMTP``). Raises :class:`HeaderError` when a header value
    holds CR or LF or an address is unusable.
    """
    html, text = personalize(rendered, recipient)
    # Lines up to 998 (RFC 5322 §2.1.1): at 78 the library turns the long
    # List-Unsubscribe URL into RFC 2047 encoded words, which RFC 2369 URIs
    # must not be (mail clients then show no unsubscribe button).
    message = EmailMessage(policy=policy.SMTP.clone(max_line_length=998))
    message["From"] = _address("From", settings.sender_name, str(settings.sender_email))
    message["To"] = _address("To", recipient.name, recipient.email)
    message["Subject"] = _checked("Subject", rendered.subject)
    message["Date"] = date or datetime.now(UTC)
    domain = message_id_domain or str(settings.sender_email).rpartition("@")[2]
    message["Message-ID"] = make_msgid(domain=_checked("Message-ID", domain))
    if settings.reply_to:
        message["Reply-To"] = _address("Reply-To", "", str(settings.reply_to))
    for name, value in list_unsubscribe_headers(recipient).items():
        message[name] = value
    if recipient.unsubscribe_url:  # list mail; a transactional message (no unsubscribe link) is not
        message["List-Id"] = _checked("List-Id", list_id(settings, recipient.list_name))
        message["Precedence"] = "bulk"
    message["X-Digest-Issue"] = _checked("X-Digest-Issue", issue_key)
    message.set_content(text, subtype="plain", charset="utf-8", cte=_transfer_encoding(text))
    message.add_alternative(html, subtype="html", charset="utf-8", cte=_transfer_encoding(html))
    return message
