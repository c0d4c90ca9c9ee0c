"""Sign-up with double opt-in: the form, the confirmation email and its
signed link, the confirmation itself, and the welcome message.

1. A reader posts the form (:func:`parse_signup` checks it). Whatever the
   address, the answer is the same "check your inbox" page, so nobody can
   learn who is subscribed (the confirmation of a reader already on the list
   only changes their choices).
2. :func:`claim_confirmation` and :func:`send_confirmation` send one
   confirmation email through the configured provider, at most one per
   address per hour (the throttle keeps
   a keyed hash of the address, not the address: see :mod:`digest.consent`).
   Its link carries a token signed by :mod:`digest.tokens` for the
   ``confirm`` purpose only (so no unsubscribe or other token can stand in
   for it; ``previous_secret_keys`` keep it valid across a rotation) that
   expires after ``confirm_max_age`` (default 48 h).
3. ``GET /confirm`` shows a button (link scanners follow GETs); the POST
   runs :func:`confirm`: the reader joins the list under its edit lock, with
   their topics and frequency; their consent is recorded; an earlier
   unsubscribe (and an erasure mark) is lifted, since they asked again. A
   token works once.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup

from digest import consent, suppressions, tokens
from digest.addresses import normalize_address
from digest.articles import slugify_tag
from digest.errors import DigestError
from digest.listedits import add_subscriber, locked
from digest.moments import parse_duration
from digest.personalization import new_nonce
from digest.recipients import Recipient, Status
from digest.rendering import RenderedVariant, issue_url, render_template, template_environment
from digest.subscribers import FREQUENCIES, MAX_NAME, Subscriber, list_file
from digest.unsubscribe import TokenError, public_base, recipient_for

if TYPE_CHECKING:
    from digest.settings import Settings

log = logging.getLogger(__name__)

CONFIRM_PURPOSE = "confirm"  # a token signed for another purpose (unsubscribe, preferences) never verifies here
MAX_TOPICS = 100
HONEYPOT = "website"  # a field people never see and bots fill in


class SignupError(DigestError):
    """A sign-up form that cannot be taken; the message names the field."""

    exit_code = 2


@dataclass(frozen=True)
class SignupRequest:
    """What a reader asked for: ``email`` (normalized), ``name``, ``tags``
    (slugs among the known ones; empty means every topic), ``frequency``
    (daily, weekly or monthly), ``list_name`` (the list they join) and
    ``requested_at`` (aware UTC, when the form was posted)."""

    email: str
    name: str
    tags: frozenset[str]
    frequency: str
    list_name: str
    requested_at: datetime


def signup_list(settings: Settings) -> Path:
    """The list file confirmed readers join: ``signup_list``, else
    ``default_list``, else the only list. Raises :class:`DigestError` when
    that is ambiguous."""
    return list_file(Path(settings.subscribers), settings.signup_list, settings.default_list)


def parse_signup(form: Mapping[str, list[str]], known_tags: Iterable[str], settings: Settings) -> SignupRequest:
    """The request in a posted form (field -> values): ``email`` (checked by
    email-validator, no DNS), ``name`` (optional, one line, at most
    :data:`MAX_NAME` characters), ``topic`` (repeatable, each among
    ``known_tags``), ``frequency`` (one of daily, weekly, monthly; default
    the ``default_frequency`` setting). Raises :class:`SignupError` naming
    the first field that is wrong."""

    def one(name: str) -> str:
        values = form.get(name) or [""]
        if len(values) > 1:
            raise SignupError(f"{name}: given {len(values)} times")
        return values[0]

    try:
        email = normalize_address(one("email"))
    except DigestError as exc:
        raise SignupError(f"email: {exc}") from None
    name = " ".join(one("name").split())
    if len(name) > MAX_NAME or any(unicodedata.category(c).startswith("C") for c in name):
        raise SignupError(f"name: at most {MAX_NAME} characters of text")
    # "topic" is the form's; "tag" (the preferences page's) and a ;-separated "tags" are taken too.
    topics = [*form.get("topic", []), *form.get("tag", []), *(t for v in form.get("tags", []) for t in v.split(";") if t.strip())]
    topics = [slug for topic in topics if (slug := slugify_tag(topic))]
    known = set(known_tags)
    if len(topics) > MAX_TOPICS or any(topic not in known for topic in topics):
        raise SignupError("topic: choose among the topics offered")
    frequency = one("frequency") or settings.frequency_default
    if frequency not in FREQUENCIES:
        raise SignupError("frequency: choose daily, weekly or monthly")
    return SignupRequest(email, name, frozenset(topics), frequency, signup_list(settings).stem, datetime.now(UTC))


# The confirmation token ---------------------------------------------------------------------


def max_age_seconds(settings: Settings) -> int:
    """``confirm_max_age`` in seconds."""
    return int(parse_duration(settings.confirm_max_age).total_seconds())


def make_confirm_token(settings: Settings, request: SignupRequest) -> str:
    """A URL-safe token holding ``request``, signed and timestamped for the
    ``confirm`` purpose only (:func:`digest.tokens.sign`: ``secret_key``,
    and ``previous_secret_keys`` keep verifying after a rotation)."""
    payload = {"e": request.email, "n": request.name, "t": sorted(request.tags), "f": request.frequency, "l": request.list_name}
    return tokens.sign(settings, CONFIRM_PURPOSE, payload)


def read_confirm_token(settings: Settings, token: str) -> SignupRequest:
    """The request a token made by :func:`make_confirm_token` holds. Raises
    :class:`TokenError` when it is older than ``confirm_max_age``, altered,
    made for another purpose (an unsubscribe token) or with another secret."""
    try:
        payload, signed_at = tokens.verify(settings, CONFIRM_PURPOSE, token, max_age=max_age_seconds(settings), with_time=True)
    except tokens.TokenError as exc:
        if "expired" in str(exc):
            raise TokenError("this confirmation link has expired; please sign up again") from None
        raise TokenError("this confirmation link is not valid (altered or incomplete)") from None
    try:
        tags = payload["t"]
        request = SignupRequest(payload["e"], payload["n"], frozenset(tags), payload["f"], payload["l"], signed_at)
    except (KeyError, TypeError):
        raise TokenError("this confirmation link is not valid (altered or incomplete)") from None
    if request.frequency not in FREQUENCIES or not all(isinstance(t, str) for t in tags):
        raise TokenError("this confirmation link is not valid (altered or incomplete)")
    return request


def confirm_url(settings: Settings, token: str) -> str:
    """``{public_url}/confirm?token=...`` (https, or http on loopback)."""
    return f"{public_base(settings)}/confirm?token={token}"


# Emails -------------------------------------------------------------------------------------


def _send_one(settings: Settings, subject: str, html: str, text: str, recipient: Recipient, kind: str) -> bool:
    """Send one message through the configured provider (the outbox writes it
    into ``outbox/signup``, adding to what is there); whether it was accepted."""
    from digest.providers import get_provider

    if settings.provider == "outbox":
        from digest.providers.outbox import OutboxProvider

        provider = OutboxProvider(Path(settings.outbox) / "signup", settings, keep_previous=True)
    else:
        provider = get_provider(settings)
    # No placeholders of ours in it, and a fresh nonce: text a reader typed (their name) is never filled in.
    message = RenderedVariant(variant_key=kind, subject=subject, preheader="", html=html, text=text, article_ids=(), nonce=new_nonce())
    pattern = re.compile(re.escape(recipient.email), re.IGNORECASE)  # the reader's address stays out of the log
    try:
        (result,) = provider.send_batch(message, [recipient], kind)
    except DigestError as exc:
        log.warning("%s email not sent: %s", kind, pattern.sub("<address>", str(exc)))
        return False
    finally:
        provider.close()
    if result.status is not Status.ACCEPTED:
        reason = pattern.sub("<address>", result.reason or "")
        log.warning("%s email not accepted by %s: %s %s", kind, provider.name, result.status.value, reason)
        return False
    return True


def _render_pair(settings: Settings, stem: str, values: dict) -> tuple[str, str]:
    env = template_environment(settings.templates_dir)
    base = {"site_name": settings.site_name, "site_url": settings.site_url, "postal_address": settings.postal_address}
    return render_template(env, f"{stem}.html.j2", {**base, **values}), render_template(env, f"{stem}.txt.j2", {**base, **values})


def claim_confirmation(settings: Settings, request: SignupRequest) -> bool:
    """Whether a confirmation email may go to ``request``'s address now:
    True (and noted in the ledger file) unless one went there in the last
    hour. Atomic, so of many concurrent requests for one address one wins."""
    return consent.claim_signup_email(settings.ledger, _hash(settings, request.email))


def send_confirmation(settings: Settings, request: SignupRequest) -> bool:
    """Send the confirmation email for ``request`` (templates
    ``confirm-email.html.j2``/``.txt.j2``) through the configured provider,
    after :func:`claim_confirmation` said yes. Returns whether the provider
    took it; when it did not (logged without the address), the claim is
    released so the reader can ask again at once."""
    token = make_confirm_token(settings, request)
    hours = max_age_seconds(settings) // 3600
    values = {"confirm_url": confirm_url(settings, token), "name": request.name, "valid_for": f"{hours} hours"}
    html, text = _render_pair(settings, "confirm-email", values)
    recipient = Recipient(request.email, request.name, suppressions.address_key(request.email), request.list_name, unsubscribe_url="")
    if _send_one(settings, f"Confirm your subscription to {settings.site_name}", html, text, recipient, "signup-confirmation"):
        return True
    consent.release_signup_email(settings.ledger, _hash(settings, request.email))
    return False


def _hash(settings: Settings, email: str) -> str:
    return consent.address_hash(settings.secret_key.get_secret_value(), email)


@dataclass(frozen=True)
class Confirmation:
    """What :func:`confirm` did: the reader's ``request``; whether they were
    ``added`` to the list (False: already there, only their choices
    changed); how many unsubscribes were ``lifted``."""

    request: SignupRequest
    added: bool
    lifted: int


def confirm(settings: Settings, token: str, *, ip_address: str | None = None) -> Confirmation:
    """Carry out the sign-up in ``token``: under the ledger's write lock
    (so a token confirms once, even with concurrent posts) and the list's
    edit lock (:func:`digest.listedits.locked`), add the reader to the list
    or, if present, store their topics and frequency as their preferences;
    record their consent (the IP address only with ``consent_record_ip``);
    lift their earlier unsubscribes and erasure mark.

    Raises :class:`TokenError` for an expired, altered or already used
    token, :class:`DigestError` when the list cannot be written (nothing is
    recorded then)."""
    request = read_confirm_token(settings, token)
    target = list_file(Path(settings.subscribers), request.list_name)
    # The list's lock first, then the ledger's: the order an import takes them in.
    with locked(target), consent.write_transaction(settings.ledger) as conn:
        if not consent.use_confirmation(conn, token, keep_for=parse_duration(settings.confirm_max_age)):
            raise TokenError("this confirmation link was used already")
        added = add_subscriber(target, request.email, request.name, request.tags, frequency=request.frequency, if_absent=True, lock=False)
        if added is None:
            suppressions.set_preferences(conn, request.email, request.list_name, request.tags)
        suppressions.set_frequency(conn, request.email, request.list_name, request.frequency)
        consent.record_consent(
            conn, request.email, request.list_name, ip_address=ip_address if settings.consent_record_ip else None,
            requested_at=request.requested_at,
        )
        lifted = suppressions.lift_unsubscribes(conn, request.email, request.list_name)
        consent.unforget(conn, _hash(settings, request.email))
    return Confirmation(request, added is not None, lifted)


def send_welcome(settings: Settings, request: SignupRequest) -> bool:
    """Send the welcome message (``welcome.html.j2``/``.txt.j2``) to a reader
    who just confirmed: list mail, with their unsubscribe and preferences
    links and a link to the latest issue's archive page (``latest_url``,
    None before the first issue). Returns whether the provider took it."""
    subscriber = Subscriber(request.email, request.name, request.tags, request.list_name, 0, request.frequency)
    recipient = recipient_for(subscriber, settings)
    values = {
        "name": request.name,
        "latest_url": _latest_issue_url(settings),
        "unsubscribe_url": recipient.unsubscribe_url,
        "preferences_url": recipient.preferences_url,
        "frequency": request.frequency,
    }
    html, text = _render_pair(settings, "welcome", values)
    return _send_one(settings, f"Welcome to {settings.site_name}", html, text, recipient, "welcome")


def _latest_issue_url(settings: Settings) -> str | None:
    from digest.ledger import Ledger

    if not suppressions.present(settings.ledger):
        return None
    with Ledger(settings.ledger) as ledger:
        latest = next((issue.key for issue in ledger.issues() if ledger.page(issue.key) is not None), None)
    return issue_url(settings, latest) if latest else None


# The form -----------------------------------------------------------------------------------

FORM = """<form method="post" action="{{ action }}">
<p><label for="signup-email">Email address</label><br>
<input id="signup-email" type="email" name="email" required maxlength="320" autocomplete="email"{% if email %} value="{{ email }}"{% endif %}></p>
<p><label for="signup-name">Name (optional)</label><br>
<input id="signup-name" type="text" name="name" maxlength="{{ max_name }}" autocomplete="name"{% if name %} value="{{ name }}"{% endif %}></p>
{% if tags %}<fieldset><legend>Topics (none ticked: every topic)</legend>
{% for tag in tags %}<label><input type="checkbox" name="topic" value="{{ tag }}"{% if tag in chosen %} checked{% endif %}> {{ tag }}</label>
{% endfor %}</fieldset>
{% endif %}<fieldset><legend>How often</legend>
{% for value in frequencies %}<label><input type="radio" name="frequency" value="{{ value }}"{% if value == frequency %} checked{% endif %}> {{ value }}</label>
{% endfor %}</fieldset>
<div style="position:absolute;left:-10000px" aria-hidden="true"><label for="signup-website">Leave this field empty</label>
<input id="signup-website" type="text" name="website" tabindex="-1" autocomplete="off"></div>
<p><button type="submit">Subscribe</button></p>
</form>"""
_FORMS = Environment(autoescape=True, undefined=StrictUndefined)


def signup_form(
    settings: Settings, tags: Iterable[str], *, email: str = "", name: str = "", chosen: Iterable[str] = (), frequency: str | None = None
) -> Markup:
    """The sign-up form (escaped HTML, no JavaScript): a plain POST to
    ``{public_url}/subscribe`` with a label for every input, the topics
    ``tags`` as checkboxes, the frequencies as radio buttons (the
    ``default_frequency`` setting checked) and the honeypot field, kept
    off-screen and out of the tab order."""
    return Markup(
        _FORMS.from_string(FORM).render(
            action=f"{public_base(settings)}/subscribe", tags=sorted(tags), chosen=set(chosen), email=email, name=name,
            frequencies=FREQUENCIES, frequency=frequency or settings.frequency_default, max_name=MAX_NAME,
        )
    )
