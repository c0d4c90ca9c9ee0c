"""Settings: files, environment, and one readable message for a wrong value."""

import pytest

from digest.errors import SettingsError
from digest.settings import load_settings


def test_digest_toml_and_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digest.toml").write_text('site_name = "Garden Notes"\ntimezone = "Europe/Paris"\nsources = ["posts"]\n')
    monkeypatch.setenv("DIGEST_SITE_NAME", "From The Environment")
    settings = load_settings()
    assert settings.site_name == "From The Environment"  # environment beats the file
    assert settings.timezone == "Europe/Paris"
    assert settings.sources == ["posts"]
    assert load_settings(site_name="From Options").site_name == "From Options"


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('timezone = "Mars/Olympus"', "timezone"),
        ('sender_email = "not an address"', "sender_email"),
        ('provider = "carrier-pigeon"', "provider"),
        ('colour = "blue"', "colour"),
        ('site_url = "example.org"', "site_url"),
    ],
)
def test_a_wrong_value_names_the_setting(tmp_path, monkeypatch, toml, named):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digest.toml").write_text(toml + "\n")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"'{named}'" in message
    assert "\n" not in message


def test_malformed_toml_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digest.toml").write_text("site_name = \n")
    with pytest.raises(SettingsError, match="digest.toml|settings"):
        load_settings()


def test_secrets_do_not_print(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_SENDGRID_API_KEY", "SG.very-secret")
    settings = load_settings()
    assert "SG.very-secret" not in repr(settings)
    assert "SG.very-secret" not in str(settings.model_dump())


def test_a_dotenv_file_may_hold_other_programs_variables_and_names_them_in_one_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("OTHER_TOOL_TOKEN=1\nDIGEST_SITE_NAME=From Dotenv\nSENDGRID_API_KEY=SG.x\n")
    with caplog.at_level("WARNING", logger="digest.settings"):
        assert load_settings().site_name == "From Dotenv"
    (line,) = caplog.messages
    assert line.startswith("warning: .env: ignored, not settings of digest (it reads DIGEST_<SETTING>=value lines): ")
    assert "OTHER_TOOL_TOKEN, SENDGRID_API_KEY (not read: write DIGEST_SENDGRID_API_KEY)" in line
    assert "SG.x" not in line


def test_a_digest_key_in_dotenv_that_is_no_setting_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("DIGEST_SENDGRID_APIKEY=SG.x\n")
    with pytest.raises(SettingsError, match=r"^setting 'DIGEST_SENDGRID_APIKEY' \(\.env\): unknown setting$"):
        load_settings()


def test_sender_name_follows_the_site_name_unless_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digest.toml").write_text('site_name = "Garden Notes"\n')
    assert load_settings().sender_name == "Garden Notes"
    assert load_settings(sender_name="The Gardeners").sender_name == "The Gardeners"


def test_a_blank_api_key_counts_as_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_SENDGRID_API_KEY", "  ")
    assert load_settings().sendgrid_api_key is None


def test_an_api_key_read_from_a_file_loses_its_newline_and_a_broken_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_SENDGRID_API_KEY", "SG.abc.def\n")
    assert load_settings().sendgrid_api_key.get_secret_value() == "SG.abc.def"
    monkeypatch.setenv("DIGEST_SENDGRID_API_KEY", "SG.abc\ndef")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "'sendgrid_api_key'" in str(caught.value) and "SG.abc" not in str(caught.value)


@pytest.mark.parametrize(
    "value",
    ["desk@example.org\r\nBcc: victim@example.org", '"A" <a@example.org>, b@example.org', "Desk <not an address>", "desk", '"Desk, News" <desk@>'],
)
def test_a_reply_to_that_is_not_one_address_is_refused_naming_the_setting(settings_for, value):
    from digest.errors import SettingsError

    with pytest.raises(SettingsError, match="reply_to"):
        settings_for(reply_to=value)


@pytest.mark.parametrize(
    ("value", "parts"),
    [('"Desk, News" <desk@example.org>', ("Desk, News", "desk@example.org")), ("desk@example.org", ("", "desk@example.org")),
     ("Zoë Desk <desk@example.org>", ("Zoë Desk", "desk@example.org"))],
)
def test_a_reply_to_may_carry_a_display_name(settings_for, value, parts):
    assert settings_for(reply_to=value).reply_to_parts == parts


@pytest.mark.parametrize("site_url", ["https://site.example.org/blog", "https://site.example.org/blog/"])
def test_a_site_url_without_its_final_slash_is_still_the_folder_relative_links_live_in(tmp_path, monkeypatch, site_url):
    """RFC 3986 §5.2.3 drops a base's last segment when it has no "/": .../blog
    would have sent a post's "slug/" to the host's root, and the archive link
    (always under site_url) would have disagreed with the article links."""
    from digest.sources import load_articles

    monkeypatch.chdir(tmp_path)
    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "notes.md").write_text("---\ntitle: Notes\ndate: 2026-11-26\nslug: committee-notes\n---\nText [more](minutes/).\n", encoding="utf-8")
    settings = load_settings(site_url=site_url, sources=["posts"])
    assert settings.site_url == "https://site.example.org/blog/"
    (article,) = load_articles(settings.sources, settings).articles
    assert article.url == "https://site.example.org/blog/committee-notes/"
