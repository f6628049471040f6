"""`vpnhub serve` for the redirect test (tests/cluster/test_redirect_netns.py), with a
fixed answer instead of the cluster directory.

    python tests/cluster/redirect_member.py CONFIG TARGET

TARGET: the member address every redirect names ("self": none, this member keeps
its clients). `FixedDirectoryStandIn` is a stand-in for the cluster directory
(`vpnhub.cluster.member.ClusterMember`, PostgreSQL), for the protocol test only: it
answers `Balancer.redirect_target()` with TARGET and reads no database (the service's
`ClusterMember` is dropped before it starts, and the groups' own pools serve), so the test
proves the redirect itself (engine, core, sockets on the virtual address, real vpnc)
without the directory; the cluster test with PostgreSQL is another test's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys

from vpnhub.concentrator.service import Concentrator
from vpnhub.config import load_config
from vpnhub.eventlog import EventLog
from vpnhub.session.pool import pool_for_group


class FixedDirectoryStandIn:
    """Not the cluster directory: always the same answer (a test's stand-in)."""

    def __init__(self, target: ipaddress.IPv4Address | None) -> None:
        self.target = target

    def redirect_target(self) -> ipaddress.IPv4Address | None:
        return self.target


def main(argv: list[str]) -> int:
    config = load_config(argv[1])
    target = None if argv[2] == "self" else ipaddress.IPv4Address(argv[2])
    log = EventLog(console_severity=config.log.console_severity,
                   keep_severity=config.log.keep_severity, size=config.log.buffer_events)
    conc = Concentrator(config, log, balancer=FixedDirectoryStandIn(target))
    # no PostgreSQL here: the member leaves the cluster directory out (never started)
    # and serves from its own pools, as a concentrator without [cluster]
    conc.cluster = None
    conc.core.pools = {g.name: pool_for_group(g) for g in config.groups}
    return asyncio.run(conc.run())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
