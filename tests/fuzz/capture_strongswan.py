"""Capture strongSwan's IKEv1 Aggressive Mode first message as fuzz seeds (run once, root).

    PYTHONPATH=.:tests python tests/fuzz/capture_strongswan.py

Builds a one-client lab (network namespaces, its own prefix), listens on UDP
500 of the concentrator's address with a plain socket (no responder: only
the first message is wanted; its retransmissions are ignored), and lets
charon 5.9 as the lab's XAUTH client initiate twice: with IKE fragmentation
"yes" (one datagram) and "force" (the first message in FRAGMENT payloads).
Writes corpus/endpoint/strongswan-* (records, see records.py) and
corpus/codec/strongswan-* (selector byte 0 + message / fragment).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from netns_util import unique_prefix  # noqa: E402
from records import join  # noqa: E402

from vpnhub.lab import peers  # noqa: E402
from vpnhub.lab.topology import CONC_PUBLIC, Topology  # noqa: E402

LISTENER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(({addr!r}, 500))
s.settimeout(1.0)
end = time.time() + {seconds}
n = 0
while time.time() < end:
    try:
        data, src = s.recvfrom(65535)
    except socket.timeout:
        continue
    n += 1
    open({out!r} + f"/{{n:02d}}.bin", "wb").write(data)
"""


def capture(topo: Topology, frag: str, out: Path) -> list[bytes]:
    out.mkdir(parents=True, exist_ok=True)
    script = LISTENER.format(addr=CONC_PUBLIC, seconds=8, out=str(out))
    listener = topo.spawn(topo.conc, [sys.executable, "-c", script], out / "listener.log")
    time.sleep(0.5)
    charon = peers.start_strongswan_client(topo, topo.clients[0], fragmentation=frag,
                                           fragment_size=256)
    try:
        charon.initiate(timeout=3)
    finally:
        charon.stop()
        listener.stop(10)
    return [p.read_bytes() for p in sorted(out.glob("*.bin"))]


def main() -> None:
    prefix = unique_prefix()
    with Topology(prefix, clients=1, run_dir=Path("/tmp") / f"capture-{prefix}") as topo:
        whole = capture(topo, "yes", topo.run_dir / "yes")
        frags = capture(topo, "force", topo.run_dir / "force")
    if not whole or not frags:
        sys.exit(f"nothing captured: {len(whole)} / {len(frags)} datagrams")
    first = whole[0]
    # fragments of the first transmission: up to and including the LAST_FRAGMENT flag
    pieces = []
    for d in frags:
        pieces.append(d)
        if len(d) > 35 and d[35] & 1:  # FRAGMENT payload flags: LAST_FRAGMENT
            break
    ep, codec = HERE / "corpus" / "endpoint", HERE / "corpus" / "codec"
    (ep / "strongswan-aggressive-msg1").write_bytes(join([(0, first)]))
    (ep / "strongswan-aggressive-msg1-fragments").write_bytes(join([(0, p) for p in pieces]))
    (codec / "strongswan-aggressive-msg1").write_bytes(b"\x00" + first)
    for i, p in enumerate(pieces):
        (codec / f"strongswan-aggressive-msg1-fragment-{i}").write_bytes(b"\x00" + p)
    print(f"strongSwan message 1: {len(first)} bytes; forced fragments: "
          f"{[len(p) for p in pieces]}")


if __name__ == "__main__":
    main()
