"""digest serve: one-click unsubscribe (RFC 8058), the unsubscribe and
preferences pages, and SendGrid's signed Event Webhook; through Starlette's
test client and once through a real uvicorn process on loopback."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from digest import suppressions
from digest.audience import load_audience
from digest.errors import SettingsError
from digest.ledger import SCHEMA_VERSION, DeliveryStatus, Ledger
from digest.recipients import Recipient, RecipientResult, Status
from digest.settings import load_settings
from digest.unsubscribe import make_token
from digest.web import create_app
from digest.web.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER

REPO = Path(__file__).resolve().parents[1]
V1_LEDGER = REPO / "tests" / "fixtures" / "ledger-v1.db"
ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def settings(tmp_path):
    lists = tmp_path / "subscribers"
    lists.mkdir()
    (lists / "garden.csv").write_text(
        "email,name,tags\nAda@example.org,Ada,roses\nbob@example.org,Bob,bees\ncy@example.org,Cy,\n", encoding="utf-8"
    )
    return load_settings(
        secret_key="web-test-secret-Qm7v2Kx9Lp4Rt8Wz3Nc6",
        public_url="http://127.0.0.1:8025",
        webhook_allow_unsigned=True,
        subscribers=lists,
        ledger=tmp_path / "digest.db",
        sources=[],
    )


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def rows(settings):
    """Every suppression as (address, reason, source, list), or [] without a ledger file."""
    if not Path(settings.ledger).exists():
        return []
    return [(s.address, s.reason, s.source, s.list_name) for s in suppressions.list_suppressions(settings.ledger)]


# Unsubscribe --------------------------------------------------------------------------------------


def test_one_click_post_suppresses_exactly_that_address(client, settings):
    token = make_token(settings, "Ada@example.org", "garden")
    answer = client.post(f"/unsubscribe?token={token}", content="List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert answer.status_code == 200
    assert "set-cookie" not in answer.headers
    assert "Ada@example.org" in answer.text
    assert rows(settings) == [("Ada@example.org", "unsubscribed", "one-click", "garden")]
    audience = load_audience(settings, "garden")
    assert [s.email for s in audience.subscribers] == ["bob@example.org", "cy@example.org"]


def test_only_the_one_click_body_unsubscribes_and_repeating_it_is_harmless(client, settings):
    token = make_token(settings, "bob@example.org", "garden")
    for body in (b"", b"List-Unsubscribe=Later", b"x" * 100):
        assert client.post(f"/unsubscribe?token={token}", content=body, headers=ONE_CLICK).status_code == 400
    assert rows(settings) == []
    for _ in range(3):
        assert client.post(f"/unsubscribe?token={token}", content="List-Unsubscribe=One-Click", headers=ONE_CLICK).status_code == 200
    # RFC 8058 §3.1 allows multipart/form-data too; the body without a form type is read as it stands.
    plain = make_token(settings, "Ada@example.org", "garden")
    assert client.post(f"/unsubscribe?token={plain}", content="List-Unsubscribe=One-Click", headers={"content-type": "text/plain"}).status_code == 200
    other = make_token(settings, "cy@example.org", "garden")
    assert client.post(f"/unsubscribe?token={other}", files={"List-Unsubscribe": (None, "One-Click")}).status_code == 200
    assert rows(settings) == [
        ("Ada@example.org", "unsubscribed", "one-click", "garden"),
        ("bob@example.org", "unsubscribed", "one-click", "garden"),
        ("cy@example.org", "unsubscribed", "one-click", "garden"),
    ]


def test_get_shows_a_button_that_posts_and_unsubscribes_no_one(client, settings):
    token = make_token(settings, "cy@example.org", "garden")
    page = client.get(f"/unsubscribe?token={token}")
    assert page.status_code == 200
    assert f'<form method="post" action="http://127.0.0.1:8025/unsubscribe?token={token}">' in page.text
    assert "<button" in page.text and "cy@example.org" in page.text
    assert rows(settings) == []
    client.post(f"/unsubscribe?token={token}", content="List-Unsubscribe=One-Click&via=page", headers=ONE_CLICK)
    assert rows(settings) == [("cy@example.org", "unsubscribed", "unsubscribe-page", "garden")]
    assert "gets no more mail" in client.get(f"/unsubscribe?token={token}").text


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", ["/unsubscribe", "/preferences"])
def test_an_altered_or_missing_token_gets_400_and_records_nothing(client, settings, method, path):
    token = make_token(settings, "Ada@example.org", "garden")
    altered = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    for query in (f"?token={altered}", f"?token={token[:-1]}", "?token=", ""):
        answer = client.request(method, path + query, data={"tag": "roses"} if path == "/preferences" else None)
        assert answer.status_code == 400, query
        assert "not valid" in answer.text
    assert rows(settings) == []
    assert not Path(settings.ledger).exists() or suppressions.all_preferences(settings.ledger, "garden") == {}


def test_a_page_escapes_what_the_token_carries(client, settings):
    token = make_token(settings, '"<script>"@example.org', "<b>garden</b>")
    page = client.get(f"/unsubscribe?token={token}").text
    assert "<script>" not in page and "&lt;b&gt;garden&lt;/b&gt;" in page


# Preferences --------------------------------------------------------------------------------------


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page)[1]


def test_preferences_offer_known_tags_and_are_applied_over_the_csv(client, settings):
    token = make_token(settings, "ada@example.org", "garden", "preferences")
    page = client.get(f"/preferences?token={token}")
    assert page.status_code == 200
    assert 'value="roses" checked' in page.text  # the CSV row's choice
    assert 'value="bees">' in page.text  # a tag another reader chose
    saved = client.post(f"/preferences?token={token}", data={"tag": ["bees", "Roses", "not-offered"], "csrf": csrf_of(page.text)})
    assert saved.status_code == 200 and "Saved" in saved.text
    assert suppressions.get_preferences(settings.ledger, "Ada@example.org", "garden") == {"bees", "roses"}
    assert 'value="bees" checked' in saved.text
    ada = next(s for s in load_audience(settings, "garden").subscribers if s.key == "ada@example.org")
    assert ada.tags == {"bees", "roses"}


def test_preferences_offer_the_articles_tags_too(settings, tmp_path):
    app = create_app(settings, known_tags={"roses", "compost", "pruning"})
    with TestClient(app) as client:
        page = client.get(f"/preferences?token={make_token(settings, 'bob@example.org', 'garden', 'preferences')}").text
    assert all(f'value="{tag}"' in page for tag in ("compost", "pruning", "roses", "bees"))


# SendGrid's Event Webhook ---------------------------------------------------------------------------


@pytest.fixture
def key_pair():
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(public).decode()


def signed(private, payload: bytes, timestamp: str | None = None) -> dict[str, str]:
    """Headers as SendGrid sends them: ECDSA P-256 / SHA-256 over timestamp + body, DER, base64;
    the timestamp is now unless given."""
    timestamp = timestamp or str(int(time.time()))
    signature = private.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: timestamp, "content-type": "application/json"}


BATCH = json.dumps(
    [
        {"email": "bob@example.org", "event": "delivered", "issue_key": "2026-W48", "subscriber_id": "bob@example.org", "timestamp": 1764409000},
        {"email": "Ada@example.org", "event": "bounce", "type": "bounce", "reason": "550 5.1.1 unknown user", "issue_key": "2026-W48", "subscriber_id": "ada@example.org"},
        {"email": "cy@example.org", "event": "open", "timestamp": 1764409100},
    ]
).encode()


@pytest.fixture
def signed_client(settings, key_pair):
    with TestClient(create_app(settings.model_copy(update={"sendgrid_webhook_public_key": key_pair[1]}))) as client:
        yield client


def test_a_signed_batch_with_a_bounce_suppresses_that_address(signed_client, settings, key_pair):
    answer = signed_client.post("/webhooks/sendgrid", content=BATCH, headers=signed(key_pair[0], BATCH))
    assert answer.status_code == 200
    assert rows(settings) == [("Ada@example.org", "bounced", "sendgrid:bounce", None)]
    assert [s.email for s in load_audience(settings, "garden").subscribers] == ["bob@example.org", "cy@example.org"]
    # SendGrid retries deliveries: the same batch again changes nothing.
    assert signed_client.post("/webhooks/sendgrid", content=BATCH, headers=signed(key_pair[0], BATCH)).status_code == 200
    assert len(rows(settings)) == 1


def test_a_broken_or_missing_signature_gets_403_and_changes_nothing(signed_client, settings, key_pair):
    good = signed(key_pair[0], BATCH)
    signature = base64.b64decode(good[SIGNATURE_HEADER])
    flipped = base64.b64encode(signature[:-1] + bytes([signature[-1] ^ 1])).decode()
    other_key = ec.generate_private_key(ec.SECP256R1())
    attempts = [
        {**good, SIGNATURE_HEADER: flipped},
        {**good, TIMESTAMP_HEADER: str(int(good[TIMESTAMP_HEADER]) + 1)},  # signed for another time
        signed(other_key, BATCH),
        {**good, SIGNATURE_HEADER: "not base64!"},
        {"content-type": "application/json"},
    ]
    for headers in attempts:
        assert signed_client.post("/webhooks/sendgrid", content=BATCH, headers=headers).status_code == 403
    tampered = BATCH.replace(b"Ada@example.org", b"bob@example.org")
    assert signed_client.post("/webhooks/sendgrid", content=tampered, headers=good).status_code == 403
    assert rows(settings) == []


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"event": "bounce"}', b'[{"email": "a@example.org"}]', b'[{"event": "bounce", "email": 7}]', b"[1]"],
)
def test_a_malformed_signed_batch_gets_400_and_records_nothing(signed_client, settings, key_pair, body):
    answer = signed_client.post("/webhooks/sendgrid", content=body, headers=signed(key_pair[0], body))
    assert answer.status_code == 400
    assert "malformed" in answer.json()["error"]
    assert rows(settings) == []


def test_a_batch_is_all_or_nothing(signed_client, settings, key_pair):
    body = json.dumps([{"email": "ada@example.org", "event": "bounce"}, {"email": "bob@example.org", "event": "spamreport"}, {"event": "dropped"}]).encode()
    assert signed_client.post("/webhooks/sendgrid", content=body, headers=signed(key_pair[0], body)).status_code == 400
    assert rows(settings) == []


def test_each_suppressing_event_gets_its_reason(settings):
    events = [
        {"email": "a@example.org", "event": "bounce", "type": "bounce"},
        {"email": "b@example.org", "event": "bounce", "type": "blocked"},  # temporary: not suppressed
        {"email": "c@example.org", "event": "dropped", "reason": "Bounced Address"},
        {"email": "d@example.org", "event": "dropped", "reason": "Unsubscribed Address"},
        {"email": "e@example.org", "event": "dropped", "reason": "Spam Reporting Address"},
        {"email": "f@example.org", "event": "dropped", "reason": "Spam Content (if spam checker app enabled)"},
        {"email": "g@example.org", "event": "spamreport"},
        {"email": "h@example.org", "event": "unsubscribe"},
        {"email": "i@example.org", "event": "group_unsubscribe", "asm_group_id": 42},
        {"email": "j@example.org", "event": "deferred"},
    ]
    with TestClient(create_app(settings)) as client:  # no key configured: unsigned batches are taken
        assert client.post("/webhooks/sendgrid", json=events).status_code == 200
    assert {address: (reason, source) for address, reason, source, _ in rows(settings)} == {
        "a@example.org": ("bounced", "sendgrid:bounce"),
        "c@example.org": ("bounced", "sendgrid:dropped"),
        "d@example.org": ("unsubscribed", "sendgrid:dropped"),
        "e@example.org": ("spam-report", "sendgrid:dropped"),
        "g@example.org": ("spam-report", "sendgrid:spamreport"),
        "h@example.org": ("unsubscribed", "sendgrid:unsubscribe"),
        "i@example.org": ("unsubscribed", "sendgrid:group_unsubscribe"),
    }


# Delivery events against the ledger's delivery rows ---------------------------------------------


def sent_ledger(settings, *addresses: str) -> None:
    """A ledger file in which issue 2026-W48 went to ``addresses`` (accepted)."""
    start = datetime(2026, 11, 16, 8, tzinfo=UTC)
    with Ledger(settings.ledger) as ledger:
        ledger.create_issue("2026-W48", start, start + timedelta(days=7), ["a1"])
        people = [Recipient(a, a, a.casefold(), "garden", unsubscribe_url="") for a in addresses]
        ledger.enqueue("2026-W48", [(person, "v1") for person in people])
        rows = ledger.claim_batch("2026-W48", "v1", 100)
        ledger.record_results([(row.id, RecipientResult(row.email, Status.ACCEPTED, message_id="m")) for row in rows])


def events(ledger_path) -> list[tuple]:
    """(address, event, detail, occurred_at) of every delivery event, by address then event."""
    with closing(sqlite3.connect(ledger_path)) as db:
        return db.execute(
            "SELECT d.email, e.event, e.detail, e.occurred_at FROM events e JOIN deliveries d ON d.id = e.delivery_id "
            "ORDER BY d.email, e.event"
        ).fetchall()


def test_delivered_bounce_and_dropped_are_recorded_against_their_delivery_rows(signed_client, settings, key_pair):
    sent_ledger(settings, "Ada@example.org", "bob@example.org", "cy@example.org")
    more = [
        {"email": "cy@example.org", "event": "dropped", "reason": "Spam Content", "issue_key": "2026-W48", "subscriber_id": "cy@example.org", "sg_event_id": "e3"},
        {"email": "cy@example.org", "event": "processed", "issue_key": "2026-W48", "subscriber_id": "cy@example.org"},
        {"email": "bob@example.org", "event": "delivered", "issue_key": "test-2026-W48", "subscriber_id": "bob@example.org"},  # a test send
        {"email": "zed@example.org", "event": "bounce", "type": "bounce", "reason": "no such user"},  # not our mail
    ]
    body = json.dumps([*json.loads(BATCH), *more]).encode()
    answer = signed_client.post("/webhooks/sendgrid", content=body, headers=signed(key_pair[0], body))
    assert answer.status_code == 200
    assert answer.json() == {"suppressions": 2, "delivery_events": 3}
    assert events(settings.ledger) == [
        ("Ada@example.org", "bounce", "bounce: 550 5.1.1 unknown user", None),
        ("bob@example.org", "delivered", None, "2025-11-29T09:36:40+00:00"),
        ("cy@example.org", "dropped", "Spam Content", None),
    ]
    # The address-level outcome is unchanged: the message-level drop suppresses nobody.
    assert {address for address, *_ in rows(settings)} == {"Ada@example.org", "zed@example.org"}
    # SendGrid delivers webhooks at least once: a repeat records nothing more.
    again = signed_client.post("/webhooks/sendgrid", content=body, headers=signed(key_pair[0], body))
    assert again.json() == {"suppressions": 0, "delivery_events": 0}
    assert len(events(settings.ledger)) == 3


def test_suppressions_and_delivery_events_of_a_batch_are_one_transaction(settings):
    sent_ledger(settings, "Ada@example.org", "bob@example.org")
    with closing(sqlite3.connect(settings.ledger)) as db, db:  # a failing disk, as SQLite reports it
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.post("/webhooks/sendgrid", content=BATCH).status_code == 500  # SendGrid retries a 5xx
        assert rows(settings) == [] and events(settings.ledger) == []
        with closing(sqlite3.connect(settings.ledger)) as db, db:
            db.execute("DROP TRIGGER refuse")
        assert client.post("/webhooks/sendgrid", content=BATCH).status_code == 200
    assert rows(settings) == [("Ada@example.org", "bounced", "sendgrid:bounce", None)]
    assert [(address, event) for address, event, *_ in events(settings.ledger)] == [("Ada@example.org", "bounce"), ("bob@example.org", "delivered")]


def test_a_version_1_ledger_is_migrated_keeping_its_rows_and_takes_delivery_events(settings, tmp_path):
    # Written by digest at schema version 1 (a real send of issue 2026-W48 to
    # ada, Bob and cy through the outbox provider, then cy suppressed by hand).
    shutil.copy(V1_LEDGER, settings.ledger)
    tables = ("issues", "deliveries", "sent_articles", "suppressions")

    def snapshot():
        with closing(sqlite3.connect(settings.ledger)) as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            return version, {table: db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() for table in tables}

    version, before = snapshot()
    assert version == 1 and len(before["deliveries"]) == 3
    batch = json.dumps(
        [
            {"email": "ada@example.org", "event": "bounce", "type": "bounce", "reason": "550 gone", "issue_key": "2026-W48", "subscriber_id": "ada@example.org", "sg_event_id": "x1"},
            {"email": "Bob@example.org", "event": "delivered", "issue_key": "2026-W48", "subscriber_id": "bob@example.org", "sg_event_id": "x2"},
        ]
    )
    with TestClient(create_app(settings)) as client:
        assert client.post("/webhooks/sendgrid", content=batch).json() == {"suppressions": 1, "delivery_events": 2}
    version, after = snapshot()
    assert version == SCHEMA_VERSION >= 2  # the latest schema, which has the events table
    # Every row kept as it was; later versions only add columns (at the end) and tables.
    kept = {t: [row[: len(before[t][0])] for row in after[t]] for t in tables if t != "suppressions"}
    assert kept == {t: before[t] for t in tables if t != "suppressions"}
    assert after["suppressions"][: len(before["suppressions"])] == before["suppressions"]
    assert [(address, event) for address, event, *_ in events(settings.ledger)] == [("Bob@example.org", "delivered"), ("ada@example.org", "bounce")]
    with Ledger(settings.ledger) as ledger:  # the send loop still reads the migrated file
        assert ledger.counts("2026-W48")[DeliveryStatus.ACCEPTED] == 3
        assert ledger.get_issue("2026-W48").status == "finished"


def test_custom_args_that_are_not_strings_make_the_batch_malformed(client, settings):
    sent_ledger(settings, "Ada@example.org")
    body = json.dumps(
        [
            {"email": "Ada@example.org", "event": "bounce", "issue_key": "2026-W48", "subscriber_id": "ada@example.org"},
            {"email": "Ada@example.org", "event": "delivered", "issue_key": 202648, "subscriber_id": "ada@example.org"},
        ]
    ).encode()
    answer = client.post("/webhooks/sendgrid", content=body)
    assert answer.status_code == 400 and "item 1 (delivered)" in answer.json()["error"]
    assert rows(settings) == [] and events(settings.ledger) == []


def test_a_wrong_public_key_setting_is_a_settings_error(settings):
    with pytest.raises(SettingsError, match="sendgrid_webhook_public_key"):
        create_app(settings.model_copy(update={"sendgrid_webhook_public_key": "not-a-key"}))


# The real server ----------------------------------------------------------------------------------


def test_the_digest_serve_process_on_loopback_takes_a_one_click_post(settings, start_serve):
    served = start_serve(
        secret_key=settings.secret_key.get_secret_value(), ledger=settings.ledger, subscribers=settings.subscribers
    )
    with httpx.Client(base_url=served.base, timeout=5, trust_env=False) as http:
        token = make_token(settings, "bob@example.org", "garden")
        assert http.get(f"/unsubscribe?token={token}").status_code == 200
        assert rows(settings) == []
        answer = http.post(f"/unsubscribe?token={token}", content="List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert answer.status_code == 200
        assert http.post(f"/unsubscribe?token={token[:-2]}xx", headers=ONE_CLICK).status_code == 400
    served.process.terminate()
    served.process.wait(timeout=10)
    assert rows(settings) == [("bob@example.org", "unsubscribed", "one-click", "garden")]
    # The log names each request without its token: whoever reads it must not be able to unsubscribe anyone.
    log = served.log()
    assert '"POST /unsubscribe" 200' in log and '"GET /unsubscribe" 200' in log
    assert token[:20] not in log and "token=" not in log
    # No webhook key: one warning line at start, saying what that means.
    (warning,) = [line for line in log.splitlines() if "sendgrid_webhook_public_key" in line]
    assert warning.startswith("warning: ") and "refuses every event (403)" in warning


def test_without_a_key_the_webhook_refuses_unsigned_events_unless_told_to_take_them(settings):
    keyless = settings.model_copy(update={"webhook_allow_unsigned": False})
    body = json.dumps([{"event": "bounce", "email": "ada@example.org", "type": "bounce"}])
    with TestClient(create_app(keyless)) as client:
        answer = client.post("/webhooks/sendgrid", content=body)
    assert answer.status_code == 403 and "sendgrid_webhook_public_key" in answer.json()["error"]
    assert rows(settings) == []
    from digest.web import serve_warnings

    (warning,) = serve_warnings(keyless)
    assert "refuses every event (403)" in warning
    (warning,) = serve_warnings(settings)  # webhook_allow_unsigned = true
    assert "accepts unsigned events" in warning and "suppress addresses" in warning
    assert serve_warnings(settings.model_copy(update={"sendgrid_webhook_public_key": "k"})) == []


def test_serve_refuses_the_network_with_the_default_secret(tmp_path, monkeypatch):
    import uvicorn

    from digest.web import serve

    def must_not_start(*args, **kwargs):  # a guard: this test must never bind 0.0.0.0
        raise AssertionError("uvicorn was started with the default secret")

    monkeypatch.setattr(uvicorn, "run", must_not_start)
    exposed = load_settings(serve_host="0.0.0.0", ledger=tmp_path / "digest.db")  # secret_key left at its default
    with pytest.raises(SettingsError, match="secret_key"):
        serve(exposed)


def test_serve_on_a_port_in_use_is_one_line_and_exit_2(make_site):
    # uvicorn's own failure is exit 3, which README gives to a provider's refusal.
    import socket

    site = make_site(readers=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = site.run("serve", "--port", str(port), timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
