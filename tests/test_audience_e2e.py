"""The audience acceptance list (lists, variants, unsubscribe, bounces), end to end through the real command line
(``python -m digest`` in a site folder of our own: digest.toml, Markdown
articles, a CSV list), the real ``digest serve`` process on loopback, the
SendGrid stand-in and ``../shared/tools/email_lint.py``."""

from __future__ import annotations

import base64
import contextlib
import email
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import closing
from email import policy
from email.utils import getaddresses
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import SENDGRID_KEY, SHARED, free_port
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_web import ONE_CLICK, signed

from digest.web.webhook import SIGNATURE_HEADER

REPO = Path(__file__).resolve().parents[1]
EMAIL_LINT = SHARED / "tools" / "email_lint.py"
AS_OF = "2026-11-23T09:00"  # issue 2026-W48: window 2026-11-16 08:00 .. 2026-11-23 08:00 UTC
PUBLIC_URL = "https://news.gazette.example.org"

ARTICLES = {
    "roses": ("Roses under fleece", "2026-11-20"),
    "bees": ("The hives are wintering", "2026-11-21"),
    "compost": ("New compost bays", "2026-11-19"),
}
TITLES = {title for title, _ in ARTICLES.values()}
# ada and dee chose the same tags; bob and cy each chose others.
TAGGED_LIST = "email,name,tags\nAda@example.org,Ada,roses\nbob@example.org,Bob,bees\ncy@example.org,Cy,compost;roses\ndee@example.org,Dee,roses\n"


def make_site(folder: Path, subscribers: str | bytes = TAGGED_LIST, **settings: str) -> Path:
    """A site: digest.toml (``settings`` added), one Markdown article per
    tag of :data:`ARTICLES`, and ``subscribers/main.csv``."""
    (folder / "posts").mkdir()
    for tag, (title, day) in ARTICLES.items():
        (folder / "posts" / f"{tag}.md").write_text(
            f"---\ntitle: {title}\ndate: {day}T10:00:00Z\ntags: [{tag}]\n---\nNotes from the plots about {tag}.\n",
            encoding="utf-8",
        )
    (folder / "subscribers").mkdir()
    target = folder / "subscribers" / "main.csv"
    target.write_bytes(subscribers if isinstance(subscribers, bytes) else subscribers.encode("utf-8"))
    toml = {
        "site_name": "The Test Gazette",
        "site_url": "https://gazette.example.org/",
        "public_url": PUBLIC_URL,
        "sender_email": "digest@gazette.example.org",
        "postal_address": "The Test Gazette, 1 Orchard Lane, Springfield",
        "timezone": "UTC",
        "sources": ["posts"],
        "subscribers": "subscribers",
        "secret_key": "e2e-unsubscribe-secret-Jx4Tq8Vm2Rk6Wn0Zp3",
        "unsubscribe_mailto": "mailto:unsubscribe@gazette.example.org?subject=unsubscribe",
        **settings,
    }
    (folder / "digest.toml").write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in toml.items()), encoding="utf-8")
    return folder


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without DIGEST_* settings, loopback off any proxy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return {**env, "PYTHONPATH": str(REPO), "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", **extra}


def digest(site: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "digest", *args], cwd=site, env=env or environment(), capture_output=True, text=True, timeout=60
    )


def dry_run(site: Path, outbox: str = "outbox") -> dict[str, email.message.EmailMessage]:
    """``digest send --dry-run``: the messages written, by recipient address (each address once)."""
    run = digest(site, "send", "--dry-run", "--as-of", AS_OF, "--outbox", outbox)
    assert run.returncode == 0, run.stderr
    messages = {}
    for path in sorted((site / outbox).glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        ((_, address),) = getaddresses([message["To"]])
        assert address not in messages, f"{address} got two messages"
        messages[address] = message
    return messages


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def titles_in(text: str) -> frozenset[str]:
    return frozenset(title for title in TITLES if title in text)


def one_click_url(message) -> str:
    """The https URI of the message's List-Unsubscribe header."""
    uris = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])
    (url,) = [uri for uri in uris if uri.startswith("https://")]
    return url


