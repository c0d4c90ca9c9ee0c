"""Planning without holding the list: the roster that keeps an audience
packed (in memory, then in a temporary file), the compact table of addresses
already read, and a planned issue whose variants read the roster again."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from digest import members
from digest.audience import group_audience
from digest.delivery import queue_issue, render_issue
from digest.issue import IssueRequest, plan_issue
from digest.ledger import Ledger
from digest.members import Members, Roster
from digest.seen import SeenKeys
from digest.settings import load_settings
from digest.subscribers import Subscriber, load_subscribers

AS_OF = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)


def person(n: int, *tags: str, name: str = "", list_name: str = "readers") -> Subscriber:
    return Subscriber(email=f"reader{n}@example.org", name=name or f"Reader {n}", tags=frozenset(tags), list_name=list_name, line=n + 2)


@pytest.fixture(params=["memory", "file"])
def spill(request, monkeypatch):
    """Rosters kept in memory, or spilled to their file after a few records."""
    if request.param == "file":
        monkeypatch.setattr(members, "SPILL_BYTES", 200)
    return request.param


def test_a_roster_gives_back_every_subscriber_as_written_in_its_group(spill):
    people = [person(n, "roses" if n % 3 else "bees", name=f"Zoë “{n}”\nline\x1f,") for n in range(500)]
    roster = Roster()
    for n, subscriber in enumerate(people):
        roster.add(subscriber, n % 3 - 1)  # groups -1, 0, 1
    roster.seal()
    assert (roster._file is not None) == (spill == "file")
    # Every field (names with quotes, line breaks and separators), group by group in the order met.
    assert Members(roster) == [p for group in (-1, 0, 1) for n, p in enumerate(people) if n % 3 - 1 == group]
    zeros = Members(roster, 0)
    assert len(zeros) == roster.counts[0] == 167
    assert list(zeros) == [p for n, p in enumerate(people) if n % 3 == 1]
    assert zeros[0] == people[1] and zeros[-1] == people[499] and zeros[2:4] == (people[7], people[10])
    with pytest.raises(IndexError):
        zeros[167]
    assert len(Members(roster, 7)) == 0 and list(Members(roster, 7)) == []
    assert Members(roster, 0) != people[:167] and Members(roster, 0) != tuple(zeros)[:-1]


def test_many_threads_read_one_spilled_roster_at_once(monkeypatch):
    monkeypatch.setattr(members, "SPILL_BYTES", 1000)
    roster = Roster()
    for n in range(3000):
        roster.add(person(n), n % 2)
    roster.seal()
    start = threading.Barrier(4)
    seen: list[list[str]] = []

    def read(group: int) -> None:
        start.wait()
        seen.append([s.email for s in Members(roster, group)])

    threads = [threading.Thread(target=read, args=(n % 2,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(len, seen)) == [1500] * 4
    assert sorted(s[0] for s in seen) == ["reader0@example.org"] * 2 + ["reader1@example.org"] * 2


def test_seen_keys_answer_where_a_key_was_first_added_through_growth():
    table = SeenKeys()
    for n in range(20000):  # grows from 4,096 slots several times
        assert table.add(f"reader{n}@example.org", n + 1) == 0
    assert len(table) == 20000
    assert [table.add(f"reader{n}@example.org", 99999) for n in (0, 4095, 19999)] == [1, 4096, 20000]
    assert "reader77@example.org" in table and "reader20000@example.org" not in table
    assert table.add("", 5) == 0 and table.add("", 6) == 5  # any string, even empty


def test_a_large_list_reports_each_duplicate_with_the_line_it_repeats(tmp_path):
    rows = [f"reader{n}@example.org,R{n}," for n in range(30000)]
    rows.insert(25000, "READER3@example.org,again,")
    (tmp_path / "readers.csv").write_text("email,name,tags\n" + "\n".join(rows) + "\n", encoding="utf-8")
    subscribers, problems = load_subscribers(tmp_path / "readers.csv")
    assert len(subscribers) == 30000
    assert [str(p) for p in problems] == [f"{tmp_path / 'readers.csv'}:25002: duplicate of line 5 (READER3@example.org); row skipped"]


def test_grouping_streams_a_list_into_variants_whatever_its_size(spill):
    from rendering_samples import article

    roses = article(0, id="r", tags=("roses",), published=AS_OF)
    bees = article(1, id="b", tags=("bees",), published=AS_OF)
    people = [person(n, *(("roses",), ("bees",), (), ("kale",))[n % 4]) for n in range(400)]
    variants, everyone = group_audience([roses, bees], iter(people))  # an iterator: read once
    assert len(everyone) == 400 and set(everyone) == set(people)  # those who get nothing (kale) too
    assert sorted((len(v.subscribers), [a.id for a in v.articles], sorted(v.tags)) for v in variants) == [
        (100, ["b"], ["bees"]),
        (100, ["r"], ["roses"]),
        (100, ["r", "b"], []),  # every tag
    ]
    bees = next(v for v in variants if v.tags == {"bees"})
    assert bees.subscribers == tuple(p for n, p in enumerate(people) if n % 4 == 1)


def write_site(folder, readers: int) -> dict:
    posts = folder / "posts"
    posts.mkdir()
    for n, tag in enumerate(["news", "roses", "bees"]):
        date = (AS_OF - timedelta(days=1, hours=n)).isoformat()
        (posts / f"{n}.md").write_text(f"---\ntitle: Post {n}\ndate: {date}\ntags: [{tag}]\n---\nBody {n}.\n", encoding="utf-8")
    lines = ["email,name,tags"] + [f"reader{n}@example.org,Reader {n},{('roses', 'bees', '')[n % 3]}" for n in range(readers)]
    lines.insert(7, "reader1@example.org,Twice,")
    (folder / "readers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dict(sources=[str(posts)], subscribers=str(folder / "readers.csv"), ledger=str(folder / "digest.db"),
                site_url="https://gazette.example.org/", timezone="UTC", schedule="weekly monday 08:00")


def test_a_planned_issue_queues_every_reader_once_in_their_variant(tmp_path, spill):
    settings = load_settings(**write_site(tmp_path, 3000))
    issue = plan_issue(settings, IssueRequest(as_of=AS_OF))
    assert [str(p).rsplit(":", 2)[-2:] for p in issue.audience_problems] == [["8", " duplicate of line 3 (reader1@example.org); row skipped"]]
    assert len(issue.subscribers) == issue.recipient_count == 3000
    ledger = Ledger(settings.ledger)
    try:
        assert queue_issue(issue, ledger, render_issue(issue, settings), scheduled_at=issue.scheduled_at)
        rows = ledger.pending_ids(issue.context.key)
        assert sorted(sid for _, sid in rows) == sorted(f"reader{n}@example.org" for n in range(3000))
        assert ledger.variant_counts(issue.context.key) == {v.key: 1000 for v in issue.variants}
        by_variant = {v.key: {s.key for s in v.subscribers} for v in issue.variants}
        queued = ledger._rows("SELECT subscriber_id, variant_key, name FROM deliveries WHERE issue_key = ?", (issue.context.key,))
        assert all(row["subscriber_id"] in by_variant[row["variant_key"]] for row in queued)
        assert {row["name"] for row in queued} >= {"Reader 0", "Reader 2999"}
    finally:
        ledger.close()


def test_a_sends_audience_is_packed_once_and_read_again_for_each_frequency(tmp_path):
    from digest.issue import issue_frequencies

    settings = load_settings(**write_site(tmp_path, 300))
    frequencies, audience = issue_frequencies(settings)
    assert isinstance(audience.subscribers, Members) and len(audience.subscribers) == 300
    assert [str(p).rsplit(":", 2)[-1] for p in audience.problems] == [" duplicate of line 3 (reader1@example.org); row skipped"]
    for _ in range(2):  # the roster reads again, whole
        issue = plan_issue(settings, IssueRequest(as_of=AS_OF, frequency=frequencies[0]), audience=audience)
        assert issue.recipient_count == 300 and sorted(len(v.subscribers) for v in issue.variants) == [100, 100, 100]
