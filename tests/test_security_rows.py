"""One bad subscriber row spoils one row: a 200,000-character value, a bare
CR in an unquoted value and a NUL byte are each one problem naming the file
and line, through the real CLI (check, send, export); everyone else is read
and mailed; an export of a list that cannot be read writes nothing."""

from __future__ import annotations

import codecs

from conftest import SENDGRID_KEY, WEEK48, reader

GOOD = 30


def hostile_list(site) -> dict[int, str]:
    """readers.csv with GOOD readers and, among them, three bad rows;
    returns line -> what is wrong there."""
    rows = [f"{email},{name.replace(',', '')},{tags}" for email, name, tags in (reader(n) for n in range(GOOD))]
    bad = {
        5: "long@example.org," + "x" * 200_000 + ",news",
        12: "cr@example.org,Carriage\rReturn,news",
        20: "nul@example.org,Nul\0Byte,news",
    }
    lines = ["email,name,tags"]
    for row in rows:
        lines.append(row)
        if len(lines) + 1 in bad:
            lines.append(bad[len(lines) + 1])
    (site.root / "readers.csv").write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return {line: lines[line - 1] for line in bad}


def test_bad_rows_are_one_problem_each_and_everyone_else_is_checked_exported_and_mailed(make_site, fake_sendgrid):
    site = make_site()
    bad = hostile_list(site)
    check = site.run("subscribers", "check")
    assert check.returncode == 1
    assert f"{GOOD} valid subscribers, 3 problems" in check.stdout
    for line, reason in ((5, "a value longer than 131,072 characters"), (12, "a line break (CR)"), (20, "a NUL byte")):
        assert f"readers.csv:{line}: {reason}" in check.stdout + check.stderr, (line, check.stdout + check.stderr)

    export = site.run("subscribers", "export", "-o", "out.csv")
    assert export.returncode == 1
    exported = (site.root / "out.csv").read_text(encoding="utf-8")
    assert sum(f"reader{n}@example.org" in exported for n in range(GOOD)) == GOOD
    assert not any(f"{email}@example.org" in exported for email in ("long", "cr", "nul"))
    assert export.stderr.count("not exported: ") == 3

    sent = site.run("send", "--as-of", WEEK48, sendgrid_host=fake_sendgrid.url, sendgrid_api_key=SENDGRID_KEY)
    assert "Traceback" not in sent.stderr and "unexpected" not in sent.stderr
    assert {record["to"] for record in fake_sendgrid.records()} == {f"reader{n}@example.org" for n in range(GOOD)}
    assert all(f"readers.csv:{line}:" in sent.stderr for line in bad)


def test_an_export_of_a_list_that_cannot_be_read_writes_nothing_and_fails(make_site):
    site = make_site()
    (site.root / "readers.csv").write_bytes(codecs.BOM_UTF16_LE + "email,name,tags\nada@example.org,Ada,\n".encode("utf-16-le"))
    for args in (("subscribers", "export", "-o", "out.csv"), ("subscribers", "export")):
        done = site.run(*args)
        assert done.returncode != 0
        assert "readers.csv: not UTF-8 (looks like UTF-16)" in done.stderr and "nothing exported" in done.stderr
        assert done.stdout == ""
    assert not (site.root / "out.csv").exists()


def test_an_open_quote_spoils_its_own_row_and_no_other_reader_lands_in_its_to_header(make_site):
    # One stray quote used to read every later row as part of one name: those
    # readers were never mailed, and their addresses went into one reader's To:.
    site = make_site()
    rows = [f"{email},{name.replace(',', '')},{tags}" for email, name, tags in (reader(n) for n in range(6))]
    rows.insert(2, 'open@example.org,"Open Quote,news')
    # A value that really spans lines (a quoted line break) stays one row.
    rows.insert(5, 'multi@example.org,"First line\nsecond line",news')
    (site.root / "readers.csv").write_text("email,name,tags\n" + "\n".join(rows) + "\n", encoding="utf-8")
    check = site.run("subscribers", "check")
    assert check.returncode == 1
    assert "readers.csv:4: a quote opened on this line is never closed" in check.stdout + check.stderr
    assert "7 valid subscribers, 1 problem" in check.stdout
    sent = site.run("send", "--dry-run", "--as-of", WEEK48)
    assert sent.returncode == 0, sent.stderr
    messages = list((site.root / "outbox").glob("*.eml"))
    recipients = set()
    for path in messages:
        to = next(line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("To:"))
        assert to.count("@") == 1, to
        recipients.add(to)
    assert len(recipients) == 7


def test_a_name_too_long_for_a_to_header_is_a_problem_with_its_line(make_site):
    site = make_site(readers=0)
    rows = ["email,name,tags", "ok@example.org,Ok,news", "big@example.org," + "N" * 100_000 + ",news", "fine@example.org,Fine,news"]
    (site.root / "readers.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    check = site.run("subscribers", "check")
    assert check.returncode == 1
    assert "readers.csv:3: a name of 100,000 characters (at most 200)" in check.stdout + check.stderr
    assert "2 valid subscribers, 1 problem" in check.stdout
    sent = site.run("send", "--dry-run", "--as-of", WEEK48)
    assert sent.returncode == 0, sent.stderr
    assert not any("big@example.org" in p.read_text(encoding="utf-8") for p in (site.root / "outbox").glob("*.eml"))


ENCODED_WORD_NAMES = {
    "a8@example.org": "=?utf-8?q?evil?=",
    "a9@example.org": "Jane =?utf-8?b?U3VwcG9ydA==?= Doe",
    "a10@example.org": "=?utf-8?q?Bank?= <security@bank.example>",
    "a11@example.org": "Zoë, =?iso-8859-1?q?caf=E9?= \"x\"",
}
LONG_NAME = "=?utf-8?q?" + "long_name_" * 15 + "?="  # more than one encoded-word of 75 characters (RFC 2047 §2)


def test_a_name_that_looks_like_an_encoded_word_shows_literally_in_to(make_site):
    # The sign-up form lets anyone set their name; a mail app decodes
    # encoded-words in a display name (RFC 2047), so =?utf-8?q?evil?= written
    # raw would show as "evil".
    import email
    import email.header
    import email.policy

    site = make_site(readers=2)
    extra = [*ENCODED_WORD_NAMES.items(), ("long@example.org", LONG_NAME)]
    site.write_readers(2, extra=[(address, name, "news") for address, name in extra])
    sent = site.run("send", "--dry-run", "--as-of", WEEK48)
    assert sent.returncode == 0, sent.stderr
    for address, name in ENCODED_WORD_NAMES.items():
        raw = (site.root / "outbox" / f"{address}.eml").read_bytes()
        (to,) = email.message_from_bytes(raw, policy=email.policy.default)["To"].addresses
        assert (to.display_name, to.addr_spec) == (name, address)
    # A longer name takes adjacent encoded-words. Python's new parser keeps
    # the space between them, which RFC 2047 §6.2 says to drop (mail apps
    # do): decode_header follows the RFC.
    message = email.message_from_bytes((site.root / "outbox" / "long@example.org.eml").read_bytes(), policy=email.policy.compat32)
    phrase, _, addr = message["To"].rpartition("<")
    assert str(email.header.make_header(email.header.decode_header(phrase.strip()))) == LONG_NAME
    assert addr == "long@example.org>"
