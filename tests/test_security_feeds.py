"""Fetching feeds is bounded, against a hostile HTTP server of our own on
loopback, through the real CLI: a trickle, a huge body, a gzip bomb, a
redirect loop and a redirect to another loopback port each end within the
deadline as one warning naming the feed and the limit, the other sources
are read, and the process stays small."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from conftest import REPO, WEEK48, free_port

from digest.settings import load_settings
from digest.sources import load_articles
from digest.unsubscribe import make_token

FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Fine</title><link>https://fine.example/</link>
<description>x</description><item><title>A fine article</title><link>https://fine.example/a</link>
<pubDate>Sat, 21 Nov 2026 09:00:00 +0000</pubDate><category>news</category></item></channel></rss>"""
GIB = 1024**3


def gzip_bomb() -> bytes:
    """1 GiB of zeros, gzipped (about 1 MB)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as packer:
        zeros = bytes(1024 * 1024)
        for _ in range(1024):
            packer.write(zeros)
    return out.getvalue()


class Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bomb = b""
    internal_port = 0

    def do_GET(self):  # noqa: N802 - http.server's name
        try:
            getattr(self, "page_" + self.path.strip("/").replace("-", "_"))()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def head(self, status=200, **headers):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()

    def page_trickle(self):
        self.head(content_type="application/rss+xml", content_length="100000")
        for _ in range(100000):
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(0.2)

    def page_huge(self):  # 2 GB, declared
        self.head(content_type="application/rss+xml", content_length=str(2 * GIB))
        chunk = b"<!-- padding -->" * 4096
        for _ in range(2 * GIB // len(chunk)):
            self.wfile.write(chunk)

    def page_bomb(self):
        self.head(content_type="application/rss+xml", content_encoding="gzip", content_length=str(len(self.bomb)))
        self.wfile.write(self.bomb)

    def page_loop(self):
        self.head(302, location="/loop", content_length="0")

    def page_inside(self):
        self.head(302, location=f"http://127.0.0.1:{self.internal_port}/secret.xml", content_length="0")

    def page_fine(self):
        self.head(content_type="application/rss+xml", content_length=str(len(FEED)))
        self.wfile.write(FEED)

    def log_message(self, *args):
        pass


class Internal(BaseHTTPRequestHandler):
    """A service only this machine should reach."""

    hits = 0

    def do_GET(self):  # noqa: N802
        Internal.hits += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(FEED)))
        self.end_headers()
        self.wfile.write(FEED.replace(b"A fine article", b"Internal secret"))

    def log_message(self, *args):
        pass


def serve(handler) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None  # the fetcher hanging up on us is the point
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def hostile():
    Hostile.bomb = gzip_bomb()
    internal = serve(Internal)
    Hostile.internal_port = internal.server_address[1]
    server = serve(Hostile)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    for each in (server, internal):
        each.shutdown()
        each.server_close()


# A parent of our own runs the CLI, so that its peak RSS is the CLI's alone.
MEASURE = """
import resource, subprocess, sys, time
started = time.monotonic()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(done.returncode, time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)
sys.stdout.write(done.stdout)
sys.stderr.write(done.stderr)
"""


@pytest.mark.parametrize("allow", ["listed", "true"])
def test_hostile_feeds_end_within_the_deadline_as_one_warning_each_and_the_others_are_read(hostile, tmp_path, allow):
    port = hostile.rsplit(":", 1)[1]
    feeds = {name: f"{hostile}/{name}" for name in ("trickle", "huge", "bomb", "loop", "inside", "fine")}
    env = {
        "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "NO_PROXY": "*",
        "DIGEST_FEED_TIMEOUT": "4",
        # The hostile server's own address, listed or by "true"; never the internal one it redirects to.
        "DIGEST_FEED_ALLOW_PRIVATE": json.dumps([f"127.0.0.1:{port}"]) if allow == "listed" else "true",
    }
    args = [sys.executable, "-m", "digest", "articles", "--as-of", "2026-11-23", "--since", "30d"]
    for url in feeds.values():
        args += ["--content", url]
    done = subprocess.run([sys.executable, "-c", MEASURE, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    first, *out = done.stdout.splitlines()
    code, seconds, peak_kb = first.split()
    print(f"6 feeds, 5 hostile: {float(seconds):.1f} s, peak RSS {int(peak_kb) / 1024:.0f} MB")
    assert "Traceback" not in done.stderr
    assert int(code) == 0, done.stderr
    assert any("A fine article" in line for line in out)  # the good source is read
    assert not any("Internal secret" in line for line in out) and Internal.hits == 0
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    expected = {
        "trickle": "not fetched within 4 s (feed_timeout)",
        "huge": "larger than 20,000,000 bytes (feed_max_bytes)",
        "bomb": "larger than 20,000,000 bytes (feed_max_bytes)",
        "loop": "more than 5 redirects",
        "inside": "refused: 127.0.0.1 is a loopback address (set feed_allow_private to fetch feeds from it)" if allow == "listed" else
        f"refused: a redirect to 127.0.0.1:{Hostile.internal_port}, loopback and not the feed's own host (list it in feed_allow_private to allow it)",
    }
    for name, reason in expected.items():
        (line,) = [line for line in warnings if f"{feeds[name]}:" in line]
        assert line == f"warning: {feeds[name]}: {reason}"
    assert len(warnings) == len(expected)
    # Each feed is read in turn: the trickle alone used its 4 s; the rest took little.
    assert float(seconds) < 4 * 2 + 10
    assert int(peak_kb) < 200 * 1024


def test_by_default_no_feed_is_fetched_from_this_machine_or_its_network(hostile):
    settings = load_settings()
    result = load_articles([f"{hostile}/fine", "http://localhost:9/feed.xml", "http://10.0.0.1:9/feed.xml"], settings)
    assert result.articles == []
    assert [w.split(": ", 1)[1] for w in result.warnings] == [
        "refused: 127.0.0.1 is a loopback address (set feed_allow_private to fetch feeds from it)",
        "refused: localhost resolves to 127.0.0.1, a loopback address (set feed_allow_private to fetch feeds from it)",
        "refused: 10.0.0.1 is a private address (set feed_allow_private to fetch feeds from it)",
    ]


# No request handler waits on a feed -----------------------------------------------------------------


def timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    with httpx.Client(timeout=60, trust_env=False) as http:
        return http.get(url).status_code, time.monotonic() - started


def test_a_slow_feed_and_50_preference_pages_do_not_hold_up_a_one_click_post(hostile, tmp_path, start_serve):
    lists = tmp_path / "subscribers"
    lists.mkdir()
    (lists / "garden.csv").write_text("email,name,tags\nada@example.org,Ada,roses\nbob@example.org,Bob,\n", encoding="utf-8")
    secret = "k3Vq9ZpL2xW7rT5nB8mC4yH6jF1dG0sA"
    served = start_serve(
        secret_key=secret, subscribers=lists, ledger=tmp_path / "digest.db",
        sources=json.dumps([f"{hostile}/trickle", f"{hostile}/fine"]), feed_allow_private="true", feed_timeout="60",
    )
    settings = load_settings(secret_key=secret, public_url=served.base)
    page = f"{served.base}/preferences?token={make_token(settings, 'bob@example.org', 'garden', 'preferences')}"
    with ThreadPoolExecutor(50) as pool:
        pages = [pool.submit(timed_get, page) for _ in range(50)]
        token = make_token(settings, "ada@example.org", "garden")
        started = time.monotonic()
        with httpx.Client(timeout=60, trust_env=False) as http:
            answer = http.post(f"{served.base}/unsubscribe?token={token}", content="List-Unsubscribe=One-Click",
                               headers={"content-type": "application/x-www-form-urlencoded"})
        one_click = time.monotonic() - started
        timings = [future.result() for future in pages]
    print(f"one-click POST beside 50 preference pages and a trickling feed: {one_click * 1000:.0f} ms; "
          f"slowest page {max(t for _, t in timings) * 1000:.0f} ms")
    assert answer.status_code == 200 and one_click < 1
    assert all(status == 200 for status, _ in timings) and max(t for _, t in timings) < 10  # the feed's deadline is 60 s


def test_the_preview_server_answers_while_a_feed_trickles(hostile, make_site):
    site = make_site(readers=3, provider="outbox")
    port = free_port()
    site.start("preview", "--serve", "--port", str(port), "--as-of", WEEK48,
               sources=json.dumps(["posts", f"{hostile}/trickle"]), feed_allow_private="true", feed_timeout="60")
    deadline = time.monotonic() + 30
    while True:
        try:
            status, seconds = timed_get(f"http://127.0.0.1:{port}/")
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, (site.root / "run-0.out").read_text()
            time.sleep(0.1)
    status, seconds = timed_get(f"http://127.0.0.1:{port}/")
    print(f"preview page beside a trickling feed: {seconds * 1000:.0f} ms")
    assert status == 200 and seconds < 10  # rendering only: the feed (deadline 60 s) is fetched in the background
