"""The email acceptance list (client safety, size, phones, dark mode, preview, text), checked through the real command line
(``python -m digest`` in a subprocess, in a folder of its own) on the shared
corpus and on sites written here:

1. every .eml of a dry run over ../shared/corpus, for subscribers in three
   variants, passes ``email_lint.py --fail-on warning``;
2. a 100-article variant stays under Gmail's 102 KB clip with its footer;
3. the dry run's HTML fits a 375 px phone and turns dark under
   ``prefers-color-scheme: dark`` (headless Chromium);
4. ``digest preview --serve`` answers on loopback and shows a template edit
   on the next request, without a restart;
5. the text part of the seed article's digest reads as a person would write
   it.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from preview_samples import write_site
from rendering_samples import run_email_lint

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
GMAIL_CLIP = 102 * 1024
WINDOW = ("--since", "1990-01-01", "--as-of", "2026-12-01")

# Three variants: privacy only, rust only, every tag (an empty tag list).
READERS = "email,name,tags\npriv@example.org,Priya,privacy\nrust@example.org,Rusty,rust\nall@example.org,Al,\n"


def digest(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m digest ARGS`` in ``cwd`` (no digest.toml there unless a
    test writes one), with the repository importable and no DIGEST_ variable
    of ours leaking in. Fails the test, with its stderr, on a non-zero exit."""
    result = subprocess.run(
        [sys.executable, "-m", "digest", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"digest {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def _env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("DIGEST_")}
    return {**env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def read_eml(path: Path) -> EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


def unsubscribe_url(message: EmailMessage) -> str:
    """The https URI of List-Unsubscribe (RFC 2369: in angle brackets)."""
    return next(uri for uri in re.findall(r"<([^>]+)>", message["List-Unsubscribe"]) if uri.startswith("https://"))


@pytest.fixture(scope="module")
def corpus_outbox(tmp_path_factory) -> Path:
    """The outbox of one dry run over the whole corpus: the seed article,
    every folder under posts/ and every file under feeds/."""
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is not at {CORPUS} (../shared is absent)")
    root = tmp_path_factory.mktemp("corpus-run")
    (root / "readers.csv").write_text(READERS, encoding="utf-8")
    sources = [CORPUS / "seed" / "seed-article.md", *sorted(p for p in (CORPUS / "posts").iterdir() if p.is_dir()), *sorted((CORPUS / "feeds").iterdir())]
    content = [arg for source in sources for arg in ("--content", str(source))]
    result = digest("send", "--dry-run", "--outbox", "outbox", "--subscribers", "readers.csv", *WINDOW, *content, cwd=root)
    assert "3 recipients in 3 variants" in result.stdout, result.stdout
    return root / "outbox"


# 1 ---------------------------------------------------------------------------------------------


def test_every_message_of_the_corpus_dry_run_passes_email_lint_without_warnings(corpus_outbox):
    files = sorted(corpus_outbox.glob("*.eml"))
    assert [f.name for f in files] == ["all@example.org.eml", "priv@example.org.eml", "rust@example.org.eml"]
    # Three different issues, not one sent three times.
    assert len({html_of(read_eml(f)).split("<body", 1)[1].split('class="cell footer"')[0] for f in files}) == 3
    result = run_email_lint(*files, fail_on="warning")
    reports = json.loads(result.stdout)["reports"]
    found = {r["file"]: [(f["rule"], f["message"]) for f in r["findings"] if f["severity"] != "info"] for r in reports}
    assert result.returncode == 0 and all(not problems for problems in found.values()), found


def test_corpus_articles_with_images_show_them_with_alt_and_width(corpus_outbox):
    """Every article of the corpus that has a lead image (front matter,
    media:thumbnail/content, image enclosure, JSON Feed image, or the first
    <img> of its body, on https) shows it in the standard layout, with alt
    text and a pixel width no wider than the column."""
    from digest.settings import load_settings
    from digest.sources import load_articles

    sources = [str(CORPUS / "seed" / "seed-article.md"), *sorted(str(p) for p in (CORPUS / "posts").iterdir() if p.is_dir()), *sorted(str(p) for p in (CORPUS / "feeds").iterdir())]
    with_images = {a.url: a for a in load_articles(sources, load_settings()).articles if a.image and a.url}
    assert len(with_images) >= 10, "the corpus should hold articles with images"
    shown = 0
    for path in sorted(corpus_outbox.glob("*.eml")):
        html = html_of(read_eml(path))
        for cell in re.findall(r'<td class="cell article".*?</td>', html, re.DOTALL):
            link = re.search(r'<h\d class="title"[^>]*><a href="([^"]+)"', cell)
            article = with_images.get(link[1].replace("&amp;", "&")) if link else None
            if article is None:
                continue
            image = re.search(r"<img [^>]*>", cell)
            assert image, f"{path.name}: {article.title!r} has an image that is not shown"
            attrs = dict(re.findall(r'(\w+)="([^"]*)"', image[0]))
            assert attrs["src"].replace("&amp;", "&") == article.image and attrs["src"].startswith("https://")
            assert attrs.get("alt", "").strip(), image[0]
            assert attrs.get("width", "").isdigit() and 0 < int(attrs["width"]) <= 552, image[0]
            shown += 1
    # The corpus has 94 articles with lead images, none tagged privacy or rust; in the
    # every-tag variant (455 articles) the size budget keeps the newest 5 in the
    # standard layout, and those with an image show it.
    assert shown >= 1, "no article image shown across the three variants"


def test_every_header_line_of_the_corpus_dry_run_is_folded_by_the_rfcs(corpus_outbox):
    from test_messages import header_problems

    for path in sorted(corpus_outbox.glob("*.eml")):
        raw = path.read_bytes()
        assert header_problems(raw) == [], path.name
        assert raw.isascii(), f"{path.name}: not 7-bit clean (a dry run's .eml must be)"


# 2 ---------------------------------------------------------------------------------------------


def test_a_100_article_variant_stays_under_the_gmail_clip_with_its_footer(tmp_path):
    """100 long articles with images, far above the size budget: the budget
    shortens and compacts them, and the message keeps its footer."""
    posts = tmp_path / "posts"
    posts.mkdir()
    words = "compost leeks frost dahlias hedgehog beans marrow shed".split()
    for n in range(100):
        summary = " ".join(words[(n + i) % len(words)] for i in range(70))
        (posts / f"post-{n:03}.md").write_text(
            f'---\ntitle: "Plot {n}: a long report from the allotment"\ndate: 2026-11-{1 + n % 28:02}T{n % 24:02}:00:00Z\n'
            f"tags: [garden]\nimage: https://gazette.example.org/images/{n}.jpg\nsummary: {summary}\n---\n{summary}\n",
            encoding="utf-8",
        )
    (tmp_path / "readers.csv").write_text("email,name,tags\nall@example.org,Al,\n", encoding="utf-8")
    result = digest("send", "--dry-run", "--json", "--outbox", "outbox", "--subscribers", "readers.csv", "--content", "posts", *WINDOW, cwd=tmp_path)
    (variant,) = json.loads(result.stdout.splitlines()[-1])["variants"]
    assert variant["articles"] == 100
    assert variant["notes"][0].startswith("HTML was"), variant["notes"]  # far over the budget at first

    message = read_eml(tmp_path / "outbox" / "all@example.org.eml")
    html = html_of(message)
    assert len(html.encode("utf-8")) < GMAIL_CLIP
    footer = html.split('class="cell footer"', 1)[1]
    assert f'href="{unsubscribe_url(message).replace("&", "&amp;")}"' in footer
    assert "Manage your preferences" in footer and "Example Digest, 1 Example Street, Springfield" in footer
    assert footer.rstrip().endswith("</html>")  # the footer is the end of the message: nothing cut after it
    # Every article is still in it: in full, compact, or as a link.
    assert all(f"Plot {n}: a long report" in html for n in range(100))


# 3 ---------------------------------------------------------------------------------------------


def test_the_dry_run_fits_a_phone_and_turns_dark(corpus_outbox):
    preview = pytest.importorskip("digest.preview")
    try:
        preview.find_chromium()
    except preview.DigestError as exc:
        pytest.skip(f"headless Chromium is not available: {exc}")
    for path in sorted(corpus_outbox.glob("*.eml")):
        measured = preview.measure(html_of(read_eml(path)), preview.PHONE_WIDTH)
        assert measured["scroll_width"] <= preview.PHONE_WIDTH, path.name
        light, dark = measured["light"], measured["dark"]
        assert dark["background"] != light["background"], path.name
        changed = sum(1 for (_, a), (_, b) in zip(light["colours"], dark["colours"], strict=True) if a != b)
        assert changed > 10, f"{path.name}: only {changed} text colours change in dark mode"


# 4 ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_preview_server_shows_a_template_edit_without_a_restart(tmp_path):
    site = write_site(tmp_path)
    shutil.copytree(REPO / "templates", site / "templates")
    with (site / "digest.toml").open("a", encoding="utf-8") as toml:
        toml.write('templates_dir = "templates"\n')
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "digest", "preview", "--serve", "--port", str(port), "--as-of", "2026-12-01T08:00"],
        cwd=site, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20, trust_env=False) as client:
            deadline = time.monotonic() + 60  # generous: a loaded CI machine
            while True:
                assert server.poll() is None, f"the preview server stopped: {server.stderr.read()}"
                assert time.monotonic() < deadline, "the preview server did not answer within 60 s"
                try:
                    page = client.get("/")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert page.status_code == 200 and "Sample Digest" in page.text
            note = "Straight from the potting shed"
            assert note not in client.get("/variants/1.html").text
            header = site / "templates" / "partials" / "header.html.j2"
            header.write_text(header.read_text("utf-8").replace("</h1>", f"</h1>\n<p>{note}</p>", 1), encoding="utf-8")
            assert note in client.get("/variants/1.html").text
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        server.stdout.close()
        server.stderr.close()


# 5 ---------------------------------------------------------------------------------------------

_URL = re.compile(r"https?://\S+")


def test_the_seed_articles_text_part_reads_as_a_person_would_write_it(tmp_path):
    seed = CORPUS / "seed" / "seed-article.md"
    if not seed.is_file():
        pytest.skip(f"the seed article is not at {seed} (../shared is absent)")
    (tmp_path / "readers.csv").write_text("email,name,tags\npriv@example.org,Priya,privacy\n", encoding="utf-8")
    digest("send", "--dry-run", "--outbox", "outbox", "--subscribers", "readers.csv", "--content", str(seed), *WINDOW, cwd=tmp_path)
    message = read_eml(tmp_path / "outbox" / "priv@example.org.eml")
    text = text_of(message)
    lines = text.splitlines()

    assert not re.search(r"</?[a-zA-Z][^>]*>", text), "an HTML tag in the text part"
    assert not re.search(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);", text), "an HTML entity in the text part"
    # Curly quotes as the author typed them: not straightened, not mangled.
    assert "Facebook’s user security scandal" in text and "Facebook's" not in text and "â€" not in text
    assert "Hi Priya," in lines and "The ICE Has Been Caught Using Personal Facebook Data to Prowl for" in text

    # Wrapped at 72 columns; only a URL too long to break keeps a longer line, alone.
    for line in lines:
        assert len(line) <= 72 or _URL.fullmatch(line), f"line of {len(line)} columns: {line!r}"
    assert sum(len(line) > 60 for line in lines) >= 3, "the paragraphs are wrapped, not one line each"
    assert "\n\n\n\n" not in text and all(line == line.rstrip() or line == "-- " for line in lines)

    # Working links: absolute http(s), each whole on its line; the article,
    # the web copy and this reader's own unsubscribe link among them.
    links = [line for line in lines if _URL.search(line)]
    assert links and all(_URL.fullmatch(line) for line in links), links
    for link in links:
        parts = urlsplit(link)
        assert parts.scheme in ("http", "https") and parts.hostname and "." in parts.hostname, link
    assert "https://example.org/seed-article/" in links
    assert "https://example.org/archive/2026-W49.html" in links
    assert unsubscribe_url(message) in links
    assert lines[-1] == "Example Digest, 1 Example Street, Springfield"
