"""The Markdown reader against small sites of our own (tests/fixtures/sources/site)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from digest.articles import normalize, parse_date
from digest.errors import SourceError
from digest.settings import load_settings
from digest.sources.markdown import find_posts, read_post

SITE = Path(__file__).parent / "fixtures" / "sources" / "site"


def post(relative: str):
    return read_post(SITE / relative)


def test_walk_is_recursive_and_reads_only_markdown():
    found = {path.relative_to(SITE).as_posix() for path in find_posts(SITE)}
    assert "content/posts/bundle/index.md" in found
    assert "_posts/2026-03-04-jekyll-style.md" in found
    assert not any(name.endswith((".xml", ".yml")) for name in found)


def test_toml_front_matter_with_a_multi_line_array():
    raw = post("content/posts/toml-post.md")
    assert raw.title == "Pruning the espalier pears"
    assert raw.date == datetime(2026, 3, 2, 9, 0)  # TOML local date-time: naive
    assert raw.tags == [["Fruit Trees", "pruning"], ["Orchard"], None]
    assert raw.author == "Ines Duarte, Bob Carver"
    assert "<h2>Before you start</h2>" in raw.body_html
    assert raw.slug == "toml-post" and raw.url is None


def test_jekyll_file_name_date_string_tags_and_a_permalink_with_a_colon():
    raw = post("_posts/2026-03-04-jekyll-style.md")
    assert raw.date == date(2026, 3, 4)
    assert raw.slug == "jekyll-style"
    assert raw.tags == ["heating Frost_Protection bubble-wrap", "Greenhouse", None]
    assert raw.url == "/greenhouse:heating/"  # a path, not a "greenhouse:" scheme
    assert raw.image == "/assets/greenhouse.jpg"  # the Liquid {{ site.url }} prefix dropped


def test_offset_without_colon_and_author_mapping():
    raw = post("_posts/2026-03-05-comma-tags.md")
    assert raw.date == "2026-03-05 09:30:00 +0100"  # PyYAML leaves it a string; normalize parses it
    assert raw.tags[0] == "Soil, compost ,  No Dig"
    assert raw.author == "Ada Lindqvist"


def test_page_bundle_takes_its_folder_name_summary_and_image_mapping():
    raw = post("content/posts/bundle/index.md")
    assert raw.slug == "bundle"
    assert raw.date == "4 March 2026"
    assert raw.summary_html == "Cover the crowns in late winter and pick in spring."
    assert raw.image == "./crowns.jpg"


@pytest.mark.parametrize(
    "relative",
    [
        "content/posts/_index.md",  # section index, even with tags
        "content/tags/fruit-trees.md",  # taxonomy page
        "drafts/draft.md",  # draft: true
        "drafts/unpublished.md",  # published: false
        "notes/no-front-matter.md",
    ],
)
def test_non_posts_are_skipped_without_error(relative):
    assert post(relative) is None


def test_eleventy_section_page_named_after_its_folder_is_skipped(tmp_path):
    folder = tmp_path / "blog"
    folder.mkdir()
    (folder / "blog.md").write_text("---\ntitle: Blog\n---\nIndex.\n", encoding="utf-8")
    assert read_post(folder / "blog.md") is None


def test_zola_date_in_path(tmp_path):
    page = tmp_path / "release.md"
    page.write_text('+++\ntitle = "Release"\npath = "2025/09/18/release"\n+++\nText.\n', encoding="utf-8")
    raw = read_post(page)
    assert raw.date == date(2025, 9, 18)
    assert raw.url == "/2025/09/18/release"


def test_template_tags_and_footnote_markers_are_not_text(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "---\ntitle: T\n---\n{{< youtube abc >}}\n\nIt works[^1] {% if x %}well{% endif %}.\n", encoding="utf-8"
    )
    raw = read_post(page)
    assert "youtube" not in raw.body_html and "[^1]" not in raw.body_html and "{%" not in raw.body_html
    assert "It works well." in raw.body_html


def test_undecodable_bytes_name_the_offset(tmp_path):
    page = tmp_path / "latin1.md"
    page.write_bytes("---\ntitle: Caf\u00e9\n---\nx\n".encode("latin-1"))
    with pytest.raises(SourceError, match=r"not UTF-8 .*0xe9 at offset 14"):
        read_post(page)


def test_bad_yaml_names_the_line_of_the_file(tmp_path):
    page = tmp_path / "bad.md"
    page.write_text("\n---\ntitle: ok\ntags: [a, b\ndate: 2026-01-01\n---\nbody\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"line \d+: bad YAML front matter") as error:
        read_post(page)
    line = int(str(error.value).split()[1].rstrip(":"))
    assert 4 <= line <= 6  # the unclosed list opens on line 4 of the file; YAML notices on 5


def test_bad_toml_and_unclosed_front_matter(tmp_path):
    toml = tmp_path / "bad.md"
    toml.write_text('+++\ntitle = "x\n+++\n', encoding="utf-8")
    with pytest.raises(SourceError, match="bad TOML front matter"):
        read_post(toml)
    unclosed = tmp_path / "open.md"
    unclosed.write_text("---\ntitle: x\n\nno closing line\n", encoding="utf-8")
    with pytest.raises(SourceError, match="never closed"):
        read_post(unclosed)


ELEVENTY = Path(__file__).parent / "fixtures" / "sources" / "eleventy"


def test_eleventy_directory_data_files_tag_the_posts_of_their_folder_and_below():
    seed_swap = read_post(ELEVENTY / "blog" / "2026-03-10-seed-swap.md", ELEVENTY)
    # Own tags first, then blog.11tydata.json (a string is ONE tag to Eleventy), then blog.json.
    assert seed_swap.tags == [["Seeds", "blog"], None, None, ["Allotment News"], ["blog"]]
    open_day = read_post(ELEVENTY / "blog" / "events" / "2026-03-12-open-day.md", ELEVENTY)
    assert open_day.tags == [None, None, None, ["events"], ["Allotment News"], ["blog"]]  # nearest folder first
    compost = read_post(ELEVENTY / "notes" / "2026-03-11-compost.md", ELEVENTY)
    assert compost.tags == ["compost", None, None]  # not under blog/
    assert seed_swap.url is None  # blog.json's templated permalink is not an article URL


def test_directory_data_files_above_the_walked_folder_do_not_apply():
    open_day = read_post(ELEVENTY / "blog" / "events" / "2026-03-12-open-day.md", ELEVENTY / "blog" / "events")
    assert open_day.tags == [None, None, None, ["events"]]


def test_a_broken_directory_data_file_is_named(tmp_path):
    blog = tmp_path / "blog"
    blog.mkdir()
    (blog / "blog.json").write_text('{"tags": ["blog",]}', encoding="utf-8")
    (blog / "post.md").write_text("---\ntitle: P\n---\nText.\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"Eleventy data file .*blog\.json: invalid JSON at line 1"):
        read_post(blog / "post.md", tmp_path)


# --- front matter values of the wrong kind: the post goes on, or one clean refusal ------------


def front(tmp_path: Path, fields: str, name: str = "post.md") -> Path:
    page = tmp_path / name
    page.write_text(f"---\ntitle: Beans\n{fields}\n---\nThe runner beans are up.\n", encoding="utf-8")
    return page


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2026-11-26T25:61:00", "unreadable date 2026-11-26T25:61:00 (hour must be in 0..23)"),  # a YAML timestamp out of range
        ("2026-02-30", "unreadable date 2026-02-30 (day is out of range for month)"),
        ("0000-01-01", "unreadable date 0000-01-01 (year 0 is out of range)"),
        ("99999-01-01", "unreadable date 99999-01-01 (year 99999 is out of range)"),
        ("0001-01-01T00:00:00+05:00", "unreadable date 0001-01-01T00:00:00+05:00 (year 1 is outside 1000..9000)"),
        ("99999999999999999", "unreadable date 99999999999999999: a number, but not a Unix time (9 to 11 digits)"),
        (".inf", "unreadable date inf: a number, but not a Unix time (9 to 11 digits)"),
        (".nan", "unreadable date nan: a number, but not a Unix time (9 to 11 digits)"),
        ("[2026-01-01]", "unreadable date: a list, not a date"),
        ("{on: 2026-01-01}", "unreadable date: a mapping, not a date"),
        ("03/04/2026", "ambiguous date 03/04/2026: use 2026-04-03 or 2026-03-04"),
    ],
)
def test_a_date_that_cannot_be_read_leaves_the_post_undated_with_a_note_naming_the_line(tmp_path, value, problem):
    raw = read_post(front(tmp_path, f"tags: [beans]\ndate: {value}"))
    assert raw.date is None
    assert raw.notes == [f"line 4, date: {problem}; the post is left undated"]


def test_an_unreadable_date_falls_back_to_the_file_name_and_says_so(tmp_path):
    raw = read_post(front(tmp_path, "date: 2026-11-26T25:61:00", name="2026-11-26-beans.md"))
    assert raw.date == date(2026, 11, 26)
    assert raw.notes == ["line 3, date: unreadable date 2026-11-26T25:61:00 (hour must be in 0..23); dated by its file name instead"]


@pytest.mark.parametrize(("value", "expected"), [("26.11.2026", datetime(2026, 11, 26)), ("Nov 26 2026", datetime(2026, 11, 26))])
def test_more_date_forms_in_front_matter(tmp_path, value, expected):
    raw = read_post(front(tmp_path, f"date: {value}"))
    assert parse_date(raw.date) == expected and raw.notes == []


@pytest.mark.parametrize(
    ("fields", "note"),
    [
        ("tags: {garden: beans}", "line 3, tags: a mapping, not a list of tags; ignored"),
        ("tags: [beans, {a: b}]", "line 3, tags: a mapping in the list is not a tag; ignored"),
        ("url: 42", "line 3, url: a number, not a link; ignored"),
        ("permalink: [a, b]", "line 3, permalink: a list, not a link; ignored"),
        ("image: [[a.png]]", "line 3, image: a list, not an image path or URL; ignored"),
        ("image: 7", "line 3, image: a number, not an image path or URL; ignored"),
        ("coverImage: {alt: A bean}", "line 3, coverImage: a mapping, not an image path or URL; ignored"),
        ("summary: [a, b]", "line 3, summary: a list, not text; ignored"),
        ("slug: {en: beans}", "line 3, slug: a mapping, not text; ignored"),
        ("author: {email: a@example.org}", "line 3, author: a mapping with no name in it; ignored"),
    ],
)
def test_a_field_of_the_wrong_kind_is_ignored_with_a_note(tmp_path, fields, note):
    raw = read_post(front(tmp_path, fields))
    assert raw.title == "Beans"
    assert raw.notes == [note]
    assert raw.url is None and raw.image is None and raw.summary_html is None and raw.slug == "post"


@pytest.mark.parametrize(("fields", "kind"), [("title: [a, b]", "a list"), ("title: {en: Beans}", "a mapping"), ("title: !!binary aGk=", "binary data")])
def test_a_title_that_is_not_text_refuses_the_post_naming_the_line(tmp_path, fields, kind):
    page = tmp_path / "post.md"
    page.write_text(f"---\ndraft: false\n{fields}\n---\nText.\n", encoding="utf-8")
    with pytest.raises(SourceError) as error:
        read_post(page)
    assert str(error.value) == f"line 3, title: {kind}, not text"


def test_numbers_and_dates_written_where_text_goes_are_text(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("---\ntitle: 2026\nslug: 404\ntags: 7\nauthor: [Ada, {name: 12}]\n---\nx\n", encoding="utf-8")
    raw = read_post(page)
    assert (raw.title, raw.slug, raw.tags[0], raw.author, raw.notes) == ("2026", "404", ["7"], "Ada, 12", [])


def test_a_comma_in_a_tag_list_item_splits_it_as_in_a_string(tmp_path):
    raw = read_post(front(tmp_path, "tags: ['x,y', 'runner beans, peas', '🐝']\ncategories: Soil,Compost"))
    settings = load_settings(site_url="https://site.example/")
    assert normalize(raw, site_url=settings.site_url, tz=settings.tz).tags == ("x", "y", "runner-beans", "peas", "soil", "compost")
    assert raw.notes == []


def test_toml_errors_name_the_line_of_the_file_and_a_toml_time_is_no_date(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text('\n+++\ntitle = "x"\ndate = 2026-02-30\n+++\n', encoding="utf-8")
    with pytest.raises(SourceError, match=r"bad TOML front matter: Invalid date or datetime \(line 4, column 8\)"):
        read_post(bad)
    clock = tmp_path / "clock.md"
    clock.write_text('+++\ntitle = "x"\ndate = 07:32:00\n+++\n', encoding="utf-8")
    assert read_post(clock).notes == ["line 3, date: unreadable date 07:32:00: a time of day, not a date; the post is left undated"]
