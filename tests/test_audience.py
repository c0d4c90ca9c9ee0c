"""Subscriber lists: reading, problems with their lines, choosing lists, the
audience after suppressions and preferences, variants, and list writes."""

from __future__ import annotations

import csv
import io
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rendering_samples import article as sample_article

from digest import suppressions
from digest.articles import Article
from digest.audience import build_variants, export_audience, load_audience
from digest.csvrows import encoding_problem
from digest.errors import DigestError
from digest.listedits import add_subscriber, import_subscribers, remove_subscriber
from digest.settings import load_settings
from digest.subscribers import Subscriber, choose_lists, find_subscriber, list_tags, load_subscribers

BOM = b"\xef\xbb\xbf"


def write(path: Path, text: str, *, crlf: bool = False, bom: bool = False) -> Path:
    data = text.replace("\n", "\r\n") if crlf else text
    path.write_bytes((BOM if bom else b"") + data.encode("utf-8"))
    return path


def article(ident: str, *tags: str) -> Article:
    return sample_article(0, id=ident, title=f"Article {ident}", url=f"https://example.org/{ident}", published=datetime(2026, 11, 20, tzinfo=UTC), tags=tags)


def person(email: str, *tags: str, list_name: str = "readers") -> Subscriber:
    return Subscriber(email=email, name="", tags=frozenset(tags), list_name=list_name, line=0)


MESSY = """email,name,tags
Ada.Lovelace@EXAMPLE.org,Ada Lovelace,roses;Compost
not-an-address,Nobody,roses
ada.lovelace@example.ORG,Ada Again,
grace@example.org,"Hopper, Grace",Bees
  bob@example.org  ,Bob,
bob@example.org,Bob twice,roses
Zoe@Bücher.Example.org,Zoë,"roses, bees"
zoë@example.org,Zoë,
"""


def test_a_messy_list_names_each_problem_with_its_line_and_keeps_each_address_once(tmp_path):
    path = write(tmp_path / "readers.csv", MESSY, crlf=True, bom=True)
    subscribers, problems = load_subscribers(path)
    assert [s.email for s in subscribers] == [
        "Ada.Lovelace@example.org",  # local part's case kept, domain lower-cased
        "grace@example.org",
        "bob@example.org",
        "Zoe@xn--bcher-kva.example.org",  # an internationalized domain is mailed in its ASCII (IDNA) form
    ]
    assert [s.line for s in subscribers] == [2, 5, 6, 8]
    assert {s.list_name for s in subscribers} == {"readers"}
    assert subscribers[0].tags == {"roses", "compost"}
    assert subscribers[1].name == "Hopper, Grace"
    assert subscribers[3].tags == {"roses", "bees"}
    assert [(p.file, p.line) for p in problems] == [(str(path), 3), (str(path), 4), (str(path), 7), (str(path), 9)]
    assert "invalid address 'not-an-address'" in problems[0].message
    assert "duplicate of line 2" in problems[1].message
    assert "duplicate of line 6" in problems[2].message
    # SendGrid answers 400 to a non-ASCII local part; there is no ASCII form of it.
    assert "'zoë@example.org' needs SMTPUTF8" in problems[3].message
    assert "which SendGrid and most servers do not accept" in problems[3].message
    assert str(problems[0]).startswith(f"{path}:3: ")


def test_quoted_line_breaks_count_lines_from_where_a_row_starts(tmp_path):
    path = write(tmp_path / "l.csv", 'email,name,tags\n"ada@example.org","Ada\nLovelace",roses\n\nbad@,x,\nbob@example.org,Bob,a,b\n')
    subscribers, problems = load_subscribers(path)
    assert [(s.email, s.name, s.line) for s in subscribers] == [("ada@example.org", "Ada Lovelace", 2)]
    assert [p.line for p in problems] == [5, 6]
    assert "quote values that contain commas" in problems[1].message


