"""A stand-in SA for the IKE driver's tests (tests/ike, tests/net): only what the
driver loop touches, events to dispatch and datagrams to send."""

from __future__ import annotations

from dataclasses import dataclass, field

from vpnhub.ike import events as ev
from vpnhub.ike.sa import Datagram


@dataclass
class FakeSA:
    events: list[ev.Event] = field(default_factory=list)
    out: list[Datagram] = field(default_factory=list)

    def next_event(self) -> ev.Event | None:
        return self.events.pop(0) if self.events else None

    def datagrams_to_send(self) -> list[Datagram]:
        out, self.out = self.out, []
        return out
