"""Building the MIME message of one recipient: structure, headers, encodings,
refused header injection, and the result judged by ../shared/tools/email_lint.py."""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import UTC, datetime

import pytest
from rendering_samples import article, articles, issue, recipient, run_email_lint

from digest.messages import HeaderError, build_message, list_headers, list_unsubscribe_headers
from digest.rendering import render_variant

DATE = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture
def settings(settings_for):
    return settings_for(
        site_name="The Gazette",
        site_url="https://gazette.example.org/",
        sender_email="news@gazette.example.org",
        sender_name="Gazette – Dépêches",
        postal_address="The Gazette, 12 Orchard Lane, Springfield 01234",
    )


@pytest.fixture
def rendered(settings):
    return render_variant([article(0, title="Rübe & Kürbis: “the” harvest"), *articles(5)[1:]], issue(), settings, variant_key="v1")


def parse(message) -> email.message.EmailMessage:
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)


def test_multipart_alternative_with_text_first_then_html_in_utf8(rendered, settings):
    message = parse(build_message(rendered, recipient(1), settings, issue_key="2026-W49", date=DATE))
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert [p.get_content_charset() for p in parts] == ["utf-8", "utf-8"]
    text, html = (p.get_content() for p in parts)
    assert "Hi Ada Lovelace," in text and "Rübe & Kürbis: “the” harvest" in text
    assert "Hi Ada Lovelace," in html and "%%digest." not in html + text