def test_status_column_leavers_are_skipped_quietly_and_unknown_statuses_reported(tmp_path):
    path = write(
        tmp_path / "l.csv",
        "email,name,tags,status,subscribed_at\n"
        "ada@example.org,Ada,,subscribed,2026-01-02\n"
        "bob@example.org,Bob,,unsubscribed,2026-01-02\n"
        "cy@example.org,Cy,,cleaned,\n"
        "di@example.org,Di,,sleeping,\n",
    )
    subscribers, problems = load_subscribers(path)
    assert [s.email for s in subscribers] == ["ada@example.org"]
    assert [(p.line, "unknown status 'sleeping'" in p.message) for p in problems] == [(5, True)]


def test_a_header_without_email_and_undecodable_rows_are_problems_not_crashes(tmp_path):
    write(tmp_path / "a.csv", "name,tags\nAda,roses\n")
    (tmp_path / "b.csv").write_bytes(b"email,name\nada@example.org,Ada\nbob@example.org,B\xe9b\ncy@example.org,Cy\n")
    subscribers, problems = load_subscribers(tmp_path)
    assert [s.email for s in subscribers] == ["ada@example.org", "cy@example.org"]
    assert [(Path(p.file).name, p.line) for p in problems] == [("a.csv", 1), ("b.csv", 3)]
    assert "no email column" in problems[0].message and "not UTF-8" in problems[1].message


UTF16_LIST = "email,name,tags\r\nada@example.org,Ada,roses\r\nbob@example.org,Bob,\r\n"


def test_a_utf16_list_is_one_problem_naming_the_file_not_rows_of_nul_bytes(tmp_path):
    (tmp_path / "a-bom.csv").write_bytes(UTF16_LIST.encode("utf-16"))  # Excel's "Unicode text": BOM, little-endian
    (tmp_path / "b-nobom.csv").write_bytes(UTF16_LIST.encode("utf-16-be"))  # no BOM: the NUL bytes tell
    good = write(tmp_path / "c-good.csv", "email,name,tags\ncy@example.org,Cy,\n")
    subscribers, problems = load_subscribers(tmp_path)
    assert [s.email for s in subscribers] == ["cy@example.org"]
    assert [str(p) for p in problems] == [
        f"{tmp_path / name}: not UTF-8 (looks like UTF-16): save it as UTF-8" for name in ("a-bom.csv", "b-nobom.csv")
    ]
    # Importing one, or writing to one, stops with the same line and changes nothing.
    before = good.read_bytes()
    with pytest.raises(DigestError, match=r"b-nobom\.csv: not UTF-8 \(looks like UTF-16\): save it as UTF-8"):
        import_subscribers(good, tmp_path / "b-nobom.csv")
    assert good.read_bytes() == before
    with pytest.raises(DigestError, match=r"a-bom\.csv: not UTF-8 \(looks like UTF-16\)"):
        add_subscriber(tmp_path / "a-bom.csv", "dee@example.org")
    assert (tmp_path / "a-bom.csv").read_bytes() == UTF16_LIST.encode("utf-16")


@pytest.mark.parametrize(
    ("data", "verdict"),
    [
        (UTF16_LIST.encode("utf-32"), "looks like UTF-32"),
        (UTF16_LIST.encode("utf-32-le"), "looks like UTF-32"),
        (UTF16_LIST.encode("utf-16-le"), "looks like UTF-16"),
        (b"email\nada@example.org\0\n", None),  # a few NUL bytes spoil their rows only (test_security_rows)
        (BOM + "email\nzoë@example.org\n".encode(), None),  # UTF-8, with or without BOM, is fine
    ],
)
def test_encodings_other_than_utf8_are_recognized(data, verdict):
    assert encoding_problem(data) == verdict


def test_other_services_column_names_are_understood(tmp_path):
    path = write(tmp_path / "export.csv", '"Email Address","First Name","Last Name","TAGS"\nada@example.org,Ada,Lovelace,"""Roses"",""Bees"""\n')
    (ada,), problems = load_subscribers(path)
    assert problems == []
    assert (ada.name, ada.tags) == ("Ada Lovelace", {"roses", "bees"})


# Choosing lists -------------------------------------------------------------------------------


