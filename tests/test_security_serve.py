"""`digest serve` against an attacker, through the real process on loopback:
methods that must change nothing, a forged Host header, the Event Webhook's
freshness, replays and re-encoded signatures, tokens of the wrong purpose,
a weak secret."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from digest.settings import load_settings
from digest.unsubscribe import make_token
from digest.web.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER

SECRET = "k3Vq9ZpL2xW7rT5nB8mC4yH6jF1dG0sA"
ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.fixture
def site(tmp_path):
    lists = tmp_path / "subscribers"
    lists.mkdir()
    (lists / "garden.csv").write_text("email,name,tags\nada@example.org,Ada,roses\nbob@example.org,Bob,bees\n", encoding="utf-8")
    return {"secret_key": SECRET, "subscribers": lists, "ledger": tmp_path / "digest.db", "sources": "[]"}


def suppressed(ledger: Path) -> list[tuple]:
    if not ledger.exists():
        return []
    with closing(sqlite3.connect(ledger)) as db:
        return db.execute("SELECT address, reason, source FROM suppressions ORDER BY address").fetchall()


def preferences_rows(ledger: Path) -> list[tuple]:
    if not ledger.exists():
        return []
    with closing(sqlite3.connect(ledger)) as db:
        return db.execute("SELECT * FROM preferences").fetchall()


def token_settings(served):
    return load_settings(secret_key=SECRET, public_url=served.base)


# 2. Links that scanners and prefetchers follow change nothing -----------------------------------


def test_no_method_but_the_one_click_post_changes_anything(site, start_serve):
    served = start_serve(**site)
    settings = token_settings(served)
    unsubscribe = f"/unsubscribe?token={make_token(settings, 'ada@example.org', 'garden')}"
    preferences = f"/preferences?token={make_token(settings, 'ada@example.org', 'garden', 'preferences')}"
    with httpx.Client(base_url=served.base, timeout=5, trust_env=False) as http:
        for path in (unsubscribe, preferences):
            assert http.head(path).status_code == 200  # a scanner's HEAD
            assert http.get(path).status_code == 200  # a prefetcher's GET
            for method in ("OPTIONS", "PUT", "DELETE", "PATCH"):
                answer = http.request(method, path, content="List-Unsubscribe=One-Click&tag=bees", headers=ONE_CLICK)
                assert answer.status_code == 405, (method, path)
        # A POST to the preferences page without the page's CSRF token, and one with a token of another reader.
        assert http.post(preferences, data={"tag": "bees"}).status_code == 403
        bob_page = http.get(f"/preferences?token={make_token(settings, 'bob@example.org', 'garden', 'preferences')}").text
        bob_csrf = bob_page.split('name="csrf" value="')[1].split('"')[0]
        assert http.post(preferences, data={"tag": "bees", "csrf": bob_csrf}).status_code == 403
        # A POST to unsubscribe without the RFC 8058 body.
        assert http.post(unsubscribe).status_code == 400
        assert suppressed(site["ledger"]) == [] and preferences_rows(site["ledger"]) == []
        # The one-click POST works.
        assert http.post(unsubscribe, content="List-Unsubscribe=One-Click", headers=ONE_CLICK).status_code == 200
    assert suppressed(site["ledger"]) == [("ada@example.org", "unsubscribed", "one-click")]


def test_a_token_for_one_page_is_refused_by_the_other(site, start_serve):
    served = start_serve(**site)
    settings = token_settings(served)
    with httpx.Client(base_url=served.base, timeout=5, trust_env=False) as http:
        wrong = make_token(settings, "ada@example.org", "garden", "preferences")
        assert http.post(f"/unsubscribe?token={wrong}", content="List-Unsubscribe=One-Click", headers=ONE_CLICK).status_code == 400
        assert http.get(f"/preferences?token={make_token(settings, 'ada@example.org', 'garden')}").status_code == 400
    assert suppressed(site["ledger"]) == []


def test_a_forged_host_header_never_reaches_a_location_or_a_link(site, start_serve):
    served = start_serve(**site)
    settings = token_settings(served)
    token = make_token(settings, "ada@example.org", "garden")
    preferences_token = make_token(settings, "ada@example.org", "garden", "preferences")
    evil = {"host": "evil.example", "x-forwarded-host": "evil.example", "forwarded": "host=evil.example"}
    with httpx.Client(base_url=served.base, timeout=5, trust_env=False, follow_redirects=False) as http:
        answers = [
            http.get(f"/unsubscribe/?token={token}", headers=evil),
            http.get(f"/unsubscribe?token={token}", headers=evil),
            http.get(f"/preferences/?token={preferences_token}", headers=evil),
            http.get(f"/preferences?token={preferences_token}", headers=evil),
            http.post(f"/unsubscribe/?token={token}", content="List-Unsubscribe=One-Click", headers={**ONE_CLICK, **evil}),
            http.get("/nothing-here", headers=evil),
        ]
    for answer in answers:
        assert "evil.example" not in answer.headers.get("location", "")
        assert "evil.example" not in answer.text
        assert answer.status_code != 307 and answer.status_code < 500
    page = answers[1].text
    assert f'action="{served.base}/unsubscribe?token={token}"' in page  # built from public_url
    assert f'href="{served.base}/preferences?token={preferences_token}"' in page
    assert suppressed(site["ledger"]) == []


# 4. The Event Webhook takes only fresh, signed, unique events -------------------------------------


@pytest.fixture
def key_pair():
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()


def signed(private, body: bytes, stamp: int) -> dict[str, str]:
    signature = private.sign(str(stamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: str(stamp), "content-type": "application/json"}


def twin(signature_b64: str) -> str:
    """The other valid encoding of the same ECDSA signature: (r, n - s)."""
    r, s = decode_dss_signature(base64.b64decode(signature_b64))
    return base64.b64encode(encode_dss_signature(r, P256_ORDER - s)).decode()


def der(r: int, s: int, *, pad: bool = False) -> bytes:
    """ECDSA-Sig-Value in DER, or with a needless leading zero in each INTEGER (BER)."""

    def integer(value: int) -> bytes:
        raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
        raw = b"\0" + raw if raw[0] & 0x80 else raw
        raw = b"\0" + raw if pad else raw
        return b"\x02" + bytes([len(raw)]) + raw

    body = integer(r) + integer(s)
    return b"\x30" + bytes([len(body)]) + body


def bounce(address: str, event_id: str) -> bytes:
    return json.dumps([{"email": address, "event": "bounce", "type": "bounce", "sg_event_id": event_id, "timestamp": int(time.time())}]).encode()


def test_stale_replayed_and_re_encoded_batches_change_nothing_and_a_fresh_one_works(site, start_serve, key_pair):
    private, public = key_pair
    served = start_serve(**site, sendgrid_webhook_public_key=public)
    hook = f"{served.base}/webhooks/sendgrid"
    with httpx.Client(timeout=5, trust_env=False) as http:
        stale = bounce("ada@example.org", "ev-stale")
        for stamp in (978307200, int(time.time()) - 301, int(time.time()) + 400):  # 2001; just over 5 min; the future
            assert http.post(hook, content=stale, headers=signed(private, stale, stamp)).status_code == 403
        # A padded encoding of the valid signature (BER, not DER) is refused.
        fresh = bounce("bob@example.org", "ev-1")
        headers = signed(private, fresh, int(time.time()))
        r, s = decode_dss_signature(base64.b64decode(headers[SIGNATURE_HEADER]))
        padded = base64.b64encode(der(r, s, pad=True)).decode()
        assert http.post(hook, content=fresh, headers={**headers, SIGNATURE_HEADER: padded}).status_code == 403
        assert suppressed(site["ledger"]) == []
        # The fresh signed batch works.
        answer = http.post(hook, content=fresh, headers=headers)
        assert answer.status_code == 200 and answer.json()["suppressions"] == 1
        # The operator lifts the suppression; replays (as sent, and with the twin signature) change nothing.
        with closing(sqlite3.connect(site["ledger"])) as db, db:
            db.execute("DELETE FROM suppressions")
        for replay in (headers, {**headers, SIGNATURE_HEADER: twin(headers[SIGNATURE_HEADER])}):
            answer = http.post(hook, content=fresh, headers=replay)
            assert answer.status_code in (200, 403) and (answer.status_code == 403 or answer.json()["suppressions"] == 0)
        # The same event re-signed by a new batch (SendGrid's retry) changes nothing either.
        assert http.post(hook, content=fresh, headers=signed(private, fresh, int(time.time()))).json()["suppressions"] == 0
    assert suppressed(site["ledger"]) == []


def test_without_a_key_the_webhook_is_off_and_serve_says_so(site, start_serve):
    served = start_serve(**site)
    body = bounce("ada@example.org", "ev-unsigned")
    with httpx.Client(timeout=5, trust_env=False) as http:
        assert http.post(f"{served.base}/webhooks/sendgrid", content=body, headers={"content-type": "application/json"}).status_code == 403
    assert suppressed(site["ledger"]) == []
    assert "no sendgrid_webhook_public_key: POST /webhooks/sendgrid refuses every event (403)" in served.log()
    # Only the operator's explicit setting opens it.
    opened = start_serve(**site, webhook_allow_unsigned="true")
    with httpx.Client(timeout=5, trust_env=False) as http:
        assert http.post(f"{opened.base}/webhooks/sendgrid", content=body, headers={"content-type": "application/json"}).status_code == 200
    assert "webhook_allow_unsigned is on" in opened.log()


# 6. A weak secret is refused -----------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["x", "change-me-unsubscribe-secret", "a" * 40, "0123456789" * 4])
def test_serve_refuses_a_weak_secret_with_one_line_on_making_one(site, tmp_path, secret):
    import subprocess
    import sys

    from conftest import REPO

    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "DIGEST_SECRET_KEY": secret, "DIGEST_LEDGER": str(site["ledger"])}
    done = subprocess.run([sys.executable, "-m", "digest", "serve", "--port", "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "'secret_key'" in done.stderr and "secrets.token_urlsafe(32)" in done.stderr
    assert secret not in done.stderr or len(secret) < 4


# 7. Every answer forbids framing, sniffing and leaking its URL -------------------------------------

SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


def every_route_and_method(served) -> list[tuple[str, str, dict]]:
    """(method, URL, httpx keyword arguments) for each route of `digest serve`
    with each method it takes and some it refuses, with good tokens where a
    page needs one, and the error answers: 404, 405, 413."""
    from datetime import UTC, datetime

    from digest.signup import SignupRequest, make_confirm_token

    settings = token_settings(served)
    unsubscribe = make_token(settings, "ada@example.org", "garden")
    preferences = make_token(settings, "ada@example.org", "garden", "preferences")
    confirm = make_confirm_token(settings, SignupRequest("new@example.org", "", frozenset(), "weekly", "garden", datetime.now(UTC)))
    pages = {
        "/unsubscribe": (f"token={unsubscribe}", ["GET", "HEAD", "POST"]),
        "/preferences": (f"token={preferences}", ["GET", "HEAD", "POST"]),
        "/subscribe": ("", ["GET", "HEAD", "POST"]),
        "/confirm": (f"token={confirm}", ["GET", "HEAD", "POST"]),
        "/forget": (f"token={preferences}", ["GET", "HEAD", "POST"]),
        "/webhooks/sendgrid": ("", ["POST"]),
    }
    calls = []
    for path, (query, methods) in pages.items():
        url = f"{served.base}{path}?{query}"
        for method in [*methods, "PUT", "DELETE", "PATCH", "OPTIONS"]:
            body = {"content": b"List-Unsubscribe=One-Click", "headers": ONE_CLICK} if method == "POST" else {}
            calls.append((method, url, body))
        calls.append(("POST", url, {"content": b"x" * 6_000_000, "headers": ONE_CLICK}))  # over every cap: 413
    calls += [("GET", f"{served.base}/nowhere", {}), ("GET", f"{served.base}/unsubscribe/", {}), ("GET", f"{served.base}/", {})]
    return calls


def test_every_answer_of_serve_has_the_security_headers(site, start_serve):
    served = start_serve(**site, webhook_allow_unsigned="true")
    statuses = set()
    with httpx.Client(timeout=30) as client:
        for method, url, options in every_route_and_method(served):
            answer = client.request(method, url, **options)
            statuses.add(answer.status_code)
            where = f"{method} {url.split('?')[0]} ({answer.status_code})"
            for name, value in SECURITY_HEADERS.items():
                assert answer.headers.get(name) == value, f"{where}: {name}"
            policy = {part.split()[0]: part.split()[1:] for part in answer.headers["content-security-policy"].split("; ")}
            assert policy["frame-ancestors"] == ["'none'"], where
            assert policy["default-src"] == ["'none'"], where
            assert "'unsafe-inline'" not in policy.get("script-src", []), where
            assert policy["form-action"] == ["'self'", served.base], where
            assert answer.headers.get_list("x-frame-options") == ["DENY"], f"{where}: one header, not two"
    assert {200, 400, 404, 405, 413} <= statuses  # the pages and the error answers were all reached
