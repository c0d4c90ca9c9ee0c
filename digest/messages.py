"""Messages: one rendered variant + one recipient -> a MIME message.

Built with the standard library's :mod:`email` package: a
``multipart/alternative`` with ``text/plain`` first and ``text/html`` last
(RFC 2046 §5.1.4: the last part is the preferred one), UTF-8, and the headers
bulk mail needs to be accepted by Gmail and Yahoo (one-click List-Unsubscribe,
RFC 2369 and RFC 8058). Non-ASCII names and subjects are encoded by the
library (RFC 2047).
"""

from __future__ import annotations

import binascii
import re
from datetime import UTC, datetime
from email import policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import make_msgid
from functools import lru_cache
from urllib.parse import urlsplit

from digest.errors import DigestError
from digest.recipients import Recipient
from digest.rendering import RenderedVariant, personalize
from digest.settings import Settings

MAX_LINE_OCTETS = 998  # RFC 5322 §2.1.1, without the CRLF
# Header lines fold at 76 characters: under RFC 5322's 78, and the email
# package then makes no encoded-word longer than RFC 2047's 75. Values set
# raw (a pre-folded List-Unsubscribe) are written as they are.
HEADER_POLICY = policy.SMTP.clone(max_line_length=76, refold_source="none")


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


def _set_address(message: EmailMessage, header: str, name: str, email: str) -> None:
    """Set ``header`` of ``message`` to ``name <email>`` (checked by
    :func:`_address`). A display name holding ``=?`` would be decoded by
    mail apps as an RFC 2047 encoded-word the email package writes as it
    is (``=?utf-8?q?evil?=`` shows as ``evil``): such a name is encoded
    whole here (RFC 2047 §5(3), encoded-words in a phrase), so that it
    shows literally."""
    address = _address(header, name, email)
    if "=?" not in name:
        message[header] = address
        return
    phrase = Header(name, "utf-8", maxlinelen=HEADER_POLICY.max_line_length, header_name=header).encode(linesep="\r\n")
    last = phrase.rpartition("\n")[2]
    fold = " " if len(f"{header}: {last} <{address.addr_spec}>") <= HEADER_POLICY.max_line_length else "\r\n "
    message.set_raw(header, f"{phrase}{fold}<{address.addr_spec}>")  # folded here, never refolded (HEADER_POLICY)


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


def list_headers(recipient: Recipient, settings: Settings) -> dict[str, str]:
    """Every list header of ``recipient``'s message, for the MIME message and
    for SendGrid's personalization alike: :func:`list_unsubscribe_headers`
    and ``List-Id`` (RFC 2919), each value on one line; none for a
    transactional message (no unsubscribe link: a sign-up confirmation)."""
    if not recipient.unsubscribe_url:
        return {}
    return {
        **list_unsubscribe_headers(recipient),
        "List-Id": _checked("List-Id", list_id(settings, recipient.list_name)),
    }


def list_id(settings: Settings, list_name: str) -> str:
    """``List-Id`` (RFC 2919): the site name and ``<list.host>``, where
    ``list`` is the subscriber list's name made a DNS label."""
    return _list_id(settings.site_name, settings.site_url, settings.sender_email, list_name)


@lru_cache(maxsize=256)
def _list_id(site_name: str, site_url: str, sender_email: str, list_name: str) -> str:
    # The same few values for every recipient of a send.
    host = urlsplit(site_url).hostname or urlsplit(f"//{sender_email.split('@')[-1]}").hostname
    label = re.sub(r"[^a-z0-9-]+", "-", list_name.lower()).strip("-") or "digest"
    return f"{site_name} <{label}.{host}>"


def _transfer_encoding(body: str, eight_bit: bool) -> str:
    """``7bit`` for ASCII whose lines all fit in 998 octets (RFC 5322
    §2.1.1); ``8bit`` for such UTF-8 text when the server said 8BITMIME
    (RFC 6152), so the HTML travels at its own size; quoted-printable
    otherwise (RFC 2045 §6.7): a server that never offered 8BITMIME, a
    dry run's ``.eml`` (any program may read it), or lines too long."""
    if any(len(line.encode("utf-8")) > MAX_LINE_OCTETS for line in body.splitlines()):
        return "quoted-printable"
    if body.isascii():
        return "7bit"
    return "8bit" if eight_bit else "quoted-printable"


