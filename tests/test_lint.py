"""The built-in checks: a clean default issue has no findings; each problem a
template or an article can bring is found, and said where it comes from."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from rendering_samples import article, articles, issue, recipient

from digest.lint import Finding, has_errors, lint_message, lint_variant
from digest.messages import build_message
from digest.rendering import default_templates_dir, render_variant


@pytest.fixture
def settings(settings_for):
    return settings_for(site_url="https://gazette.example.org/", postal_address="The Gazette, 12 Orchard Lane, Springfield 01234")


def with_templates(settings_for, tmp_path: Path, files: dict[str, str], **options):
    folder = tmp_path / "templates"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return settings_for(templates_dir=folder, site_url="https://gazette.example.org/", **options)


def default(name: str) -> str:
    return (default_templates_dir() / name).read_text(encoding="utf-8")


def codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


def test_the_default_templates_have_no_findings(settings):
    items = articles(12)
    rendered = render_variant(items, issue(intro="A note with a [link](/about)."), settings, variant_key="v1")
    assert lint_variant(rendered, articles=items, settings=settings) == []
    assert lint_message(build_message(rendered, recipient(1), settings, issue_key="k")) == []


def test_image_without_alt_and_size_is_found_at_its_template_line(settings_for, tmp_path):
    header = default("partials/header.html.j2").replace("<tr>\n", '<tr>\n<td><img src="https://gazette.example.org/logo.png"></td>\n', 1)
    settings = with_templates(settings_for, tmp_path, {"partials/header.html.j2": header})
    rendered = render_variant(articles(2), issue(), settings, variant_key="v1")
    findings = lint_variant(rendered, articles=articles(2), settings=settings)
    alt = [f for f in findings if f.code == "img-alt"]
    assert len(alt) == 1 and alt[0].severity == "error"
    assert alt[0].where == f"{tmp_path / 'templates' / 'partials' / 'header.html.j2'}:2"
    assert {"img-width", "img-height"} <= codes(findings)
    assert has_errors(findings)


@pytest.mark.parametrize(
    ("img", "codes_found"),
    [
        ('<img src="https://gazette.example.org/a.png" alt="A" width="552" style="height:auto">', set()),
        ('<img src="https://gazette.example.org/a.png" alt="A" width="552" height="300">', set()),
        ('<img src="https://gazette.example.org/a.png" alt="A" width="552" height="auto">', {"img-height"}),  # not a number
        ('<img src="https://gazette.example.org/a.png" alt="A" width="552px" style="height:auto">', {"img-width"}),
        ('<img src="https://gazette.example.org/a.png" alt="A" width="552" style="max-height:auto">', {"img-height"}),
    ],
)
def test_image_sizes_are_pixel_numbers_or_a_height_left_to_css(settings, img, codes_found):
    rendered = render_variant(articles(1), issue(), settings, variant_key="v1")
    findings = lint_variant(replace(rendered, html=rendered.html.replace("</h1>", "</h1>" + img)))
    assert codes(findings) == codes_found
    assert all(f.severity == "warning" for f in findings)


def test_a_relative_link_in_a_template_is_made_absolute_and_a_bad_scheme_is_an_error(settings_for, tmp_path):
    footer = default("partials/footer.html.j2").replace(
        "<p>{{ postal_address }}</p>", '<p>{{ postal_address }} <a href="/contact">Contact</a> <a href="javascript:alert(1)">Tip</a></p>'
    )
    settings = with_templates(settings_for, tmp_path, {"partials/footer.html.j2": footer})
    rendered = render_variant(articles(2), issue(), settings, variant_key="v1")
    assert 'href="https://gazette.example.org/contact"' in rendered.html  # made absolute against site_url
    findings = lint_variant(rendered, settings=settings)
    assert [(f.code, f.severity) for f in findings] == [("link-scheme", "error")]
    line = next(n for n, text in enumerate(footer.splitlines(), start=1) if "javascript:" in text)
    assert findings[0].where == f"{tmp_path / 'templates' / 'partials' / 'footer.html.j2'}:{line}"


def test_relative_and_plain_http_links_in_the_html(settings):
    rendered = render_variant(articles(2), issue(), settings, variant_key="v1")
    html = rendered.html.replace("</h1>", '</h1><a href="about/">About</a><a href="//cdn.example.org/x">x</a><a href="http://old.example.org/">old</a>')
    findings = lint_variant(replace(rendered, html=html))
    assert [f.code for f in findings] == ["link-relative", "link-relative", "link-insecure"]
    assert [f.severity for f in findings] == ["error", "error", "warning"]


def test_a_finding_names_the_article_it_comes_from(settings):
    bad = article(3, title="Frost dates", summary_html='<p>Maps at <a href="ftp://maps.example.org/frost">the archive</a>.</p>')
    items = [article(0), bad]
    rendered = render_variant(items, issue(), settings, variant_key="v1")
    findings = lint_variant(rendered, articles=items, settings=settings)
    assert [(f.code, f.where) for f in findings] == [("link-scheme", "article 'Frost dates'")]
    assert str(findings[0]) == "error: link with a ftp: URL: ftp://maps.example.org/frost (article 'Frost dates')"


def test_template_leftovers_are_errors(settings_for, tmp_path):
    header = default("partials/header.html.j2").replace("</h1>", "</h1>\n<p>{% raw %}{{ forgot_to_render }}{% endraw %}</p>")
    text = default("digest.txt.j2").replace("Hi {{ person.name }},", "Hi {{ person.name }}, {{ '{%' }} if",)
    settings = with_templates(settings_for, tmp_path, {"partials/header.html.j2": header, "digest.txt.j2": text})
    rendered = render_variant(articles(1), issue(), settings, variant_key="v1")
    findings = [f for f in lint_variant(rendered, settings=settings) if f.code == "template-leftover"]
    assert [f.severity for f in findings] == ["error", "error"]
    assert "the HTML" in findings[0].message and "forgot_to_render" in findings[0].message
    assert "the text" in findings[1].message


def test_template_syntax_in_an_article_is_the_authors_words_a_warning_not_an_error(settings):
    about_jinja = replace(article(0), title="Templating our newsletter", summary_html="<p>Write {{ name }} where the name goes.</p>", summary_text="Write {{ name }} where the name goes.")
    rendered = render_variant([about_jinja], issue(), settings, variant_key="v1")
    findings = [f for f in lint_variant(rendered, articles=[about_jinja], settings=settings) if f.code == "template-leftover"]
    assert findings and {f.severity for f in findings} == {"warning"}
    assert {f.where for f in findings} == {"article 'Templating our newsletter'"}
    assert not has_errors(findings)


def test_size_against_the_gmail_clip_and_the_budget(settings_for):
    settings = settings_for(html_budget_kb=10)
    rendered = render_variant(articles(1), issue(), settings, variant_key="v1")
    padding = "<p>" + "x" * 1000 + "</p>\n"
    over_budget = replace(rendered, html=rendered.html.replace("</body>", padding * 20 + "</body>"))
    clipped = replace(rendered, html=rendered.html.replace("</body>", padding * 110 + "</body>"))
    assert [(f.code, f.severity) for f in lint_variant(over_budget, settings=settings)] == [("size-budget", "warning")]
    assert [(f.code, f.severity) for f in lint_variant(clipped, settings=settings)] == [("size-gmail-clip", "error")]


def test_missing_unsubscribe_link_and_text_part(settings_for, tmp_path):
    footer = default("partials/footer.html.j2").replace('<a href="{{ person.unsubscribe_url }}">Unsubscribe</a> &middot; ', "")
    text_footer = default("partials/footer.txt.j2").replace("Unsubscribe:\n{{ person.unsubscribe_url }}\n", "")
    settings = with_templates(settings_for, tmp_path, {"partials/footer.html.j2": footer, "partials/footer.txt.j2": text_footer})
    rendered = render_variant(articles(1), issue(), settings, variant_key="v1")
    assert [(f.code, f.severity) for f in lint_variant(rendered)] == [
        ("text-unsubscribe", "warning"),
        ("unsubscribe-missing", "error"),
    ]
    assert ("text-missing", "warning") in [(f.code, f.severity) for f in lint_variant(replace(rendered, text=" \n"))]


def test_a_preheader_outside_40_to_100_characters_is_a_warning(settings_for):
    rendered = render_variant(articles(1), issue(), settings_for(preheader="Hi"), variant_key="v1")
    assert [(f.code, f.severity) for f in lint_variant(rendered)] == [("preheader-length", "warning")]


def test_message_header_and_structure_checks(settings):
    rendered = render_variant(articles(2), issue(), settings, variant_key="v1")
    message = build_message(rendered, recipient(1), settings, issue_key="k")
    del message["List-Unsubscribe-Post"]
    assert [(f.code, f.severity) for f in lint_message(message)] == [("list-unsubscribe-post", "error")]

    http_only = build_message(rendered, replace(recipient(1), unsubscribe_url="http://gazette.example.org/u?t=1"), settings, issue_key="k")
    assert [f.code for f in lint_message(http_only)] == ["list-unsubscribe"]

    html_only = build_message(rendered, recipient(1), settings, issue_key="k")
    html_only.clear_content()
    html_only.set_content(rendered.html, subtype="html")
    assert "mime-structure" in codes(lint_message(html_only))


def test_a_template_with_tel_links_and_an_in_email_anchor_passes_the_built_in_checks(settings_for, tmp_path):
    """A real send stops on errors (exit 2): tel: links and anchors to a
    target in the email are not errors; a tel: link that is no phone number is."""
    footer = default("partials/footer.html.j2").replace(
        "<p>{{ postal_address }}</p>",
        '<p id="contact">{{ postal_address }} · <a href="tel:+44-20-7946-0000">+44 20 7946 0000</a> · <a href="#contact">top</a></p>',
    )
    settings = with_templates(settings_for, tmp_path, {"partials/footer.html.j2": footer})
    rendered = render_variant(articles(2), issue(), settings, variant_key="v1")
    assert 'href="tel:+44-20-7946-0000"' in rendered.html and 'href="#contact"' in rendered.html
    assert lint_variant(rendered, settings=settings) == []
    bad = replace(rendered, html=rendered.html.replace("tel:+44-20-7946-0000", "tel:call-me-maybe"))
    assert [(f.code, f.severity) for f in lint_variant(bad, settings=settings)] == [("link-tel", "error")]
    missing = replace(rendered, html=rendered.html.replace('href="#contact"', 'href="#nowhere"'))
    assert [f.code for f in lint_variant(missing, settings=settings)] == ["link-relative"]


def test_a_style_block_over_16_kb_after_inlining_is_found(settings_for, tmp_path):
    rules = "\n".join(f"@media (max-width: {300 + n}px) {{ .cell-{n} {{ padding-left: {n}px; color: #123456 }} }}" for n in range(400))
    css = default("styles.css") + rules
    settings = with_templates(settings_for, tmp_path, {"styles.css": css})
    rendered = render_variant(articles(1), issue(), settings, variant_key="v1")
    findings = lint_variant(rendered, settings=settings)
    assert [(f.code, f.severity) for f in findings] == [("style-too-large", "warning")]
    assert lint_variant(render_variant(articles(1), issue(), settings_for(), variant_key="v1")) == []  # the defaults fit
