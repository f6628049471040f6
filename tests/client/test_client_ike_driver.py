"""The client's IKE events go through the one driver: a handler's verdict ends the
connection with its exit code, a handler's bug with EXIT_PEER, and the loop goes on."""

from __future__ import annotations

import asyncio
import ipaddress
from types import SimpleNamespace

from driver_fakes import FakeSA

from vpnhub.client.driver import EXIT_NAT, EXIT_PEER, MAX_REDIRECTS, Options, VpnClient
from vpnhub.ike import events as ev
from vpnhub.net.asyncdriver import AsyncIkeDriver
from vpnhub.secret import Secret


def _client(said: list[str]) -> VpnClient:
    profile = SimpleNamespace(host="203.0.113.50", port=500, transparent_tunneling=True,
                              tunnel_interface="vhtun9")
    client = VpnClient(profile, Options(user="u", password=Secret("p"),  # type: ignore[arg-type]
                                        print=said.append))
    client.mode = "natt"
    return client


def _dispatch(client: VpnClient, events: list[ev.Event]) -> None:
    async def main() -> None:
        client._stop_conn = asyncio.Event()
        client.ike = AsyncIkeDriver(client.table, client._on_event, client._senders(),
                                    on_error=client._on_fault)
        client.ike.service(FakeSA(events))  # type: ignore[arg-type]
        client.ike.close()

    asyncio.run(main())


def test_nat_without_natt_ends_the_connection_with_exit_nat_and_says_why() -> None:
    said: list[str] = []
    client = _client(said)
    _dispatch(client, [ev.NatTraversalRefused("behind a NAT, NAT-T off at the concentrator"),
                       ev.LogLine("IKE", 3, "after the verdict")])
    assert client._result is not None and client._result.code == EXIT_NAT
    assert client.status.diagnosis == "behind a NAT, NAT-T off at the concentrator"
    assert any("after the verdict" in s for s in said)  # the next event still came


def test_a_handler_bug_is_an_internal_error_with_exit_peer() -> None:
    client = _client([])
    _dispatch(client, [ev.ModeConfigReceived(ev.ModeConfig())])  # no address: cannot be
    assert client._result is not None and client._result.code == EXIT_PEER
    assert str(client._result).startswith("internal error handling ModeConfigReceived:")


def test_redirects_are_followed_at_most_max_redirects_times_in_a_row() -> None:
    """Issue 17: each load-balancing redirect is said, shown in the status and
    followed (a new phase 1 at the member); one more than MAX_REDIRECTS ends the
    connection with a clear error instead of going round a loop."""
    said: list[str] = []
    client = _client(said)
    started: list[str] = []
    client._start_at = started.append  # type: ignore[method-assign]
    fake = FakeSA([ev.RedirectRequested(ipaddress.IPv4Address(f"198.51.100.{10 + n}"))
                   for n in range(MAX_REDIRECTS + 1)])
    fake.replaces = None  # type: ignore[attr-defined]
    client.sa = fake  # type: ignore[assignment]

    async def main() -> None:
        client._stop_conn = asyncio.Event()
        client.ike = AsyncIkeDriver(client.table, client._on_event, client._senders(),
                                    on_error=client._on_fault)
        client.ike.service(fake)  # type: ignore[arg-type]
        client.ike.close()

    asyncio.run(main())
    assert started == [f"198.51.100.{10 + n}" for n in range(MAX_REDIRECTS)]
    first = "redirected by the concentrator to 198.51.100.10 (load balancing)"
    assert first in said and client.status.redirects[0] == first
    assert client._result is not None and client._result.code == EXIT_PEER
    assert f"redirected {MAX_REDIRECTS + 1} times in a row" in str(client._result)
