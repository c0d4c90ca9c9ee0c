"""Secrets and files: a weak secret_key is refused by a real send; tokens
name their purpose and survive a key rotation while the old key is listed;
the ledger, its lock, the outbox and exported lists are private to their
owner (0600 files, 0700 folders)."""

from __future__ import annotations

import hashlib
import json
import stat

import pytest
from conftest import SENDGRID_KEY, WEEK48
from itsdangerous import Signer, base64_encode

from digest import tokens
from digest.settings import load_settings
from digest.tokens import TokenError
from digest.unsubscribe import LEGACY_SALT, make_token, read_token

SEND = ("send", "--as-of", WEEK48)
OLD = "old-key-9fQ2mX7vL4kP1sR8tZ3wB6yN0c"
NEW = "new-key-H5jD8gK2nV6bM1xC4zQ7wE0rT9"


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    "secret",
    ["x", "short-but-random-Zq8", "change-me-unsubscribe-secret", "b" * 64, "abcabcabc" * 5,
     "abcdefghijklmnopqrstuvwxyzabcdef", "0123456789abcdef0123456789abcdef", "my-newsletter-key-" + "1" * 20],
)
def test_a_real_send_refuses_a_weak_secret_with_one_line_on_making_one(make_site, fake_sendgrid, secret):
    site = make_site(readers=3)
    done = site.run(*SEND, secret_key=secret, sendgrid_host=fake_sendgrid.url, sendgrid_api_key=SENDGRID_KEY)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "'secret_key'" in line and 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in line
    assert fake_sendgrid.stats()["requests"] == 0 and not (site.root / "digest.db").exists()
    # A weak key being phased out is refused too: it would keep forged links working.
    done = site.run(*SEND, secret_key=NEW, previous_secret_keys=json.dumps([secret]), sendgrid_host=fake_sendgrid.url, sendgrid_api_key=SENDGRID_KEY)
    assert done.returncode == 2 and "'previous_secret_keys[0]'" in done.stderr
    assert fake_sendgrid.stats()["requests"] == 0


def test_the_dry_run_outbox_is_private_to_its_owner(make_site):
    site = make_site(readers=4)
    done = site.run(*SEND, "--dry-run")
    assert done.returncode == 0, done.stderr
    outbox = site.root / "outbox"
    assert mode(outbox) == 0o700
    files = list(outbox.iterdir())
    assert len([f for f in files if f.suffix == ".eml"]) == 4 and (outbox / "index.html") in files
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}


def test_the_ledger_its_lock_and_an_export_are_private_to_their_owner(make_site, fake_sendgrid):
    site = make_site(readers=4)
    done = site.run(*SEND, sendgrid_host=fake_sendgrid.url, sendgrid_api_key=SENDGRID_KEY)
    assert done.returncode == 0, done.stderr
    ledger_files = [p for p in site.root.iterdir() if p.name.startswith("digest.db")]
    assert {p.name for p in ledger_files} >= {"digest.db", "digest.db.lock"}
    assert {p.name: mode(p) for p in ledger_files} == {p.name: 0o600 for p in ledger_files}
    done = site.run("subscribers", "export", "-o", "everyone.csv")
    assert done.returncode == 0, done.stderr
    assert mode(site.root / "everyone.csv") == 0o600 and "reader1@example.org" in (site.root / "everyone.csv").read_text()


# Tokens ------------------------------------------------------------------------------------------


def settings_with(secret: str, previous: list[str] | None = None):
    return load_settings(secret_key=secret, previous_secret_keys=previous or [], public_url="https://news.example.org/")


def test_a_token_is_good_for_its_purpose_only():
    settings = settings_with(NEW)
    for purpose in tokens.PURPOSES:
        token = tokens.sign(settings, purpose, ["ada@example.org", "garden"])
        assert tokens.verify(settings, purpose, token) == ["ada@example.org", "garden"]
        for other in set(tokens.PURPOSES) - {purpose}:
            with pytest.raises(TokenError):
                tokens.verify(settings, other, token)
    with pytest.raises(TokenError):
        read_token(settings, make_token(settings, "ada@example.org", "garden", "preferences"), "unsubscribe")


def test_a_rotated_key_keeps_old_links_working_while_it_is_listed():
    old_link = make_token(settings_with(OLD), "ada@example.org", "garden")
    rotating = settings_with(NEW, [OLD])
    assert read_token(rotating, old_link) == ("ada@example.org", "garden")
    new_link = make_token(rotating, "bob@example.org", "garden")
    assert read_token(settings_with(NEW), new_link) == ("bob@example.org", "garden")  # signed with the new key
    with pytest.raises(TokenError):
        read_token(settings_with(NEW), old_link)  # the old key dropped: its links stop


def test_links_sent_before_purposes_keep_unsubscribing_but_confirm_nothing():
    settings = settings_with(NEW)
    payload = json.dumps(["ada@example.org", "garden"], separators=(",", ":")).encode()
    legacy = Signer(NEW, salt=LEGACY_SALT, digest_method=hashlib.sha256).sign(base64_encode(payload)).decode()
    assert read_token(settings, legacy, "unsubscribe") == ("ada@example.org", "garden")
    assert read_token(settings, legacy, "preferences") == ("ada@example.org", "garden")
    for purpose in ("confirm", "form"):
        with pytest.raises(TokenError):
            tokens.verify(settings, purpose, legacy)


def test_a_timed_token_expires():
    settings = settings_with(NEW)
    token = tokens.sign(settings, "confirm", ["ada@example.org"])
    assert tokens.verify(settings, "confirm", token, max_age=60) == ["ada@example.org"]
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(settings, "confirm", token, max_age=-1)
