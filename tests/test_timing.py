"""Timing: when each email goes out, in the launch's timezone, across DST changes."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from launchkit.errors import LaunchkitError
from launchkit.timing import (
    Timing,
    TimingError,
    localize,
    parse_duration,
    parse_local_datetime,
    parse_timing,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
UTC = timezone.utc


def paris(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=PARIS, fold=fold)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def resolve(text: str, tz: ZoneInfo = PARIS, **anchors: datetime) -> datetime:
    return parse_timing(text).resolve(tz, **anchors)


# Anchors


def test_start_is_the_phase_start_in_utc():
    moment = resolve("start", start=paris(2027, 3, 10, 9, 0))
    assert moment == utc(2027, 3, 10, 8, 0)
    assert moment.tzinfo is UTC


def test_end_is_the_phase_end():
    assert resolve("end", start=paris(2027, 3, 10, 9), end=paris(2027, 3, 14, 23, 59)) == utc(2027, 3, 14, 22, 59)


def test_join_is_the_moment_the_contact_joined():
    joined = utc(2027, 3, 5, 17, 42, 13)
    assert resolve("join", start=paris(2027, 3, 1, 9), join=joined) == joined


def test_absolute_anchor_is_wall_time_in_the_launch_timezone():
    timing = parse_timing("2027-03-01 09:00")
    assert timing.anchor == "absolute"
    assert timing.absolute == datetime(2027, 3, 1, 9, 0)
    assert timing.resolve(PARIS) == utc(2027, 3, 1, 8, 0)
    assert timing.resolve(NEW_YORK) == utc(2027, 3, 1, 14, 0)


def test_absolute_anchor_accepts_iso_t_and_takes_offsets_and_at():
    assert resolve("2027-03-01T09:00 + 1w at 18:30") == utc(2027, 3, 8, 17, 30)


def test_anchors_are_case_insensitive_and_whitespace_tolerant():
    timing = parse_timing("  START   +   3D   AT   9:00  ")
    assert (timing.anchor, timing.days, timing.seconds, timing.at) == ("start", 3, 0, time(9, 0))


# Offsets


@pytest.mark.parametrize("text", ["start + 3d", "start+3d", "start +3d", "start+ 3d", "start + 3 d"])
def test_day_offset_parses_with_or_without_spaces(text):
    timing = parse_timing(text)
    assert (timing.anchor, timing.days, timing.seconds) == ("start", 3, 0)
    assert timing.resolve(PARIS, start=paris(2027, 3, 1, 9)) == utc(2027, 3, 4, 8)


@pytest.mark.parametrize("text", ["end - 3h", "end-3h", "end -3h", "end- 3h"])
def test_hour_offset_before_the_end_parses_with_or_without_spaces(text):
    timing = parse_timing(text)
    assert (timing.anchor, timing.days, timing.seconds) == ("end", 0, -3 * 3600)
    assert timing.resolve(PARIS, end=paris(2027, 3, 14, 23, 59)) == utc(2027, 3, 14, 19, 59)


def test_combined_offset_splits_calendar_days_from_elapsed_seconds():
    timing = parse_timing("join + 1d 4h 30m")
    assert (timing.days, timing.seconds) == (1, 4 * 3600 + 30 * 60)
    assert timing.resolve(PARIS, join=paris(2027, 3, 1, 9, 0)) == utc(2027, 3, 2, 12, 30)


def test_combined_offset_without_spaces_and_negative_sign_applies_to_every_part():
    timing = parse_timing("end-1d4h30m")
    assert (timing.days, timing.seconds) == (-1, -(4 * 3600 + 30 * 60))
    assert timing.resolve(PARIS, end=paris(2027, 3, 14, 23, 59)) == utc(2027, 3, 13, 18, 29)


def test_weeks_fold_into_calendar_days():
    assert parse_timing("start + 2w 1d").days == 15
    assert parse_timing("start - 1w").days == -7


# at HH:MM


def test_at_moves_to_that_wall_clock_time_on_the_offset_day():
    assert resolve("start + 3d at 09:00", start=paris(2027, 3, 1, 14, 37)) == utc(2027, 3, 4, 8, 0)


def test_at_alone_keeps_the_anchor_local_day_even_if_earlier():
    assert resolve("join at 09:00", join=paris(2027, 3, 5, 17, 0)) == utc(2027, 3, 5, 8, 0)


def test_at_uses_the_local_date_not_the_utc_date():
    # 00:30 in Paris is still the previous day in UTC.
    assert resolve("join at 10:00", join=paris(2027, 3, 5, 0, 30)) == utc(2027, 3, 5, 9, 0)


def test_at_applies_after_elapsed_hours_that_cross_midnight():
    assert resolve("end + 3h at 10:00", end=paris(2027, 3, 14, 23, 0)) == utc(2027, 3, 15, 9, 0)


def test_at_accepts_a_single_digit_hour():
    assert parse_timing("start + 1d at 9:05").at == time(9, 5)


# DST


def test_day_offset_keeps_wall_clock_time_across_spring_forward():
    # 09:00 CET the day before, 09:00 CEST the day of: 23 elapsed hours, same wall time.
    moment = resolve("start + 1d", start=paris(2027, 3, 27, 9, 0))
    assert moment == utc(2027, 3, 28, 7, 0)
    assert moment.astimezone(PARIS).time() == time(9, 0)


def test_day_offset_keeps_wall_clock_time_across_fall_back():
    moment = resolve("start + 1d", start=paris(2027, 10, 30, 9, 0))
    assert moment == utc(2027, 10, 31, 8, 0)
    assert moment.astimezone(PARIS).time() == time(9, 0)


def test_day_offset_keeps_wall_clock_time_across_dst_in_new_york():
    moment = resolve("start + 1d", NEW_YORK, start=datetime(2027, 3, 13, 9, 0, tzinfo=NEW_YORK))
    assert moment == utc(2027, 3, 14, 13, 0)


def test_end_minus_hours_is_elapsed_time_across_spring_forward():
    end = paris(2027, 3, 28, 5, 0)  # CEST, 03:00 UTC
    moment = resolve("end - 3h", end=end)
    assert end - moment == timedelta(hours=3)
    assert moment == utc(2027, 3, 28, 0, 0)
    assert moment.astimezone(PARIS).time() == time(1, 0)  # four wall-clock hours earlier


def test_end_minus_hours_is_elapsed_time_across_fall_back():
    end = paris(2027, 10, 31, 4, 0)  # CET, 03:00 UTC
    moment = resolve("end - 3h", end=end)
    assert end - moment == timedelta(hours=3)
    assert moment.astimezone(PARIS).replace(tzinfo=None) == datetime(2027, 10, 31, 2, 0)  # two wall hours


def test_plain_anchor_inside_a_fold_keeps_its_exact_instant():
    second_half_past_two = paris(2027, 10, 31, 2, 30, fold=1)  # CET, 01:30 UTC
    assert resolve("start", start=second_half_past_two) == utc(2027, 10, 31, 1, 30)
    assert resolve("start + 1h", start=second_half_past_two) == utc(2027, 10, 31, 2, 30)


def test_wall_time_in_spring_forward_gap_moves_forward_by_the_gap_in_paris():
    moment = resolve("2027-03-28 02:30")
    assert moment == utc(2027, 3, 28, 1, 30)
    assert moment.astimezone(PARIS).replace(tzinfo=None) == datetime(2027, 3, 28, 3, 30)


def test_at_landing_in_spring_forward_gap_moves_forward_instead_of_crashing():
    moment = resolve("start + 1d at 02:30", start=paris(2027, 3, 27, 9, 0))
    assert moment.astimezone(PARIS).replace(tzinfo=None) == datetime(2027, 3, 28, 3, 30)


def test_wall_time_in_spring_forward_gap_moves_forward_by_the_gap_in_new_york():
    moment = resolve("2027-03-14 02:30", NEW_YORK)
    assert moment == utc(2027, 3, 14, 7, 30)
    assert moment.astimezone(NEW_YORK).replace(tzinfo=None) == datetime(2027, 3, 14, 3, 30)


def test_ambiguous_wall_time_in_fall_back_fold_takes_the_first_occurrence_in_paris():
    assert resolve("2027-10-31 02:30") == utc(2027, 10, 31, 0, 30)  # 02:30 CEST, not CET
    assert resolve("start + 1d at 02:30", start=paris(2027, 10, 30, 9, 0)) == utc(2027, 10, 31, 0, 30)


def test_ambiguous_wall_time_in_fall_back_fold_takes_the_first_occurrence_in_new_york():
    assert resolve("2027-11-07 01:30", NEW_YORK) == utc(2027, 11, 7, 5, 30)  # EDT, not EST


def test_localize_applies_gap_and_fold_rules_and_returns_utc():
    assert localize(datetime(2027, 6, 1, 12, 0), PARIS) == utc(2027, 6, 1, 10, 0)
    assert localize(datetime(2027, 3, 28, 2, 30), PARIS) == utc(2027, 3, 28, 1, 30)
    assert localize(datetime(2027, 10, 31, 2, 30), PARIS) == utc(2027, 10, 31, 0, 30)
    assert localize(datetime(2027, 6, 1, 12, 0), PARIS).tzinfo is UTC


def test_localize_refuses_an_aware_datetime():
    with pytest.raises(ValueError, match="naive"):
        localize(paris(2027, 6, 1, 12, 0), PARIS)


# Errors


def test_misspelled_anchor_says_what_was_expected_and_suggests_the_anchor():
    with pytest.raises(TimingError) as caught:
        parse_timing("strat + 3d")
    message = str(caught.value)
    assert "expected an anchor (start, end, join or YYYY-MM-DD HH:MM)" in message
    assert "found 'strat + 3d'" in message
    assert "did you mean 'start'?" in message


def test_unknown_offset_unit_names_the_units():
    with pytest.raises(TimingError, match=r"units w, d, h, m\); found '\+ 3x'"):
        parse_timing("start + 3x")


def test_offset_without_a_sign_is_refused():
    with pytest.raises(TimingError, match="found '3d'"):
        parse_timing("start 3d")


@pytest.mark.parametrize("clock", ["25:00", "9:60", "0900", ""])
def test_impossible_at_time_says_the_valid_range(clock):
    with pytest.raises(TimingError, match="time of day from 00:00 to 23:59"):
        parse_timing(f"start + 1d at {clock}")


def test_empty_timing_says_nothing_was_found():
    with pytest.raises(TimingError, match="expected an anchor .*; found nothing$"):
        parse_timing("   ")


def test_impossible_absolute_date_is_refused():
    with pytest.raises(TimingError, match="'2027-02-30 09:00'.*day is out of range"):
        parse_timing("2027-02-30 09:00")


def test_unquoted_toml_datetime_is_refused_with_a_hint():
    with pytest.raises(TimingError, match="quoted string"):
        parse_timing(datetime(2027, 3, 1, 9, 0))  # type: ignore[arg-type]


def test_timing_errors_are_user_errors_and_value_errors():
    with pytest.raises(LaunchkitError):
        parse_timing("strat")
    with pytest.raises(ValueError):
        parse_timing("strat")


@pytest.mark.parametrize(
    ("text", "anchors", "needed"),
    [
        ("end - 3h", {"start": paris(2027, 3, 10, 9)}, "'end' needs a phase end"),
        ("start + 3d", {"end": paris(2027, 3, 14, 23)}, "'start' needs a phase start"),
        ("join + 1d", {"start": paris(2027, 3, 10, 9)}, "'join' needs the moment the contact joined"),
    ],
)
def test_missing_anchor_at_resolve_says_which_one(text, anchors, needed):
    with pytest.raises(TimingError, match=needed) as caught:
        resolve(text, **anchors)
    assert repr(text) in str(caught.value)


def test_absolute_timing_needs_no_anchor():
    assert resolve("2027-03-01 09:00 - 3h") == utc(2027, 3, 1, 5, 0)


def test_naive_anchor_is_refused_rather_than_read_as_server_time():
    with pytest.raises(ValueError, match="timezone-aware"):
        resolve("start + 1d", start=datetime(2027, 3, 1, 9, 0))


def test_timing_is_frozen_and_hashable_for_reuse_across_contacts():
    assert parse_timing("start + 1d") == parse_timing("start + 1d")
    assert len({parse_timing("start + 1d"), parse_timing("start + 1d")}) == 1


# Durations and local datetimes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6h", timedelta(hours=6)),
        ("1h", timedelta(hours=1)),
        ("90m", timedelta(minutes=90)),
        ("1d 4h 30m", timedelta(days=1, hours=4, minutes=30)),
        ("1d4h30m", timedelta(days=1, hours=4, minutes=30)),
        ("2w", timedelta(weeks=2)),
        ("30s", timedelta(seconds=30)),
        (" 6H ", timedelta(hours=6)),
    ],
)
def test_parse_duration_accepts_units_w_d_h_m_s(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "6", "h", "6x", "0h", "-1h", "+1h", "6 hours", "1.5h"])
def test_parse_duration_refuses_anything_but_a_positive_duration(text):
    with pytest.raises(TimingError, match="expected a positive duration like '6h'"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-03-01 09:00", datetime(2027, 3, 1, 9, 0)),
        ("2027-03-01T09:00", datetime(2027, 3, 1, 9, 0)),
        ("2027-03-01T09:00:15", datetime(2027, 3, 1, 9, 0, 15)),
    ],
)
def test_parse_local_datetime_returns_naive_wall_time(text, expected):
    parsed = parse_local_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo is None


@pytest.mark.parametrize("text", ["2027-03-01", "2027-03-01 09:00+01:00", "01/03/2027 09:00", "2027-13-01 09:00"])
def test_parse_local_datetime_refuses_other_shapes(text):
    with pytest.raises(TimingError, match="2027"):
        parse_local_datetime(text)


def test_timing_built_directly_resolves_like_a_parsed_one():
    built = Timing(source="start + 1d", anchor="start", absolute=None, days=1, seconds=0, at=None)
    start = paris(2027, 3, 27, 9, 0)
    assert built.resolve(PARIS, start=start) == parse_timing("start + 1d").resolve(PARIS, start=start)