@pytest.fixture
def two_lists(tmp_path):
    folder = tmp_path / "subscribers"
    folder.mkdir()
    write(folder / "garden.csv", "email,name,tags\nada@example.org,Ada,roses\nbob@example.org,Bob,\n")
    write(folder / "kitchen.csv", "email,name,tags\nADA@example.org,Ada,bread\ncy@example.org,Cy,\n")
    return folder


def test_list_choice_by_name_setting_or_all(two_lists):
    assert [p.stem for p in choose_lists(two_lists, "kitchen")] == ["kitchen"]
    assert [p.stem for p in choose_lists(two_lists, None, "garden")] == ["garden"]
    assert [p.stem for p in choose_lists(two_lists, "kitchen", "garden")] == ["kitchen"]  # --list wins
    assert [p.stem for p in choose_lists(two_lists)] == ["garden", "kitchen"]
    with pytest.raises(DigestError, match=r"no list 'pantry'.*lists: garden, kitchen"):
        choose_lists(two_lists, "pantry")
    with pytest.raises(DigestError, match="default_list"):
        choose_lists(two_lists, None, "pantry")
    (two_lists / "kitchen.csv").unlink()
    assert [p.stem for p in choose_lists(two_lists)] == ["garden"]  # the only list


def test_all_lists_merged_mail_an_address_once_from_the_first_list(two_lists):
    subscribers, problems = load_subscribers(two_lists)
    assert problems == []
    assert [(s.email, s.list_name) for s in subscribers] == [
        ("ada@example.org", "garden"),
        ("bob@example.org", "garden"),
        ("cy@example.org", "kitchen"),
    ]


# The audience -----------------------------------------------------------------------------------


def test_the_audience_leaves_out_suppressions_and_applies_stored_preferences(two_lists, tmp_path):
    ledger = tmp_path / "digest.db"
    suppressions.add(ledger, "Bob@Example.org", "unsubscribed", "one-click", "garden")
    suppressions.add(ledger, "cy@example.org", "bounced", "sendgrid:bounce")  # every list
    suppressions.add(ledger, "ada@example.org", "unsubscribed", "one-click", "kitchen")
    suppressions.set_preferences(ledger, "ada@example.org", "garden", ["bees", "compost"])
    settings = load_settings(subscribers=two_lists, ledger=ledger)

    garden = load_audience(settings, "garden")
    assert [(s.email, s.tags) for s in garden.subscribers] == [("ada@example.org", {"bees", "compost"})]
    assert [(s.email, why.reason) for s, why in garden.suppressed] == [("bob@example.org", "unsubscribed")]
    kitchen = load_audience(settings, "kitchen")
    assert kitchen.subscribers == []
    assert {s.email: why.reason for s, why in kitchen.suppressed} == {"ADA@example.org": "unsubscribed", "cy@example.org": "bounced"}


def test_without_a_ledger_file_nothing_is_suppressed_and_no_file_is_created(two_lists, tmp_path):
    settings = load_settings(subscribers=two_lists, ledger=tmp_path / "absent.db")
    audience = load_audience(settings, "garden")
    assert [s.email for s in audience.subscribers] == ["ada@example.org", "bob@example.org"]
    assert not (tmp_path / "absent.db").exists()


def test_export_marks_suppressed_readers_with_their_reason(two_lists, tmp_path):
    ledger = tmp_path / "digest.db"
    suppressions.add(ledger, "bob@example.org", "spam-report", "sendgrid:spamreport")
    text = export_audience(load_audience(load_settings(subscribers=two_lists, ledger=ledger), "garden"))
    assert text.splitlines() == [
        "email,name,tags,list,status",
        "ada@example.org,Ada,roses,garden,subscribed",
        "bob@example.org,Bob,,garden,spam-report",
    ]


def test_find_subscriber_and_list_tags(two_lists):
    files = choose_lists(two_lists)
    found = find_subscriber(files, " Cy@EXAMPLE.org")
    assert (found.email, found.list_name, found.line) == ("cy@example.org", "kitchen", 3)
    assert find_subscriber(files, "nobody@example.org") is None
    assert list_tags(files) == {"roses", "bread"}


# Variants ---------------------------------------------------------------------------------------