def suppressed(site: Path) -> list[list[str]]:
    """``digest suppressions list``: one [address, reason, source, list, time] per row."""
    run = digest(site, "suppressions", "list")
    assert run.returncode == 0, run.stderr
    return [line.split("\t") for line in run.stdout.splitlines()]


# 1. A messy list ---------------------------------------------------------------------------


def test_a_list_with_bad_rows_duplicates_bom_and_crlf_is_checked_by_line_and_mailed_once_per_address(tmp_path):
    rows = [
        "email,name,tags",
        "Ada@example.org,Ada,roses",  # line 2
        "not-an-address,Nobody,roses",  # 3: bad
        "bob@example.org,Bob,bees",  # 4
        "ada@EXAMPLE.ORG,Ada again,roses",  # 5: line 2 in other case
        "cy@exa mple.org,Cy,",  # 6: bad
        "dee@example.org,Dee,",  # 7
        "BOB@example.org,Bobby,bees",  # 8: line 4 in other case
    ]
    site = make_site(tmp_path, "\ufeff".encode() + "\r\n".join(rows).encode() + b"\r\n")
    check = digest(site, "subscribers", "check")
    assert check.returncode == 1, check.stdout + check.stderr
    reported = {int(m.group(1)): line for line in check.stdout.splitlines() if (m := re.search(r"main\.csv:(\d+): ", line))}
    assert sorted(reported) == [3, 5, 6, 8]
    assert "not-an-address" in reported[3] and "cy@exa mple.org" in reported[6]
    assert "duplicate of line 2" in reported[5] and "duplicate of line 4" in reported[8]
    assert "3 valid subscribers, 4 problems" in check.stdout

    messages = dry_run(site)
    assert sorted(messages) == ["Ada@example.org", "bob@example.org", "dee@example.org"]
    # The last column survives the CRLF ends: Ada's tag picks one article, Dee's empty cell all three.
    assert titles_in(text_of(messages["Ada@example.org"])) == {"Roses under fleece"}
    assert titles_in(text_of(messages["dee@example.org"])) == TITLES


def test_an_idn_domain_is_mailed_in_ascii_and_a_non_ascii_local_part_is_reported_and_skipped(tmp_path):
    site = make_site(tmp_path, "email,name,tags\nana@Bücher.example.org,Ana,roses\njürgen@example.org,Jürgen,roses\nbob@example.org,Bob,\n")
    check = digest(site, "subscribers", "check")
    assert check.returncode == 1
    (problem,) = [line for line in check.stdout.splitlines() if "main.csv:" in line]
    assert problem.endswith(
        "main.csv:3: 'jürgen@example.org' needs SMTPUTF8 (non-ASCII before the @), "
        "which SendGrid and most servers do not accept; row skipped"
    )

    messages = dry_run(site)
    assert sorted(messages) == ["ana@xn--bcher-kva.example.org", "bob@example.org"]
    # The To: header holds a deliverable ASCII address, not an RFC 2047 encoded word.
    headers = [line for path in (site / "outbox").glob("*.eml") for line in path.read_bytes().splitlines()]
    (to,) = [line for line in headers if line.startswith(b"To:") and b"xn--" in line]
    assert to == b"To: Ana <ana@xn--bcher-kva.example.org>"


# 2. Tags and variants ----------------------------------------------------------------------------


