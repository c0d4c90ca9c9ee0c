"""The schedule: issue keys, windows and send times, across DST changes."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from digest.errors import SettingsError
from digest.moments import parse_duration
from digest.schedule import current_issue, parse_schedule

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def at(text: str, tz=PARIS) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


@pytest.mark.parametrize(
    ("text", "cadence", "weekday", "day", "send_time"),
    [
        ("weekly monday 08:00", "weekly", 0, None, time(8, 0)),
        ("Weekly  SUN 7:05", "weekly", 6, None, time(7, 5)),
        ("daily 07:30", "daily", None, None, time(7, 30)),
        ("monthly 1 09:00", "monthly", None, 1, time(9, 0)),
        ("monthly 31 23:59", "monthly", None, 31, time(23, 59)),
    ],
)
def test_parse_schedule_accepts_the_documented_forms(text, cadence, weekday, day, send_time):
    schedule = parse_schedule(text)
    assert (schedule.cadence, schedule.weekday, schedule.day, schedule.at) == (cadence, weekday, day, send_time)


@pytest.mark.parametrize(
    "text",
    ["", "hourly 08:00", "weekly 08:00", "weekly funday 08:00", "weekly mo 08:00", "daily 24:00",
     "daily 8", "monthly 0 09:00", "monthly 32 09:00", "monthly first 09:00", "daily 07:30 extra"],
)
def test_a_bad_schedule_is_one_settings_error_naming_the_setting(text):
    with pytest.raises(SettingsError) as caught:
        parse_schedule(text)
    message = str(caught.value)
    assert "'schedule'" in message and repr(text) in message and "\n" not in message


def test_weekly_issue_is_the_latest_scheduled_time_at_or_before_as_of():
    schedule = "weekly monday 08:00"
    before = current_issue(schedule, at("2026-11-23T07:59"), PARIS)
    on_time = current_issue(schedule, at("2026-11-23T08:00"), PARIS)
    late = current_issue(schedule, at("2026-11-25T22:00"), PARIS)  # cron two days late
    assert before.key == "2026-W47"
    assert on_time.key == late.key == "2026-W48"
    assert late.scheduled_at == at("2026-11-23T08:00")
    assert (late.window_start, late.window_end) == (at("2026-11-16T08:00"), at("2026-11-23T08:00"))
    assert before.window_end == on_time.window_start  # no gap, no overlap


def test_weekly_key_is_the_iso_week_of_the_scheduled_date_not_the_calendar_year():
    # 2026 has 53 ISO weeks; Sunday 2027-01-03 still belongs to 2026-W53.
    assert current_issue("weekly monday 08:00", at("2026-12-28T09:00"), PARIS).key == "2026-W53"
    assert current_issue("weekly sunday 08:00", at("2027-01-03T09:00"), PARIS).key == "2026-W53"
    assert current_issue("weekly monday 08:00", at("2027-01-04T09:00"), PARIS).key == "2027-W01"


def test_daily_and_monthly_keys():
    assert current_issue("daily 07:30", at("2026-11-29T07:30"), PARIS).key == "2026-11-29"
    assert current_issue("daily 07:30", at("2026-11-29T07:29"), PARIS).key == "2026-11-28"
    assert current_issue("monthly 1 09:00", at("2026-11-29T12:00"), PARIS).key == "2026-11"
    assert current_issue("monthly 1 09:00", at("2026-11-01T08:59"), PARIS).key == "2026-10"


def test_monthly_day_past_the_end_of_a_short_month_goes_out_on_its_last_day():
    issue = current_issue("monthly 31 09:00", at("2026-03-15T00:00"), PARIS)
    assert issue.key == "2026-02"
    assert issue.scheduled_at == at("2026-02-28T09:00")
    assert issue.window_start == at("2026-01-31T09:00")


def test_as_of_in_another_zone_or_naive_is_compared_as_the_same_instant():
    utc_instant = datetime.fromisoformat("2026-11-23T07:00+00:00")  # 08:00 in Paris
    assert current_issue("weekly monday 08:00", utc_instant, PARIS).key == "2026-W48"
    naive = datetime(2026, 11, 23, 7, 59)  # read in the site's zone: one minute early
    assert current_issue("weekly monday 08:00", naive, PARIS).key == "2026-W47"


def test_windows_chain_without_gaps_and_keep_wall_clock_time_across_a_year_of_dst_changes():
    issues = [current_issue("daily 07:30", at("2026-01-01T12:00", NEW_YORK) + timedelta(days=n), NEW_YORK)
              for n in range(366)]
    for previous, issue in zip(issues, issues[1:], strict=False):
        assert issue.window_start == previous.window_end
        assert issue.scheduled_at.astimezone(NEW_YORK).time() == time(7, 30)
    lengths = {issue.window_end - issue.window_start for issue in issues}
    # Two DST changes: one 23-hour and one 25-hour day; every other window is 24 h.
    assert lengths == {timedelta(hours=23), timedelta(hours=24), timedelta(hours=25)}
    assert len({issue.key for issue in issues}) == 366


def test_weekly_window_across_spring_forward_is_one_hour_shorter():
    issue = current_issue("weekly monday 08:00", at("2026-03-30T08:00"), PARIS)
    assert issue.window_end - issue.window_start == timedelta(hours=167)
    assert issue.window_start.astimezone(PARIS).utcoffset() == timedelta(hours=1)
    assert issue.window_end.astimezone(PARIS).utcoffset() == timedelta(hours=2)
    assert issue.window_end.astimezone(PARIS).time() == time(8, 0)


def test_a_send_time_inside_the_spring_forward_gap_moves_forward_by_the_gap():
    # Paris skips 02:00-03:00 on 2026-03-29.
    issue = current_issue("daily 02:30", at("2026-03-29T12:00"), PARIS)
    assert issue.scheduled_at.astimezone(PARIS).time() == time(3, 30)
    assert current_issue("daily 02:30", at("2026-03-29T03:15"), PARIS).key == "2026-03-28"


def test_window_is_usable_by_selection():
    issue = current_issue("weekly monday 08:00", at("2026-11-23T09:00"), PARIS)
    assert at("2026-11-23T08:00") in issue.window
    assert at("2026-11-16T08:00") not in issue.window


@pytest.mark.parametrize(("text", "expected"), [("36h", timedelta(hours=36)), ("7d", timedelta(days=7)),
                                               ("90m", timedelta(minutes=90))])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


def test_one_send_time_per_frequency_and_defaults_for_the_others():
    from digest.schedule import parse_schedules, schedule_of, upcoming

    found = parse_schedules(["daily 07:30", "Monthly 1 09:00"])
    assert list(found) == ["daily", "monthly"]
    assert schedule_of(["daily 07:30", "monthly 1 09:00"], "weekly") == parse_schedule("weekly monday 08:00")
    assert schedule_of(["daily 07:30", "monthly 1 09:00"]) == parse_schedule("daily 07:30")  # no frequency: the first
    with pytest.raises(SettingsError, match="two daily send times"):
        parse_schedules(["daily 07:30", "daily 09:00"])
    with pytest.raises(SettingsError, match="empty"):
        parse_schedules([])
    coming = upcoming(["weekly monday 08:00", "monthly 31 09:00"], datetime(2027, 1, 31, 10, tzinfo=UTC), UTC, 2)  # the first entry
    assert [i.key for i in coming] == ["2027-W05", "2027-W06"]
    coming = upcoming(schedule_of(["daily 07:30", "monthly 31 09:00"], "monthly"), datetime(2027, 1, 31, 10, tzinfo=UTC), UTC, 2)
    assert [(i.key, i.scheduled_at.day) for i in coming] == [("2027-02", 28), ("2027-03", 31)]


def test_the_default_frequency_follows_a_schedule_of_one_entry(settings_for):
    assert settings_for(schedule="daily 07:30").frequency_default == "daily"
    assert settings_for(schedule=["daily 07:30", "weekly monday 08:00"]).frequency_default == "weekly"
    assert settings_for(schedule="daily 07:30", default_frequency="monthly").frequency_default == "monthly"
    with pytest.raises(SettingsError, match="schedule"):
        settings_for(schedule=["weekly someday 08:00"])


@pytest.mark.parametrize(
    ("schedule", "as_of", "keys"),
    [
        # Across the October change in Paris: 08:00 stays 08:00 local.
        ("weekly monday 08:00", "2026-10-20T09:00", ["2026-W44", "2026-W45"]),
        ("monthly 31 09:00", "2026-01-31T10:00", ["2026-02", "2026-03"]),
        ("daily 07:30", "2026-12-31T08:00", ["2027-01-01", "2027-01-02"]),
    ],
)
def test_next_issues_follow_on_and_keep_the_local_send_time(schedule, as_of, keys):
    from digest.schedule import next_issue, upcoming

    found = upcoming(schedule, at(as_of), PARIS, 2)
    assert [issue.key for issue in found] == keys
    current = current_issue(schedule, at(as_of), PARIS)
    assert next_issue(schedule, current, PARIS) == found[0]
    assert found[0].window_start == current.scheduled_at and found[1].window_start == found[0].scheduled_at
    send_time = parse_schedule(schedule).at
    assert all(issue.scheduled_at.astimezone(PARIS).time() == send_time for issue in found)
    if schedule.startswith("monthly"):
        assert [i.scheduled_at.astimezone(PARIS).day for i in found] == [28, 31]  # a short month's last day


def test_a_window_starts_at_the_last_send_else_the_first_refusal_else_the_period():
    from digest.schedule import window_since_last_send

    issue = current_issue("weekly monday 08:00", at("2026-12-07T09:00"), PARIS)
    two_weeks_back = issue.window_start - timedelta(days=7)
    assert window_since_last_send(issue, None).start == issue.window_start
    assert window_since_last_send(issue, two_weeks_back).start == two_weeks_back
    assert window_since_last_send(issue, None, two_weeks_back).start == two_weeks_back
    assert window_since_last_send(issue, issue.window_start, two_weeks_back - timedelta(days=7)).start == issue.window_start
    # History from after this issue (planning an old issue again) does not bend its window.
    assert window_since_last_send(issue, issue.window_end + timedelta(days=7)).start == issue.window_start
    assert window_since_last_send(issue, two_weeks_back).end == issue.window_end
