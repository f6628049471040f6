"""The Status page's last hour: the counters /metrics exports, sampled into a ring (issue 15).

No second bookkeeping: `read` takes the very values `vpnhub.manager.metrics`
renders (the session tally by protocol, the data plane's ESP totals, the
handshake counts of the manager's IKE hook, the endpoint's half-open SAs and
both layers' drop counters) and `StatusRing.add` stores them. The ring is
fixed-size: one `array` per series, KEEP slots (one sample every
STATUS_EVERY seconds, an hour), so memory does not grow with time or with
sessions: 8 arrays (the times, 7 series) of 360 x 8 bytes, ~23 KiB, plus
one array per drop reason that has happened (~100 KiB in all with the 23 that
/metrics knows; bench/status_ring.py). A sample is ~14 us of CPU.

`history` answers GET /api/v1/status/history: the sampled gauges as they
were, and the counters as rates per interval (bits per second, handshakes per
second, drops per interval), so the browser draws them without arithmetic
on counters that may have been reset.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Protocol

STATUS_EVERY = 10.0  # seconds between two samples
KEEP = 360  # an hour of samples

GAUGES = ("sessions", "half_open")
COUNTERS = ("rx_bytes", "tx_bytes", "handshakes_completed", "handshakes_failed",
            "handshakes_started")


@dataclass(frozen=True)
class Reading:
    """The values of one sample: gauges as they are, counters as running totals."""

    sessions: int = 0
    half_open: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    handshakes_completed: int = 0
    handshakes_failed: int = 0
    handshakes_started: int = 0
    drops: Mapping[str, int] = field(default_factory=dict)  # "layer/reason" -> total


class _Endpoint(Protocol):
    @property
    def drops(self) -> Mapping[str, int]: ...

    def half_open_count(self) -> int: ...


def read(view: Any) -> Reading:
    """What /metrics would export now (vpnhub.manager.metrics.render reads the same)."""
    endpoint: _Endpoint = view.conc.endpoint
    totals = view.snapshot.esp_totals
    hs = view.handshakes
    drops = {f"ike/{r}": int(n) for r, n in endpoint.drops.items() if n}
    drops.update({f"esp/{r}": int(n) for r, n in view.snapshot.drops_total.items() if n})
    return Reading(
        sessions=sum(view.tally.by_protocol.values()), half_open=endpoint.half_open_count(),
        rx_bytes=int(totals.bytes_in), tx_bytes=int(totals.bytes_out),
        handshakes_completed=int(hs.completed), handshakes_failed=sum(hs.failed.values()),
        handshakes_started=int(hs.started), drops=drops)


def _zeros(n: int) -> array[int]:
    return array("q", bytes(8 * n))


class StatusRing:
    """The last `keep` Readings, oldest overwritten; arrays, no object per sample."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self.taken = 0  # samples added since start (the ETag of `history`)
        self._times = array("d", bytes(8 * keep))
        self._series = {name: _zeros(keep) for name in (*GAUGES, *COUNTERS)}
        # a drop reason gets its array at its first non-zero total; the slots before
        # hold 0, which is what it was (a total never seen is 0)
        self._drops: dict[str, array[int]] = {}
        self._body: tuple[int, bytes] = (-1, b"")  # history() as JSON, for one `taken`

    def __len__(self) -> int:
        return min(self.taken, self.keep)

    def add(self, now: float, r: Reading) -> None:
        """Store `r`, taken at `now` (wall clock, seconds)."""
        pos = self.taken % self.keep
        self._times[pos] = now
        for name, values in self._series.items():
            values[pos] = getattr(r, name)
        for reason, arr in self._drops.items():
            arr[pos] = r.drops.get(reason, 0)  # `read` leaves out the zeros
        for reason, n in r.drops.items():
            if reason not in self._drops:
                arr = self._drops[reason] = _zeros(self.keep)
                arr[pos] = n
        self.taken += 1

    def _order(self) -> list[int]:
        """The slots of the stored samples, oldest first."""
        n = len(self)
        start = self.taken - n
        return [(start + i) % self.keep for i in range(n)]

    def history_json(self) -> bytes:
        """`history()` encoded, built once per sample: every open Status page asks for
        it after each sample, and it costs ~4 ms (bench/status_ring.py)."""
        taken, body = self._body
        if taken != self.taken:
            body = json.dumps(self.history(), separators=(",", ":")).encode()
            self._body = (self.taken, body)
        return body

    def history(self) -> dict[str, Any]:
        """The JSON of GET /api/v1/status/history (docs/openapi.yaml StatusHistory)."""
        slots = self._order()
        times = [self._times[i] for i in slots]
        out: dict[str, Any] = {"interval": STATUS_EVERY, "keep": self.keep,
                               "samples": self.taken, "times": [round(t, 1) for t in times]}
        for name in GAUGES:
            values = self._series[name]
            out[name] = [values[i] for i in slots]
        out["rx_bps"] = _rates(self._series["rx_bytes"], slots, times, 8)
        out["tx_bps"] = _rates(self._series["tx_bytes"], slots, times, 8)
        out["handshakes_per_s"] = _rates(self._series["handshakes_completed"], slots, times)
        out["handshake_failures_per_s"] = _rates(self._series["handshakes_failed"], slots,
                                                 times)
        drops: dict[str, list[int | None]] = {}
        # until the ring wraps its oldest sample is the first one, taken a tick after the
        # manager (and its counters) started: its drops are those since start, which
        # the table of values now counts too
        since_start = self.taken <= self.keep
        for reason, arr in sorted(self._drops.items()):
            steps = _deltas(arr, slots, since_start)
            if any(steps):  # a reason with no drop in the window is not sent
                drops[reason] = steps
        out["drops"] = drops
        return out


def _deltas(values: array[int], slots: list[int], since_start: bool = False,
            ) -> list[int | None]:
    """Increase from the sample before (the first: None, or its value if `since_start`;
    a counter that went down, a data plane restarted, counts as no increase)."""
    out: list[int | None] = [(values[slots[0]] if since_start else None)] if slots else []
    for a, b in pairwise(slots):
        out.append(max(0, values[b] - values[a]))
    return out


def _rates(values: array[int], slots: list[int], times: list[float],
           scale: int = 1) -> list[float | None]:
    """Increase per second between consecutive samples, times `scale` (8: bits)."""
    out: list[float | None] = []
    for i, step in enumerate(_deltas(values, slots)):
        dt = times[i] - times[i - 1] if i else 0.0
        out.append(None if step is None or dt <= 0 else round(step * scale / dt, 2))
    return out
