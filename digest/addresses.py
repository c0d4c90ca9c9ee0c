"""Subscriber addresses: checked and normalized for sending.

email-validator's syntax rules (RFC 5321/5322, no DNS lookups) decide;
plain ASCII addresses, nearly all of a real list, take a fast path that
gives the same answers (tests compare both on many addresses), because
the library's check was the largest share of planning a large send.
"""

from __future__ import annotations

import re
from functools import lru_cache

import email_validator
from email_validator import EmailNotValidError, validate_email

from digest.errors import DigestError


def normalize_address(raw: str) -> str:
    """``raw`` checked and normalized for sending, per email-validator's
    syntax rules (RFC 5321/5322, no DNS lookups): spaces around removed,
    local part kept, domain lower-cased and in its ASCII form (an
    internationalized domain as IDNA "xn--" labels, RFC 5891), so the result
    is plain ASCII that every provider and server takes.

    Raises :class:`DigestError` with the reason for an empty or invalid
    address, and for a non-ASCII local part: mailing one needs the SMTPUTF8
    extension (RFC 6531), which SendGrid refuses (400) and most servers lack,
    and no ASCII form of it exists."""
    address = raw.strip()
    if not address:
        raise DigestError("no email address")
    plain = _plain_ascii(address)
    if plain is not None:
        return plain
    try:
        return validate_email(address, check_deliverability=False, allow_smtputf8=False).ascii_email
    except EmailNotValidError as exc:
        if _valid_with_smtputf8(address):
            raise DigestError(
                f"{address!r} needs SMTPUTF8 (non-ASCII before the @), which SendGrid and most servers do not accept"
            ) from None
        raise DigestError(f"invalid address {address!r}: {exc}") from None


# The common case, decided without email-validator (13% of a large send's
# CPU): a dot-atom local part (RFC 5322 §3.2.3 atext) and a domain of plain
# LDH labels (RFC 1035 §2.3.1) ending in a letters-only top-level label, not
# a special-use name (RFC 6761, the library's own list). Anything else, or
# anything near a limit, goes to the library; tests check both give the same
# answers.
_PLAIN = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_SPECIAL_USE = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def _plain_ascii(address: str) -> str | None:
    """``address`` normalized as email-validator would (domain lower-cased),
    when it is plainly valid ASCII; None when the library must decide."""
    if len(address) > 200:
        return None
    found = _PLAIN.fullmatch(address)
    if found is None or len(found["local"]) > 64:
        return None
    domain = _plain_domain(found["domain"])
    return None if domain is None else f"{found['local']}@{domain}"


@lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> str | None:
    """``domain`` lower-cased, or None when the library must decide. Cached:
    a list's addresses share a few domains (gmail.com, the company's own)."""
    domain = domain.lower()
    labels = domain.split(".")
    # "--" in a label is Punycode's or reserved (RFC 5891 §4.2.3.1); special-use names are refused.
    if "--" in domain or any(".".join(labels[i:]) in _SPECIAL_USE for i in range(len(labels))):
        return None
    return domain


def _valid_with_smtputf8(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return False
    return True
