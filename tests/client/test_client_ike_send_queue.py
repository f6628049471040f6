"""The client's IKE messages wait for a full send buffer too (issue 11, 7a).

UDP 500 is one end of a unix datagram socketpair whose reader has not read
yet: sendto gets EAGAIN as on a UDP socket with a full send buffer.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from types import SimpleNamespace

from socket_fakes import FullSocket

from vpnhub.client.driver import Options, VpnClient
from vpnhub.ike.sa import Datagram
from vpnhub.ike.transport import Transport
from vpnhub.net.asyncdriver import AsyncIkeDriver
from vpnhub.secret import Secret

SERVER = ("203.0.113.50", 500)


class FakeSA:
    def __init__(self, out: list[Datagram]) -> None:
        self.out = out

    def datagrams_to_send(self) -> list[Datagram]:
        out, self.out = self.out, []
        return out

    def next_event(self) -> None:
        return None


def test_client_ike_waits_for_the_socket_and_goes_out(tmp_path: Path) -> None:
    said: list[str] = []
    profile = SimpleNamespace(host=SERVER[0], port=500, transparent_tunneling=True,
                              tunnel_interface="vhtun9")
    client = VpnClient(profile, Options(user="u", password=Secret("p"),  # type: ignore[arg-type]
                                        print=said.append))
    client.mode = "natt"
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (ours, peer):
        s.setblocking(False)

    async def main() -> list[bytes]:
        client.sock500 = FullSocket(ours)  # type: ignore[assignment]
        while True:  # fill the socket until the kernel says EAGAIN
            try:
                ours.send(b"f" * 1024)
            except BlockingIOError:
                break
        # through the client's IKE driver, as its SAs' datagrams go out
        client.ike = AsyncIkeDriver(client.table, client._on_event, client._senders(),
                                    on_error=client._on_fault)
        client.ike.service(FakeSA([Datagram(b"DPD ack %d" % i, SERVER, 500,  # type: ignore[arg-type]
                                            Transport.IKE) for i in range(3)]))
        got: list[bytes] = []
        for _ in range(200):
            while True:
                try:
                    got.append(peer.recv(65536))
                except BlockingIOError:
                    break
            await asyncio.sleep(0.005)
            if sum(1 for g in got if g.startswith(b"DPD ack")) == 3:
                break
        getattr(client, "_close_send_queues", lambda: None)()  # (absent before the fix)
        return got

    try:
        got = asyncio.run(main())
    finally:
        ours.close()
        peer.close()
    assert [g for g in got if g.startswith(b"DPD ack")] == [b"DPD ack 0", b"DPD ack 1",
                                                            b"DPD ack 2"], said
    assert not [s for s in said if "cannot send" in s], said
