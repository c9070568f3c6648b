"""Boundary values for bot.render.formatting.

Every expected string is what the Go code prints: the go-units v0.5.0 / cli /
moby functions were compiled with Go 1.19 and run on these inputs. Comments
mark the values that look surprising and say which line of Go causes them.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.render.formatting import (
    created_since,
    display_width,
    ellipsis,
    format_table,
    human_count,
    human_duration,
    human_size,
    human_size_4,
    progress_bar,
    progress_counts,
    short_id,
)

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR

# --- human_size: go-units HumanSizeWithPrecision(size, 3) -------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0B"),
        (1, "1B"),
        (999, "999B"),
        (1000, "1kB"),  # lowercase k; %g drops the trailing zeros of 1.00
        (1001, "1kB"),  # 1.001 at 3 significant digits
        (1234, "1.23kB"),
        (9995, "9.99kB"),  # 9.995 is 9.99499… in binary, so it rounds down
        (99_950, "100kB"),
        (999_499, "999kB"),
        # The divide loop stops at 999.5 (< 1000), then %.3g rounds it to 1000,
        # which Go's %g prints in exponent form ("1e+03"), never as "1MB".
        (999_500, "1e+03kB"),
        (999_999, "1e+03kB"),
        (1_000_000, "1MB"),
        (1_225_000, "1.23MB"),
        (5_530_000, "5.53MB"),
        (69_300_000, "69.3MB"),
        (1_450_000_000, "1.45GB"),
        (1e24, "1YB"),
        # YB is the last unit, so the loop stops and 1000 YB needs an exponent.
        (1e27, "1e+03YB"),
        (1.5e30, "1.5e+06YB"),
        (999.5, "1e+03B"),  # a tie: round-half-even on 99|9.5 rounds up
        (0.5, "0.5B"),
        (-5000, "-5e+03B"),  # negatives never enter the `size >= 1000` loop
    ],
)
def test_human_size_precision_3(size: float, expected: str) -> None:
    assert human_size(size) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (16_430_000, "16.43MB"),
        (16_425_000, "16.43MB"),
        (1001, "1.001kB"),
        (999_500, "999.5kB"),
        (999_999, "1000kB"),  # %.4g of 999.999 is "1000": no exponent at precision 4
        (1e27, "1000YB"),
        (1_234_000_000, "1.234GB"),  # e.g. "Total reclaimed space: 1.234GB"
        (0, "0B"),
    ],
)
def test_human_size_precision_4(size: float, expected: str) -> None:
    assert human_size_4(size) == expected
    assert human_size(size, 4) == expected


def test_human_size_non_finite_matches_go_fmt() -> None:
    assert human_size(float("inf")) == "+InfYB"
    assert human_size(float("nan")) == "NaNB"


# --- human_duration: go-units v0.5.0 HumanDuration ---------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "Less than a second"),  # clock skew: int(d.Seconds()) < 1
        (0, "Less than a second"),
        (0.5, "Less than a second"),
        (0.999, "Less than a second"),
        (1, "1 second"),
        (1.9, "1 second"),  # int() truncates
        (2, "2 seconds"),
        (59, "59 seconds"),
        (59.9, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),  # int(d.Minutes()) == 1
        (120, "2 minutes"),
        (59 * MINUTE, "59 minutes"),
        (59 * MINUTE + 59, "59 minutes"),
        (60 * MINUTE, "About an hour"),
        # hours = int(d.Hours() + 0.5): 1.4997 h + 0.5 truncates to 1.
        (89 * MINUTE + 59, "About an hour"),
        (90 * MINUTE, "2 hours"),  # 1.5 + 0.5 = 2
        (47 * HOUR, "47 hours"),
        (47 * HOUR + 29 * MINUTE, "47 hours"),
        (47 * HOUR + 30 * MINUTE, "2 days"),  # rounded hours = 48, 48 / 24 = 2
        (48 * HOUR, "2 days"),
        (13 * DAY, "13 days"),
        (13 * DAY + 23 * HOUR, "13 days"),  # days truncate: 335 h // 24
        (13 * DAY + 23 * HOUR + 30 * MINUTE, "2 weeks"),  # rounded hours hit 336
        (14 * DAY, "2 weeks"),
        (20 * DAY, "2 weeks"),  # weeks truncate (go-units#51 would say 3; unmerged)
        (21 * DAY, "3 weeks"),
        (45 * DAY, "6 weeks"),
        (59 * DAY, "8 weeks"),
        (60 * DAY, "2 months"),
        (61 * DAY, "2 months"),
        (89 * DAY, "2 months"),
        (729 * DAY, "24 months"),
        # Rounded hours reach 17520 (the years threshold) but years use the
        # unrounded int(d.Hours()) = 17519, so Go prints "1 years".
        (729 * DAY + 23 * HOUR + 30 * MINUTE, "1 years"),
        (730 * DAY, "2 years"),
        (1094 * DAY, "2 years"),
        (1095 * DAY, "3 years"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


# --- created_since: the CLI's CREATED column --------------------------------


def test_created_since_appends_ago() -> None:
    now = 1_800_000_000
    assert created_since(now - 3 * HOUR, now=now) == "3 hours ago"
    assert created_since(now - 21 * DAY, now=now) == "3 weeks ago"
    assert created_since(now + 30, now=now) == "Less than a second ago"


def test_created_since_na_only_for_missing_or_go_zero_time() -> None:
    # CreatedSince returns "" (rendered "N/A") only when
    # time.Unix(created, 0).IsZero(), i.e. Go's zero time (year 1), whose
    # Unix() is -62135596800.
    assert created_since(None) == "N/A"
    assert created_since(-62135596800, now=1_800_000_000) == "N/A"
    # Created == 0 is 1970-01-01, a real date: the CLI prints "57 years ago"
    # for epoch-stamped reproducible builds at this `now` (2027).
    assert created_since(0, now=1_800_000_000) == "57 years ago"


def test_created_since_uses_wall_clock_by_default() -> None:
    assert created_since(1).endswith(" years ago")


# --- short_id: moby stringid.TruncateID -------------------------------------

FULL = "90435eec5c4e124e741ef731e118be2fc799a68aba0466ec17717f24ce2ae6a2"


@pytest.mark.parametrize(
    ("image_id", "expected"),
    [
        ("sha256:" + FULL, "90435eec5c4e"),
        (FULL, "90435eec5c4e"),
        ("", ""),
        ("1234", "1234"),
        (FULL + FULL, "90435eec5c4e"),
        ("sha512:" + FULL, "90435eec5c4e"),  # any algorithm prefix is dropped
    ],
)
def test_short_id(image_id: str, expected: str) -> None:
    assert short_id(image_id) == expected


# --- ellipsis: docker/cli formatter.Ellipsis --------------------------------

A44 = "a" * 44


def test_ellipsis_search_description_width_45() -> None:
    assert ellipsis(A44, 45) == A44
    assert ellipsis(A44 + "b", 45) == A44 + "b"  # 45 chars fit exactly
    assert ellipsis(A44 + "bc", 45) == A44 + "…"  # 44 chars + "…"
    assert display_width(ellipsis(A44 + "bc", 45)) == 45


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        # The cli's own TestEllipsis cases.
        ("t🐳ststring", 0, ""),
        ("t🐳ststring", 1, "t"),
        ("t🐳ststring", 2, "t…"),
        ("t🐳ststring", 3, "t…"),  # the whale needs 2 cells, only 1 is left
        ("t🐳ststring", 6, "t🐳st…"),
        ("t🐳ststring", 20, "t🐳ststring"),
        ("你好世界teststring", 1, "你"),  # width 1: first rune, even if wide
        ("你好世界teststring", 3, "你…"),
        ("你好世界teststring", 6, "你好…"),
        ("你好世界teststring", 20, "你好世界teststring"),
        ("é" + A44 + "b", 45, "é" + "a" * 43 + "…"),  # non-ASCII path, narrow chars
        ("teststring", 2, "t…"),  # ASCII: one cell a character
        ("teststring", 9, "teststri…"),
        ("teststring", 10, "teststring"),
        ("tab\there", 7, "tab\the…"),
        ("", 5, ""),
    ],
)
def test_ellipsis_matches_cli(text: str, width: int, expected: str) -> None:
    assert ellipsis(text, width) == expected


def test_ellipsis_first_char_too_wide_deviates_from_go() -> None:
    # Go finds no cut point and returns the whole string; we keep the width.
    assert ellipsis("你好世界teststring", 2) == "…"
    assert ellipsis("你好", 2) == "…"


# --- human_count --------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0"),
        (999, "999"),
        (1000, "1K"),
        (1200, "1.2K"),
        (1250, "1.3K"),  # half up
        (21_318, "21.3K"),
        (999_949, "999.9K"),
        (999_999, "1M"),  # rounds to 1000.0K, so it moves to the next unit
        (1_234_567, "1.2M"),
        (10_000_000, "10M"),
        (987_654_321, "987.7M"),
        (1_200_000_000, "1.2B"),
        (13_114_222_271, "13.1B"),
        (1_500_000_000_000, "1.5T"),
        (-1200, "-1.2K"),
    ],
)
def test_human_count(n: int, expected: str) -> None:
    assert human_count(n) == expected


# --- format_table: tabwriter.NewWriter(out, 10, 1, 3, ' ', 0) ----------------


def test_format_table_search_golden() -> None:
    # The golden output of cli/command/registry/formatter_search.go; STARS is
    # padded to 10 (minwidth), not 5 + 3.
    table = format_table(
        ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"],
        [["result1", "Official build", "5000", "[OK]"], ["result2", "Not official", "5", ""]],
    )
    assert table == (
        "NAME      DESCRIPTION      STARS     OFFICIAL\n"
        "result1   Official build   5000      [OK]\n"
        "result2   Not official     5"  # Go pads "5" to 10 here; we strip it
    )


def test_format_table_images_golden() -> None:
    table = format_table(
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        [["alpine", "latest", "1dc785547989", "17 months ago", "7.73MB"]],
    )
    assert table == (
        "REPOSITORY   TAG       IMAGE ID       CREATED         SIZE\n"
        "alpine       latest    1dc785547989   17 months ago   7.73MB"
    )


def test_format_table_counts_display_cells() -> None:
    cut = ellipsis("x" * 20, 12)  # 11 x's + "…" = 12 cells, 14 bytes in UTF-8
    table = format_table(["NAME", "N"], [[cut, "1"], ["你好", "2"]], min_width=0)
    lines = table.splitlines()
    assert lines[0] == "NAME" + " " * 11 + "N"
    assert lines[1] == cut + "   1"
    assert lines[2] == "你好" + " " * 11 + "2"  # 2 wide chars = 4 cells
    assert {display_width(line[:-1]) for line in lines} == {15}


def test_format_table_gap_short_rows_and_no_trailing_spaces() -> None:
    table = format_table(["A", "B", "C"], [["x"], ["y", "z\tq", ""]], gap=1, min_width=0)
    assert table == "A B   C\nx\ny z q"
    assert all(line == line.rstrip() for line in table.splitlines())


def test_format_table_empty() -> None:
    assert format_table([], []) == ""


def _tabwriter(headers: list[str], rows: list[list[str]], gap: int, min_width: int) -> str:
    """The rule format_table follows, written the plain way, a cell at a time: the oracle for its
    faster paths (one format string a line for ASCII, cells left as they are when printable)."""
    lines = [
        [str(c).replace("\r\n", " ").replace("\n", " ").replace("\t", " ") for c in r]
        for r in [headers, *rows]
    ]
    ncols = max(len(line) for line in lines)
    lines = [line + [""] * (ncols - len(line)) for line in lines]
    widths = [max(min_width, max(display_width(line[c]) for line in lines) + gap) for c in range(ncols - 1)]
    out = []
    for line in lines:
        padded = [cell + " " * (widths[c] - display_width(cell)) for c, cell in enumerate(line[:-1])]
        out.append(("".join(padded) + line[-1]).rstrip())
    return "\n".join(out)


_cells = st.text(alphabet=st.sampled_from("ab:/-_.0123456789 你…\t"), max_size=12)


@given(
    rows=st.lists(st.lists(_cells, min_size=1, max_size=5), min_size=1, max_size=8),
    gap=st.integers(0, 3),
    min_width=st.integers(0, 10),
)
def test_format_table_pads_every_column_as_the_plain_rule(
    rows: list[list[str]], gap: int, min_width: int
) -> None:
    headers, *body = rows
    assert format_table(headers, body, gap=gap, min_width=min_width) == _tabwriter(
        headers, body, gap, min_width
    )


# --- progress: jsonmessage JSONProgress.String ------------------------------


def test_progress_bar_50_matches_cli() -> None:
    # percentage := int(current/total*100) / 2 → 40 % → 20 "=" then ">".
    assert progress_bar(40, 100, 50) == "[" + "=" * 20 + ">" + " " * 30 + "]"
    assert progress_bar(0, 100, 50) == "[>" + " " * 50 + "]"
    assert progress_bar(100, 100, 50) == "[" + "=" * 50 + ">]"
    assert progress_bar(150, 100, 50) == "[" + "=" * 50 + ">]"  # capped


def test_progress_bar_default_width() -> None:
    assert progress_bar(1_200_000, 3_400_000) == "[=======>             ]"  # 35 % of 20 cells
    assert len(progress_bar(1, 3)) == 23
    assert progress_bar(5, 0) == ""  # no total: the CLI draws no bar
    assert progress_bar(-5, 10) == "[>" + " " * 20 + "]"


def test_progress_counts() -> None:
    assert progress_counts(1_200_000, 3_400_000) == "   1.2MB/3.4MB"  # %8v/%v
    assert progress_counts(1_200_000, 3_400_000, pad=0) == "1.2MB/3.4MB"
    assert progress_counts(16_430_000, 27_100_000, pad=0) == "16.43MB/27.1MB"  # HumanSize: precision 4
    assert progress_counts(1_200_000, 0) == "   1.2MB"  # total unknown
    assert progress_counts(5_000_000, 3_400_000, pad=0) == "5MB"  # wonky total hidden
    assert progress_counts(0, 0) == ""
    assert progress_counts(3, 0, units="s") == "3 s"  # containerd "Extracting"
    assert progress_counts(3, 10, units="s") == "3/10 s"


def test_code_blocks_fit_slack_once_escaped_and_fenced() -> None:
    """Escaping (`<` -> `&lt;`) and broken fences make text longer: the chunks still fit."""
    from bot.render import mrkdwn
    from bot.render.messages import code_blocks

    text = "\n".join(["<none>   <none>   ```&```" * 20] * 40 + ["<" * 5000])
    blocks = code_blocks(text)
    for block in blocks:
        shown = block["text"]["text"]
        assert len(shown) <= 3000 and shown.startswith("```") and shown.endswith("```")
        assert shown.count("```") == 2 and "<" not in shown
    bodies = [mrkdwn.unescape(b["text"]["text"]).removeprefix("```").removesuffix("```") for b in blocks]
    shown_lines = [line for body in bodies for line in body.split("\n")]
    assert shown_lines[:40] == text.split("\n")[:40], "no row is cut (only the over-long last line is)"
    assert shown_lines[40].startswith("<<<") and shown_lines[40].endswith("…")


@given(st.text(alphabet=st.sampled_from("a <>&`\n…"), max_size=30), st.booleans())
def test_slack_len_is_the_length_slack_counts(text: str, with_mention: bool) -> None:
    """Escaped entities, broken fences and the bot's own live marks (whose markers Slack never sees)."""
    from bot.render import mrkdwn

    if with_mention:
        text = f"{text}{mrkdwn.live('<@U1>')}{text}"
    counted = len(mrkdwn.escape(text)) + 2 * text.count("```")  # a broken fence: two zero-width spaces
    assert mrkdwn.slack_len(text) == counted
