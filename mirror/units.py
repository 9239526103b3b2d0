"""Sizes and durations as people read them, for chat answers and the sentences of errors."""

from __future__ import annotations

from datetime import UTC, datetime

_UNITS = ("B", "KB", "MB", "GB", "TB")


def human_bytes(n: float) -> str:
    """Decimal units, as registries and ``docker images`` show sizes."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_seconds(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def utc_clock(when: datetime, now: datetime | None = None) -> str:
    """``14:05 UTC``, with the date when it is not today (a limit lifting tomorrow)."""
    when = when.astimezone(UTC)
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    return when.strftime("%H:%M UTC" if when.date() == today else "%Y-%m-%d %H:%M UTC")
