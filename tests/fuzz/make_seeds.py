"""Write the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/).

    PYTHONPATH=. python tests/fuzz/make_seeds.py

endpoint: complete exchanges of a vpnhub initiator (Aggressive and Main
Mode, several suites, behind a PAT so NAT-T floats to 4500) recorded against
the fuzz target's own deterministic responder (`fuzz_endpoint.Responder`):
replayed, they reach ESTABLISHED, XAUTH, Mode Config and Quick Mode, so
mutations start from deep states. Plus vpnc 0.5.3's Aggressive Mode
message 1 (tests/wire/data, rebuilt from a `vpnc --debug 3` trace of the
lab) and strongSwan's (corpus/endpoint/strongswan-*, captured once from
charon 5.9 in the lab, see corpus/README.md).
codec: every message of the above, and the vpnc trace's decrypted bodies.
dataplane: see fuzz_dataplane.seeds().
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fuzz_client  # noqa: E402
import fuzz_dataplane  # noqa: E402
from fuzz_client import SUITES  # noqa: E402
from fuzz_endpoint import (  # noqa: E402
    CLIENT_500,
    CLIENT_4500,
    OP_ADVANCE,
    OP_FROM_500,
    OP_FROM_4500,
    SERVER_IP,
    DetRng,
    Responder,
    deterministic_dh,
)
from records import join  # noqa: E402

from vpnhub.ike.sa import IkeSA  # noqa: E402
from vpnhub.ike.transitions import Role  # noqa: E402

CORPUS = HERE / "corpus"
WIRE_DATA = HERE.parent / "wire" / "data"


def record_exchange(mode: str, suite: str, *, dpd_and_delete: bool = True,
                    ) -> tuple[bytes, list[bytes], bytes]:
    """(the endpoint seed, every message both sides sent, the client seed) of one run."""
    r = Responder()
    records: list[tuple[int, bytes]] = []
    messages: list[bytes] = []
    client_rng = DetRng(b"initiator")  # not the responder's stream
    cfg = fuzz_client.client_config(mode, suite, client_rng)
    # the client target's records: its configuration, then what it received and
    # when its driver ran (fuzz_client.run replays exactly that)
    to_client: list[tuple[int, bytes]] = [(fuzz_client.CONFIGS.index((mode, suite)), b"")]
    with deterministic_dh(r.rng):
        with deterministic_dh(client_rng):
            client = IkeSA(cfg, Role.INITIATOR, (SERVER_IP, 500), r.now)
            client.initiate(r.now)

        def pump() -> None:
            for _ in range(50):
                out = client.datagrams_to_send()
                to_client.append((fuzz_client.OP_DRIVE, b""))
                with deterministic_dh(client_rng):
                    fuzz_client.drive(client, r.now)
                out += client.datagrams_to_send()
                if not out:
                    return
                for d in out:
                    op = OP_FROM_4500 if d.local_port == 4500 else OP_FROM_500
                    records.append((op, d.data))
                    messages.append(d.data)
                    src = CLIENT_4500 if op == OP_FROM_4500 else CLIENT_500
                    for reply in r.deliver(d.data, src, d.remote[1]):
                        messages.append(reply.data)
                        local = 4500 if reply.remote == CLIENT_4500 else 500
                        to_client.append((fuzz_client.OP_FROM_4500 if local == 4500
                                          else fuzz_client.OP_FROM_500, reply.data))
                        with deterministic_dh(client_rng):
                            client.receive(reply.data, (SERVER_IP, reply.local_port), local,
                                           r.now)

        pump()
        if dpd_and_delete:
            # 40 s later the responder's DPD probe goes out; the client answers it
            records.append((OP_ADVANCE, (40).to_bytes(2, "big")))
            for probe in r.advance(40):
                messages.append(probe.data)
                to_client.append((fuzz_client.OP_FROM_4500, probe.data))
                with deterministic_dh(client_rng):
                    client.receive(probe.data, (SERVER_IP, 4500), 4500, r.now)
            pump()
            client.delete(r.now)
            pump()
    return join(records), messages, join(to_client)


def endpoint_seeds() -> dict[str, bytes]:
    seeds: dict[str, bytes] = {}
    for name in SUITES:
        for mode in ("aggressive", "main"):
            seed, _, _ = record_exchange(mode, name)
            seeds[f"vpnhub-{mode}-{name}"] = seed
    vpnc_msg1 = (WIRE_DATA / "01_send_aggressive_msg.bin").read_bytes()
    seeds["vpnc-aggressive-msg1"] = join([(OP_FROM_500, vpnc_msg1)])
    for f in sorted((CORPUS / "endpoint").glob("strongswan-*")):
        seeds[f.name] = f.read_bytes()
    return seeds


def codec_seeds() -> dict[str, bytes]:
    """Selector byte 0 (whole message) or 1 (payload chain), see fuzz_codec."""
    seeds: dict[str, bytes] = {}
    for name in SUITES:
        for mode in ("aggressive", "main"):
            _, messages, _ = record_exchange(mode, name)
            for i, m in enumerate(messages):
                seeds[f"vpnhub-{mode}-{name}-{i:02d}"] = b"\x00" + m
    for f in sorted(WIRE_DATA.glob("*.bin")):
        data = f.read_bytes()
        seeds[f"vpnc-{f.stem}"] = b"\x00" + data
        # the decrypted bodies: as a payload chain (first payload type from the header)
        seeds[f"vpnc-{f.stem}-chain"] = b"\x01" + bytes([data[16], 1]) + data[28:]
    return seeds


def client_seeds() -> dict[str, bytes]:
    return {f"vpnhub-{mode}-{name}": record_exchange(mode, name)[2]
            for name in SUITES for mode in ("aggressive", "main")}


def write(target: str, seeds: dict[str, bytes]) -> int:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (d / name).write_bytes(data)
    return len(seeds)


def main() -> None:
    n = write("endpoint", endpoint_seeds())
    n += write("codec", codec_seeds())
    n += write("dataplane", fuzz_dataplane.seeds())
    n += write("client", client_seeds())
    print(f"{n} seeds written under {CORPUS}")
    for f in sorted(CORPUS.rglob("*")):
        if f.is_file() and f.suffix != ".md":
            print(f"  {f.relative_to(CORPUS)}  {len(f.read_bytes())} bytes"
                  f"  {hashlib.sha256(f.read_bytes()).hexdigest()[:12]}")


if __name__ == "__main__":
    main()