def _fold_uris(name: str, value: str) -> str:
    """A List-Unsubscribe value folded between its URIs when the header does
    not fit on one line (RFC 2369 §2 allows whitespace there). A URI itself
    is never broken, nor made an RFC 2047 encoded-word, which mail apps would
    not read as a URI: a line holding the name and one long URI cannot be
    folded shorter, so it stays as it is (RFC 5322 §2.1.1 allows up to 998)."""
    limit = HEADER_POLICY.max_line_length
    if len(f"{name}: {value}") <= limit:
        return value
    uris = [part.strip() for part in re.split(r">\s*,\s*<", value)]  # split between URIs: a comma inside one stays
    folded = ">,\r\n <".join(uris)
    first = folded.split("\r\n")[0]
    # Fold after the colon too when that brings the first URI under the limit.
    return "\r\n " + folded if len(f"{name}: {first}") > limit >= len(f" {first}") else folded


def build_message(
    rendered: RenderedVariant,
    recipient: Recipient,
    settings: Settings,
    *,
    issue_key: str,
    message_id_domain: str | None = None,
    date: datetime | None = None,
    eight_bit: bool = False,
) -> EmailMessage:
    """The message ``recipient`` gets for ``rendered`` (personalized).

    Headers: From (``sender_name <sender_email>``), To, Subject, Date
    (``date``, default now, in UTC), Message-ID (``make_msgid`` on
    ``message_id_domain``, default the sender's domain), Reply-To when set,
    List-Unsubscribe and List-Unsubscribe-Post (RFC 2369, RFC 8058), List-Id
    (RFC 2919), ``Precedence: bulk`` (keeps vacation auto-replies away, RFC
    3834 §2) and ``X-Digest-Issue``. Serializes with CRLF line ends
    (``email.policy.SMTP``), headers folded at 76 (RFC 5322 §2.1.1: 78 where
    foldable; RFC 2047 §2: encoded-words of at most 75). Text parts are
    7bit, or 8bit only when ``eight_bit`` (the SMTP server offered
    8BITMIME), else quoted-printable. A recipient without an unsubscribe
    link gets a transactional message, without the list headers. Raises
    :class:`HeaderError` when a header value holds CR or LF or an address is
    unusable.
    """
    html, text = personalize(rendered, recipient)
    message = EmailMessage(policy=HEADER_POLICY)
    _set_address(message, "From", settings.sender_name, str(settings.sender_email))
    # The email package quotes a name with commas or quotes ("Doe, Zoë"), or
    # encodes it (RFC 2047), as _set_address does one holding "=?"; SendGrid's
    # ban on , and ; is SendGrid's alone.
    _set_address(message, "To", recipient.name, recipient.email)
    subject = _checked("Subject", rendered.subject)
    if subject.isascii():
        message["Subject"] = subject
    else:
        # The email package's own folder can drop a space between two
        # encoded-words ("Kürbis Kürbis" came back "KürbisKürbis"); the
        # legacy Header class encodes the spaces inside them (RFC 2047 §5(1)).
        message.set_raw("Subject", Header(subject, "utf-8", maxlinelen=HEADER_POLICY.max_line_length, header_name="Subject").encode(linesep="\r\n"))
    message["Date"] = date or datetime.now(UTC)
    domain = message_id_domain or str(settings.sender_email).rpartition("@")[2]
    message["Message-ID"] = make_msgid(domain=_checked("Message-ID", domain))
    if settings.reply_to_parts:
        name, email = settings.reply_to_parts
        _set_address(message, "Reply-To", name, email)
    for name, value in list_headers(recipient, settings).items():
        if name == "List-Unsubscribe":
            message.set_raw(name, _fold_uris(name, value))  # folded here, never refolded (HEADER_POLICY)
        else:
            message[name] = value
    if recipient.unsubscribe_url:  # list mail; a transactional message (a sign-up confirmation) is not
        message["Precedence"] = "bulk"
    message["X-Digest-Issue"] = _checked("X-Digest-Issue", issue_key)
    message["MIME-Version"] = "1.0"
    message.make_alternative()
    message.attach(_text_part(text, "plain", eight_bit))
    message.attach(_text_part(html, "html", eight_bit))
    return message


def _text_part(body: str, subtype: str, eight_bit: bool) -> MIMEPart:
    """A UTF-8 ``text/<subtype>`` part in the encoding :func:`_transfer_encoding`
    picks. Quoted-printable is made by ``binascii.b2a_qp`` (C, RFC 2045 §6.7:
    lines of at most 76, ``=`` and bytes over 127 escaped, trailing spaces
    too): the email package's own encoder is pure Python, and took most of
    the time of every message of a dry run."""
    part = MIMEPart(policy=HEADER_POLICY)
    cte = _transfer_encoding(body, eight_bit)
    if cte != "quoted-printable":
        part.set_content(body, subtype=subtype, charset="utf-8", cte=cte)
        return part
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = cte
    part.set_payload(binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii"))
    return part
