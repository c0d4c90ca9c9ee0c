"""The SendGrid provider: v3 Mail Send through the official client.

One request per batch: the variant's text and HTML once, one personalization
per recipient carrying that person's substitutions (name, unsubscribe links),
List-Unsubscribe headers and ``subscriber_id``. The answer becomes one
:class:`RecipientResult` per recipient:

===========================  ===========================================================
SendGrid answers             result
===========================  ===========================================================
202                          accepted, every recipient (message id from X-Message-Id)
400                          rejected with SendGrid's messages (only the personalizations
                             named by the errors when all of them name one; the others
                             are sent again without them)
401 / 403                    :class:`ProviderAuthError`: the run stops
413                          the batch is split in halves and each half sent
429                          wait until X-RateLimit-Reset, then the same request again
5xx, no connection           retried with exponential backoff and jitter (tenacity),
                             ``sendgrid_max_tries`` times, then retryable
connection lost after the    unknown: SendGrid may have taken it; never retried here
request was written          (a retry could send it twice)
===========================  ===========================================================

Sources: SendGrid's Mail Send reference and its "Limitations" and "Rate
Limits" pages, as modelled by ``../shared/tools/fake_sendgrid.py``.
"""

from __future__ import annotations

import http.client
import logging
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

import orjson
from python_http_client.client import Response
from python_http_client.exceptions import HTTPError as SendGridHTTPError
from sendgrid import SendGridAPIClient
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

from digest.errors import ProviderAuthError, SettingsError
from digest.messages import list_headers
from digest.personalization import substitutions
from digest.recipients import Recipient, RecipientResult, Status
from digest.rendering import RenderedVariant
from digest.settings import Settings

# SendGrid's documented limit: at most 1000 personalizations (and 1000
# recipients in to+cc+bcc) per request (Mail Send "Limitations").
MAX_PERSONALIZATIONS = 1000
# A 429 is waited out this many times for one request before the batch is
# left retryable; each wait lasts until X-RateLimit-Reset, at most a minute.
MAX_RATE_LIMIT_WAITS = 20
MAX_RATE_LIMIT_SLEEP = 60.0
# "Limitations": to.name, cc.name and bcc.name cannot include ; or , (names
# that did were silently dropped: sendgrid/sendgrid-python#291).
_NAME_PUNCTUATION = re.compile(r"[,;]")
# A body given as text is sent as it is (not dumped again) when the type is not
# exactly "application/json"; SendGrid and the stand-in read the media type.
_JSON = {"Content-Type": "application/json; charset=utf-8"}
_PERSONALIZATION_FIELD = re.compile(r"^personalizations\.(\d+)(\.|$)")

# python_http_client logs every request's headers at DEBUG, the Authorization
# header (our API key) included: its DEBUG lines never reach any log.
logging.getLogger("python_http_client.client").setLevel(logging.INFO)


