"""Where a wrong setting came from, through the real command line: a
digest.toml or .env that is not UTF-8, a folder, a dangling link or a FIFO;
list settings written in the environment as people write them; and odd
values an attacker or a tired user would write. Each is one line on stderr
naming the file (and line) or the variable, exit 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


def run_digest(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`digest ARGS` as a process in ``cwd`` with ``env`` as its only DIGEST_* variables."""
    base = {name: value for name, value in os.environ.items() if not name.startswith("DIGEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "digest", *args], cwd=cwd, env={**base, "PYTHONPATH": str(REPO), **env},
        capture_output=True, text=True, timeout=120,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def one_line_error(result) -> str:
    """The one line of a settings error (exit 2) from a CliRunner result or a process."""
    code = result.exit_code if hasattr(result, "exit_code") else result.returncode
    text = result.output if hasattr(result, "exit_code") else result.stderr
    assert code == 2, text
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


# The files: named, with their line ------------------------------------------------------------


def test_a_latin1_digest_toml_is_named_with_its_line(tmp_path):
    (tmp_path / "digest.toml").write_bytes('site_name = "Garden"\npostal_address = "1 Rue de la Forêt"\n'.encode("latin-1"))
    line = one_line_error(run_digest(tmp_path, "articles"))
    assert str(tmp_path / "digest.toml") in line and "line 2" in line and "UTF-8" in line


def test_a_latin1_dotenv_is_named_with_its_line(tmp_path):
    (tmp_path / ".env").write_bytes("DIGEST_SITE_NAME=Café\n".encode("latin-1"))
    line = one_line_error(run_digest(tmp_path, "articles"))
    assert str(tmp_path / ".env") in line and "line 1" in line


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('DIGEST_LEDGER="other.db\nDIGEST_SITE_NAME=x\n', 1),  # an unclosed quote: the ledger fell back to digest.db
        ("DIGEST_SITE_NAME=Garden\nthis is not an env line\n", 2),
        ("# settings\n\nDIGEST_SITE_NAME='Garden\nDIGEST_LEDGER=other.db\n", 3),
        ('DIGEST_SITE_NAME="two\nlines"\nDIGEST_LEDGER=other.db\n= no key\n', 4),  # a quoted value may span lines
        ("DIGEST_SENDGRID_API_KEY='SG.secret-key-value\n", 1),
    ],
)
def test_a_dotenv_line_that_cannot_be_read_is_an_error_naming_the_file_and_line(tmp_path, text, line):
    (tmp_path / ".env").write_text(text)
    done = run_digest(tmp_path, "status")
    error = one_line_error(done)  # python-dotenv's own warnings, naming no file, would be more lines
    assert f"{tmp_path / '.env'}, line {line}:" in error
    assert "python-dotenv" not in done.stderr and "secret-key-value" not in done.stderr
    assert not (tmp_path / "digest.db").exists()  # nothing ran on the default ledger


@pytest.mark.parametrize("name", ["digest.toml", ".env"])
@pytest.mark.parametrize("kind", ["folder", "dangling link", "fifo"])
def test_a_settings_file_that_is_not_a_file_is_an_error_naming_it(tmp_path, name, kind):
    path = tmp_path / name
    {"folder": path.mkdir, "dangling link": lambda: path.symlink_to(tmp_path / "gone"), "fifo": lambda: os.mkfifo(path)}[kind]()
    line = one_line_error(run_digest(tmp_path, "articles"))
    assert str(path) in line


def test_an_unreadable_digest_toml_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "digest.toml"
    path.write_text('site_name = "Garden"\n')
    path.chmod(0)
    if os.access(path, os.R_OK) and Path("/proc/self/mem").exists():
        # Root reads any file whatever its mode: a file whose read fails (EIO) stands in.
        path.unlink()
        path.symlink_to("/proc/self/mem")
    elif os.access(path, os.R_OK):
        pytest.skip("running as root without /proc: every file can be read")
    line = one_line_error(CliRunner().invoke(cli, ["articles"]))
    assert str(path) in line and "cannot read" in line


def test_invalid_toml_names_the_file_and_line(tmp_path):
    (tmp_path / "digest.toml").write_text('site_name = "Garden"\nsources = [posts]\n')
    line = one_line_error(run_digest(tmp_path, "articles"))
    assert str(tmp_path / "digest.toml") in line and "line 2" in line


# Lists in the environment: as people write them ------------------------------------------------


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ('["posts", "feeds/news.xml"]', ["posts", "feeds/news.xml"]),
        ("posts", ["posts"]),
        ("posts,feeds/news.xml", ["posts", "feeds/news.xml"]),
        (" posts , feeds/news.xml ,", ["posts", "feeds/news.xml"]),
        ("", []),
    ],
)
def test_a_list_setting_in_the_environment_is_json_or_comma_separated(monkeypatch, written, read):
    for name in ("SOURCES", "SECTIONS", "SENDGRID_CATEGORIES"):
        monkeypatch.setenv(f"DIGEST_{name}", written)
    settings = load_settings()
    assert settings.sources == settings.sections == settings.sendgrid_categories == read


