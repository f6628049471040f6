"""Which phase 1 methods each group allows, and the group of a certificate (issue 14).

`[[group]] auth` names them: "psk" is XAUTHInitPreShared (65001, what vpnc and the
Cisco client send), "rsa" XAUTHInitRSA (65005, strongSwan `xauthrsa`, a
certificate on both sides, draft-ietf-ipsec-isakmp-xauth-06 5), "hybrid"
HybridInitRSA (64221, draft-ietf-ipsra-hybrid-auth-05: only the concentrator has
a certificate). An RSA client's group is its certificate's OU (the VPN 3000's
rule), or the only group that allows "rsa".
"""

from __future__ import annotations

import hashlib
import hmac
import os

from vpnhub.config import Config
from vpnhub.wire.constants import AuthMethod

METHODS: dict[str, tuple[int, ...]] = {
    "psk": (AuthMethod.XAUTH_INIT_PSK,),
    "rsa": (AuthMethod.XAUTH_INIT_RSA,),
    "hybrid": (AuthMethod.HYBRID_INIT_RSA,),
}


# Drawn once per process, never stored: which kind of group an unknown name plays
_PERSONA_SECRET = os.urandom(32)


class CertAuthPolicy:
    def __init__(self, config: Config) -> None:
        self._by_group = {g.name: _numbers(g.auth) for g in config.groups}
        every = {m for g in config.groups for m in g.auth}
        self._every = _numbers(tuple(m for m in METHODS if m in every))
        self._rsa_groups = [g.name for g in config.groups if "rsa" in g.auth]
        # the distinct method sets of the configured groups, in a fixed order
        self._personas = sorted(set(self._by_group.values())) or [self._every]

    def methods_for(self, group_id: bytes | None) -> tuple[int, ...]:
        """The group's methods; every group's for Main Mode (no ID yet); for an unknown
        group, those of one kind of configured group (`_persona`)."""
        if group_id is None:
            return self._every
        known = self._by_group.get(group_id.decode("utf-8", "replace"))
        return known if known is not None else self._persona(group_id)

    def _persona(self, group_id: bytes) -> tuple[int, ...]:
        """An unknown group name answers as some configured group would (ike.standin):
        with every group's methods, a PSK probe would tell a certificate-only group
        (NO-PROPOSAL-CHOSEN) from no group (a stand-in message 2). So each unknown
        name plays the method set of one kind of configured group, picked by a keyed
        hash of the name: the same answer every time, and a prober cannot tell it
        from a real group of that kind. With one kind of group, that kind."""
        if len(self._personas) == 1:
            return self._personas[0]
        digest = hmac.new(_PERSONA_SECRET, group_id, hashlib.sha256).digest()
        return self._personas[int.from_bytes(digest[:4], "big") % len(self._personas)]

    def group_for_cert(self, ous: tuple[str, ...], method: int) -> str | None:
        for ou in ous:
            if ou in self._rsa_groups:
                return ou
        return self._rsa_groups[0] if len(self._rsa_groups) == 1 else None


def _numbers(modes: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(n for m in modes for n in METHODS[m])
