"""The PAT's translation table printed like the PIX ``show xlate`` of the document.

The document proves that two clients share one public address by the PIX's
table: the same global address, told apart only by the UDP port::

    PAT Global 171.69.89.78(1025) Local 10.10.10.3(4500)
    PAT Global 171.69.89.78(1026) Local 10.10.10.2(4500)
    PAT Global 171.69.89.78(4) Local 10.10.10.2(500)

Our PAT is nft ``masquerade random``; its translations are the PAT's conntrack
entries (``Topology.pat_conntrack``). Entries whose inside and outside are
the same (traffic towards the PAT's outside address that nothing translated,
e.g. a packet to a mapping that was just flushed) are not translations and
are left out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from vpnhub.lab.topology import NatEntry


def translations(entries: Iterable[NatEntry]) -> list[NatEntry]:
    """The entries the PAT translated, sorted like the PIX: by local address, then port."""
    out = [e for e in entries if e.inside != e.outside]
    return sorted(out, key=lambda e: (ipaddress.IPv4Address(e.inside[0]), e.inside[1],
                                      e.proto, e.outside[1]))


def xlate_line(e: NatEntry) -> str:
    """``PAT Global 203.0.113.78(57697) Local 10.10.10.2(4500)``"""
    return (f"PAT Global {e.outside[0]}({e.outside[1]}) Local {e.inside[0]}({e.inside[1]})")


def xlate_detail_line(e: NatEntry) -> str:
    """``show xlate detail``: protocol, both sides, the remote peer, conntrack's ASSURED flag."""
    flags = "r" + ("i" if e.assured else "")
    return (f"{e.proto.upper()} PAT from inside:{e.inside[0]}/{e.inside[1]}"
            f" to outside:{e.outside[0]}/{e.outside[1]}"
            f" (peer {e.remote[0]}/{e.remote[1]}) flags {flags}")


def format_xlate(entries: Iterable[NatEntry], *, detail: bool = False) -> str:
    """The whole table, with the PIX's "N in use" header."""
    rows = translations(entries)
    lines = [f"{len(rows)} in use"]
    if detail:
        lines.append("Flags: r - portmap, i - both directions seen (conntrack ASSURED)")
    lines += [xlate_detail_line(e) if detail else xlate_line(e) for e in rows]
    return "\n".join(lines)


def natt_mappings(entries: Iterable[NatEntry]) -> dict[str, int]:
    """Client address -> the PAT's public port for its UDP 4500 (NAT-T) flow."""
    return {e.inside[0]: e.outside[1] for e in translations(entries)
            if e.proto == "udp" and e.inside[1] == 4500 and e.remote[1] == 4500}
