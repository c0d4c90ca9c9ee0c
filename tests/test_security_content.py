"""Content can never reach a reader's per-person values: a feed and a
Markdown post spelling the personalization placeholders (every name, both
parts, with and without a guessed nonce) in every field, sent through the
real CLI to the outbox (dry run) and to the SendGrid stand-in, leave each
reader's address and token only where the template put them."""

from __future__ import annotations

import base64
import email
import email.policy
import html
import json
import re
from urllib.parse import parse_qs, urlsplit

import frontmatter
import pytest
from conftest import SENDGRID_KEY, WEEK48

from digest.personalization import PERSON_FIELDS

SEND = ("send", "--as-of", WEEK48)

# What an attacker writes: the placeholder syntax of every field in both parts,
# as the code spelled it before nonces, with an empty and a guessed nonce.
LURES = [
    f"%%digest.{part}.{name}{suffix}%%"
    for part in ("html", "text", "link")
    for name in PERSON_FIELDS
    for suffix in ("", ".", ".0000000000000000")
]
LURE = " ".join(LURES)
QUERY = "&".join(f"x{i}={lure}" for i, lure in enumerate(LURES))
RELATIVE = " ".join(f'<a href="{lure}">lure</a><img src="{lure}" alt="lure">' for lure in LURES)  # links that are only a placeholder


def hostile_feed() -> str:
    entry = f"""
  <item>
    <title>Feed title {LURE}</title>
    <link>https://evil.example/post?{html.escape(QUERY)}</link>
    <guid isPermaLink="false">hostile-1</guid>
    <pubDate>Sat, 21 Nov 2026 09:00:00 +0000</pubDate>
    <author>mallory@evil.example ({LURE})</author>
    <dc:creator>{LURE}</dc:creator>
    <category>news</category>
    <category>{LURE}</category>
    <description>{html.escape(f'<p>Summary {LURE} <a href="https://evil.example/?{QUERY}">more</a> {RELATIVE}</p>')}</description>
    <content:encoded>{html.escape(f'<p>Body {LURE}</p><img src="https://evil.example/b.gif?{QUERY}">')}</content:encoded>
    <media:content url="https://evil.example/pixel.gif?{html.escape(QUERY)}" medium="image" type="image/gif"/>
  </item>"""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
     xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/">
<channel><title>Evil feed</title><link>https://evil.example/</link><description>x</description>{entry}
</channel></rss>
"""


def hostile_post() -> str:
    post = frontmatter.Post(
        f"Body of the post {LURE}\n\n![pixel](https://evil.example/md.gif?{QUERY})\n\n[link](https://evil.example/?{QUERY})\n\n"
        + " ".join(f"[lure]({lure})" for lure in LURES) + "\n",
        title=f"Post title {LURE}",
        date="2026-11-21T10:00:00+00:00",
        tags=["news", *LURES],
        summary=f"Summary {LURE}",
        author=LURE,
        url=f"https://evil.example/md?{QUERY}",
        image=f"https://evil.example/md-image.gif?{QUERY}",
    )
    return frontmatter.dumps(post)


@pytest.fixture
def hostile_site(make_site):
    site = make_site(readers=8, sources=["posts", "evil.xml"], public_url="https://news.example.org/")
    (site.root / "evil.xml").write_text(hostile_feed(), encoding="utf-8")
    (site.root / "posts" / "evil.md").write_text(hostile_post(), encoding="utf-8")
    return site


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def assert_only_where_the_template_puts_them(address: str, one_click: str, subject: str, headers: dict, page: str, text: str):
    """``address`` and its token appear in the HTML only as the footer's
    "because ADDRESS subscribed" and the unsubscribe/preferences hrefs, in
    the text only as the footer's line and the two link lines, and in the
    headers only in To and List-Unsubscribe."""
    base = one_click.split("/unsubscribe?")[0]
    (preferences,) = [line for line in text.splitlines() if line.startswith(f"{base}/preferences?token=")]
    links = [one_click, preferences]
    tokens = [token_of(link) for link in links]
    for token in tokens:  # each link is the reader's own
        assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))[0] == address
    assert "evil.example" in page and "Feed title" in page and "Post title" in page  # the hostile articles are in

    page_rest = page
    for link in links:
        assert page_rest.count(f'href="{html.escape(link)}"') == 1
        page_rest = page_rest.replace(f'href="{html.escape(link)}"', "")
    assert page_rest.count(html.escape(address)) == 1 and f"because {html.escape(address)} subscribed" in page_rest
    page_rest = page_rest.replace(html.escape(address), "")
    assert not any(token in page_rest or token in html.unescape(page_rest) for token in tokens)
    assert address.lower() not in html.unescape(page_rest).lower()

    lines = text.splitlines()
    assert all(lines.count(link) == 1 for link in links)
    text_rest = "\n".join(line for line in lines if line not in links)
    assert text_rest.count(address) == 1 and not any(token in text_rest for token in tokens)

    assert address not in subject and not any(token in subject for token in tokens)
    for name, value in headers.items():
        if name.lower() not in ("to", "list-unsubscribe"):
            assert address.lower() not in value.lower() and not any(token in value for token in tokens), name
    assert "%%digest.html.email%%" in html.unescape(page)  # the look-alikes stay as written


def test_placeholders_in_every_field_of_a_feed_and_a_post_leak_nothing_in_the_dry_run(hostile_site):
    done = hostile_site.run(*SEND, "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    messages = sorted((hostile_site.root / "outbox").glob("*.eml"))
    assert len(messages) == 8
    for path in messages:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        address = message["To"].addresses[0].addr_spec
        one_click = message["List-Unsubscribe"].split(">")[0].removeprefix("<")
        assert_only_where_the_template_puts_them(
            address, one_click, str(message["Subject"]), {k: str(v) for k, v in message.items()},
            message.get_body(("html",)).get_content(), message.get_body(("plain",)).get_content(),
        )


def test_placeholders_in_every_field_leak_nothing_in_what_sendgrid_would_deliver(hostile_site, fake_sendgrid):
    done = hostile_site.run(*SEND, sendgrid_host=fake_sendgrid.url, sendgrid_api_key=SENDGRID_KEY)
    assert done.returncode == 0, done.stdout + done.stderr
    bodies = [entry["body"] for entry in fake_sendgrid.bodies() if entry["status"] == 202]
    seen = set()
    for body in bodies:
        contents = {c["type"]: c["value"] for c in body["content"]}
        for personalization in body["personalizations"]:
            subs = personalization.get("substitutions", {})

            def deliver(value: str, subs=subs) -> str:  # SendGrid's legacy substitution: replace each key
                for key, replacement in subs.items():
                    value = value.replace(key, replacement)
                return value

            address = personalization["to"][0]["email"]
            headers = {**body.get("headers", {}), **personalization["headers"]}
            one_click = headers["List-Unsubscribe"].split(">")[0].removeprefix("<")
            subject = deliver(body["subject"])
            delivered = {name: deliver(value) for name, value in headers.items()}
            assert_only_where_the_template_puts_them(
                address, one_click, subject, delivered, deliver(contents["text/html"]), deliver(contents["text/plain"])
            )
            # No substitution key is something content could have written.
            assert all(re.fullmatch(r"%%digest\.(html|text|link)\.[a-z_]+\.[0-9a-f]{16}%%", key) for key in subs)
            seen.add(address)
    assert len(seen) == 8
