"""The SMTP provider: standard-library smtplib over one reused connection.

Each recipient gets their own message (built by
:func:`digest.messages.build_message`, so the To: and the unsubscribe links
are theirs), sent over one connection that lives across messages and
batches: opened on first use, and opened again when the server closed it
(an idle timeout, a ``421``). Replies become results per recipient, after
RFC 5321 §4.2.1: a ``4yz`` reply is transient (421, 450, 451, 452, and the
454 of throttling servers) and so retryable; a ``5yz`` reply is final
(rejected).

A connection lost before the message's DATA began took nothing, so the
message goes again over a new connection; one lost after DATA began may have
been taken, so the recipient is unknown and not resent here.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
from collections.abc import Sequence

from digest.errors import ProviderAuthError, SettingsError
from digest.messages import build_message
from digest.recipients import Recipient, RecipientResult, Status
from digest.rendering import RenderedVariant
from digest.settings import Settings


class _NotesData:
    """Mixin for smtplib.SMTP: ``data_started`` tells whether DATA was sent
    for the current message, which decides what a lost connection means."""

    data_started = False

    def data(self, msg):
        self.data_started = True
        return super().data(msg)


class _Connection(_NotesData, smtplib.SMTP):
    """Plain or STARTTLS."""


class _TLSConnection(_NotesData, smtplib.SMTP_SSL):
    """Implicit TLS (port 465)."""


class _CannotConnect(Exception):
    """No connection could be opened (refused, timed out, 421 greeting)."""


class SMTPProvider:
    """Sends one message per recipient over one smtplib connection.

    Settings used: ``smtp_host``, ``smtp_port``, ``smtp_security``
    (``starttls`` | ``tls`` | ``none``), ``smtp_username`` and
    ``smtp_password`` (login only when a username is set),
    ``smtp_timeout`` (seconds), and ``sender_email`` as the envelope sender.
    ``ssl_context`` defaults to the system's trusted CAs with hostname checks.

    Raises :class:`ProviderAuthError` when the server refuses our login or
    our sender (a 5xx to MAIL FROM), and :class:`SettingsError` when it lacks
    STARTTLS or AUTH that the settings ask for. Calls from several threads
    take turns on the one connection.
    """

    name = "smtp"
    # Recipients per ledger batch: each is a message of its own here, so a
    # small batch keeps what a crash can leave "unknown" small.
    max_batch_size = 100

    def __init__(self, settings: Settings, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self._context = ssl_context or ssl.create_default_context()
        self._connection: _Connection | _TLSConnection | None = None
        self._lock = threading.Lock()
        self.connections = 0  # connections opened so far (tests check reuse)

    def send_batch(
        self, rendered: RenderedVariant, recipients: Sequence[Recipient], issue_key: str
    ) -> list[RecipientResult]:
        """One result per recipient, in order. When no connection can be
        opened, the rest of the batch is retryable (not tried one by one)."""
        results: list[RecipientResult] = []
        with self._lock:
            for recipient in recipients:
                try:
                    results.append(self._send_one(rendered, recipient, issue_key))
                except _CannotConnect as exc:
                    rest = recipients[len(results) :]
                    results.extend(RecipientResult(r.email, Status.RETRYABLE, reason=str(exc)) for r in rest)
                    break
        return results

    def close(self) -> None:
        """QUIT and close the connection, if one is open."""
        with self._lock:
            self._drop(polite=True)

    def _send_one(self, rendered: RenderedVariant, recipient: Recipient, issue_key: str) -> RecipientResult:
        for attempt in (1, 2):
            connection = self._connect()
            connection.data_started = False
            # 8bit parts only to a server that offered 8BITMIME (RFC 6152); else quoted-printable.
            eight_bit = connection.has_extn("8bitmime")
            message = build_message(rendered, recipient, self.settings, issue_key=issue_key, eight_bit=eight_bit)
            message_id = message["Message-ID"]
            try:
                connection.send_message(
                    message,
                    from_addr=str(self.settings.sender_email),
                    to_addrs=[recipient.email],
                    # RFC 6152: declare the 8bit UTF-8 parts to a server that offers 8BITMIME.
                    mail_options=("BODY=8BITMIME",) if eight_bit else (),
                )
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = next(iter(exc.recipients.values()))
                return _by_code(recipient, code, reply)
            except smtplib.SMTPSenderRefused as exc:
                if exc.smtp_code >= 500:
                    raise ProviderAuthError(
                        f"the SMTP server refused our sender {exc.sender}: {exc.smtp_code} {_text(exc.smtp_error)}"
                    ) from None
                return _by_code(recipient, exc.smtp_code, exc.smtp_error)
            except smtplib.SMTPResponseException as exc:  # SMTPDataError and other unexpected replies
                return _by_code(recipient, exc.smtp_code, exc.smtp_error)
            except (smtplib.SMTPException, OSError) as exc:  # disconnected, reset, timed out
                self._drop(polite=False)
                if connection.data_started:
                    return RecipientResult(
                        recipient.email, Status.UNKNOWN, reason=f"connection lost during DATA: {exc}"
                    )
                if attempt == 2:
                    return RecipientResult(recipient.email, Status.RETRYABLE, reason=f"connection lost: {exc}")
                continue  # nothing was taken: send it again over a new connection
            return RecipientResult(recipient.email, Status.ACCEPTED, message_id=message_id)
        raise AssertionError("unreachable")

    def _connect(self) -> _Connection | _TLSConnection:
        """The open connection, or a new one (counted in ``connections``)."""
        if self._connection is not None and self._connection.sock is not None:
            return self._connection
        settings = self.settings
        where = f"{settings.smtp_host}:{settings.smtp_port}"
        try:
            if settings.smtp_security == "tls":
                connection = _TLSConnection(
                    settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout, context=self._context
                )
            else:
                connection = _Connection(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout)
        except (smtplib.SMTPException, OSError) as exc:
            raise _CannotConnect(f"cannot connect to the SMTP server {where}: {exc}") from None
        try:
            connection.ehlo_or_helo_if_needed()  # learn the extensions (8BITMIME, AUTH)
            if settings.smtp_security == "starttls":
                connection.starttls(context=self._context)
                connection.ehlo()  # RFC 3207 §4.2: ask again over TLS
            if settings.smtp_username:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                connection.login(settings.smtp_username, password)
        except smtplib.SMTPAuthenticationError as exc:
            connection.close()
            raise ProviderAuthError(
                f"the SMTP server {where} refused the login of {settings.smtp_username}: "
                f"{exc.smtp_code} {_text(exc.smtp_error)}"
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            connection.close()
            raise SettingsError(
                f"the SMTP server {where} does not support what the settings ask for ({exc}); "
                "check 'smtp_security' and 'smtp_username'"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            connection.close()
            raise _CannotConnect(f"cannot set up the SMTP session with {where}: {exc}") from None
        self._connection = connection
        self.connections += 1
        return connection

    def _drop(self, *, polite: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if polite and connection.sock is not None:
                connection.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            connection.close()


def _by_code(recipient: Recipient, code: int, reply: bytes | str) -> RecipientResult:
    """RFC 5321 §4.2.1: 5yz is permanent (rejected); 4yz, and anything
    unexpected, is not a final answer (retryable)."""
    status = Status.REJECTED if 500 <= code < 600 else Status.RETRYABLE
    return RecipientResult(recipient.email, status, reason=f"{code} {_text(reply)}")


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
