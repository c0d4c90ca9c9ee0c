"""Signed unsubscribe and preferences links, one of each per recipient.

A link's token is the recipient's address and list name signed by
:mod:`digest.tokens` for its purpose: the unsubscribe link's token is
refused by ``/preferences`` and the other way round (and neither confirms
a sign-up). It cannot be forged without the secret, and since it names the
address, a token can only ever act for the address it was made for. Tokens
do not expire: an unsubscribe link must keep working long after the
message was sent (CAN-SPAM asks for at least 30 days; readers unsubscribe
from old issues too).

Links sent before tokens named their purpose (one token for both, salt
``digest.unsubscribe.v1``) keep working for unsubscribing and preferences,
and for nothing else.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from itsdangerous import BadData, Signer, base64_decode, base64_encode

from digest import tokens
from digest.errors import SettingsError, without_password
from digest.recipients import Recipient
from digest.tokens import TokenError

if TYPE_CHECKING:
    from digest.settings import Settings
    from digest.subscribers import Subscriber

LEGACY_SALT = "digest.unsubscribe.v1"  # links in mail sent before tokens named their purpose
LINK_PURPOSES = ("unsubscribe", "preferences")
LOOPBACK_NAMES = {"localhost"}
_CHANGED_BY_ESCAPING = "&<>\"'"


def make_token(settings: Settings, email: str, list_name: str, purpose: str = "unsubscribe") -> str:
    """A URL-safe token (base64url and dots) naming ``email`` (as given) and
    ``list_name``, for ``purpose`` (``unsubscribe`` or ``preferences``)."""
    return tokens.sign(settings, purpose, [email, list_name])


def read_token(settings: Settings, token: str, purpose: str = "unsubscribe") -> tuple[str, str]:
    """``(email, list_name)`` from a token made by :func:`make_token` for
    ``purpose`` (or an older link token made for both purposes).

    Raises :class:`TokenError` when the token is malformed, altered, signed
    with another secret or made for another purpose."""
    try:
        payload = tokens.verify(settings, purpose, token)
    except TokenError:
        payload = _legacy_payload(settings, token) if purpose in LINK_PURPOSES else None
        if payload is None:
            raise
    if not (isinstance(payload, list) and len(payload) == 2 and all(isinstance(p, str) for p in payload)):
        raise TokenError("this link is not valid (altered or incomplete)")
    email, list_name = payload
    return email, list_name


def _legacy_payload(settings: Settings, token: str) -> object | None:
    """The payload of a link token from before purposes (no timestamp, one
    salt for both links), or None. Must be exactly the token we would have
    made, as :func:`digest.tokens.verify` asks."""
    keys = [key.get_secret_value() for key in settings.previous_secret_keys] + [settings.secret_key.get_secret_value()]
    signer = Signer(keys, salt=LEGACY_SALT, digest_method=hashlib.sha256)
    try:
        raw = signer.unsign(token)
        if any(base64_encode(base64_decode(part)).decode() != part for part in token.split(".")):
            return None
        return json.loads(base64_decode(raw))
    except (BadData, UnicodeError, ValueError):
        return None


@lru_cache(maxsize=8)
def _checked_base(base: str) -> str:
    """``base`` (where ``digest serve`` is reachable) if it may carry tokens:
    RFC 8058 §3.1 asks for an HTTPS URI; plain http is allowed only on
    loopback, for tests and local runs. None of ``&<>"'`` either (a link is
    the same text in the HTML and the text part), no query, fragment or
    user:password (links are the base and a path), nothing but printable
    ASCII without spaces (RFC 3986). Raises :class:`SettingsError`."""
    setting = "setting 'public_url' (digest.toml, or DIGEST_PUBLIC_URL; else 'site_url')"
    shown = without_password(base)[:100]
    if not base.isascii() or any(c.isspace() or not c.isprintable() for c in base):
        raise SettingsError(
            f"{setting}: {shown!r} has spaces, control or non-ASCII characters, which links in a header "
            "may not (RFC 3986): write the host in its ASCII form (xn--...) and percent-encode the rest"
        )
    try:
        parts = urlsplit(base)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise SettingsError(f"{setting}: {shown!r} is not a URL ({exc})") from None
    if parts.query or parts.fragment or "?" in base or "#" in base or parts.username is not None:
        # Links are the base + "/unsubscribe?token=...": a query or fragment in
        # the base would swallow the path and token; a user:password would go
        # into every email.
        raise SettingsError(
            f"{setting}: {shown!r} must be a plain base URL (scheme, host, optional port and path), "
            "without ?query, #fragment or user:password@"
        )
    if unsafe := sorted(set(base) & set(_CHANGED_BY_ESCAPING)):
        # A link stands for itself in both parts of the message, HTML and text
        # (digest.personalization): it must read the same escaped and not.
        raise SettingsError(
            f"{setting}: {shown!r} has "
            f"{' '.join(unsafe)} in it, which links may not; percent-encode them (' is %27, \" is %22) or choose another URL"
        )
    if parts.scheme == "https" and parts.hostname:
        return base
    if parts.scheme == "http" and is_loopback(parts.hostname or ""):
        return base
    raise SettingsError(
        f"setting 'public_url' (digest.toml, or DIGEST_PUBLIC_URL): unsubscribe links need an https:// URL "
        f"where 'digest serve' is reachable (RFC 8058), not {shown!r}"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP address) is this machine's loopback."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_base(settings: Settings) -> str:
    """Where ``digest serve`` is reachable (``public_url``, else ``site_url``),
    without a trailing slash: the base of every link it is reached by. Raises
    :class:`SettingsError` when it is not https (loopback http excepted)."""
    return _checked_base(settings.unsubscribe_base_url)


def _link(settings: Settings, path: str, token: str) -> str:
    # Tokens are URL-safe base64 and dots: they need no quoting.
    return f"{public_base(settings)}/{path}?token={token}"


def unsubscribe_url(settings: Settings, email: str, list_name: str) -> str:
    """``{public_url or site_url}/unsubscribe?token=...`` for this address and
    list. Raises :class:`SettingsError` when the base is not https (loopback
    http excepted)."""
    return _link(settings, "unsubscribe", make_token(settings, email, list_name))


def preferences_url(settings: Settings, email: str, list_name: str) -> str:
    """``{public_url or site_url}/preferences?token=...``, same rules, with a
    preferences token."""
    return _link(settings, "preferences", make_token(settings, email, list_name, "preferences"))


def merged_lists(settings: Settings, email: str, list_name: str) -> list[str]:
    """The lists a message to ``email`` naming ``list_name`` stands for:
    ``list_name`` and, when a send reads several lists (no ``--list``, no
    ``default_list``: :func:`digest.subscribers.choose_lists`) and
    ``list_name`` is one of them, every other of those lists ``email`` is a
    member of now, in name order. Such a reader was sent one message for
    all of them (:func:`digest.subscribers.merge_rows`), so its one-click
    unsubscribe must stop that message (RFC 8058 §3.1: the mail the reader
    got), not only its first list's share, and its preferences are the
    choice of that one message. A list that cannot be read is left out."""
    from pathlib import Path

    from digest.errors import DigestError
    from digest.subscribers import choose_lists, member_of

    try:
        files = choose_lists(Path(settings.subscribers), None, settings.default_list)
    except DigestError:
        return [list_name]
    if len(files) < 2 or list_name not in {file.stem for file in files}:
        return [list_name]
    names = []
    for file in files:
        try:
            if file.stem == list_name or member_of(file, email):
                names.append(file.stem)
        except OSError:
            continue
    return names


def unsubscribe_mailto(settings: Settings) -> str | None:
    """``settings.unsubscribe_mailto`` checked to be a mailto: URI (RFC 2369
    §3.2), or None when unset."""
    value = settings.unsubscribe_mailto
    if value is None:
        return None
    if not value.startswith("mailto:") or "@" not in value or any(c in value for c in "\r\n <>"):
        raise SettingsError(
            "setting 'unsubscribe_mailto' (digest.toml, or DIGEST_UNSUBSCRIBE_MAILTO): must be a mailto: URI "
            f"such as 'mailto:unsubscribe@example.org?subject=unsubscribe', not {value!r}"
        )
    return value


def recipient_for(subscriber: Subscriber, settings: Settings) -> Recipient:
    """The :class:`Recipient` of ``subscriber``, with their signed
    unsubscribe and preferences links (each with its own purpose's token)
    and the list's mailto address."""
    return recipient_with_links(settings, subscriber.email, subscriber.name, subscriber.key, subscriber.list_name)


def recipient_with_links(settings: Settings, email: str, name: str, subscriber_id: str, list_name: str) -> Recipient:
    """The :class:`Recipient` of ``email`` on ``list_name`` (as
    :func:`recipient_for`), from the values a ledger row keeps. Both tokens
    carry the same payload, encoded once (a send makes them for every
    recipient)."""
    unsubscribe, preferences = tokens.sign_each(settings, LINK_PURPOSES, [email, list_name])
    return Recipient(
        email=email,
        name=name,
        subscriber_id=subscriber_id,
        list_name=list_name,
        unsubscribe_url=_link(settings, "unsubscribe", unsubscribe),
        preferences_url=_link(settings, "preferences", preferences),
        unsubscribe_mailto=unsubscribe_mailto(settings),
    )
