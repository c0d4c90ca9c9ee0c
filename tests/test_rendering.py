"""Rendering a variant: escaping, templates and their overrides, placeholders
through the CSS inliner, personalization, once-per-variant rendering, inlined
styles, the size budget and the text part."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import jinja2
import pytest
from rendering_samples import article, articles, issue, recipient, run_email_lint

import digest.rendering as rendering
from digest.audience import build_variants
from digest.budget import html_size
from digest.errors import SettingsError
from digest.messages import build_message
from digest.personalization import html_placeholders, substitutions, text_placeholders
from digest.rendering import (
    RenderError,
    default_templates_dir,
    personalize,
    render_variant,
)
from digest.subscribers import Subscriber

SCRIPT_TITLE = '<script>alert("x")</script> & “news”'


@pytest.fixture
def settings(settings_for):
    return settings_for(site_name="The Gazette", site_url="https://gazette.example.org/", postal_address="The Gazette, 12 Orchard Lane, Springfield 01234")


def render(settings, items, **options):
    return render_variant(items, options.pop("context", issue()), settings, variant_key="v1", **options)


def editor_templates(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "my-templates"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def default_template(name: str) -> str:
    return (default_templates_dir() / name).read_text(encoding="utf-8")


# --- escaping and templates -------------------------------------------------------------


def test_script_in_a_title_is_escaped_in_html_and_plain_in_subject_and_text(settings):
    rendered = render(settings, [article(0, title=SCRIPT_TITLE), article(1)])
    assert "<script" not in rendered.html
    assert '&lt;script&gt;alert("x")&lt;/script&gt; &amp; “news”</a></h2>' in rendered.html
    # A header is text, not HTML: no entities there, no line break either.
    assert rendered.subject == f"The Gazette: {SCRIPT_TITLE} and 1 more"
    assert SCRIPT_TITLE in rendered.text


def test_a_template_typo_names_the_template_and_line(settings_for, tmp_path):
    page = default_template("partials/header.html.j2")
    line = next(n for n, text in enumerate(page.splitlines(), start=1) if "{{ site_name }}" in text)
    folder = editor_templates(tmp_path, {"partials/header.html.j2": page.replace("{{ site_name }}", "{{ site_nmae }}")})
    with pytest.raises(RenderError) as caught:
        render(settings_for(templates_dir=folder), articles(2))
    message = str(caught.value)
    assert f"header.html.j2, line {line}" in message
    assert "site_nmae" in message and "undefined" in message


def test_a_template_syntax_error_names_the_template_and_line(settings_for, tmp_path):
    folder = editor_templates(tmp_path, {"layouts/compact.html.j2": "<tr><td>\n{% if item.url %}\n</td></tr>\n"})
    with pytest.raises(RenderError, match=r"compact\.html\.j2, line \d+: .*endif"):
        render(settings_for(templates_dir=folder, layout="compact"), articles(2))


def test_editor_templates_override_and_missing_files_come_from_the_defaults(settings_for, tmp_path):
    header = default_template("partials/header.html.j2").replace("</h1>", "</h1>\n<p>Grown in our own shed</p>")
    folder = editor_templates(tmp_path, {"partials/header.html.j2": header})
    rendered = render(settings_for(templates_dir=folder), articles(3))
    assert "Grown in our own shed" in rendered.html
    # Everything else is the packaged default: the footer, the layouts, the text part.
    assert html_placeholders(rendered.nonce)["unsubscribe_url"] in rendered.html
    assert 'class="cell article"' in rendered.html
    assert text_placeholders(rendered.nonce)["unsubscribe_url"] in rendered.text


def test_an_edited_template_is_read_again_without_a_restart(settings_for, tmp_path):
    folder = editor_templates(tmp_path, {"partials/header.html.j2": default_template("partials/header.html.j2")})
    settings = settings_for(templates_dir=folder)
    assert "Second edition" not in render(settings, articles(1)).html
    path = folder / "partials/header.html.j2"
    path.write_text(path.read_text().replace("</h1>", "</h1><p>Second edition</p>"), encoding="utf-8")
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))  # a later mtime, as an editor's save gives
    assert "Second edition" in render(settings, articles(1)).html


# --- placeholders and personalization ----------------------------------------------------


def test_placeholders_survive_inlining_and_autoescape(settings):
    rendered = render(settings, articles(2))
    html_ph, text_ph = html_placeholders(rendered.nonce), text_placeholders(rendered.nonce)
    for field in ("name", "email", "unsubscribe_url", "preferences_url"):
        assert html_ph[field] in rendered.html
        assert text_ph[field] in rendered.text
    # the inliner made the other links absolute but left the placeholders alone.
    assert f'href="{html_ph["unsubscribe_url"]}"' in rendered.html
    assert "gazette.example.org/%%" not in rendered.html
    for placeholder in [*html_ph.values(), *text_ph.values()]:
        assert "{{" not in placeholder and "{%" not in placeholder


def test_personalize_escapes_values_in_html_and_keeps_them_in_text(settings):
    rendered = render(settings, articles(2))
    person = recipient(7, name='<b>Tom & "Jerry"</b>')
    html, text = personalize(rendered, person)
    assert "<b>Tom" not in html
    assert "Hi &lt;b&gt;Tom &amp; &#34;Jerry&#34;&lt;/b&gt;," in html
    assert 'href="https://gazette.example.org/unsubscribe?token=t7.sig-gardeners"' in html
    assert 'Hi <b>Tom & "Jerry"</b>,' in text
    assert "https://gazette.example.org/unsubscribe?token=t7.sig-gardeners" in text
    assert "%%digest." not in html + text


@pytest.mark.parametrize("link", ["https://gazette.example.org/unsubscribe?token=t.sig&list=x", 'https://x.example/"><script>'])
def test_a_link_that_escaping_would_change_is_refused_not_filled(settings, link):
    """One placeholder stands for a link in both parts: a link HTML-escaping
    changes would be wrong in one of them (or break out of href="")."""
    rendered = render(settings, articles(1))
    person = replace(recipient(1), unsubscribe_url=link)
    with pytest.raises(ValueError, match="unsubscribe_url"):
        personalize(rendered, person)
    with pytest.raises(ValueError, match="unsubscribe_url"):
        substitutions(person, rendered.nonce)


def test_a_value_that_looks_like_a_placeholder_is_not_expanded(settings):
    rendered = render(settings, articles(1))
    look_alike = text_placeholders(rendered.nonce)["email"]
    html, text = personalize(rendered, recipient(1, name=look_alike))
    assert look_alike in text  # the name, as given
    assert "reader1@example.org" in text


def test_substitutions_fill_both_parts_as_personalize_does(settings):
    rendered = render(settings, articles(2))
    person = recipient(3, name="Zoë “Z” O’Hara & co")
    html, text = rendered.html, rendered.text
    for placeholder, value in substitutions(person, rendered.nonce).items():  # what SendGrid does with them
        html, text = html.replace(placeholder, value), text.replace(placeholder, value)
    assert (html, text) == personalize(rendered, person)


def test_1000_subscribers_in_3_variants_are_rendered_3_times(settings, monkeypatch):
    items = articles(9)  # tags cycle: privacy+rust, python, privacy
    tag_sets = [frozenset({"python"}), frozenset({"rust"}), frozenset()]
    subscribers = [
        Subscriber(email=f"reader{i}@example.org", name=f"Reader {i}", tags=tag_sets[i % 3], list_name="gardeners", line=i + 2)
        for i in range(1000)
    ]
    variants = build_variants(items, subscribers)
    assert len(variants) == 3

    renders: list[str] = []
    original_render = jinja2.Template.render

    def counting_render(template, *args, **kwargs):
        renders.append(template.name)
        return original_render(template, *args, **kwargs)

    inlined = []
    original_inline = rendering.inline_css
    monkeypatch.setattr(jinja2.Template, "render", counting_render)
    monkeypatch.setattr(rendering, "inline_css", lambda *args: inlined.append(1) or original_inline(*args))

    personalized = 0
    for variant in variants:
        rendered = render_variant(variant.articles, issue(), settings, variant_key=variant.key, tags=variant.tags)
        for number, subscriber in enumerate(variant.subscribers):
            html, text = personalize(rendered, recipient(number, email=subscriber.email, name=subscriber.name))
            assert f"Hi {subscriber.name}," in text
            personalized += 1
        message = build_message(rendered, recipient(0, email=subscriber.email, name=subscriber.name), settings, issue_key="2026-W49")
        assert message["To"].addresses[0].addr_spec == subscriber.email
    assert personalized == 1000
    assert renders.count("digest.html.j2") == 3
    assert renders.count("digest.txt.j2") == 3
    assert len(inlined) == 3


# --- styles, layout, sections -------------------------------------------------------------


def test_styles_are_inlined_and_media_rules_kept_in_head_to_win(settings):
    html = render(settings, articles(3)).html
    head, body = html.split("</head>", 1)
    assert re.search(r'<td class="cell article" style="[^"]*padding:0 24px', body)
    assert re.search(r'<h\d class="title" style="[^"]*font-size:19px', body)
    style = re.findall(r"<style>(.*?)</style>", head, re.S)[-1]  # the first is Outlook's, in <!--[if mso]>
    assert "@media (prefers-color-scheme: dark)" in style and "@media screen and (max-width: 620px)" in style
    # Only @media and :hover rules are left, each declaration !important so it beats style="".
    rules_outside_media = re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", style)
    assert [selector.strip() for selector in re.findall(r"([^{}]+)\{", rules_outside_media)] == ["a:hover"]
    declarations = [d.strip() for block in re.findall(r"\{([^{}]*)\}", style) for d in block.split(";") if d.strip()]
    assert len(declarations) > 10 and all(d.endswith("!important") for d in declarations), declarations
    assert "<style" not in body


def test_images_only_from_https_with_alt_and_pixel_width(settings):
    items = [article(0, image="https://cdn.example.org/a.jpg"), article(1, image="http://cdn.example.org/b.jpg"), article(2, image=None)]
    html = render(settings, items).html
    images = re.findall(r"<img [^>]*>", html)
    assert len(images) == 1
    assert 'src="https://cdn.example.org/a.jpg"' in images[0]
    assert 'alt="Plot 0: notes on allotment"' in images[0]
    assert 'width="552"' in images[0] and 'width="100%"' not in images[0]
    assert "display:block" in images[0] and "border:0" in images[0]
    # Its height is not known: no height attribute (height="auto" is invalid HTML), CSS keeps the proportions.
    assert " height=" not in images[0] and re.search(r'style="[^"]*(?<![-\w])height:auto', images[0])


def test_plain_http_article_links_are_upgraded_to_https(settings):
    items = [article(0, url="http://old.example.org/post", summary_html='<p>See <a href="http://old.example.org/x">this</a>.</p>')]
    rendered = render(settings, items)
    assert 'href="http://' not in rendered.html
    assert 'href="https://old.example.org/post"' in rendered.html and 'href="https://old.example.org/x"' in rendered.html
    assert "https://old.example.org/post" in rendered.text


def test_sections_follow_the_settings_order_with_a_cap_per_section(settings_for):
    settings = settings_for(sections=["python", "Privacy"], articles_per_section=2)
    items = articles(9)  # python: 1, 4, 7; privacy: 0, 2, 3, 5, 6, 8
    html = render(settings, items).html
    headings = re.findall(r"<h2 [^>]*>([^<]+)</h2>", html)
    assert headings == ["Python", "Privacy", "More this week"]
    # Articles are h3 under the h2 sections; the two newest of each section are shown in full.
    shown = re.findall(r'<h3 class="title"[^>]*><a [^>]*>([^<]+)</a>', html)
    assert shown == ["Plot 1: notes on beans", "Plot 4: notes on espalier", "Plot 0: notes on allotment", "Plot 2: notes on compost"]
    more = html.split(">More this week<", 1)[1]
    assert all(f"Plot {n}:" in more for n in (7, 3, 5, 6, 8))


def test_compact_layout_shows_titles_and_one_line(settings_for):
    html = render(settings_for(layout="compact"), articles(4)).html
    assert html.count('class="cell compact"') == 4
    assert 'class="excerpt"' not in html and "<img" not in html


def test_editors_note_in_markdown_at_the_top(settings):
    note = "Welcome to the **frost** issue.\nRead [our guide](/guides/frost) first.\n\n- cover the dahlias\n- lift the leeks"
    rendered = render(settings, articles(2), context=issue(intro=note))
    html = rendered.html
    assert "<strong" in html and "frost</strong>" in html
    assert 'href="https://gazette.example.org/guides/frost"' in html
    assert html.index("frost</strong>") < html.index('class="cell article"')
    assert "Welcome to the **frost** issue. Read [our guide](/guides/frost) first." in rendered.text
    assert "- cover the dahlias\n- lift the leeks" in rendered.text


# --- subject and preheader ----------------------------------------------------------------


def test_subject_fields_and_line_breaks(settings_for):
    settings = settings_for(site_name="The Gazette", subject_template="{site_name} #{issue_key}: {count} stories, led by {first_title}{more}")
    rendered = render(settings, [article(0, title="Frost\r\ncomes  early"), article(1)])
    assert rendered.subject == "The Gazette #2026-W49: 2 stories, led by Frost comes early and 1 more"
    assert render(settings, [article(0, title="Frost")]).subject == "The Gazette #2026-W49: 1 stories, led by Frost"


def test_a_subject_template_with_an_unknown_field_is_a_settings_error(settings_for):
    with pytest.raises(SettingsError, match=r"subject_template.*first_titel"):
        render(settings_for(subject_template="{site_name}: {first_titel}"), articles(1))


def test_preheader_is_made_from_the_first_titles_within_40_to_100_characters(settings_for):
    settings = settings_for()
    one = render(settings, [article(0, title="Frost")]).preheader
    many = render(settings, articles(12)).preheader
    assert 40 <= len(one) <= 100 and one.startswith("Frost")
    assert 40 <= len(many) <= 100 and many.startswith("Plot 0: notes on allotment · Plot 1")
    assert render(settings_for(preheader="Our  autumn\nissue is here: frost, leeks and the shed."), articles(1)).preheader == (
        "Our autumn issue is here: frost, leeks and the shed."
    )


def test_preheader_is_the_first_text_of_the_body_and_hidden(settings):
    html = render(settings, articles(3)).html
    body = html.split("<body", 1)[1]
    first = re.search(r">\s*([^<\s][^<]*)<", body)
    assert first[1].startswith("Plot 0: notes on allotment")
    assert re.search(r'<div class="preheader"[^>]* style="display:none;[^"]*max-height:0', body)


# --- "View in your browser" -------------------------------------------------------------------


def test_view_in_browser_link_leads_to_the_issues_archive_page_in_both_parts(settings_for):
    settings = settings_for(site_url="https://gazette.example.org/", archive_url="http://letters.example.org/back-issues/")
    rendered = render(settings, articles(3), context=replace(issue(), key="2026 W49/special"))
    page = "https://letters.example.org/back-issues/2026-W49-special.html"  # https, and a safe file name
    body = rendered.html.split("<body", 1)[1]
    link = re.search(r'<a href="([^"]+)"[^>]*>View in your browser</a>', body)
    assert link and link[1] == page
    # At the top: after the hidden preheader, before the masthead and the first article.
    assert body.index('class="preheader"') < link.start() < body.index('class="site-name"') < body.index('class="cell article"')
    lines = rendered.text.splitlines()
    assert page in lines and lines.index(page) < lines.index(f"Hi {text_placeholders(rendered.nonce)['name']},")


def test_view_in_browser_defaults_to_the_archive_under_the_site(settings):
    assert 'href="https://gazette.example.org/archive/2026-W49.html"' in render(settings, articles(1)).html


def test_an_archive_url_that_is_not_http_is_a_settings_error(settings_for):
    with pytest.raises(SettingsError, match="archive_url"):
        render(settings_for(archive_url="ftp://example.org/archive"), articles(1))


def test_the_web_page_has_no_view_link_and_names_no_reader(settings):
    web = render(settings, articles(3), web_page=True)
    assert "View in your browser" not in web.html and "View it in your browser" not in web.text
    for field in ("email", "unsubscribe_url", "preferences_url"):
        assert html_placeholders(web.nonce)[field] not in web.html
    assert "Plot 2: notes on compost" in web.html and settings.postal_address in web.html


# --- size budget -----------------------------------------------------------------------------


def test_a_100_article_variant_stays_under_the_gmail_clip_with_its_footer(settings):
    items = [article(n, image=f"https://gazette.example.org/images/{n}.jpg") for n in range(100)]
    rendered = render(settings, items)
    html, _ = personalize(rendered, recipient(1))
    size = len(html.encode("utf-8"))
    assert size < 102 * 1024
    assert size <= settings.html_budget_kb * 1024 + 2048  # per-person values add a few hundred bytes
    assert 'Unsubscribe</a>' in html and "Manage your preferences" in html and settings.postal_address in html
    assert rendered.notes[0].startswith("HTML was") and rendered.notes[-1].startswith("now ")
    assert "excerpts shortened to about 20 words" in rendered.notes
    # Every article is still there, in full, compact or as a link.
    assert all(item.title in html for item in items)


def test_the_budget_changes_the_oldest_articles_first_and_says_so(settings_for):
    settings = settings_for(html_budget_kb=24)
    items = articles(40)
    rendered = render(settings, items)
    size = html_size(rendered.html)  # as sent 7-bit (quoted-printable): the larger size
    assert size <= 24 * 1024
    notes = " | ".join(rendered.notes)
    assert re.search(r"the (\d+) oldest articles listed as 'More this week' links", notes), notes
    more = rendered.html.split(">More this week<", 1)[1]
    assert "Plot 39:" in more  # the oldest is a link
    assert "Plot 0:" not in more  # the newest is not
    assert re.search(r'<h2 class="title"[^>]*><a [^>]*>Plot 0:', rendered.html.split(">More this week<", 1)[0])
    assert html_placeholders(rendered.nonce)["unsubscribe_url"] in rendered.html and settings.postal_address in rendered.html


def standard_cells(html: str) -> list[int]:
    """The article numbers shown in the standard layout, in order."""
    return [int(n) for n in re.findall(r'class="cell article".*?<h\d[^>]*>.*?Plot (\d+):', html, re.DOTALL)]


def test_a_huge_issue_keeps_the_newest_in_full_and_counts_the_oldest_in_a_link_to_its_web_page(settings_for):
    settings = settings_for(html_budget_kb=20, site_url="https://gazette.example.org/", postal_address="1 Lane, Springfield")
    items = articles(150)
    rendered = render(settings, items)
    assert len(rendered.html.encode("utf-8")) <= 20 * 1024
    assert standard_cells(rendered.html) == [0, 1, 2, 3, 4]  # the newest, in full
    link = re.search(r'<a href="([^"]+)"[^>]*>(\d+) more articles</a>', rendered.html)
    web_page = rendering.issue_url(settings, issue().key)
    assert link and link[1] == web_page
    left_out = [item.title for item in items if item.title not in rendered.html]
    assert left_out == [item.title for item in items[-int(link[2]) :]]  # exactly the oldest ones
    assert f"the {link[2]} oldest articles left out, counted in a link to the issue's web page" in rendered.notes
    assert f"{link[2]} more articles, in your browser:\n{web_page}\n" in rendered.text
    assert "Plot 149:" not in rendered.text and "Plot 0:" in rendered.text
    # The web page is not clipped by any mail app: it shows every article, in full.
    page = render(settings, items, web_page=True)
    assert page.notes == () and "more articles" not in page.html
    assert standard_cells(page.html) == list(range(150))


def test_when_the_newest_alone_are_over_the_budget_they_go_compact_oldest_first(settings_for):
    settings = settings_for(html_budget_kb=11, site_url="https://gazette.example.org/", postal_address="1 Lane, Springfield")
    items = [article(n, title=f"Plot {n}: " + "a long report on the allotment, " * 4) for n in range(30)]
    rendered = render(settings, items)
    assert html_size(rendered.html) <= 11 * 1024
    shown = standard_cells(rendered.html)
    assert shown and shown == list(range(len(shown))) and len(shown) < 5  # the newest stay longest
    assert f"Plot {len(shown)}:" in rendered.html.split('class="cell compact"', 1)[1]
    assert html_placeholders(rendered.nonce)["unsubscribe_url"] in rendered.html and "1 Lane, Springfield" in rendered.html


def test_a_budgeted_email_with_images_and_a_count_link_passes_email_lint(settings_for, tmp_path):
    settings = settings_for(
        html_budget_kb=20,
        site_name="The Gazette",
        site_url="https://gazette.example.org/",
        sender_email="news@gazette.example.org",
        postal_address="The Gazette, 12 Orchard Lane, Springfield 01234",
    )
    items = [article(n, image=f"https://gazette.example.org/images/{n}.jpg") for n in range(120)]
    rendered = render(settings, items)
    assert "more articles</a>" in rendered.html and rendered.html.count("<img ") == 5
    path = tmp_path / "reader.eml"
    path.write_bytes(build_message(rendered, recipient(1), settings, issue_key="2026-W49").as_bytes())
    result = run_email_lint(path)
    report = json.loads(result.stdout)["reports"][0]
    problems = [(f["rule"], f["message"]) for f in report["findings"] if f["severity"] != "info"]
    assert result.returncode == 0 and problems == [], problems


def test_no_notes_when_within_budget(settings):
    assert render(settings, articles(5)).notes == ()


# --- text part ---------------------------------------------------------------------------------


def test_text_part_reads_as_text_wrapped_at_72_with_links_on_their_own_lines(settings):
    items = [article(0, title="A “quoted” title that’s long enough to need wrapping at seventy-two columns, surely"), *articles(6)[1:]]
    rendered = render(settings, items)
    _, text = personalize(rendered, recipient(2))
    lines = text.splitlines()
    assert all(len(line) <= 72 for line in lines if not line.startswith("https://")), [line for line in lines if len(line) > 72]
    assert not re.search(r"</?[a-zA-Z][^>]*>", text), "no HTML tags"
    assert not re.search(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);", text), "no HTML entities"
    assert "“quoted”" in text and "that’s" in text and "it’s" in text
    for item in items:
        assert item.url in lines  # each link alone on its line
    tail = "\n".join(lines[-8:])
    assert "https://gazette.example.org/unsubscribe?token=t2.sig-gardeners" in tail
    assert lines[-1] == settings.postal_address


def test_inline_css_fetches_nothing_and_logs_nothing(capfd, caplog):
    page = (
        '<html><head><link rel="stylesheet" href="https://127.0.0.1:9/remote.css">'
        "<style>p { color: #123456; mso-line-height-rule: exactly; colr: red; width: 10qx; }"
        " @media (max-width: 600px) { p { color: #654321 } }</style></head>"
        '<body><p style="mso-hide: all">Hi</p><a href="/about">About</a></body></html>'
    )
    out = rendering.inline_css(page, "https://gazette.example.org/")  # a fetch of remote.css would raise
    assert 'href="https://gazette.example.org/about"' in out
    assert re.search(r'<p style="[^"]*color:#123456', out)
    assert "color:#654321!important" in re.sub(r"\s+", "", out)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    assert not [r for r in caplog.records if r.levelno >= 30]


def test_the_size_budget_inlines_each_variant_at_most_twice(settings_for, monkeypatch):
    """Five variants far over the budget: the budget searches on rendered
    HTML and estimates what inlining adds, so each variant is inlined once
    as planned and once as reduced, and still fits."""
    settings = settings_for(html_budget_kb=20)
    calls: list[str] = []
    original_inline = rendering.inline_css
    monkeypatch.setattr(rendering, "inline_css", lambda html, *args: calls.append(html) or original_inline(html, *args))
    for count in (30, 45, 60, 90, 150):
        calls.clear()
        rendered = render(settings, articles(count))
        assert rendered.notes and rendered.notes[0].startswith("HTML was")
        assert len(calls) <= 2, (count, len(calls))
        assert len(rendered.html.encode("utf-8")) <= 20 * 1024, (count, rendered.notes)


def test_in_email_anchors_stay_in_the_email_and_other_relative_links_go_to_the_site(settings_for):
    settings = settings_for(site_url="https://gazette.example.org/")
    note = "Jump to [the latest](#latest), read [elsewhere](#nowhere) or [the guide](/guide), call [us](tel:+44-20-7946-0000)."
    html = render(settings, articles(2), context=issue(intro=note)).html
    html = html.replace('class="cell article"', 'id="latest" class="cell article"', 1)  # a target in the email
    out = rendering.inline_css(html.replace('href="https://gazette.example.org/#latest"', 'href="#latest"'), settings.site_url)
    assert 'href="#latest"' in out
    assert 'href="https://gazette.example.org/#nowhere"' in out  # no such target in the email: the site's
    assert 'href="https://gazette.example.org/guide"' in out and 'href="tel:+44-20-7946-0000"' in out


@pytest.mark.parametrize("inliner", ["css-inline", "premailer"])
def test_an_anchor_whose_target_is_in_the_email_is_never_made_absolute(inliner):
    page = '<html><head><style>a { color: red }</style></head><body><a href="#top">top</a><p id="top">x</p><a href="#gone">g</a></body></html>'
    out = rendering.inline_css(page, "https://gazette.example.org/", inliner)
    assert 'href="#top"' in out and 'href="https://gazette.example.org/#gone"' in out


def test_the_premailer_inliner_is_still_offered(settings_for):
    """inliner = "premailer" renders the same email content through premailer
    (not cascade-true: see digest/inlining.py), and it passes the built-in checks."""
    from digest.lint import lint_variant

    settings = settings_for(inliner="premailer", site_url="https://gazette.example.org/")
    rendered = render(settings, articles(3))
    assert re.search(r'<td class="cell article" style="[^"]*padding:0 24px', rendered.html)
    assert lint_variant(rendered, settings=settings) == []
    with pytest.raises(SettingsError, match="inliner"):
        settings_for(inliner="juice")
