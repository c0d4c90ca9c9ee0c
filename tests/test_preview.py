"""The preview server of ``digest preview --serve``: a real uvicorn on a free
loopback port, asked over HTTP, re-rendering when templates, articles and
settings change."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from preview_samples import sample_request, write_article, write_site

from digest.preview import create_preview_app
from digest.settings import load_settings

REPO_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


@contextmanager
def running(app):
    """Serve ``app`` with uvicorn on 127.0.0.1 at a free port, in a thread;
    yields an httpx client for it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # generous: a loaded CI machine
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the preview server did not start within 60 s"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20, trust_env=False) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def site(tmp_path, monkeypatch):
    """The sample site as the working directory, with its own copy of the
    default templates (as an editor would keep them)."""
    monkeypatch.chdir(write_site(tmp_path))
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates")
    with (tmp_path / "digest.toml").open("a", encoding="utf-8") as toml:
        toml.write('templates_dir = "templates"\n')
    return tmp_path


def preview_app():
    # Settings are loaded on every request, as `digest preview --serve` does.
    return create_preview_app(lambda: load_settings(), sample_request)


def test_page_shows_each_variant_with_headers_size_checks_and_text(site):
    with running(preview_app()) as client:
        page = client.get("/")
        assert page.status_code == 200
        # Three variants: privacy only, python only, every tag.
        for number in (1, 2, 3):
            assert f"variant={number}" in page.text
        assert "List-Unsubscribe" in page.text and "https://sample.example.org/" in page.text
        assert "news@sample.example.org" in page.text  # From
        assert "Preheader" in page.text and " KB" in page.text
        assert 'width="600"' in page.text
        assert 'width="375"' in client.get("/", params={"width": 375}).text

        bodies = {n: client.get(f"/variants/{n}.html").text for n in (1, 2, 3)}
        texts = {n: client.get(f"/variants/{n}.txt").text for n in (1, 2, 3)}
    with_python = [n for n, body in bodies.items() if "Ten small Python tips" in body]
    with_privacy = [n for n, body in bodies.items() if "Privacy week: what changed" in body]
    # Each variant shows its own articles: one gets both, the others one each.
    assert len(with_python) == 2 and len(with_privacy) == 2 and set(with_python) != set(with_privacy)
    for n, text in texts.items():
        assert "<td" not in text and ("Ten small Python tips" in text) == (n in with_python)


def test_edited_template_shows_on_the_next_request(site):
    header = site / "templates" / "partials" / "header.html.j2"
    with running(preview_app()) as client:
        assert "Straight from the editor’s desk" not in client.get("/variants/1.html").text
        header.write_text(
            header.read_text(encoding="utf-8").replace("</h1>", "</h1>\n<p>Straight from the editor’s desk</p>", 1),
            encoding="utf-8",
        )
        assert "Straight from the editor’s desk" in client.get("/variants/1.html").text
        assert "Straight from the editor’s desk" in client.get("/variants/2.html").text


def test_new_article_and_changed_setting_show_without_restart(site):
    with running(preview_app()) as client:
        first = client.get("/variants/3.html").text
        assert "Sample Digest" in first and "Late news from the garden" not in first
        write_article(site / "content", "late.md", "Late news from the garden", "2026-11-30", "privacy", "It rained.")
        toml = site / "digest.toml"
        toml.write_text(toml.read_text(encoding="utf-8").replace("Sample Digest", "Renamed Weekly"), encoding="utf-8")
        second = client.get("/variants/1.html").text
    assert "Late news from the garden" in second and "Renamed Weekly" in second


def test_template_mistake_is_shown_on_the_page_naming_the_file(site):
    header = site / "templates" / "partials" / "header.html.j2"
    header.write_text("{% if %}\n", encoding="utf-8")
    with running(preview_app()) as client:
        page = client.get("/")
        assert page.status_code == 500
        assert "header.html.j2" in page.text
        assert "Traceback" not in page.text
        # Fixing it is enough: no restart.
        shutil.copy(REPO_TEMPLATES / "partials" / "header.html.j2", header)
        assert client.get("/").status_code == 200