def test_three_tag_choices_get_three_article_sets_and_equal_choices_share_one():
    articles = [article("a1", "roses"), article("a2", "bees"), article("a3", "roses", "compost"), article("a4", "bread")]
    ada, bob, cy, di, eve = (
        person("ada@example.org", "roses"),
        person("bob@example.org", "bees"),
        person("cy@example.org"),  # no tags: every article
        person("di@example.org", "roses"),
        person("eve@example.org", "weaving"),  # nothing matches: no mail
    )
    variants = build_variants(articles, [ada, bob, cy, di, eve])
    by_person = {s.email: [a.id for a in v.articles] for v in variants for s in v.subscribers}
    assert by_person == {
        "ada@example.org": ["a1", "a3"],
        "di@example.org": ["a1", "a3"],
        "bob@example.org": ["a2"],
        "cy@example.org": ["a1", "a2", "a3", "a4"],
    }
    assert len(variants) == 3
    shared = next(v for v in variants if ada in v.subscribers)
    assert shared.subscribers == (ada, di) and shared.number == 1 and shared.tags == {"roses"}
    assert [v.number for v in variants] == [1, 2, 3]


# Writes -----------------------------------------------------------------------------------------

ODD_LIST = 'email,name,tags,status\n"ada@example.org" ,Ada,"roses;bees",subscribed\nnot-an-address,X,,\n\nbob@example.org,"Bob\nBuilder",,\n'


def test_add_appends_in_the_files_own_style_and_keeps_every_byte_before(tmp_path):
    path = write(tmp_path / "garden.csv", ODD_LIST, crlf=True, bom=True)
    before = path.read_bytes()
    added = add_subscriber(path, "  Zoe@Bücher.Example.ORG ", "Zoë, Gardener", ["Fruit Trees", "bees"])
    after = path.read_bytes()
    assert after.startswith(before)
    assert after[len(before) :] == 'Zoe@xn--bcher-kva.example.org,"Zoë, Gardener",bees;fruit-trees,subscribed\r\n'.encode()
    assert added.key == "zoe@xn--bcher-kva.example.org"
    assert [s.email for s in load_subscribers(path)[0]][-1] == "Zoe@xn--bcher-kva.example.org"
    with pytest.raises(DigestError, match="ZOË@example.org' needs SMTPUTF8"):
        add_subscriber(path, "ZOË@example.org")
    assert path.read_bytes() == after


def test_add_refuses_duplicates_and_bad_addresses_leaving_the_file_alone(tmp_path):
    path = write(tmp_path / "garden.csv", ODD_LIST)
    before = path.read_bytes()
    with pytest.raises(DigestError, match=r"already on .*\(line 2\)"):
        add_subscriber(path, "ADA@example.org")
    with pytest.raises(DigestError, match="invalid address"):
        add_subscriber(path, "ada@")
    assert path.read_bytes() == before


def test_add_creates_a_new_list_and_ends_an_unterminated_last_row(tmp_path):
    path = tmp_path / "new.csv"
    add_subscriber(path, "ada@example.org", "Ada")
    assert path.read_text() == "email,name,tags\nada@example.org,Ada,\n"
    last = write(tmp_path / "open.csv", "email,name,tags\nada@example.org,Ada,roses")
    add_subscriber(last, "bob@example.org")
    assert last.read_text() == "email,name,tags\nada@example.org,Ada,roses\nbob@example.org,,\n"


def test_remove_takes_out_exactly_that_rows_bytes(tmp_path):
    path = write(tmp_path / "garden.csv", ODD_LIST, crlf=True, bom=True)
    before = path.read_bytes()
    assert remove_subscriber(path, "BOB@example.org") == 1
    assert path.read_bytes() == before.replace(b'bob@example.org,"Bob\r\nBuilder",,\r\n', b"")
    assert remove_subscriber(path, "not-an-address") == 1  # a bad row can be removed too
    with pytest.raises(DigestError, match="is not on"):
        remove_subscriber(path, "bob@example.org")


