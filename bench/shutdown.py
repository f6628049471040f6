"""Micro-benchmark of the concentrator's shutdown with many sessions (issue 13).

    .venv/bin/python bench/shutdown.py [--sessions 1000,10000] [--repeat 3] [--json FILE]

Two timings per number of sessions N, each repeated (median and range printed):

- ``core_shutdown_s``: ``ConcentratorCore.shutdown`` with N established sessions
  (real IKE SAs logged in through the in-process core rig of
  tests/concentrator/core_harness.py, simulated time, the fake data plane):
  every SA deleted, a DELETE to every client, every session ended and its
  address given back, the state record written.
- ``dataplane_remove_s``: a real ``Dataplane`` (in-memory TUN, a loopback UDP
  socket, no loop thread) holding N inbound and N outbound SAs (one /32 route
  and one peer per session) removes all 2N, as the shell's data-plane thread
  does with the RemoveSA commands of a shutdown.

Setting the sessions up (N handshakes) takes most of the run; only the two steps
above are timed.  ``--smoke``: N = 50, one run (tests/bench/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "concentrator"))  # the core rig

from common import summary  # noqa: E402
from core_harness import established_rig  # noqa: E402

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths  # noqa: E402
from vpnhub.ike.transitions import State  # noqa: E402
from vpnhub.net.dataplane import Dataplane, open_udp_socket  # noqa: E402
from vpnhub.net.messages import AddInbound, AddOutbound, RemoveSA  # noqa: E402
from vpnhub.net.tun import FakeTun  # noqa: E402


def time_core_shutdown(n: int) -> float:
    rig = established_rig(n)
    try:
        t0 = time.perf_counter()
        rig.core.shutdown(rig.now)
        elapsed = time.perf_counter() - t0
        rig.settle()  # the DELETEs reach the clients
        told = sum(pc.sa.state is State.DELETED for pc in rig.pcs)
        if told != n or rig.dp.inbound or rig.dp.outbound:
            raise SystemExit(f"shutdown: {told} of {n} clients told, "
                             f"{len(rig.dp.inbound) + len(rig.dp.outbound)} SAs left")
        return elapsed
    finally:
        rig.close()


def time_dataplane_remove(n: int) -> float:
    enc_len, integ_len = key_lengths(ESP_AES_CBC, 128, HMAC_SHA1_96)
    tun = FakeTun()
    udp = open_udp_socket("127.0.0.1", 0)
    dp = Dataplane(tun, udp=udp)
    try:
        for i in range(n):
            peer = (f"198.51.{100 + i // 250 % 14}.{i % 250 + 1}", 4500 + i // 3500)
            for spi in (0x1000_0000 + i, 0x2000_0000 + i):
                keys = SaParams.from_keymat(spi, ESP_AES_CBC, 128, HMAC_SHA1_96,
                                            os.urandom(enc_len + integ_len))
                dp.call(AddInbound(keys, peer) if spi < 0x2000_0000 else
                        AddOutbound(keys, peer, dst=f"10.40.{i // 256}.{i % 256}"))
        t0 = time.perf_counter()
        for i in range(n):
            dp.call(RemoveSA(0x1000_0000 + i))
            dp.call(RemoveSA(0x2000_0000 + i))
        elapsed = time.perf_counter() - t0
        if dp.stats_now().sas:
            raise SystemExit("data plane: SAs left after removing every SPI")
        return elapsed
    finally:
        dp.close()
        udp.close()
        tun.close()


def shown(s: dict[str, float] | None) -> str:
    return "-" if s is None else f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default="", help="write the results there too")
    parser.add_argument("--only", choices=("core", "dataplane"), default="",
                        help="time one of the two steps (setting up N sessions in the core"
                             " takes minutes at 10,000)")
    parser.add_argument("--smoke", action="store_true", help="N = 50, one run")
    parser.add_argument("--prefix", default="", help="ignored (the smoke runner passes it)")
    args = parser.parse_args(argv)
    sizes = [50] if args.smoke else [int(x) for x in args.sessions.split(",") if x]
    repeat = 1 if args.smoke else args.repeat
    results = []
    row = "{:>9} {:>26} {:>26}"
    print(row.format("sessions", "core.shutdown s (min-max)", "dataplane remove s"))
    for n in sizes:
        core = (summary([time_core_shutdown(n) for _ in range(repeat)])
                if args.only != "dataplane" else None)
        dp = (summary([time_dataplane_remove(n) for _ in range(repeat)])
              if args.only != "core" else None)
        results.append({"sessions": n, "runs": repeat, "core_shutdown_s": core,
                        "dataplane_remove_s": dp})
        print(row.format(n, shown(core), shown(dp)), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
