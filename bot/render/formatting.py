"""Text formatting that reproduces what the docker CLI prints.

Users compare the bot's replies with `docker images` / `docker pull` output,
so sizes, ages, IDs and tables follow the CLI's Go code exactly:

- sizes: docker/go-units v0.5.0 `HumanSizeWithPrecision` (`size.go`)
- ages: docker/go-units v0.5.0 `HumanDuration` (`duration.go`), the version the
  CLI vendors; the rounding change proposed in go-units#51 / docker/cli#6891 is
  not merged, so days/weeks/months/years still truncate
- IDs: moby `stringid.TruncateID`
- truncation: docker/cli `formatter.Ellipsis` (`displayutils.go`)
- tables: the CLI's `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`
- pull progress: moby `client/pkg/jsonmessage` `JSONProgress.String`
"""

from __future__ import annotations

import math
import time
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = [
    "created_since",
    "display_width",
    "ellipsis",
    "format_table",
    "human_count",
    "human_duration",
    "human_size",
    "human_size_4",
    "progress_bar",
    "progress_counts",
    "short_id",
]

_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")

# time.Time{}.Unix(): the CLI prints N/A only for Go's zero time (year 1),
# which is what `time.Unix(created, 0).IsZero()` tests.
_GO_ZERO_TIME_UNIX = -62135596800
_MAX_DURATION_NS = 2**63 - 1  # Go's time.Sub saturates at math.MaxInt64 ns.

_NS_PER_SECOND = 1_000_000_000
_NS_PER_MINUTE = 60 * _NS_PER_SECOND
_NS_PER_HOUR = 60 * _NS_PER_MINUTE