def test_writes_replace_the_file_atomically_and_keep_its_mode(tmp_path):
    path = write(tmp_path / "garden.csv", ODD_LIST)
    os.chmod(path, 0o640)
    inode = path.stat().st_ino
    add_subscriber(path, "cy@example.org")
    assert path.stat().st_ino != inode  # a new file renamed over the old, not rewritten in place
    assert path.stat().st_mode & 0o777 == 0o640
    # No temporary file left; the edit lock's file stays, as the ledger's does.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".garden.csv.lock", "garden.csv"]


def test_import_merges_another_services_export(tmp_path):
    path = write(tmp_path / "garden.csv", ODD_LIST, crlf=True)
    before = path.read_bytes()
    export = write(
        tmp_path / "export.csv",
        '"Email Address","First Name","Last Name","Tags","Status"\n'
        'ADA@example.org,Ada,L,,subscribed\n'
        'cy@example.org,Cy,Young,"Roses, Fruit Trees",subscribed\n'
        "broken@,B,,,subscribed\n"
        "di@example.org,Di,,,unsubscribed\n"
        "eve@example.org,Eve,,,\n"
        "EVE@example.org,Eve,,,\n",
        bom=True,
    )
    result = import_subscribers(path, export)
    assert [s.email for s in result.added] == ["cy@example.org", "eve@example.org"]
    assert (result.already, result.left) == (1, 1)
    assert [(Path(p.file).name, p.line) for p in result.problems] == [("export.csv", 4), ("export.csv", 7)]
    after = path.read_bytes()
    assert after.startswith(before)
    assert after[len(before) :] == b"cy@example.org,Cy Young,fruit-trees;roses,subscribed\r\neve@example.org,Eve,,subscribed\r\n"


GARDEN = "email,name,tags\nada@example.org,Ada,roses\nbob@example.org,Bob,\ncy@example.org,Cy,\ndee@example.org,Dee,\n"
MAILCHIMP = (  # columns as Mailchimp names them; people on the list above whom it knows as gone
    '"Email Address","First Name","Last Name",Status\n'
    "BOB@example.org,Bob,,unsubscribed\n"  # line 2: on the list
    "cy@example.org,Cy,,cleaned\n"  # 3: on the list; Mailchimp's hard bounce
    "dee@example.org,Dee,,pending\n"  # 4: on the list, never confirmed there
    "eve@example.org,Eve,,unsubscribed\n"  # 5: not on the list
    "fay@example.org,Fay,,complained\n"  # 6
    "gus@example.org,Gus,,subscribed\n"  # 7: new
)


def test_import_suppresses_people_the_export_says_left_and_says_so(tmp_path):
    folder = tmp_path / "subscribers"
    folder.mkdir()
    garden = write(folder / "garden.csv", GARDEN)
    ledger = tmp_path / "digest.db"
    result = import_subscribers(garden, write(tmp_path / "members_export.csv", MAILCHIMP), ledger)
    assert [s.email for s in result.added] == ["gus@example.org"]
    assert [(s.email, status) for s, status in result.leavers][:3] == [
        ("BOB@example.org", "unsubscribed"), ("cy@example.org", "cleaned"), ("dee@example.org", "pending"),
    ]
    stored = {(s.address, s.reason, s.source, s.list_name) for s in suppressions.list_suppressions(ledger)}
    assert stored == {
        ("BOB@example.org", "unsubscribed", "import members_export.csv", "garden"),  # from this list
        ("cy@example.org", "bounced", "import members_export.csv", None),  # a dead address: every list
        ("eve@example.org", "unsubscribed", "import members_export.csv", "garden"),
        ("fay@example.org", "spam-report", "import members_export.csv", None),
    }
    # The next issue's audience: bob and cy are out; dee is kept but reported.
    audience = load_audience(load_settings(subscribers=folder, ledger=ledger), "garden")
    assert [s.email for s in audience.subscribers] == ["ada@example.org", "dee@example.org", "gus@example.org"]
    assert {s.email: why.reason for s, why in audience.suppressed} == {"bob@example.org": "unsubscribed", "cy@example.org": "bounced"}
    (unconfirmed,) = result.problems
    assert unconfirmed.line == 4 and "dee@example.org is pending here but on" in unconfirmed.message
    summary = result.summary(garden)
    assert "5 had left (suppressed: 1 bounced on every list, 1 spam-report on every list, 2 unsubscribed on garden)" in summary
    assert summary.startswith(f"imported 1 into {garden}") and summary.endswith("1 bad rows")

    again = import_subscribers(garden, tmp_path / "members_export.csv", ledger)  # harmless to repeat
    assert again.added == [] and len(suppressions.list_suppressions(ledger)) == 4
    assert garden.read_text().count("gus@example.org") == 1