def test_every_list_setting_reads_both_forms_from_the_environment_and_dotenv(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGEST_PREVIOUS_SECRET_KEYS", "old-key-one-aaaaaaaaaaaaaaaaaaaaaaaaaa,old-key-two-bbbbbbbbbbbbbbbbbbbbbbbbbb")
    monkeypatch.setenv("DIGEST_FEED_ALLOW_PRIVATE", "127.0.0.1:8080")
    monkeypatch.setenv("DIGEST_SCHEDULE", "daily 07:30, weekly monday 08:00")
    (tmp_path / ".env").write_text("DIGEST_SECTIONS=news,notes\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert [key.get_secret_value()[:11] for key in settings.previous_secret_keys] == ["old-key-one", "old-key-two"]
    assert settings.feed_allow_private == ["127.0.0.1:8080"]
    assert settings.schedule == ["daily 07:30", "weekly monday 08:00"]
    assert settings.sections == ["news", "notes"]
    monkeypatch.setenv("DIGEST_SCHEDULE", "weekly monday 08:00")  # one entry stays one string
    monkeypatch.setenv("DIGEST_FEED_ALLOW_PRIVATE", "true")
    assert load_settings().schedule == "weekly monday 08:00"
    assert load_settings().feed_allow_private is True


def test_the_plain_string_of_the_trial_now_works_through_the_real_command(tmp_path):
    (tmp_path / "examples").mkdir()
    done = run_digest(tmp_path, "articles", DIGEST_SOURCES="examples")
    assert done.returncode == 0, done.stderr
    assert "examples" not in done.stderr  # the folder was found: no "no such file" warning


# Odd values: one readable line naming the variable ---------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("DIGEST_SOURCES", "[posts", "not a JSON list"),
        ("DIGEST_SOURCES", '{"posts": 1}', "valid list"),
        ("DIGEST_SOURCES", "[1, [2]]", "valid string"),
        ("DIGEST_SECTIONS", "[" + "x" * 100_000, "100001 characters"),
        ("DIGEST_SENDGRID_CATEGORIES", '["a"]\x1b[31m', "not a JSON list"),
        ("DIGEST_FEED_ALLOW_PRIVATE", "nowhere,10.0.0.0/8", "not an address"),
        ("DIGEST_PREVIOUS_SECRET_KEYS", "[null]", "valid string"),
        ("DIGEST_SCHEDULE", "[]", "schedule"),
        ("DIGEST_CONCURRENCY", "", "valid integer"),
        ("DIGEST_CONCURRENCY", "9" * 5000, "concurrency"),
        ("DIGEST_CONCURRENCY", "2\x1b[31m", "valid integer"),
        ("DIGEST_TIMEZONE", "Europe/Paris\r\nX-Injected: 1", "time zone"),
        ("DIGEST_TIMEZONE", "z" * 100_000, "time zone"),
        ("DIGEST_PROVIDER", "{{ config }}", "provider"),
    ],
)
def test_an_odd_value_in_the_environment_is_one_line_naming_the_variable(monkeypatch, variable, value, says):
    monkeypatch.setenv(variable, value)
    line = one_line_error(CliRunner().invoke(cli, ["articles"]))
    assert f"environment variable {variable}" in line
    assert says in line
    assert len(line) < 1000  # a huge value is not echoed whole
    assert "\x1b" not in line and "\r" not in line


def test_a_wrong_value_in_dotenv_or_toml_names_that_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("DIGEST_SOURCES=[posts\n")
    assert ".env, DIGEST_SOURCES" in one_line_error(CliRunner().invoke(cli, ["articles"]))
    (tmp_path / ".env").unlink()
    (tmp_path / "digest.toml").write_text('concurrency = "two"\n')
    assert "setting 'concurrency' (digest.toml)" in one_line_error(CliRunner().invoke(cli, ["articles"]))
    monkeypatch.setenv("DIGEST_CONCURRENCY", "three")  # the environment's value is the one read, and named
    assert "environment variable DIGEST_CONCURRENCY" in one_line_error(CliRunner().invoke(cli, ["articles"]))


def test_a_digest_toml_with_a_byte_order_mark_says_so(tmp_path):
    """Notepad's "UTF-8 with BOM": TOML's parser would only say "invalid statement at line 1"."""
    (tmp_path / "digest.toml").write_bytes(b"\xef\xbb\xbfsite_name = \"Garden\"\n")
    line = one_line_error(run_digest(tmp_path, "articles"))
    assert str(tmp_path / "digest.toml") in line and "byte order mark" in line
