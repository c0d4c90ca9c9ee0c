"""Signed unsubscribe tokens and the per-recipient links."""

from __future__ import annotations

import string

import pytest
from itsdangerous import URLSafeSerializer

from digest.errors import SettingsError
from digest.settings import load_settings
from digest.subscribers import Subscriber
from digest.unsubscribe import (
    LEGACY_SALT,
    TokenError,
    make_token,
    preferences_url,
    read_token,
    recipient_for,
    unsubscribe_url,
)


@pytest.fixture
def settings(tmp_path):
    return load_settings(secret_key="test-secret-" + "x" * 20, public_url="https://news.example.org/digest/")


def test_a_token_names_the_address_as_written_and_the_list(settings):
    token = make_token(settings, "Zoë.Ng@example.org", "garden")
    assert read_token(settings, token) == ("Zoë.Ng@example.org", "garden")
    assert set(token) <= set(string.ascii_letters + string.digits + "-_.")  # needs no URL quoting


def test_every_one_character_alteration_is_refused(settings):
    token = make_token(settings, "ada@example.org", "garden")
    refused = 0
    for position, original in enumerate(token):
        for replacement in {"A", "B", "a", "0", "_", "-", "."} - {original}:
            with pytest.raises(TokenError):
                read_token(settings, token[:position] + replacement + token[position + 1 :])
            refused += 1
    assert refused > 6 * len(token)


@pytest.mark.parametrize("token", ["", "abc", ".", "a.b", "not a token at all", "W10.x"])
def test_malformed_tokens_are_refused(settings, token):
    with pytest.raises(TokenError, match="not valid"):
        read_token(settings, token)


def test_a_token_from_another_secret_or_purpose_is_refused(settings):
    other = load_settings(secret_key="another-secret-" + "y" * 20, public_url=settings.public_url)
    with pytest.raises(TokenError):
        read_token(settings, make_token(other, "ada@example.org", "garden"))
    # Signed with our secret but for something else (another salt, another shape).
    foreign = URLSafeSerializer(settings.secret_key.get_secret_value(), salt="other-purpose").dumps(["ada@example.org", "garden"])
    with pytest.raises(TokenError):
        read_token(settings, foreign)
    same_salt_other_shape = URLSafeSerializer(settings.secret_key.get_secret_value(), salt=LEGACY_SALT).dumps({"e": "x@example.org"})
    with pytest.raises(TokenError):
        read_token(settings, same_salt_other_shape)


def test_links_carry_the_token_under_the_public_url(settings):
    url = unsubscribe_url(settings, "ada@example.org", "garden")
    assert url.startswith("https://news.example.org/digest/unsubscribe?token=")
    assert read_token(settings, url.split("token=", 1)[1]) == ("ada@example.org", "garden")
    assert preferences_url(settings, "ada@example.org", "garden").startswith("https://news.example.org/digest/preferences?token=")


@pytest.mark.parametrize("base", ["http://news.example.org", "ftp://news.example.org", "https://"])
def test_links_must_be_https_outside_loopback(base):
    settings = load_settings(public_url=base)
    with pytest.raises(SettingsError, match="public_url"):
        unsubscribe_url(settings, "ada@example.org", "garden")


@pytest.mark.parametrize("setting", ["public_url", "site_url"])
@pytest.mark.parametrize("base", ["https://news.example.org/it's", 'https://news.example.org/"><img src=x>', "https://news.example.org/news&views/"])
def test_a_base_that_html_escaping_changes_is_refused(setting, base):
    """A link is one placeholder in both parts: its base must read the same escaped."""
    settings = load_settings(**{setting: base, **({"public_url": None} if setting == "site_url" else {})})
    with pytest.raises(SettingsError, match="public_url.*percent-encode"):
        recipient_for(Subscriber(email="ada@example.org", name="Ada", tags=frozenset(), list_name="garden", line=2), settings)