class _NotTaken(Exception):
    """SendGrid did not take the request; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Transient(_NotTaken):
    """Worth another try after a backoff: a 5xx answer, or a request that
    never reached SendGrid whole."""


class _RateLimited(_NotTaken):
    """429: ``reset_at`` is X-RateLimit-Reset (Unix seconds), or None."""

    def __init__(self, reason: str, reset_at: float | None) -> None:
        super().__init__(reason)
        self.reset_at = reset_at


class SendGridProvider:
    """Sends through SendGrid's v3 Mail Send API (see the module doc).

    Settings used: ``sendgrid_api_key`` (required), ``sendgrid_host`` (tests
    point it at the local stand-in), ``sendgrid_categories``,
    ``asm_group_id``, ``sender_email``/``sender_name``/``reply_to``,
    ``sendgrid_max_tries``, ``sendgrid_retry_wait`` and ``sendgrid_timeout``
    (seconds). ``sleep`` is how waits are made (tests may shorten them).
    Safe to call from several threads at once: each request opens its own
    connection. Raises :class:`SettingsError` without an API key.
    """

    name = "sendgrid"
    max_batch_size = MAX_PERSONALIZATIONS

    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        if settings.sendgrid_api_key is None:
            raise SettingsError(
                "setting 'sendgrid_api_key' (digest.toml, or DIGEST_SENDGRID_API_KEY) is required "
                "for the sendgrid provider"
            )
        self.settings = settings
        self._sleep = sleep
        self._client = SendGridAPIClient(
            api_key=settings.sendgrid_api_key.get_secret_value(), host=settings.sendgrid_host.rstrip("/")
        )
        self._client.client.timeout = settings.sendgrid_timeout
        self._lock = threading.Lock()
        self.requests = 0  # requests made, retries included (for benchmarks and logs)

    def send_batch(
        self, rendered: RenderedVariant, recipients: Sequence[Recipient], issue_key: str
    ) -> list[RecipientResult]:
        """Send ``rendered`` to ``recipients`` in as few requests as SendGrid
        allows; one result per recipient, in order. An address given twice
        (compared case-insensitively) is sent once; its repeat is rejected."""
        results: dict[int, RecipientResult] = {}
        first_seen: set[str] = set()
        unique: list[tuple[int, Recipient]] = []
        for index, recipient in enumerate(recipients):
            address = recipient.email.casefold()
            if address in first_seen:
                results[index] = RecipientResult(
                    recipient.email, Status.REJECTED, reason="the same address twice in one batch: sent once"
                )
            else:
                first_seen.add(address)
                unique.append((index, recipient))
        for start in range(0, len(unique), MAX_PERSONALIZATIONS):
            chunk = unique[start : start + MAX_PERSONALIZATIONS]
            answers = self._deliver(rendered, [recipient for _, recipient in chunk], issue_key)
            results.update(zip((index for index, _ in chunk), answers, strict=True))
        return [results[index] for index in range(len(recipients))]

    def close(self) -> None:
        """Nothing to release: urllib opens one connection per request."""

    # One batch ------------------------------------------------------------------------------

    def _deliver(
        self, rendered: RenderedVariant, batch: Sequence[Recipient], issue_key: str
    ) -> list[RecipientResult]:
        body = self._body(rendered, batch, issue_key)
        try:
            response = self._post(body)
        except SendGridHTTPError as exc:
            return self._refused(rendered, batch, issue_key, exc)
        except _NotTaken as exc:
            return _all(batch, Status.RETRYABLE, reason=exc.reason)
        except (http.client.HTTPException, OSError) as exc:
            # The request was written and the connection failed before an
            # answer (http.client.RemoteDisconnected, a reset, a timeout).
            return _all(batch, Status.UNKNOWN, reason=f"connection lost after the request was sent ({exc!r})")
        return _all(batch, Status.ACCEPTED, message_id=response.headers.get("X-Message-Id"))

    def _refused(
        self, rendered: RenderedVariant, batch: Sequence[Recipient], issue_key: str, exc: SendGridHTTPError
    ) -> list[RecipientResult]:
        status, errors = exc.status_code, _errors(exc)
        summary = _describe(errors)
        if status in (401, 403):
            what = "API key" if status == 401 else f"sender {self.settings.sender_email}"
            # SendGrid's own messages only: the key is never part of them.
            raise ProviderAuthError(f"SendGrid refused our {what} ({status}): {summary}") from None
        if status == 413:
            if len(batch) == 1:
                return _all(batch, Status.REJECTED, reason=f"413: the message is larger than SendGrid takes ({summary})")
            half = len(batch) // 2
            return self._deliver(rendered, batch[:half], issue_key) + self._deliver(rendered, batch[half:], issue_key)
        if status == 400:
            return self._bad_request(rendered, batch, issue_key, errors)
        # Any other 4xx (404 from a wrong host, 415...): not taken, so it may
        # be tried again once the cause is fixed.
        return _all(batch, Status.RETRYABLE, reason=f"SendGrid answered {status}: {summary}")

    def _bad_request(
        self, rendered: RenderedVariant, batch: Sequence[Recipient], issue_key: str, errors: list[tuple[str | None, str]]
    ) -> list[RecipientResult]:
        """400. When every error names a personalization (a bad address, a
        name SendGrid refuses), only those recipients are rejected and the
        others go again without them; otherwise the whole batch is rejected."""
        per_index: dict[int, list[tuple[str | None, str]]] = {}
        for field, message in errors:
            match = _PERSONALIZATION_FIELD.match(field or "")
            if not match or int(match.group(1)) >= len(batch):
                return _all(batch, Status.REJECTED, reason="400: " + _describe(errors))
            per_index.setdefault(int(match.group(1)), []).append((field, message))
        rest = [recipient for index, recipient in enumerate(batch) if index not in per_index]
        resent = iter(self._deliver(rendered, rest, issue_key) if rest else [])
        return [
            RecipientResult(recipient.email, Status.REJECTED, reason="400: " + _describe(per_index[index]))
            if index in per_index
            else next(resent)
            for index, recipient in enumerate(batch)
        ]

    # The request ----------------------------------------------------------------------------

    def _post(self, body: dict):
        """POST ``body`` to /v3/mail/send, waiting out 429s and retrying 5xx
        and connection errors; returns the 2xx response. Raises
        :class:`_NotTaken` after the last try, ``SendGridHTTPError`` for
        other answers, and what urllib raises once the request was written."""
        wait = self.settings.sendgrid_retry_wait
        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(self.settings.sendgrid_max_tries),
            # w, 2w, 4w... (at most a minute) plus up to w of jitter, so that
            # concurrent senders do not come back in step.
            wait=wait_exponential(multiplier=wait, max=60.0) + wait_random(0, wait),
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(self._post_within_rate_limit, body)

    def _post_within_rate_limit(self, body: dict):
        retrying = Retrying(
            retry=retry_if_exception_type(_RateLimited),
            stop=stop_after_attempt(MAX_RATE_LIMIT_WAITS),
            wait=_until_reset,
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(self._post_once, body)

    def _post_once(self, body: dict):
        with self._lock:
            self.requests += 1
        try:
            # The official client's own request step (_make_request: urllib,
            # its error classes, its Response), with the body already compact
            # JSON. Not its post(): that formats every body into a debug
            # string whatever the log level, 1.2 MB for a batch of 1000.
            # orjson writes the same compact UTF-8 JSON as json.dumps(...,
            # separators=(",", ":"), ensure_ascii=False) about 8 times faster:
            # encoding was a sixth of a large send's CPU.
            endpoint = self._client.client.mail.send
            request = urllib.request.Request(
                endpoint._build_url(None),
                data=orjson.dumps(body),
                headers={**endpoint.request_headers, **_JSON},
                method="POST",
            )
            return Response(endpoint._make_request(urllib.request.build_opener(), request, timeout=endpoint.timeout))
        except SendGridHTTPError as exc:
            if exc.status_code == 429:
                reset = (exc.headers or {}).get("X-RateLimit-Reset")
                raise _RateLimited("429: rate limited by SendGrid", float(reset) if reset else None) from None
            if exc.status_code >= 500:
                raise _Transient(f"SendGrid answered {exc.status_code}: {_describe(_errors(exc))}") from None
            raise
        except urllib.error.URLError as exc:
            # urllib wraps what fails while connecting or writing the request
            # (and only that): SendGrid never got it whole, a retry is safe.
            raise _Transient(f"cannot reach SendGrid at {self.settings.sendgrid_host}: {exc.reason}") from None

    # The body -------------------------------------------------------------------------------

    def _body(self, rendered: RenderedVariant, batch: Sequence[Recipient], issue_key: str) -> dict:
        """The request body: the variant's content once, one personalization
        per recipient, in ``batch`` order (so a 400's ``personalizations.N``
        is ``batch[N]``). Plain dicts in the shape the official client's
        ``Mail`` helper produces (tests compare them on a sample): the helper
        objects cost a quarter of a large send's CPU."""
        settings = self.settings
        sender = {"email": str(settings.sender_email)}
        if settings.sender_name:
            sender = {"name": settings.sender_name, **sender}
        body: dict = {
            "from": sender,
            "subject": rendered.subject,
            "personalizations": [_personalization(recipient, settings, rendered.nonce) for recipient in batch],
            # text/plain before text/html, as SendGrid requires (RFC 1341 §7.2:
            # the preferred part last).
            "content": [{"type": "text/plain", "value": rendered.text}, {"type": "text/html", "value": rendered.html}],
        }
        if settings.sendgrid_categories:
            body["categories"] = list(settings.sendgrid_categories)
        # custom_args values must be strings (SendGrid answers 400 otherwise).
        body["custom_args"] = {"variant_key": str(rendered.variant_key), "issue_key": str(issue_key)}
        if settings.asm_group_id is not None:
            body["asm"] = {"group_id": settings.asm_group_id}
        if settings.reply_to_parts:
            name, email = settings.reply_to_parts
            body["reply_to"] = {"name": name, "email": email} if name else {"email": email}
        return body