def test_different_tags_get_different_articles_and_the_same_tags_share_a_variant(tmp_path):
    site = make_site(tmp_path)
    audience = digest(site, "audience", "--as-of", AS_OF)
    assert audience.returncode == 0, audience.stderr
    listed = re.findall(r"^variant (\d+) \[\w+\]: (\d+) articles?, (\d+) subscribers?", audience.stdout, re.M)
    assert sorted(int(people) for _, _, people in listed) == [1, 1, 2]
    assert "4 recipients in 3 variants" in audience.stdout

    messages = dry_run(site)
    got = {address: titles_in(text_of(message)) for address, message in messages.items()}
    assert got["Ada@example.org"] == got["dee@example.org"] == {"Roses under fleece"}
    assert got["bob@example.org"] == {"The hives are wintering"}
    assert got["cy@example.org"] == {"Roses under fleece", "New compost bays"}
    assert len(set(got.values())) == 3

    # digest preview --variant N renders variant N as its first subscriber gets it.
    for number, articles, _ in listed:
        out = tmp_path / f"variant-{number}.txt"
        run = digest(site, "preview", "--as-of", AS_OF, "--variant", number, "--text", "-o", str(out))
        assert run.returncode == 0, run.stderr
        text = out.read_text(encoding="utf-8")
        (reader,) = [address for address, message in messages.items() if one_click_url(message) in text]
        assert titles_in(text) == got[reader] and len(got[reader]) == int(articles)
    too_far = digest(site, "preview", "--as-of", AS_OF, "--variant", "4")
    assert too_far.returncode == 2 and "3 variants" in too_far.stderr


# 3. One-click unsubscribe through the real digest serve -----------------------------------------------