def test_import_without_a_ledger_suppresses_nothing_and_says_only_who_left(tmp_path):
    garden = write(tmp_path / "garden.csv", GARDEN)
    result = import_subscribers(garden, write(tmp_path / "export.csv", MAILCHIMP))
    assert result.suppressed == [] and result.left == 5
    assert "5 had left;" in result.summary(garden)
    assert not (tmp_path / "digest.db").exists()


def test_import_without_an_email_column_changes_nothing(tmp_path):
    path = write(tmp_path / "garden.csv", ODD_LIST)
    before = path.read_bytes()
    with pytest.raises(DigestError, match="no email column"):
        import_subscribers(path, write(tmp_path / "x.csv", "who,what\nada,roses\n"))
    with pytest.raises(DigestError, match="no file to import"):
        import_subscribers(path, tmp_path / "missing.csv")
    assert path.read_bytes() == before


# The commands -----------------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path, monkeypatch):
    """`digest ...` in a clean working directory (no digest.toml), lists in tmp_path/subscribers."""
    from click.testing import CliRunner

    from digest.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "subscribers").mkdir()
    monkeypatch.setenv("DIGEST_LEDGER", str(tmp_path / "digest.db"))

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke


def test_subscribers_check_names_each_problem_and_exits_1(run, tmp_path):
    write(tmp_path / "subscribers" / "readers.csv", MESSY, crlf=True, bom=True)
    result = run("subscribers", "check")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines[:4]] == [f"subscribers{os.sep}readers.csv:{n}" for n in (3, 4, 7, 9)]
    assert "needs SMTPUTF8" in lines[3]
    assert lines[-1].startswith("4 valid subscribers, 4 problems")
    write(tmp_path / "subscribers" / "readers.csv", "email,name,tags\nada@example.org,Ada,roses\n")
    assert run("subscribers", "check").exit_code == 0


def test_subscribers_commands_edit_list_and_export(run, tmp_path):
    assert run("subscribers", "add", "Ada@Example.org", "--name", "Ada", "--tags", "roses;bees", "--list", "garden").exit_code == 0
    assert run("subscribers", "add", "bob@example.org", "--list", "garden").exit_code == 0
    duplicate = run("subscribers", "add", "ADA@example.org", "--list", "garden")
    assert duplicate.exit_code == 1 and "already on" in duplicate.output
    export = write(tmp_path / "export.csv", "Email Address,First Name\ncy@example.org,Cy\n")
    assert "imported 1" in run("subscribers", "import", str(export)).output  # the only list
    assert run("suppressions", "add", "bob@example.org", "--reason", "bounced").exit_code == 0
    listed = run("subscribers", "list").stdout.splitlines()
    assert listed[0] == "Ada@example.org\tAda\tbees;roses\tgarden"
    assert listed[1] == "cy@example.org\tCy\t(every tag)\tgarden"
    assert listed[2].startswith("bob@example.org\t\tsuppressed: bounced (cli, ")
    exported = run("subscribers", "export", "-o", "out.csv")
    assert exported.exit_code == 0
    assert (tmp_path / "out.csv").read_text().splitlines()[-1] == "bob@example.org,,,garden,bounced"
    assert run("subscribers", "remove", "ada@example.org").exit_code == 0
    assert "Ada@example.org" not in (tmp_path / "subscribers" / "garden.csv").read_text()
    write(tmp_path / "subscribers" / "kitchen.csv", "email\n")
    ambiguous = run("subscribers", "add", "di@example.org")
    assert ambiguous.exit_code == 2 and "name the list with --list (lists in subscribers: garden, kitchen)" in ambiguous.output