def test_headers_of_a_bulk_message(rendered, settings_for):
    settings = settings_for(
        site_name="The Gazette",
        site_url="https://gazette.example.org/",
        sender_email="news@gazette.example.org",
        sender_name="The Gazette",
        reply_to="editor@gazette.example.org",
    )
    message = parse(build_message(rendered, recipient(4), settings, issue_key="2026-W49", date=DATE))
    assert message["From"].addresses[0].addr_spec == "news@gazette.example.org"
    assert message["From"].addresses[0].display_name == "The Gazette"
    assert message["To"].addresses[0].addr_spec == "reader4@example.org"
    assert message["Subject"] == rendered.subject
    assert message["Date"].datetime == DATE
    assert re.fullmatch(r"<[^@<>]+@gazette\.example\.org>", message["Message-ID"])
    assert message["Reply-To"].addresses[0].addr_spec == "editor@gazette.example.org"
    assert message["List-Unsubscribe"].strip() == (  # strip: a fold after the colon keeps its space in Python's parser
        "<https://gazette.example.org/unsubscribe?token=t4.sig-gardeners>, "
        "<mailto:unsubscribe@gazette.example.org?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "The Gazette <gardeners.gazette.example.org>"
    assert message["Precedence"] == "bulk"
    assert message["X-Digest-Issue"] == "2026-W49"


def test_message_id_domain_can_be_chosen(rendered, settings):
    message = build_message(rendered, recipient(1), settings, issue_key="k", message_id_domain="mail.example.net")
    assert message["Message-ID"].endswith("@mail.example.net>")


def test_non_ascii_names_and_subject_are_encoded_words_on_the_wire(rendered, settings):
    raw = build_message(rendered, recipient(2, name="Zoë Ünal"), settings, issue_key="k").as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and b"=?utf-8?" in head  # RFC 2047
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends throughout
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["To"].addresses[0].display_name == "Zoë Ünal"
    assert message["From"].addresses[0].display_name == "Gazette – Dépêches"
    assert message["Subject"] == rendered.subject


def test_html_travels_at_its_own_size_only_where_8bitmime_was_offered(rendered, settings):
    message = build_message(rendered, recipient(1), settings, issue_key="k", eight_bit=True)
    html_part = message.get_body(("html",))
    assert html_part["Content-Transfer-Encoding"] == "8bit"  # quoted-printable would grow it by ~30%
    assert all(len(line) <= 998 for line in message.as_bytes().splitlines())


def test_by_default_every_part_is_7bit_clean_and_decodes_to_the_same_text(rendered, settings):
    """A dry run's .eml and a server without 8BITMIME get quoted-printable
    (RFC 2045 §6.7) for UTF-8 parts: no byte over 127, no line over 76."""
    message = build_message(rendered, recipient(1), settings, issue_key="k")
    raw = message.as_bytes()
    assert raw.isascii()
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    parsed = parse(message)
    for part, kind in ((parsed.get_body(("plain",)), "plain"), (parsed.get_body(("html",)), "html")):
        assert part["Content-Transfer-Encoding"] in ("quoted-printable", "7bit")
        original = message.get_body((kind,)).get_content()
        assert part.get_content().splitlines() == original.splitlines()


FRENCH = "Les Échos du Jardin : « Gelée précoce sur les parcelles », la soupe de potiron d’Élodie et les nichoirs à hérissons — et 4 autres"
_ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def header_problems(raw: bytes) -> list[str]:
    """Header lines over 78 characters that could have been folded (a line
    may be longer only when it holds one token that cannot be broken, such
    as a URI), lines over 998, and RFC 2047 encoded-words over 75."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    problems = []
    for line in head.split(b"\r\n"):
        tokens = line.split()
        unbreakable = len(tokens) <= 2 and any(len(token) > 76 for token in tokens)
        if len(line) > 998 or (len(line) > 78 and not unbreakable):
            problems.append(f"{len(line)}: {line[:90]!r}")
        problems += [f"encoded-word of {len(word)}: {word[:40]!r}" for word in _ENCODED_WORD.findall(line) if len(word) > 75]
    return problems


@pytest.mark.parametrize("subject", [FRENCH, "A" * 300, "Kürbis " * 40 + "end", "日本語のニュースレター、今週の記事一覧と庭の便り" * 4])
def test_long_headers_are_folded_with_short_encoded_words(settings_for, subject):
    settings = settings_for(
        site_name="Les Échos du Jardin, la lettre des jardiniers du quartier Saint-Éloi et d’ailleurs",
        sender_name="Les Échos du Jardin, la lettre des jardiniers du quartier Saint-Éloi et d’ailleurs",
        reply_to='"Rédaction, Les Échos du Jardin (la lettre des jardiniers)" <redaction@jardin.example.org>',
        site_url="https://jardin.example.org/",
    )
    variant = render_variant(articles(2), issue(), settings, variant_key="v")
    variant = type(variant)(**{**variant.__dict__, "subject": subject})
    person = recipient(3, name="Doe, Zoë «la jardinière» de la parcelle numéro 12 près du grand cerisier")
    message = build_message(variant, person, settings, issue_key="2026-W49")
    raw = message.as_bytes()
    assert header_problems(raw) == []
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == subject
    # Python's parser puts a space between adjacent encoded-words (RFC 2047
    # §6.2 says to drop it): the name comes back with one space more.
    assert parsed["To"].addresses[0].display_name.replace(" ", "") == person.name.replace(" ", "")
    # (Python's parser keeps the space of a fold right after the colon.)
    assert parsed["List-Unsubscribe"].strip() == f"<{person.unsubscribe_url}>, <{person.unsubscribe_mailto}>"


@pytest.mark.parametrize("name", ["Desk, News", 'The "Desk"', "Rédaction, Échos", "O'Neil; Desk"])
def test_a_reply_to_display_name_round_trips(settings_for, rendered, name):
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    settings = settings_for(reply_to=f'"{quoted}" <desk@example.org>', site_url="https://gazette.example.org/")
    parsed = email.message_from_bytes(build_message(rendered, recipient(1), settings, issue_key="k").as_bytes(), policy=email.policy.default)
    (address,) = parsed["Reply-To"].addresses
    assert (address.display_name, address.addr_spec) == (name, "desk@example.org")


@pytest.mark.parametrize("name", ["Doe, Jane", 'Jane "JD" Doe', "Doe; Jane", "Zoë, «Z» Ünal", "a\\b"])
def test_to_names_with_commas_and_quotes_are_quoted_in_mime(settings, rendered, name):
    person = recipient(1, name=name)
    raw = build_message(rendered, person, settings, issue_key="k").as_bytes()
    (address,) = email.message_from_bytes(raw, policy=email.policy.default)["To"].addresses
    assert (address.display_name, address.addr_spec) == (name, person.email)


def test_the_list_headers_are_the_same_for_sendgrid_and_the_eml(settings):
    person = recipient(2)
    headers = list_headers(person, settings)
    assert set(headers) == {"List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"}
    assert all("\r" not in value and "\n" not in value for value in headers.values())  # JSON for SendGrid: one line each
    parsed = parse(build_message(render_variant(articles(1), issue(), settings, variant_key="v"), person, settings, issue_key="k"))
    assert {name: str(parsed[name]).strip() for name in headers} == headers


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "Eve\r\nBcc: victim@example.org"), ("email", "eve@example.org\nBcc: victim@example.org")],
)
def test_line_breaks_in_a_recipient_are_refused(rendered, settings, field, value):
    person = recipient(1)
    person = type(person)(**{**person.__dict__, field: value})
    with pytest.raises(HeaderError, match="To header may not contain a line break"):
        build_message(rendered, person, settings, issue_key="k")


def test_line_breaks_in_the_subject_or_issue_key_are_refused(rendered, settings):
    from dataclasses import replace

    with pytest.raises(HeaderError, match="Subject"):
        build_message(replace(rendered, subject="Hello\nBcc: victim@example.org"), recipient(1), settings, issue_key="k")
    with pytest.raises(HeaderError, match="X-Digest-Issue"):
        build_message(rendered, recipient(1), settings, issue_key="2026\r\nX-Evil: 1")


def test_list_unsubscribe_headers_with_and_without_mailto():
    person = recipient(9)
    assert list_unsubscribe_headers(person) == {
        "List-Unsubscribe": "<https://gazette.example.org/unsubscribe?token=t9.sig-gardeners>, "
        "<mailto:unsubscribe@gazette.example.org?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    bare = type(person)(**{**person.__dict__, "unsubscribe_mailto": None})
    assert list_unsubscribe_headers(bare)["List-Unsubscribe"] == "<https://gazette.example.org/unsubscribe?token=t9.sig-gardeners>"


@pytest.mark.parametrize(
    "options",
    [
        {},  # the standard layout, images, no sections
        {"layout": "compact"},
        {"sections": ["python", "privacy"], "articles_per_section": 2},
        {"html_budget_kb": 20},  # the budget lists the oldest as links
    ],
)
def test_built_messages_pass_email_lint_without_warnings(settings_for, tmp_path, options):
    settings = settings_for(
        site_name="The Gazette",
        site_url="https://gazette.example.org/",
        sender_email="news@gazette.example.org",
        postal_address="The Gazette, 12 Orchard Lane, Springfield 01234",
        **options,
    )
    note = "Frost is coming: **cover the dahlias**. Our [planting guide](/guides/frost) has the dates."
    rendered = render_variant(articles(30), issue(intro=note), settings, variant_key="v1", tags=frozenset({"privacy"}))
    path = tmp_path / "reader.eml"
    path.write_bytes(build_message(rendered, recipient(1, name="Zoë “Z” Ünal"), settings, issue_key="2026-W49").as_bytes())
    result = run_email_lint(path)
    report = json.loads(result.stdout)["reports"][0]
    problems = [(f["rule"], f["message"], f.get("examples")) for f in report["findings"] if f["severity"] != "info"]
    assert result.returncode == 0 and problems == [], problems
    assert report["metrics"]["preheader"]["present"] and report["metrics"]["list_unsubscribe"]["one_click"]
