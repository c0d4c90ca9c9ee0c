"""Signed tokens, each for one purpose: unsubscribe and preferences links,
sign-up confirmations, the forms of ``digest serve``.

A token is a compact JSON payload (UTF-8, base64url), for :data:`TIMED` purposes
the time it was made, and an HMAC-SHA256 signature (itsdangerous's
``Signer``, or ``TimestampSigner``) keyed with ``secret_key`` and salted
with its purpose, so a token made for one purpose
is refused for every other (an unsubscribe token cannot confirm a sign-up,
a preferences token cannot unsubscribe). Keys rotate: the newest key
(``secret_key``) signs, and tokens signed with any key listed in
``previous_secret_keys`` still verify until that key is removed.

Secrets must be at least :data:`MIN_SECRET_LENGTH` characters and not
trivially guessable (:func:`check_secret`): an HMAC key of a few characters
is recovered from one token by trying them all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson
from itsdangerous import BadData, Signer, TimestampSigner, base64_decode, base64_encode

from digest.errors import DigestError, SettingsError

if TYPE_CHECKING:
    from digest.settings import Settings

PURPOSES = ("unsubscribe", "preferences", "confirm", "form")
# Purposes whose tokens carry their time, for verify(max_age=...). Link tokens
# do not: they never expire (CAN-SPAM) and stay the same in every message.
TIMED = ("confirm", "form")
FORM_MAX_AGE = 24 * 3600  # seconds a page may stay open before its form token (CSRF) is refused
MIN_SECRET_LENGTH = 32  # 32 random characters are > 190 bits: no search reaches them
MIN_DISTINCT_CHARACTERS = 12  # "aaaa...", "1234..." and words repeated fall short
MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
_GUESSABLE = ("change-me", "changeme", "change_me")  # the default and its copies


class TokenError(DigestError):
    """A token that is malformed, not signed with one of our keys (forged,
    altered, made with another secret), made for another purpose, or older
    than allowed."""


def _keys(settings: Settings) -> tuple[str, ...]:
    # itsdangerous signs with the last key and verifies with any of them.
    previous = tuple(key.get_secret_value() for key in settings.previous_secret_keys)
    return (*previous, settings.secret_key.get_secret_value())


@lru_cache(maxsize=16)
def _signer(keys: tuple[str, ...], purpose: str) -> Signer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r} (one of {', '.join(PURPOSES)})")
    kind = TimestampSigner if purpose in TIMED else Signer
    signer = kind(list(keys), salt=f"digest.{purpose}.v2", digest_method=hashlib.sha256)
    # itsdangerous derives the key from (secret, salt) again for every token: the
    # same answer each time, and a send signs two tokens per recipient.
    signer.derive_key = lru_cache(maxsize=8)(signer.derive_key)  # type: ignore[method-assign]
    return signer


def sign(settings: Settings, purpose: str, payload: Any) -> str:
    """A URL-safe token (base64url and dots) carrying ``payload`` (anything
    JSON can hold) for ``purpose`` (one of :data:`PURPOSES`), signed with
    ``settings.secret_key``."""
    return sign_each(settings, (purpose,), payload)[0]


def sign_each(settings: Settings, purposes: Sequence[str], payload: Any) -> list[str]:
    """One token per purpose of ``purposes`` (as :func:`sign` makes them),
    all carrying ``payload``, which is encoded once: a send signs an
    unsubscribe and a preferences token for every recipient."""
    # orjson: the compact UTF-8 JSON of json.dumps(payload, ensure_ascii=False,
    # separators=(",", ":")), several times faster (a send makes two tokens a reader).
    data = base64_encode(orjson.dumps(payload))
    keys = _keys(settings)
    return [_signer(keys, purpose).sign(data).decode("ascii") for purpose in purposes]


def verify(settings: Settings, purpose: str, token: str, max_age: float | None = None, *, with_time: bool = False) -> Any:
    """The payload of ``token`` if it was made by :func:`sign` for
    ``purpose`` with ``secret_key`` or one of ``previous_secret_keys``, and
    (with ``max_age``, in seconds, for a :data:`TIMED` purpose only) not
    longer ago than that.

    With ``with_time`` (a :data:`TIMED` purpose only), returns ``(payload,
    signed_at)``, ``signed_at`` an aware UTC datetime.

    Raises :class:`TokenError` otherwise. Each part of the token must be in
    its one canonical base64 form: base64 lets the last character change in
    unused low bits and still decode to the same bytes, and any altered
    character is to be refused."""
    signer = _signer(_keys(settings), purpose)
    if max_age is not None and purpose not in TIMED:
        raise ValueError(f"tokens for {purpose!r} carry no time: no max_age")
    try:
        if purpose in TIMED:
            raw, signed_at = signer.unsign(token, max_age=max_age, return_timestamp=True)
        else:
            raw, signed_at = signer.unsign(token), None
        if any(base64_encode(base64_decode(part)).decode() != part for part in token.split(".")):
            raise TokenError("this link is not valid (altered or incomplete)")
        payload = json.loads(base64_decode(raw))
        return (payload, signed_at) if with_time else payload
    except BadData as exc:
        expired = "expired" in type(exc).__name__.lower()
        raise TokenError("this link has expired" if expired else "this link is not valid (altered or incomplete)") from None
    except (UnicodeError, ValueError):  # JSON and base64 errors
        raise TokenError("this link is not valid (altered or incomplete)") from None


def secret_problem(value: str) -> str | None:
    """Why ``value`` may not sign tokens, or None when it may: shorter than
    :data:`MIN_SECRET_LENGTH`, fewer than :data:`MIN_DISTINCT_CHARACTERS`
    different characters, holding a placeholder word (``change-me``), a
    repeated pattern, or mostly runs (``abcdef``, ``123456``)."""
    if len(value) < MIN_SECRET_LENGTH:
        return f"is {len(value)} characters long; it needs at least {MIN_SECRET_LENGTH} random ones"
    if len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return "is easy to guess (too few different characters); it needs random characters"
    if any(word in value.lower() for word in _GUESSABLE):
        return "is easy to guess (a placeholder word); it needs random characters"
    if any(value == (value[:period] * (len(value) // period + 1))[: len(value)] for period in range(1, len(value) // 2 + 1)):
        return "is easy to guess (a repeated pattern); it needs random characters"
    steps = sum(abs(ord(b) - ord(a)) <= 1 for a, b in zip(value, value[1:], strict=False))
    if steps * 3 >= len(value):  # random text over 64 characters has about 1 in 20
        return "is easy to guess (runs like abcd or 1234); it needs random characters"
    return None


def check_secret(settings: Settings) -> None:
    """Refuse to sign with a weak key: raises :class:`SettingsError`, one
    line naming the setting and saying how to make a good key, when
    ``secret_key`` or any of ``previous_secret_keys`` fails
    :func:`secret_problem`. Called before a real send and by ``digest serve``."""
    named = [("secret_key", settings.secret_key)] + [
        (f"previous_secret_keys[{index}]", key) for index, key in enumerate(settings.previous_secret_keys)
    ]
    for name, key in named:
        problem = secret_problem(key.get_secret_value())
        if problem:
            env = "DIGEST_" + name.split("[")[0].upper()
            raise SettingsError(f"setting '{name}' (digest.toml, or {env}) {problem}: make one with {MAKE_ONE}")