def test_subscribers_check_reports_a_utf16_list_in_one_line(run, tmp_path):
    (tmp_path / "subscribers" / "readers.csv").write_bytes(UTF16_LIST.encode("utf-16"))
    result = run("subscribers", "check")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"subscribers{os.sep}readers.csv: not UTF-8 (looks like UTF-16): save it as UTF-8",
        f"0 valid subscribers, 1 problem in subscribers{os.sep}readers.csv",
    ]


def test_subscribers_add_refuses_a_non_ascii_local_part_and_mails_an_idn_domain_in_ascii(run, tmp_path):
    refused = run("subscribers", "add", "jürgen@example.org", "--list", "garden")
    assert refused.exit_code == 1
    assert "'jürgen@example.org' needs SMTPUTF8" in refused.output and "SendGrid" in refused.output
    assert not (tmp_path / "subscribers" / "garden.csv").exists()
    assert run("subscribers", "add", "ana@Bücher.example.org", "--list", "garden").exit_code == 0
    assert run("subscribers", "list").stdout.splitlines() == ["ana@xn--bcher-kva.example.org\t\t(every tag)\tgarden"]


FORMULAS = ["=HYPERLINK(\"https://evil.example/\",\"x\")", "+1 555 0100", "-2+3", "@SUM(A1)"]


def test_export_defuses_spreadsheet_formulas_but_the_list_keeps_what_was_typed(run, tmp_path):
    for n, name in enumerate(FORMULAS):
        assert run("subscribers", "add", f"r{n}@example.org", "--name", name, "--list", "garden").exit_code == 0
    assert run("subscribers", "add", "--name", "Ada", "--list", "garden", "--", "-x@example.org").exit_code == 0
    assert run("subscribers", "export", "-o", "out.csv").exit_code == 0
    exported = list(csv.reader(io.StringIO((tmp_path / "out.csv").read_text(encoding="utf-8"))))
    assert [row[1] for row in exported[1:]] == [f"'{name}" for name in FORMULAS] + ["Ada"]
    assert exported[-1][0] == "'-x@example.org"
    # OWASP's first characters only: ordinary values are exported as they are.
    assert [row[0] for row in exported[1:-1]] == [f"r{n}@example.org" for n in range(4)]
    stored = list(csv.reader(io.StringIO((tmp_path / "subscribers" / "garden.csv").read_text(encoding="utf-8"))))
    assert [row[1] for row in stored[1:-1]] == FORMULAS
    assert [line.split("\t")[1] for line in run("subscribers", "list").stdout.splitlines()][:4] == FORMULAS


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_new_lists_get_the_usual_file_mode_and_exports_a_private_one(run, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert run("subscribers", "add", "ada@example.org", "--list", "new").exit_code == 0
        assert run("subscribers", "export", "-o", "out.csv").exit_code == 0
    finally:
        os.umask(old)
    assert (tmp_path / "subscribers" / "new.csv").stat().st_mode & 0o777 == mode
    # An export travels (to another service, a laptop): owner only, as the ledger and the outbox.
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o600


def test_concurrent_adds_under_the_edit_lock_lose_nobody(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    path = write(tmp_path / "garden.csv", "email,name,tags\nada@example.org,Ada,roses\n")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: add_subscriber(path, f"reader{n}@example.org", tags=["bees"]), range(40)))
    found, problems = load_subscribers(path)
    assert problems == []
    assert {s.email for s in found} == {"ada@example.org"} | {f"reader{n}@example.org" for n in range(40)}


def test_frequency_column_is_read_checked_and_written(tmp_path):
    path = write(tmp_path / "garden.csv", "email,name,tags,frequency\nada@example.org,Ada,,Daily\nbob@example.org,Bob,,\ncy@example.org,Cy,,hourly\n")
    found, problems = load_subscribers(path)
    assert [(s.email, s.frequency) for s in found] == [("ada@example.org", "daily"), ("bob@example.org", "")]
    assert [p.line for p in problems] == [4] and "unknown frequency 'hourly'" in problems[0].message
    add_subscriber(path, "dee@example.org", frequency="monthly")
    assert path.read_text().endswith("dee@example.org,,,monthly\n")
    assert add_subscriber(path, "DEE@example.org", if_absent=True) is None
