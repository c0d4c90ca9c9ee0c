"""Shared fixtures: the local SendGrid stand-in (../shared/tools/fake_sendgrid.py)
and a real aiosmtpd server on 127.0.0.1 whose answers a test can steer."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
FAKE_SENDGRID = SHARED / "tools" / "fake_sendgrid.py"
SENDGRID_KEY = "SG.test-key-not-a-secret"


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Every test starts in an empty working directory with no DIGEST_*
    variables, so the repository's own digest.toml (the example site) and
    the developer's environment never leak into a test's settings."""
    for name in list(os.environ):
        if name.startswith("DIGEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def load_fake_sendgrid():
    """The stand-in as a module (it lives outside the repo); skips the test
    when ../shared is absent."""
    if not FAKE_SENDGRID.is_file():
        pytest.skip(f"the SendGrid stand-in is not at {FAKE_SENDGRID} (../shared is absent)")
    if "fake_sendgrid" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fake_sendgrid", FAKE_SENDGRID)
        module = importlib.util.module_from_spec(spec)
        sys.modules["fake_sendgrid"] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["fake_sendgrid"]


@pytest.fixture(scope="session")
def _loopback_without_proxy():
    # urllib honours http_proxy; the stand-in is on loopback.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        patch.setenv("no_proxy", "127.0.0.1,localhost")
        yield


@pytest.fixture
def start_fake_sendgrid(tmp_path, _loopback_without_proxy):
    """``start(**options)`` runs the stand-in on a free loopback port with
    ``options`` (``fail_rate``, ``rate_limit``, ``accept_then_drop``,
    ``max_body_bytes``...) and only ``SENDGRID_KEY`` accepted; each server
    records to its own JSONL file and is stopped after the test."""
    fake = load_fake_sendgrid()
    servers = []

    def start(**options):
        options.setdefault("api_keys", (SENDGRID_KEY,))
        server, _ = fake.serve(port=0, record=tmp_path / f"sendgrid-{len(servers)}.jsonl", **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def _shared_fake_sendgrid(tmp_path_factory, _loopback_without_proxy):
    fake = load_fake_sendgrid()
    server, _ = fake.serve(port=0, record=tmp_path_factory.mktemp("sendgrid") / "sent.jsonl", api_keys=(SENDGRID_KEY,))
    yield server
    server.stop()


@pytest.fixture
def fake_sendgrid(_shared_fake_sendgrid):
    """The stand-in with default (strict) settings, its records and request
    ring cleared for this test (one server for the session: stopping one
    takes half a second)."""
    _shared_fake_sendgrid.reset()
    return _shared_fake_sendgrid


class SMTPHandler:
    """aiosmtpd handler steered by tests.

    ``messages``: the envelopes received. ``rcpt_replies``: address -> list
    of replies to give to its next RCPT commands, in turn (e.g. ``["451 4.7.1
    Try again later"]``; once used up, the address is accepted).
    ``hang_ups``: how many of the next MAIL commands are answered by closing
    the connection without a reply (an idle timeout, a crash).
    """

    def __init__(self) -> None:
        self.messages = []
        self.rcpt_replies: dict[str, list[str]] = {}
        self.hang_ups = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.hang_ups:
            self.hang_ups -= 1
            server.transport.abort()
            return "250 OK"  # written nowhere: the transport is gone
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        replies = self.rcpt_replies.get(address)
        if replies:
            return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 2.0.0 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def start_smtp_server():
    """``start(**controller_options)``: a real aiosmtpd server on 127.0.0.1
    (plain SMTP unless the options say otherwise, e.g. an ``authenticator``)
    with a fresh :class:`SMTPHandler`; returns ``(handler, port)``. Stopped
    after the test."""
    from aiosmtpd.controller import Controller

    controllers = []

    def start(**options):
        handler = SMTPHandler()
        controller = Controller(handler, hostname="127.0.0.1", port=free_port(), ready_timeout=10, **options)
        controller.start()
        controllers.append(controller)
        return handler, controller.port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def smtp_server(start_smtp_server):
    """A plain aiosmtpd server: ``(handler, port)``."""
    return start_smtp_server()


# Rendered variants and recipients for the provider tests ---------------------------------


@pytest.fixture
def variant():
    """A rendered variant as rendering makes it: UTF-8 subject, HTML and text
    with the per-person placeholders that personalize()/substitutions() fill."""
    from digest.rendering import HTML_PLACEHOLDERS, TEXT_PLACEHOLDERS, RenderedVariant

    html = (
        '<!doctype html><html lang="en"><body><table role="presentation" width="600"><tr><td>'
        f"<p>Hello {HTML_PLACEHOLDERS['name']},</p><p>Grüße from the allotment: “quotes” kept.</p>"
        f'<p><a href="{HTML_PLACEHOLDERS["unsubscribe_url"]}">Unsubscribe</a></p>'
        "</td></tr></table></body></html>"
    )
    text = (
        f"Hello {TEXT_PLACEHOLDERS['name']},\n\nGrüße from the allotment: “quotes” kept.\n\n"
        f"Unsubscribe: {TEXT_PLACEHOLDERS['unsubscribe_url']}\n"
    )
    return RenderedVariant(
        variant_key="v-3f9a", subject="Gazette: Rübe & Kürbis and 2 more", preheader="This week",
        html=html, text=text, article_ids=("a1", "a2", "a3"),
    )


@pytest.fixture
def make_recipients():
    """``make(n, start=0, names=None)``: recipients reader{i}@example.org,
    named ``names[i - start]`` when given, else "Reader i"."""
    from digest.providers import Recipient

    def make(n, start=0, names=None):
        return [
            Recipient(
                email=f"reader{i}@example.org",
                name=names[i - start] if names else f"Reader {i}",
                subscriber_id=f"reader{i}@example.org",
                list_name="main",
                unsubscribe_url=f"https://gazette.example.org/unsubscribe?t=tok{i}",
                unsubscribe_mailto="mailto:unsubscribe@gazette.example.org",
            )
            for i in range(start, start + n)
        ]

    return make


@pytest.fixture
def settings_for(tmp_path, monkeypatch):
    """``settings_for(**overrides)``: settings read in an empty folder (no
    digest.toml or .env of the repo), with ``overrides``."""
    from digest.settings import load_settings

    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("DIGEST_")]:
        monkeypatch.delenv(name)

    def make(**overrides):
        return load_settings(**overrides)

    return make


@pytest.fixture
def make_provider(settings_for):
    """``make_provider(cls, **settings)``: provider class ``cls`` built from
    the test site's sender and ``settings``; closed after the test."""
    made = []

    def make(cls, **overrides):
        options = {"sender_email": "digest@gazette.example.org", "sender_name": "The Allotment Gazette"}
        provider = cls(settings_for(**{**options, **overrides}))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()
