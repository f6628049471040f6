"""Fuzz target (d): the IKE initiator (the vpnhub client) fed a hostile concentrator.

Until phase 1 is authenticated the client has no reason to trust what comes
back from "the concentrator" (an attacker on the path, or a rogue server);
this target is the endpoint target turned round. One input: record 0's op
picks the client's configuration (mode x suite, `CONFIGS`), the rest are
datagrams from the server on 500 or 4500, from another source, clock
advances (then the client's timers run) and "drive" points where the
client's driver answers its events (XAUTH login, Quick Mode after Mode
Config), as the recorded exchanges had them (`make_seeds.py` records the
concentrator's answers to this very client: everything random in it is
drawn from a generator reset per input, as in fuzz_endpoint).

Invariants as in fuzz_endpoint: nothing escapes, no catch-all fires.
"""

from __future__ import annotations

from fuzz_endpoint import (
    GROUP,
    PSK,
    SERVER_IP,
    START,
    USERS,
    DetRng,
    InvariantViolation,
    deterministic_dh,
)
from records import split

from vpnhub.ike import events as ev
from vpnhub.ike.policy import Policy
from vpnhub.ike.sa import Address, IkeConfig, IkeSA
from vpnhub.ike.transitions import Role
from vpnhub.secret import Secret
from vpnhub.wire.constants import EspTransform, IkeEncr, IkeHash, IPsecAuth

SUITES: dict[str, Policy] = {
    "aes256-sha256-g14": Policy(),
    "aes128-sha1-g2": Policy(dh_group=2, allow_legacy=True,
                             ike_encryptions=((IkeEncr.AES_CBC, 128),),
                             ike_hashes=(IkeHash.SHA,),
                             esp_ciphers=((EspTransform.AES_CBC, 128),),
                             esp_auths=(IPsecAuth.HMAC_SHA,)),
    "3des-md5-g2-pfs": Policy(dh_group=2, allow_legacy=True, pfs_group=2,
                              ike_encryptions=((IkeEncr.TRIPLE_DES_CBC, 0),),
                              ike_hashes=(IkeHash.MD5,),
                              esp_ciphers=((EspTransform.TRIPLE_DES, 0),),
                              esp_auths=(IPsecAuth.HMAC_MD5,)),
    "gcm-ecp256": Policy(dh_group=19, esp_ciphers=((EspTransform.AES_GCM_16, 128),)),
}
CONFIGS: list[tuple[str, str]] = [(mode, suite) for suite in SUITES
                                  for mode in ("aggressive", "main")]
SERVER_500: Address = (SERVER_IP, 500)
SERVER_4500: Address = (SERVER_IP, 4500)
OTHER: Address = ("198.51.100.7", 500)
OP_FROM_500, OP_FROM_4500, OP_FROM_OTHER, OP_ADVANCE, OP_DRIVE = range(5)


def client_config(mode: str, suite: str, rng: DetRng) -> IkeConfig:
    return IkeConfig(local_address="10.10.10.2", policy=SUITES[suite], mode=mode,
                     group_name=GROUP, psk=Secret(PSK), natt=True, xauth=True, rng=rng,
                     log_severity=9)


def drive(client: IkeSA, now: float) -> None:
    """The client driver's answers (vpnhub.client does the same)."""
    while (e := client.next_event()) is not None:
        if isinstance(e, ev.LogLine) and "internal error" in e.text:
            raise InvariantViolation(e.text)
        if isinstance(e, ev.XauthRequested):
            client.xauth_reply("vpnclient1", Secret(USERS["vpnclient1"]), now)
        elif isinstance(e, ev.ModeConfigReceived):
            client.start_quick_mode(now)
    if client.drops["internal_error"]:
        raise InvariantViolation(f"internal_error drop: {dict(client.drops)}")


def run(data: bytes) -> IkeSA | None:
    records = list(split(data))
    if not records:
        return None
    mode, suite = CONFIGS[records[0][0] % len(CONFIGS)]
    rng, now = DetRng(b"initiator"), START
    with deterministic_dh(rng):
        client = IkeSA(client_config(mode, suite, rng), Role.INITIATOR, SERVER_500, now)
        client.initiate(now)
        for op, body in records[1:]:
            kind = op % 5
            if kind == OP_FROM_500:
                client.receive(body, SERVER_500, 500, now)
            elif kind == OP_FROM_4500:
                client.receive(body, SERVER_4500, 4500, now)
            elif kind == OP_FROM_OTHER:
                client.receive(body, OTHER, 500, now)
            elif kind == OP_ADVANCE:
                now += float(int.from_bytes(body[:2].rjust(2, b"\0"), "big"))
                t = client.get_timer()
                if t is not None and t <= now:
                    client.handle_timer(now)
            else:
                drive(client, now)
            client.datagrams_to_send()
            for e in list(client._events):  # a catch-all's line, before the driver runs
                if isinstance(e, ev.LogLine) and "internal error" in e.text:
                    raise InvariantViolation(e.text)
        drive(client, now)
    return client


def one_input(data: bytes) -> None:
    run(data)
