"""Durations: spelled exactly for specs, read back, spelled roughly for people."""

import pytest

from dv365.durations import DAY_MS, HOUR_MS, age_text, duration_text, parse_duration, window_text


@pytest.mark.parametrize("ms", [0, 1, 999, 1000, 90_000, HOUR_MS, DAY_MS, 36 * HOUR_MS,
                                2 * DAY_MS, 7 * DAY_MS, 365 * DAY_MS])
def test_exact_spelling_reads_back(ms):
    assert parse_duration(duration_text(ms)) == ms


def test_spellings():
    assert duration_text(DAY_MS) == "24h" and duration_text(7 * DAY_MS) == "7d"
    assert window_text(DAY_MS) == "1d" and window_text(None) == "all"
    assert age_text(5 * DAY_MS + 5 * HOUR_MS) == "5.2d" and age_text(12 * 60_000) == "12m"
    assert parse_duration("1.5d") == 36 * HOUR_MS and parse_duration(" 90m ") == 5_400_000


@pytest.mark.parametrize("text", ["", "24", "h", "24 hours", "-1h", "1e3s"])
def test_what_is_not_a_duration(text):
    with pytest.raises(ValueError, match="as a duration"):
        parse_duration(text)


def test_moments_in_utc():
    from dv365.durations import moment_text

    ms = 1_750_000_000_000  # 2025-06-15T15:06:40Z
    assert moment_text(ms) == "2025-06-15 15:06"
    assert moment_text(ms, "day") == "2025-06-15"
    assert moment_text(ms, "ms") == "2025-06-15T15:06:40.000Z"