@contextlib.contextmanager
def serving(site: Path, **settings: str):
    """The real ``digest serve`` process on a free loopback port, its
    public_url pointing at itself (plain http is allowed on loopback only);
    yields its base URL once it answers, and stops it after."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = environment(DIGEST_PUBLIC_URL=base, **{f"DIGEST_{k.upper()}": v for k, v in settings.items()})
    server = subprocess.Popen(
        [sys.executable, "-m", "digest", "serve", "--port", str(port)], cwd=site, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        for _ in range(600):  # up to ~60 s for the interpreter and uvicorn to start (a loaded CI machine)
            if server.poll() is not None:
                pytest.fail(f"digest serve exited: {server.stderr.read().decode(errors='replace')}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        else:
            pytest.fail("digest serve did not start listening")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST with urllib; the status code, errors included."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with NO_PROXY_OPENER.open(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def on_loopback(url: str, base: str) -> str:
    """``url`` as the https front (a reverse proxy in production) hands it to
    ``digest serve`` behind it: same path and query, on ``base``."""
    parts = urlsplit(url)
    return f"{base}{parts.path}?{parts.query}"


def test_every_message_has_one_click_headers_and_a_post_to_its_url_suppresses_exactly_that_address(tmp_path):
    site = make_site(tmp_path)
    messages = dry_run(site)
    urls = {}
    for address, message in messages.items():
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "<mailto:unsubscribe@gazette.example.org?subject=unsubscribe>" in message["List-Unsubscribe"]
        url = urls[address] = one_click_url(message)
        assert url.startswith(f"{PUBLIC_URL}/unsubscribe?token=") and url in text_of(message)
    assert len(set(urls.values())) == len(messages) == 4  # one URL per recipient

    url = urls["cy@example.org"]
    token = parse_qs(urlsplit(url).query)["token"][0]
    swap = {"A": "B"}  # one character of the token altered: in the signed address, and the signature's last
    altered = [url.replace(token, token[:4] + swap.get(token[4], "A") + token[5:]), url[:-1] + ("A" if url[-1] != "A" else "B")]
    with serving(site) as base:
        for wrong in altered:
            assert post(on_loopback(wrong, base), b"List-Unsubscribe=One-Click", ONE_CLICK) == 400
        assert suppressed(site) == []
        assert post(on_loopback(url, base), b"List-Unsubscribe=One-Click", ONE_CLICK) == 200
    (row,) = suppressed(site)
    assert row[:4] == ["cy@example.org", "unsubscribed", "one-click", "main"]

    after = dry_run(site, "outbox-next")
    assert sorted(after) == ["Ada@example.org", "bob@example.org", "dee@example.org"]


# 4. SendGrid's signed Event Webhook --------------------------------------------------------------------


def test_a_signed_event_batch_with_a_bounce_suppresses_the_address_and_a_broken_signature_changes_nothing(
    tmp_path, start_fake_sendgrid
):
    sendgrid = start_fake_sendgrid()
    site = make_site(tmp_path, provider="sendgrid", sendgrid_host=sendgrid.url)
    sent = digest(site, "send", "--as-of", AS_OF, env=environment(DIGEST_SENDGRID_API_KEY=SENDGRID_KEY))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    records = sendgrid.records()
    assert sorted(r["to"] for r in records) == ["Ada@example.org", "bob@example.org", "cy@example.org", "dee@example.org"]

    # The batch SendGrid would post: our custom args come back on every event.
    batch = [
        {
            "email": r["to"],
            "timestamp": 1795431600 + n,
            "sg_event_id": f"ev-{n}",
            "sg_message_id": f"{r['message_id']}.filter0001",
            **({"event": "bounce", "type": "bounce", "reason": "550 5.1.1 no such user", "status": "5.1.1"} if r["to"] == "bob@example.org" else {"event": "delivered"}),
            **r["custom_args"],
        }
        for n, r in enumerate(records)
    ]
    body = json.dumps(batch).encode()
    # Our own P-256 key pair; the settings get the public half as SendGrid shows it (base64 DER).
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    public = base64.b64encode(der).decode()
    good = signed(private, body, str(int(time.time())))  # fresh: older batches are refused
    signature = good[SIGNATURE_HEADER]
    broken = {**good, SIGNATURE_HEADER: signature[:20] + ("A" if signature[20] != "A" else "B") + signature[21:]}

    def delivery_events():
        with closing(sqlite3.connect(site / "digest.db")) as db:
            return db.execute(
                "SELECT d.email, e.event FROM events e JOIN deliveries d ON d.id = e.delivery_id ORDER BY d.email"
            ).fetchall()

    with serving(site, sendgrid_webhook_public_key=public) as base:
        assert post(f"{base}/webhooks/sendgrid", body, broken) == 403
        assert suppressed(site) == [] and delivery_events() == []
        assert post(f"{base}/webhooks/sendgrid", body, good) == 200
        assert post(f"{base}/webhooks/sendgrid", body, good) == 200  # SendGrid's retry: harmless
    (row,) = suppressed(site)
    assert row[:4] == ["bob@example.org", "bounced", "sendgrid:bounce", "(every list)"]
    assert delivery_events() == [
        ("Ada@example.org", "delivered"), ("bob@example.org", "bounce"), ("cy@example.org", "delivered"), ("dee@example.org", "delivered"),
    ]
    assert "bob@example.org" not in dry_run(site)


# 5. email_lint on the dry run --------------------------------------------------------------------------


def test_email_lint_finds_no_unsubscribe_header_problem_in_the_dry_run(tmp_path):
    if not EMAIL_LINT.is_file():
        pytest.skip(f"email_lint.py is not at {EMAIL_LINT} (../shared is absent)")
    site = make_site(tmp_path)
    messages = dry_run(site)
    files = sorted(str(path) for path in (site / "outbox").glob("*.eml"))
    lint = subprocess.run([sys.executable, str(EMAIL_LINT), *files], capture_output=True, text=True, timeout=120)
    reports = json.loads(lint.stdout)["reports"]
    assert len(reports) == len(messages) == 4
    for report in reports:
        header = report["metrics"]["list_unsubscribe"]
        assert header["present"] and header["one_click"] and header["https_uris"] == 1 and header["mailto"], report["file"]
        problems = [f for f in report["findings"] if f["rule"].startswith(("LU_", "LUP_")) and f["severity"] != "info"]
        assert problems == [], report["file"]