@pytest.mark.parametrize(
    ("base", "why"),
    [
        ("https://news.example.org/d?x=1", "without .query"),  # the links would be .../d?x=1/unsubscribe?token=...
        ("https://news.example.org/d#top", "without .query"),  # the path and token would never reach the server
        ("https://editor:s3cret-pw@news.example.org/", "without .query"),  # a password in every email
        ("https://news.example.org/a b/", "spaces, control or non-ASCII"),
        ("https://news.example.org/a\tb/", "spaces, control or non-ASCII"),
        ("https://nüws.example.org/", "spaces, control or non-ASCII"),  # the ASCII (xn--) form is wanted
        ("https://news.example.org:port/", "is not a URL"),
    ],
)
def test_a_base_that_cannot_carry_links_is_refused_with_one_line_and_no_password(base, why):
    settings = load_settings(public_url=base)
    with pytest.raises(SettingsError, match=why) as refused:
        unsubscribe_url(settings, "ada@example.org", "garden")
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("base", ["http://127.0.0.1:8025", "http://localhost:8025/", "http://[::1]:9000"])
def test_plain_http_is_allowed_on_loopback(base):
    assert "/unsubscribe?token=" in unsubscribe_url(load_settings(public_url=base), "ada@example.org", "garden")


def test_recipient_for_fills_the_links_and_the_mailto(settings):
    settings = settings.model_copy(update={"unsubscribe_mailto": "mailto:leave@example.org?subject=unsubscribe"})
    person = Subscriber(email="Ada@example.org", name="Ada L.", tags=frozenset({"roses"}), list_name="garden", line=2)
    recipient = recipient_for(person, settings)
    assert (recipient.email, recipient.name, recipient.subscriber_id, recipient.list_name) == (
        "Ada@example.org",
        "Ada L.",
        "ada@example.org",
        "garden",
    )
    for url, purpose in ((recipient.unsubscribe_url, "unsubscribe"), (recipient.preferences_url, "preferences")):
        assert read_token(settings, url.split("token=", 1)[1], purpose) == ("Ada@example.org", "garden")
    assert recipient.unsubscribe_mailto == "mailto:leave@example.org?subject=unsubscribe"
    assert recipient_for(person, settings.model_copy(update={"unsubscribe_mailto": None})).unsubscribe_mailto is None


@pytest.mark.parametrize("value", ["leave@example.org", "mailto:leave@example.org\r\nBcc: x@example.org", "https://example.org"])
def test_a_mailto_that_is_not_one_is_a_settings_error(settings, value):
    person = Subscriber(email="ada@example.org", name="", tags=frozenset(), list_name="garden", line=2)
    with pytest.raises(SettingsError, match="unsubscribe_mailto"):
        recipient_for(person, settings.model_copy(update={"unsubscribe_mailto": value}))


def test_the_list_unsubscribe_header_carries_the_url_as_written(settings):
    from digest.messages import build_message
    from digest.rendering import RenderedVariant

    settings = settings.model_copy(update={"unsubscribe_mailto": "mailto:leave@example.org?subject=unsubscribe"})
    person = Subscriber(email="Ada.Lovelace-Byron@example.org", name="Ada", tags=frozenset(), list_name="garden", line=2)
    recipient = recipient_for(person, settings)
    rendered = RenderedVariant(variant_key="v1", subject="Hello", preheader="", html="<p>Hi</p>", text="Hi", article_ids=(), nonce="0123456789abcdef")
    raw = build_message(rendered, recipient, settings, issue_key="2026-W48").as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")  # unfolded (RFC 5322 §2.2.3)
    header = next(line for line in head.split(b"\r\n") if line.startswith(b"List-Unsubscribe:"))
    # No RFC 2047 encoded words: mail clients read RFC 2369 URIs as they stand.
    assert header.decode() == f"List-Unsubscribe: <{recipient.unsubscribe_url}>, <{recipient.unsubscribe_mailto}>"
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw
