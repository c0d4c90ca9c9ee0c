"""The SMTP provider against a real aiosmtpd server on 127.0.0.1: no mocks."""

import shutil
import ssl
import subprocess
from email import message_from_bytes, policy

import pytest
from aiosmtpd.smtp import AuthResult
from conftest import SMTPHandler, free_port

from digest.errors import ProviderAuthError, SettingsError
from digest.providers.smtp import SMTPProvider
from digest.recipients import Status
from digest.rendering import personalize

ISSUE = "2026-W48"


@pytest.fixture
def provider_for(make_provider):
    """``provider_for(port, **settings)``: an SMTPProvider for plain SMTP on 127.0.0.1:port."""

    def make(port, **overrides):
        options = dict(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none", smtp_timeout=5)
        return make_provider(SMTPProvider, **{**options, **overrides})

    return make


def received(handler):
    """address -> parsed messages it received."""
    by_address = {}
    for envelope in handler.messages:
        for address in envelope.rcpt_tos:
            by_address.setdefault(address, []).append(message_from_bytes(envelope.content, policy=policy.default))
    return by_address


def lines(text: str) -> list[str]:
    """Lines without their ends (SMTP carries CRLF)."""
    return text.splitlines()


def test_messages_arrive_intact_over_one_reused_connection(smtp_server, provider_for, variant, make_recipients):
    handler, port = smtp_server
    recipients = make_recipients(3, names=["Zoë Ünal", "Doe, Jane", ""])
    provider = provider_for(port)
    results = provider.send_batch(variant, recipients[:2], ISSUE) + provider.send_batch(variant, recipients[2:], ISSUE)

    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert provider.connections == 1  # one connection for both batches
    inbox = received(handler)
    for recipient, result in zip(recipients, results, strict=True):
        (message,) = inbox[recipient.email]
        assert message.get_content_type() == "multipart/alternative"
        plain, html = message.iter_parts()
        assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
        expected_html, expected_text = personalize(variant, recipient)
        assert lines(html.get_content()) == lines(expected_html)
        assert lines(plain.get_content()) == lines(expected_text)
        assert message["Subject"] == variant.subject  # UTF-8 subject decoded back
        assert message["To"].addresses[0].addr_spec == recipient.email
        assert message["To"].addresses[0].display_name == recipient.name
        assert message["Message-ID"] == result.message_id
        assert recipient.unsubscribe_url in message["List-Unsubscribe"]
    assert all(envelope.mail_from == "digest@gazette.example.org" for envelope in handler.messages)
    assert all("BODY=8BITMIME" in envelope.mail_options for envelope in handler.messages)


def test_temporary_refusals_are_retryable_and_a_resend_delivers_them_once(
    smtp_server, provider_for, variant, make_recipients
):
    handler, port = smtp_server
    recipients = make_recipients(5)
    handler.rcpt_replies = {
        recipients[1].email: ["451 4.7.1 Greylisted, try again later"],
        recipients[3].email: ["452 4.2.2 Mailbox full"],
    }
    provider = provider_for(port)
    results = provider.send_batch(variant, recipients, ISSUE)
    assert [r.status for r in results] == [Status.ACCEPTED, Status.RETRYABLE, Status.ACCEPTED,
                                          Status.RETRYABLE, Status.ACCEPTED]
    assert results[1].reason.startswith("451 4.7.1")
    retry = [recipient for recipient, result in zip(recipients, results, strict=False) if result.status is Status.RETRYABLE]
    assert {r.status for r in provider.send_batch(variant, retry, ISSUE)} == {Status.ACCEPTED}
    assert {address: len(messages) for address, messages in received(handler).items()} == {
        recipient.email: 1 for recipient in recipients
    }


def test_a_permanent_refusal_is_rejected_with_the_servers_reply(smtp_server, provider_for, variant, make_recipients):
    handler, port = smtp_server
    recipients = make_recipients(2)
    handler.rcpt_replies = {recipients[0].email: ["550 5.1.1 No such user here"]}
    results = provider_for(port).send_batch(variant, recipients, ISSUE)
    assert [r.status for r in results] == [Status.REJECTED, Status.ACCEPTED]
    assert results[0].reason == "550 5.1.1 No such user here"


def test_a_dropped_connection_is_reopened_and_the_message_sent_once(
    smtp_server, provider_for, variant, make_recipients
):
    handler, port = smtp_server
    recipients = make_recipients(4)
    provider = provider_for(port)
    provider.send_batch(variant, recipients[:2], ISSUE)
    handler.hang_ups = 1  # the server drops the idle connection at the next MAIL FROM
    results = provider.send_batch(variant, recipients[2:], ISSUE)
    assert [r.status for r in results] == [Status.ACCEPTED, Status.ACCEPTED]
    assert provider.connections == 2
    assert sorted(received(handler)) == sorted(r.email for r in recipients)
    assert len(handler.messages) == 4


def test_no_server_leaves_the_batch_retryable_without_trying_each_recipient(
    provider_for, variant, make_recipients
):
    provider = provider_for(free_port())  # nothing listens there
    results = provider.send_batch(variant, make_recipients(3), ISSUE)
    assert {r.status for r in results} == {Status.RETRYABLE}
    assert "cannot connect" in results[0].reason and provider.connections == 0


def test_a_refused_login_stops_the_run_without_showing_the_password(
    start_smtp_server, provider_for, variant, make_recipients
):
    def authenticator(server, session, envelope, mechanism, auth_data):
        login, password = (bytes(value, "utf-8") if isinstance(value, str) else value
                           for value in (auth_data.login, auth_data.password))
        # handled=False: aiosmtpd answers the refusal itself (535).
        return AuthResult(success=(login, password) == (b"digest", b"right"), handled=False)

    handler, port = start_smtp_server(authenticator=authenticator, auth_require_tls=False)
    wrong = provider_for(port, smtp_username="digest", smtp_password="wrong-password-123")
    with pytest.raises(ProviderAuthError) as caught:
        wrong.send_batch(variant, make_recipients(1), ISSUE)
    assert caught.value.exit_code == 3 and "535" in str(caught.value)
    assert "wrong-password-123" not in str(caught.value)
    right = provider_for(port, smtp_username="digest", smtp_password="right")
    assert [r.status for r in right.send_batch(variant, make_recipients(1), ISSUE)] == [Status.ACCEPTED]


def test_starttls_required_by_the_settings_but_not_offered_is_a_settings_error(
    smtp_server, provider_for, variant, make_recipients
):
    _, port = smtp_server
    with pytest.raises(SettingsError, match="smtp_security"):
        provider_for(port, smtp_security="starttls").send_batch(variant, make_recipients(1), ISSUE)


def test_a_421_closing_reply_is_retryable_and_the_next_message_opens_a_new_connection(
    smtp_server, provider_for, variant, make_recipients
):
    handler, port = smtp_server
    recipients = make_recipients(3)
    handler.rcpt_replies = {recipients[1].email: ["421 4.7.0 Too many messages, closing connection"]}
    provider = provider_for(port)
    results = provider.send_batch(variant, recipients, ISSUE)
    assert [r.status for r in results] == [Status.ACCEPTED, Status.RETRYABLE, Status.ACCEPTED]
    assert provider.connections == 2


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """(certificate, key) of a self-signed certificate for 127.0.0.1."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def tls_contexts(cert, key):
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))  # the client trusts only our certificate


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_starttls_and_implicit_tls_with_login(start_smtp_server, settings_for, tls_files, variant, make_recipients,
                                              security):
    server_context, client_context = tls_contexts(*tls_files)

    def authenticator(server, session, envelope, mechanism, auth_data):
        over_tls = server.transport.get_extra_info("ssl_object") is not None
        return AuthResult(success=over_tls and auth_data.password in ("secret", b"secret"), handled=False)

    if security == "starttls":
        options = dict(tls_context=server_context, require_starttls=True)
    else:
        # aiosmtpd offers AUTH only after its own STARTTLS unless told otherwise;
        # the authenticator still insists on TLS.
        options = dict(ssl_context=server_context, auth_require_tls=False)
    handler, port = start_smtp_server(authenticator=authenticator, **options)
    settings = settings_for(smtp_host="127.0.0.1", smtp_port=port, smtp_security=security, smtp_timeout=5,
                            smtp_username="digest", smtp_password="secret")
    provider = SMTPProvider(settings, ssl_context=client_context)
    try:
        results = provider.send_batch(variant, make_recipients(2), ISSUE)
    finally:
        provider.close()
    assert [r.status for r in results] == [Status.ACCEPTED] * 2
    assert len(handler.messages) == 2


class _No8BitMime(SMTPHandler):
    """A server that never offers 8BITMIME (RFC 6152), as old relays do."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [line for line in responses if "8BITMIME" not in line.upper()]


def test_a_server_without_8bitmime_gets_7bit_clean_parts_that_decode_to_the_same_text(provider_for, variant, make_recipients):
    from aiosmtpd.controller import Controller

    handler = _No8BitMime()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), ready_timeout=10)
    controller.start()
    try:
        provider = provider_for(controller.port)
        (recipient,) = make_recipients(1, names=["Zoë Ünal"])
        assert [r.status for r in provider.send_batch(variant, [recipient], ISSUE)] == [Status.ACCEPTED]
        provider.close()
    finally:
        controller.stop()
    (envelope,) = handler.messages
    assert "BODY=8BITMIME" not in envelope.mail_options
    raw = envelope.original_content
    assert max(raw) < 128, "a byte over 127 went to a server that never offered 8BITMIME"
    message = message_from_bytes(raw, policy=policy.default)
    plain, html = message.iter_parts()
    assert {plain["Content-Transfer-Encoding"], html["Content-Transfer-Encoding"]} <= {"quoted-printable", "base64", "7bit"}
    expected_html, expected_text = personalize(variant, recipient)
    assert lines(html.get_content()) == lines(expected_html) and "Grüße" in html.get_content()
    assert lines(plain.get_content()) == lines(expected_text)
