"""`digest serve` under hostile clients, through the real process: 100 MB
POSTs (declared and chunked) get 413 without the server growing, connections
that never finish their headers are closed, a one-click POST is still
answered within a second meanwhile, and forged log lines are escaped."""

from __future__ import annotations

import select
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from digest.settings import load_settings
from digest.unsubscribe import make_token

SECRET = "k3Vq9ZpL2xW7rT5nB8mC4yH6jF1dG0sA"
MB = 1024 * 1024
CHUNK = b"x" * (256 * 1024)


@pytest.fixture
def site(tmp_path):
    lists = tmp_path / "subscribers"
    lists.mkdir()
    (lists / "garden.csv").write_text("email,name,tags\nada@example.org,Ada,roses\n", encoding="utf-8")
    return {"secret_key": SECRET, "subscribers": lists, "ledger": tmp_path / "digest.db", "sources": "[]", "webhook_allow_unsigned": "true"}


def memory_kb(pid: int, field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of process ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def huge_post(base: str, path: str, size: int, *, chunked: bool) -> tuple[int | None, int]:
    """POST ``size`` bytes to ``path`` on a raw socket, stopping as soon as the
    server answers or hangs up: (status or None, bytes of body sent)."""
    host, port = base.removeprefix("http://").split(":")
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{length}\r\n\r\n".encode()
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head)
        try:
            while sent < size:
                if select.select([conn], [], [], 0)[0]:
                    break  # the server answered (or closed) before the body was in
                piece = CHUNK if not chunked else f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n"
                conn.sendall(piece)
                sent += len(CHUNK)
            else:
                if chunked:
                    conn.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            conn.settimeout(30)
            answer = conn.recv(4096)
        except ConnectionResetError:
            return None, sent
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    return status, sent


def one_click(base: str, token: str) -> tuple[int, float]:
    started = time.monotonic()
    with httpx.Client(timeout=10, trust_env=False) as http:
        answer = http.post(f"{base}/unsubscribe?token={token}", content="List-Unsubscribe=One-Click", headers={"content-type": "application/x-www-form-urlencoded"})
    return answer.status_code, time.monotonic() - started


def test_100_mb_posts_get_413_without_the_server_growing(site, start_serve):
    served = start_serve(**site)
    pid = served.process.pid
    with httpx.Client(timeout=5, trust_env=False) as http:  # warm up: first request, imports done
        http.get(f"{served.base}/unsubscribe?token=x")
    before = memory_kb(pid, "VmRSS")
    results: list[tuple[int | None, int]] = []
    posts = [
        threading.Thread(target=lambda path=path, chunked=chunked: results.append(huge_post(served.base, path, 100 * MB, chunked=chunked)))
        for path in ("/webhooks/sendgrid", "/unsubscribe?token=x", "/preferences?token=x", "/nowhere")
        for chunked in (False, True)
    ]
    for post in posts:
        post.start()
    for post in posts:
        post.join(timeout=120)
    assert len(results) == 8
    for status, sent in results:
        assert status == 413
        # Cut at the webhook's 5 MB (forms: 64 KB) plus what loopback's socket buffers hold, not read to the end.
        assert sent < 20 * MB
    growth_mb = (memory_kb(pid, "VmHWM") - before) / 1024
    print(f"peak RSS growth under 8 x 100 MB POSTs: {growth_mb:.1f} MB")
    assert growth_mb < 100
    assert served.process.poll() is None


def test_idle_connections_are_closed_and_a_one_click_post_is_answered_meanwhile_under_100_mb_posts(site, start_serve):
    served = start_serve(**site, serve_request_timeout="3")
    host, port = served.base.removeprefix("http://").split(":")
    idle = []
    for n in range(500):
        conn = socket.create_connection((host, int(port)), timeout=10)
        if n % 2:  # half never finish their headers; the other half never send a byte
            conn.sendall(b"GET /unsubscribe HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        idle.append(conn)
    # ...and 100 MB POSTs arriving at the same time.
    posts = [threading.Thread(target=huge_post, args=(served.base, "/webhooks/sendgrid", 100 * MB), kwargs={"chunked": n % 2 == 0}) for n in range(8)]
    for post in posts:
        post.start()
    token = make_token(load_settings(secret_key=SECRET), "ada@example.org", "garden")
    status, seconds = one_click(served.base, token)
    print(f"one-click POST beside 500 idle connections and 8 x 100 MB POSTs: {seconds * 1000:.0f} ms")
    assert status == 200 and seconds < 1
    for post in posts:
        post.join(timeout=120)
    deadline = time.monotonic() + 30
    open_ones = set(range(len(idle)))
    while open_ones and time.monotonic() < deadline:
        readable, _, _ = select.select([idle[n] for n in open_ones], [], [], 1)
        for conn in readable:
            try:
                data = conn.recv(4096)
            except ConnectionResetError:
                data = b""
            if not data:
                open_ones.discard(idle.index(conn))
    for conn in idle:
        conn.close()
    assert not open_ones, f"{len(open_ones)} idle connections still open after 30 s"
    assert served.process.poll() is None


def test_a_path_with_line_breaks_cannot_forge_a_log_line(site, start_serve):
    served = start_serve(**site)
    host, port = served.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GET /%0d%0a127.0.0.1%20%22POST%20/unsubscribe%22%20200%0a%1b[2J HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while conn.recv(4096):
            pass
    served.process.terminate()
    served.process.wait(timeout=10)
    log = served.log().splitlines()
    assert not [line for line in log if line.startswith("127.0.0.1 \"POST /unsubscribe\"")]
    (line,) = [line for line in log if "GET /" in line]
    assert "\\r\\n127.0.0.1" in line and '" 404' in line
