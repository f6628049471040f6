"""Numbers as an operator reads them: 1.2 MiB, 3.4 Mbit/s, 1 d 2 h 3 min (issue 15).

The pages show these and keep the exact value on hover (a title attribute);
the API always returns the exact values. Bytes use binary prefixes (IEC
80000-13: KiB = 1024 B), as the data plane's buffers and memory are counted;
rates use decimal prefixes in bits per second (kbit/s = 1000 bit/s), as link
speeds are quoted.
"""

from __future__ import annotations

_BYTE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")
_RATE_UNITS = (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3))
DAY = 86400


def count(n: int) -> str:
    """An integer with thousands grouped: 1234567 -> "1,234,567"."""
    return f"{int(n):,}"


def size(n: float) -> str:
    """Bytes: 512 -> "512 B", 1258291 -> "1.2 MiB" (one decimal from KiB up)."""
    value = float(n)
    if abs(value) < 1024:
        return f"{int(value)} B"
    for unit in _BYTE_UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def rate(bits_per_second: float) -> str:
    """A rate in bits per second: 3400000 -> "3.4 Mbit/s", 800 -> "800 bit/s"."""
    value = float(bits_per_second)
    for unit, div in _RATE_UNITS:
        if abs(value) >= div:
            return f"{value / div:.1f} {unit}"
    return f"{value:.0f} bit/s"


def byte_rate(bytes_per_second: float) -> str:
    """Bytes per second shown as bits per second."""
    return rate(8 * bytes_per_second)


def duration(seconds: float) -> str:
    """Seconds as the largest parts, zeros left out: 86400 -> "1 day", 93780 ->
    "1 d 2 h 3 min", 200 -> "3 min 20 s", 0 -> "0 s". From an hour up the seconds
    are dropped: nobody reads "1 d 2 h 3 min 4 s" for a session's age."""
    s = max(0, int(seconds))
    if s and s % DAY == 0:
        days = s // DAY
        return f"{days} day" if days == 1 else f"{days} days"
    d, rest = divmod(s, DAY)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(d, "d"), (hours, "h"), (minutes, "min")]
    if s < 3600:
        parts.append((secs, "s"))
    shown = [f"{n} {unit}" for n, unit in parts if n]
    return " ".join(shown) or "0 s"


def exact_seconds(seconds: float) -> str:
    """The exact value shown on hover: "86400 s"."""
    return f"{max(0, int(seconds))} s"


def exact_bytes(n: int) -> str:
    """The exact value shown on hover: "1,258,291 bytes"."""
    return f"{count(n)} bytes"