def _go_float(value: float, precision: int) -> str:
    """Go's fmt `%.*g`: Python's `g` has the same rules (exponent once the
    exponent reaches the precision, two-digit `e+03`, trailing zeros dropped,
    round-half-even on the exact binary value); only non-finite values differ."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.{max(precision, 0)}g}"


def human_size(size: float, precision: int = 3) -> str:
    """go-units `HumanSizeWithPrecision`: decimal units, no space.

    precision 3 is the `docker images` SIZE column; precision 4
    (`human_size_4`) is `units.HumanSize`, used for `Total reclaimed space`,
    `docker system df` and pull progress counts. The divide loop stops once the
    value is below 1000, but rounding can still reach 1000 afterwards, which
    `%g` prints in exponent form: 999_500 -> "1e+03kB", exactly as the CLI.
    """
    size = float(size)
    unit = 0
    # Negative sizes never divide (the loop tests size >= 1000), as in Go.
    while size >= 1000.0 and unit < len(_SIZE_UNITS) - 1:
        size /= 1000.0
        unit += 1
    return _go_float(size, precision) + _SIZE_UNITS[unit]


def human_size_4(size: float) -> str:
    """go-units `HumanSize` (precision 4), e.g. "16.43MB"."""
    return human_size(size, 4)


def human_duration(seconds: float) -> str:
    """go-units v0.5.0 `HumanDuration`, without the " ago" suffix.

    Go works on integer nanoseconds, so the value is converted first and the
    float steps mirror `Duration.Hours()`. Hours are rounded
    (`int(d.Hours()+0.5)`), then days/weeks/months are integer divisions of
    those rounded hours while years use the unrounded hours; hence
    729d23h30m prints "1 years" in the CLI too.
    """
    ns = min(round(seconds * _NS_PER_SECOND), _MAX_DURATION_NS)
    if ns < _NS_PER_SECOND:  # int(d.Seconds()) < 1, negatives included
        return "Less than a second"
    secs = ns // _NS_PER_SECOND
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = ns // _NS_PER_MINUTE
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    # Duration.Hours(): whole hours plus the remainder as a fraction.
    exact_hours = float(ns // _NS_PER_HOUR) + float(ns % _NS_PER_HOUR) / (60 * 60 * 1e9)
    hours = int(exact_hours + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(exact_hours) // 24 // 365} years"


def created_since(created_unix: float | None, now: float | None = None) -> str:
    """The CLI's CREATED column: `HumanDuration(now - created) + " ago"`.

    "N/A" when there is no timestamp. Note that the CLI prints N/A only for
    Go's zero time; Created == 0 (epoch, used by reproducible builds such as
    ko, Bazel or Nix) is a real date and prints "56 years ago", as here.
    """
    if created_unix is None or created_unix <= _GO_ZERO_TIME_UNIX:
        return "N/A"
    if now is None:
        now = time.time()
    return human_duration(now - created_unix) + " ago"


def in_zone(moment: datetime, zone: str) -> str:
    """A schedule's moment in the schedule's own time zone, the one its author gave (`--tz`)."""
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def short_id(image_id: str) -> str:
    """moby `stringid.TruncateID`: drop through the first ":" (the
    "sha256:" algorithm prefix), then keep at most 12 characters."""
    _, sep, rest = image_id.partition(":")
    return (rest if sep else image_id)[:12]


def _ellipsis_cell_width(char: str) -> int:
    # cli's charWidth (golang.org/x/text/width): only East Asian Wide and
    # Fullwidth count as 2; everything else, combining marks included, is 1.
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def ellipsis(text: str, width: int) -> str:
    """docker/cli `formatter.Ellipsis`: fit `text` into `width` display cells,
    ending in "…" when cut; `docker search` uses width 45, i.e. 44 chars + "…".

    Matches Go exactly except where Go gives up: when the first character is
    itself wider than width - 1, Go returns the whole untruncated string;
    here it returns "…" so a table column keeps its width.
    """
    if width <= 0 or not text:
        return ""
    if width == 1:
        return text[0]  # Go returns the first rune even if it is wide
    if text.isascii():  # every ASCII character is one cell: the common case, without a lookup each
        return text if len(text) <= width else text[: width - 1] + "…"
    widths = [_ellipsis_cell_width(c) for c in text]
    if sum(widths) <= width:
        return text
    used = 0
    keep = 0
    for cell in widths:
        if used + cell > width - 1:  # leave one cell for "…"
            break
        used += cell
        keep += 1
    return text[:keep] + "…"


def human_count(n: int) -> str:
    """Docker Hub style counts: 1200 -> "1.2K", 13114222271 -> "13.1B".

    One decimal, rounded half up with integer arithmetic (no float error on
    large pull counts), ".0" dropped, and a value that rounds to 1000 moves to
    the next unit (999_999 -> "1M", not "1000K").
    """
    sign = "-" if n < 0 else ""
    n = abs(int(n))
    if n < 1000:
        return f"{sign}{n}"
    for scale, suffix in ((10**3, "K"), (10**6, "M"), (10**9, "B"), (10**12, "T")):
        tenths = (n * 20 + scale) // (2 * scale)  # round(n / scale, 1) * 10, half up
        if tenths < 10_000 or suffix == "T":
            whole, frac = divmod(tenths, 10)
            return f"{sign}{whole}{'.' + str(frac) if frac else ''}{suffix}"
    raise AssertionError("unreachable")  # pragma: no cover


def display_width(text: str) -> int:
    """Terminal cells, as go-runewidth counts them for the CLI's tabwriter:
    East Asian Wide/Fullwidth (CJK, most emoji) = 2, combining and control
    characters = 0, everything else (including "…") = 1."""
    total = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf", "Cc"):
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


def _clean_cell(cell: str) -> str:
    # A tab or newline inside a cell would break the columns; the CLI
    # replaces newlines with spaces in the same spirit for search results.
    return cell.replace("\r\n", " ").replace("\n", " ").replace("\r", " ").replace("\t", " ")


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    gap: int = 3,
    min_width: int = 10,
) -> str:
    """Left-aligned columns like the CLI's `tabwriter.NewWriter(out, 10, 1, 3,
    ' ', 0)`: every column but the last is padded to
    max(min_width, widest cell + gap) display cells; the last column is not
    padded. Trailing spaces (left by an empty last cell) are stripped, since
    Slack code blocks gain nothing from them. No trailing newline.
    """
    lines = [list(map(str, row)) for row in [headers, *rows]]
    ncols = max(map(len, lines), default=0)
    if ncols == 0:
        return ""
    for line in lines:
        if len(line) < ncols:
            line.extend([""] * (ncols - len(line)))
    everything = "".join(map("".join, lines))
    if not everything.isprintable():  # a tab or newline somewhere: clean every cell
        lines = [list(map(_clean_cell, line)) for line in lines]
        everything = "".join(map("".join, lines))
    columns = list(zip(*lines, strict=True))[:-1]
    # Plain ASCII (every name the engine can hold) is one cell per character: one format string pads a
    # whole line, ~10x faster on 10,000 rows than a cell at a time.
    if everything.isascii() and everything.isprintable():
        widths = [max(min_width, max(map(len, column)) + gap) for column in columns]
        line_format = "".join(f"{{:<{w}}}" for w in widths) + "{}"
        return "\n".join(line_format.format(*line).rstrip() for line in lines)
    widths = [max(min_width, max(map(display_width, column)) + gap) for column in columns]
    out = []
    for line in lines:
        parts = [cell + " " * (widths[i] - display_width(cell)) for i, cell in enumerate(line[:-1])]
        parts.append(line[-1])
        out.append("".join(parts).rstrip())
    return "\n".join(out)


def progress_bar(current: int, total: int, width: int = 20) -> str:
    """The `[====>   ]` bar of jsonmessage `JSONProgress.String`.

    `width` is the number of "="/space cells; the ">" head comes on top, so
    the result is width + 3 characters and `progress_bar(c, t, 50)` is the
    CLI's bar exactly (minus its trailing space). Like Go, the filled part is
    int(percent) scaled down (Go: int(current/total*100) / 2 for 50 cells),
    clamped to the bar. Returns "" when total <= 0 (the CLI draws no bar).
    """
    if total <= 0 or width <= 0:
        return ""
    percent = int(float(current) / float(total) * 100)
    filled = min(max(percent * width // 100, 0), width)
    return "[" + "=" * filled + ">" + " " * (width - filled) + "]"


def progress_counts(current: int, total: int, units: str = "", pad: int = 8) -> str:
    """The counts after the bar, jsonmessage `%8v/%v` with `units.HumanSize`.

    - total <= 0: only the current value ("" if that is <= 0 too)
    - current > total: only the current value (the CLI hides a wonky total)
    - `units` set (containerd's "Extracting" sends {"current": 3, "units": "s"}):
      plain integers, "3/10 s" or "3 s", as the CLI prints them
    `pad` is Go's `%8v` right-alignment of the current value; pass 0 to get
    the bare "1.2MB/3.4MB".
    """
    if current <= 0 and total <= 0:
        return ""
    if units:
        if total <= 0 or current > total:
            return f"{current} {units}"
        return f"{current}/{total} {units}"
    cur = human_size_4(current).rjust(pad)
    if total <= 0 or current > total:
        return cur
    return f"{cur}/{human_size_4(total)}"
