"""Signed unsubscribe and preferences links, one per recipient.

A token is the recipient's address and list name (JSON, base64url) signed
with itsdangerous (HMAC-SHA256 with ``settings.secret_key`` and a salt of our
own). It cannot
be forged without the secret, and since it names the address, a token can
only ever unsubscribe the address it was made for. Tokens do not expire: an
unsubscribe link must keep working long after the message was sent (CAN-SPAM
asks for at least 30 days; readers unsubscribe from old issues too).

The same token serves ``/unsubscribe`` (RFC 8058 one-click POST, and a page
with a button for GET) and ``/preferences`` of ``digest serve``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from itsdangerous import BadData, Signer, base64_decode, base64_encode

from digest.errors import DigestError, SettingsError
from digest.recipients import Recipient

if TYPE_CHECKING:
    from digest.settings import Settings
    from digest.subscribers import Subscriber

SALT = "digest.unsubscribe.v1"
LOOPBACK_NAMES = {"localhost"}


class TokenError(DigestError):
    """An unsubscribe or preferences token that is malformed or not signed
    with our secret (forged, altered, or made with another secret)."""


@lru_cache(maxsize=4)
def _signer(secret: str) -> Signer:
    # A Signer over our own compact payload rather than URLSafeSerializer:
    # the same HMAC, a quarter of the cost (no zlib attempt per token), which
    # counts at 100,000 recipients.
    return Signer(secret, salt=SALT, digest_method=hashlib.sha256)


def make_token(settings: Settings, email: str, list_name: str) -> str:
    """A URL-safe token (base64url and dots) naming ``email`` (as given) and
    ``list_name``."""
    payload = json.dumps([email, list_name], ensure_ascii=False, separators=(",", ":")).encode()
    return _signer(settings.secret_key.get_secret_value()).sign(base64_encode(payload)).decode("ascii")


def read_token(settings: Settings, token: str) -> tuple[str, str]:
    """``(email, list_name)`` from a token made by :func:`make_token`.

    Raises :class:`TokenError` when the token is malformed or its signature
    does not match. A token must also be exactly the one we would make for
    its payload: base64 lets the last character of a signature change in
    its unused low bits and still decode to the same bytes, and we want any
    altered character to be refused."""
    invalid = TokenError("this unsubscribe link is not valid (altered or incomplete)")
    try:
        payload = json.loads(base64_decode(_signer(settings.secret_key.get_secret_value()).unsign(token)))
    except (BadData, UnicodeError, ValueError):  # ValueError covers JSON and base64 errors
        raise invalid from None
    if not (isinstance(payload, list) and len(payload) == 2 and all(isinstance(p, str) for p in payload)):
        raise invalid
    email, list_name = payload
    if make_token(settings, email, list_name) != token:
        raise invalid
    return email, list_name


@lru_cache(maxsize=8)
def _checked_base(base: str) -> str:
    """``base`` (where ``digest serve`` is reachable) if it may carry tokens:
    RFC 8058 §3.1 asks for an HTTPS URI; plain http is allowed only on
    loopback, for tests and local runs."""
    parts = urlsplit(base)
    if parts.scheme == "https" and parts.hostname:
        return base
    if parts.scheme == "http" and is_loopback(parts.hostname or ""):
        return base
    raise SettingsError(
        f"setting 'public_url' (digest.toml, or DIGEST_PUBLIC_URL): unsubscribe links need an https:// URL "
        f"where 'digest serve' is reachable (RFC 8058), not {base!r}"
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
    """``{public_url or site_url}/preferences?token=...``, same token rules."""
    return _link(settings, "preferences", make_token(settings, email, list_name))


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
    unsubscribe and preferences links and the list's mailto address.

    One token serves both links, so it is signed once per subscriber."""
    token = make_token(settings, subscriber.email, subscriber.list_name)
    return Recipient(
        email=subscriber.email,
        name=subscriber.name,
        subscriber_id=subscriber.key,
        list_name=subscriber.list_name,
        unsubscribe_url=_link(settings, "unsubscribe", token),
        preferences_url=_link(settings, "preferences", token),
        unsubscribe_mailto=unsubscribe_mailto(settings),
    )