def _personalization(recipient: Recipient, settings: Settings, nonce: str) -> dict:
    name = _display_name(recipient.name)
    to = {"name": name, "email": recipient.email} if name else {"email": recipient.email}
    personalization: dict = {"to": [to]}
    headers = list_headers(recipient, settings)  # List-Id too, as in the .eml (a fresh dict)
    if headers:
        personalization["headers"] = headers
    values = substitutions(recipient, nonce)
    if values:
        personalization["substitutions"] = values
    personalization["custom_args"] = {"subscriber_id": str(recipient.subscriber_id)}
    return personalization


def _display_name(name: str) -> str | None:
    """The name for the To header. SendGrid's Limitations page: recipient
    names cannot include ``,`` or ``;``. Quoting the name (django-anymail's
    workaround) still sends those characters, so they are removed instead;
    the greeting in the body keeps the name as written (it comes from the
    substitutions). CR/LF never reach a header."""
    cleaned = " ".join(_NAME_PUNCTUATION.sub(" ", name).split())
    return cleaned or None


def _all(batch: Sequence[Recipient], status: Status, *, message_id: str | None = None, reason: str | None = None):
    return [RecipientResult(recipient.email, status, message_id=message_id, reason=reason) for recipient in batch]


def _errors(exc: SendGridHTTPError) -> list[tuple[str | None, str]]:
    """SendGrid's error list ``{"errors": [{"message", "field", "help"}]}``
    as (field, message) pairs; the raw body when it is not that shape."""
    try:
        errors = exc.to_dict.get("errors") or []
        return [(error.get("field"), str(error.get("message"))) for error in errors] or [(None, "no error message")]
    except (ValueError, AttributeError, TypeError):
        body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body)
        return [(None, body[:500])]


def _describe(errors: list[tuple[str | None, str]]) -> str:
    return "; ".join(f"{field}: {message}" if field else message for field, message in errors)


def _until_reset(retry_state) -> float:
    """Seconds until X-RateLimit-Reset (plus up to 250 ms of jitter, so that
    concurrent senders do not all come back at the same instant)."""
    reset_at = retry_state.outcome.exception().reset_at
    wait = (reset_at - time.time()) if reset_at else 1.0
    return min(max(wait, 0.0) + random.uniform(0, 0.25), MAX_RATE_LIMIT_SLEEP)
