"""A reader on several lists (two CSV files in ``subscribers/``, no
``default_list``: every list goes into the issue) gets one message with the
union of the tags they chose on each, each list's suppressions and stored
choices applied first; one-click unsubscribe from that message leaves every
list it merged (README, "One reader on several lists"). Through the real
command line's dry run (the outbox's ``.eml`` files), the real ``digest
serve`` process and the real SQLite ledger."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from test_audience_e2e import (
    AS_OF,
    NO_PROXY_OPENER,
    ONE_CLICK,
    TITLES,
    digest,
    dry_run,
    make_site,
    on_loopback,
    one_click_url,
    post,
    serving,
    suppressed,
    text_of,
    titles_in,
)

from digest import suppressions
from digest.subscribers import Subscriber, merge_rows, merged_tags, most_frequent

ROSES, BEES, COMPOST = "Roses under fleece", "The hives are wintering", "New compost bays"
# Ada is on both lists, in another case on the second; Bob and Cy on one each.
GARDEN = "email,name,tags\nAda@example.org,Ada,roses\nbob@example.org,Bob,bees\n"
KITCHEN = "email,name,tags\nada@EXAMPLE.org,,bees\ncy@example.org,Cy,compost\n"


def two_lists(folder: Path, garden: str = GARDEN, kitchen: str = KITCHEN, **settings: str) -> Path:
    """A site whose ``subscribers/`` holds garden.csv and kitchen.csv (and no other list)."""
    folder.mkdir(exist_ok=True)
    site = make_site(folder, garden, **settings)
    (site / "subscribers" / "main.csv").rename(site / "subscribers" / "garden.csv")
    (site / "subscribers" / "kitchen.csv").write_text(kitchen, encoding="utf-8")
    return site


def ledger(site: Path) -> Path:
    return site / "digest.db"


def test_a_reader_on_two_lists_gets_one_message_with_the_articles_of_both_lists_tags(tmp_path):
    site = two_lists(tmp_path)
    messages = dry_run(site)  # fails on a second message to one address
    assert sorted(messages) == ["Ada@example.org", "bob@example.org", "cy@example.org"]
    assert len(list((site / "outbox").glob("*.eml"))) == 3
    assert titles_in(text_of(messages["Ada@example.org"])) == {ROSES, BEES}
    assert titles_in(text_of(messages["bob@example.org"])) == {BEES}
    assert titles_in(text_of(messages["cy@example.org"])) == {COMPOST}
    # The message names the first list in name order; the name comes from the first row that has one.
    ada = messages["Ada@example.org"]
    assert "<garden." in ada["List-Id"], ada["List-Id"]
    assert ada["To"] == "Ada <Ada@example.org>"


def test_a_row_without_tags_means_every_tag_and_wins_the_union(tmp_path):
    site = two_lists(tmp_path, kitchen="email,name,tags\nada@example.org,Ada,\n")
    messages = dry_run(site)
    assert titles_in(text_of(messages["Ada@example.org"])) == TITLES


def test_a_reader_unsubscribed_from_one_list_gets_the_other_lists_tags_only_and_its_list_id(tmp_path):
    site = two_lists(tmp_path)
    added = digest(site, "suppressions", "add", "ada@example.org", "--reason", "unsubscribed", "--list", "garden")
    assert added.returncode == 0, added.stderr
    messages = dry_run(site)
    assert sorted(messages) == ["ada@example.org", "bob@example.org", "cy@example.org"]  # as kitchen writes her
    assert titles_in(text_of(messages["ada@example.org"])) == {BEES}
    assert "<kitchen." in messages["ada@example.org"]["List-Id"]
    # Suppressed on every list (a bounce): no message at all.
    digest(site, "suppressions", "add", "ada@example.org", "--reason", "bounced")
    assert sorted(dry_run(site, "outbox-bounced")) == ["bob@example.org", "cy@example.org"]


def test_stored_preferences_replace_that_lists_tags_before_the_union(tmp_path):
    site = two_lists(tmp_path)
    suppressions.set_preferences(ledger(site), "ada@example.org", "kitchen", {"compost"})
    messages = dry_run(site)
    assert titles_in(text_of(messages["Ada@example.org"])) == {ROSES, COMPOST}  # kitchen's bees replaced
    # An empty stored choice is "every tag" on that list, and wins.
    suppressions.set_preferences(ledger(site), "ada@example.org", "garden", set())
    assert titles_in(text_of(dry_run(site, "outbox-all")["Ada@example.org"])) == TITLES


def test_the_most_frequent_of_the_lists_frequencies_wins(tmp_path):
    site = two_lists(
        tmp_path,
        garden="email,name,tags,frequency\nAda@example.org,Ada,roses,monthly\nbob@example.org,Bob,bees,\n",
        kitchen="email,name,tags,frequency\nada@example.org,,bees,\n",  # the default: weekly
    )
    listed = digest(site, "audience", "--as-of", AS_OF, "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    by_frequency = {issue["frequency"]: issue["readers"] for issue in report["issues"]}
    assert by_frequency == {"weekly": 2}  # Ada (monthly and weekly: weekly) and Bob; nobody monthly
    suppressions.set_frequency(ledger(site), "ada@example.org", "garden", "daily")  # a stored choice replaces the row's
    report = json.loads(digest(site, "audience", "--as-of", AS_OF, "--json").stdout)
    assert {issue["frequency"]: issue["readers"] for issue in report["issues"]} == {"daily": 1, "weekly": 1}


def test_audience_and_subscribers_check_say_who_was_merged(tmp_path):
    site = two_lists(tmp_path)
    listed = digest(site, "audience", "--as-of", AS_OF)
    assert listed.returncode == 0, listed.stderr
    assert "1 reader on more than one list, merged" in listed.stdout
    assert "3 recipients" in listed.stdout
    report = json.loads(digest(site, "audience", "--as-of", AS_OF, "--json").stdout)
    assert report["merged"] == 1 and report["lists"] == ["garden", "kitchen"]
    assert sum(issue["recipients"] for issue in report["issues"]) == 3
    # --since/--until (one issue for everyone) counts them too.
    whole = json.loads(digest(site, "audience", "--as-of", AS_OF, "--since", "30d", "--json").stdout)
    assert whole["merged"] == 1

    check = digest(site, "subscribers", "check")
    assert check.returncode == 0, check.stdout  # information, not a problem
    assert "Ada@example.org: on lists garden, kitchen, merged" in check.stdout
    assert "1 address on more than one list (merged)" in check.stdout
    # One list alone (--list): nothing merged, nothing said.
    alone = json.loads(digest(site, "audience", "--as-of", AS_OF, "--list", "garden", "--json").stdout)
    assert alone["merged"] == 0
    # A row whose status says the person left is not a member of that list.
    left = two_lists(tmp_path / "left", kitchen="email,name,tags,status\nada@example.org,,bees,unsubscribed\n")
    assert "merged" not in digest(left, "subscribers", "check").stdout
    assert titles_in(text_of(dry_run(left)["Ada@example.org"])) == {ROSES}


def test_one_click_unsubscribe_from_a_merged_message_leaves_every_list_it_merged(tmp_path):
    site = two_lists(tmp_path)
    messages = dry_run(site)
    url = one_click_url(messages["Ada@example.org"])
    with serving(site) as base:
        with NO_PROXY_OPENER.open(on_loopback(url, base), timeout=10) as page:
            text = page.read().decode()
        # The page says truthfully what the button does.
        assert "garden, kitchen" in text and "leaves every one of them" in text
        assert suppressed(site) == []  # a GET changes nothing
        assert post(on_loopback(url, base), b"List-Unsubscribe=One-Click", ONE_CLICK) == 200
    rows = sorted(row[:4] for row in suppressed(site))
    assert rows == [
        ["Ada@example.org", "unsubscribed", "one-click", "garden"],
        ["Ada@example.org", "unsubscribed", "one-click", "kitchen"],
    ]
    after = dry_run(site, "outbox-next")
    assert sorted(after) == ["bob@example.org", "cy@example.org"]  # the mail Ada got has stopped


def test_one_click_from_a_one_list_reader_leaves_that_list_only(tmp_path):
    site = two_lists(tmp_path)
    url = one_click_url(dry_run(site)["bob@example.org"])
    with serving(site) as base:
        assert post(on_loopback(url, base), b"List-Unsubscribe=One-Click", ONE_CLICK) == 200
    assert [row[:4] for row in suppressed(site)] == [["bob@example.org", "unsubscribed", "one-click", "garden"]]


def test_the_preferences_of_a_merged_message_show_the_union_and_save_to_every_list(tmp_path):
    site = two_lists(tmp_path)
    message = dry_run(site)["Ada@example.org"]
    (link,) = set(re.findall(r"https://\S+/preferences\?token=[\w.\-]+", text_of(message)))
    with serving(site) as base:
        with NO_PROXY_OPENER.open(on_loopback(link, base), timeout=10) as page:
            text = page.read().decode()
        checked = set(re.findall(r'value="(\w+)" checked', text))
        assert {"roses", "bees"} <= checked and "compost" not in checked
        assert "these choices apply to all of them" in text
        csrf = re.search(r'name="csrf" value="([^"]+)"', text).group(1)
        body = f"csrf={csrf}&tag=compost&frequency=weekly".encode()
        assert post(on_loopback(link, base), body, ONE_CLICK) == 200
    for name in ("garden", "kitchen"):
        assert suppressions.get_preferences(ledger(site), "ada@example.org", name) == {"compost"}
    assert titles_in(text_of(dry_run(site, "outbox-chosen")["Ada@example.org"])) == {COMPOST}
    assert parse_qs(urlsplit(link).query)["token"]


def test_merge_rules():
    row = Subscriber("a@example.org", "", frozenset({"x"}), "one", 2, "")
    assert merged_tags([frozenset({"x"}), frozenset({"y"})]) == {"x", "y"}
    assert merged_tags([frozenset({"x"}), frozenset()]) == frozenset()
    assert most_frequent(["monthly", "weekly"]) == "weekly" and most_frequent(["weekly", "daily"]) == "daily"
    other = Subscriber("A@example.org", "Ann", frozenset({"y"}), "two", 5, "monthly")
    merged = merge_rows([row, other], "weekly")
    assert (merged.email, merged.name, merged.list_name, merged.line, merged.frequency) == ("a@example.org", "Ann", "one", 2, "weekly")
    assert merge_rows([row, row], "weekly").frequency == ""  # none chose: still the default, whatever it becomes


def test_three_lists_the_largest_not_first_merge_into_one_message_named_by_the_first_list(tmp_path):
    filler = "".join(f"reader{n}@example.org,Reader {n},bees\n" for n in range(300))
    site = two_lists(
        tmp_path,
        garden="email,name,tags\nada@example.org,,roses\nnot an address,X,\n",
        kitchen="email,name,tags\n" + filler + "Ada@Example.org,Ada,bees\n",  # the largest list: read first
    )
    (site / "subscribers" / "orchard.csv").write_text("email,name,tags\nADA@example.org,,compost\nbad@,Y,\n", encoding="utf-8")
    messages = dry_run(site)
    assert len(messages) == 301
    ada = messages["ada@example.org"]
    assert titles_in(text_of(ada)) == TITLES
    assert "<garden." in ada["List-Id"] and ada["To"] == "Ada <ada@example.org>"
    check = digest(site, "subscribers", "check")
    problems = [line.split(":")[0] for line in check.stdout.splitlines() if ".csv:" in line]
    assert [Path(p).name for p in problems] == ["garden.csv", "orchard.csv"]
    listed = digest(site, "audience", "--as-of", AS_OF)
    warnings = [line for line in listed.stderr.splitlines() if "subscriber skipped" in line]
    assert len(warnings) == 2 and "garden.csv" in warnings[0] and "orchard.csv" in warnings[1]  # in list order
    assert "1 reader on more than one list, merged" in listed.stdout
