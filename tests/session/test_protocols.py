"""The in-memory session store and address pool satisfy their Protocols, as mypy sees them.

`isinstance` against a runtime-checkable Protocol only looks for the member
names; mypy checks the signatures too. A class missing a member is refused, so
the check would catch an implementation that drifts from its interface. A
write through what the store's reads return is refused as well: only the
store edits sessions.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

from vpnhub.config import parse_config
from vpnhub.session.pool import AddressPool, MemoryAddressPool, pool_for_group

ROOT = Path(__file__).resolve().parents[2]

CONFORMING = """
from vpnhub.session.model import Session, SessionView
from vpnhub.session.pool import AddressPool, MemoryAddressPool
from vpnhub.session.store import MemorySessionStore, SessionStore

pool: AddressPool = MemoryAddressPool("10.40.1.0/24")
store: SessionStore = MemorySessionStore(10)
view: SessionView = Session((b"i" * 8, b"r" * 8), "203.0.113.78", 500)
"""

WRITES_THROUGH_A_READ = """
from vpnhub.session.store import MemorySessionStore, SessionStore

store: SessionStore = MemorySessionStore(10)
s = store.start((b"i" * 8, b"r" * 8), "203.0.113.78", 500)
s.user = "mallory"
"""

# What the concentrator core reads from its store cannot be written either, nor the
# store's counters: the core holds the store as a SessionStore.
WRITES_THROUGH_THE_CORE = """
from vpnhub.concentrator.core import ConcentratorCore


def edit(core: ConcentratorCore) -> None:
    s = core.sessions.get((b"i" * 8, b"r" * 8))
    assert s is not None
    s.user = "mallory"
    for other in core.sessions.all():
        other.assigned_ip = None
    core.sessions.peak = 0
"""

DRIFTED = """
import ipaddress
from collections.abc import Hashable

from vpnhub.session.pool import AddressPool


class NoRelease:
    name = ""
    network = ipaddress.IPv4Network("10.0.0.0/24")
    size = in_use = available = held = 0

    def allocate(self, key: Hashable, *,
                 identity: Hashable | None = None) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address("10.0.0.1")


pool: AddressPool = NoRelease()
"""


def mypy_on(tmp_path: Path, text: str, *also: Path) -> tuple[str, int]:
    # In a child process: mypy in-process raises the recursion limit for every
    # test after it (tomllib's nesting test then sees no RecursionError).
    f = tmp_path / "conformance.py"
    f.write_text(text)
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental",
                        "--follow-imports=silent", "--config-file",
                        str(ROOT / "pyproject.toml"), str(f),
                        *map(str, also)],
                       capture_output=True, text=True, timeout=120, check=False)
    return r.stdout + r.stderr, r.returncode


def test_memory_implementations_satisfy_their_protocols(tmp_path: Path) -> None:
    out, status = mypy_on(tmp_path, CONFORMING)
    assert status == 0, out


def test_a_pool_without_release_is_no_address_pool(tmp_path: Path) -> None:
    out, status = mypy_on(tmp_path, DRIFTED)
    assert status == 1 and "release" in out, out


def test_a_read_cannot_be_written_through(tmp_path: Path) -> None:
    out, status = mypy_on(tmp_path, WRITES_THROUGH_A_READ)
    assert status == 1 and '"user" defined in "SessionView" is read-only' in out, out


def test_the_core_writes_sessions_only_through_its_store(tmp_path: Path) -> None:
    """Every write in vpnhub.concentrator.core goes through the store's API: mypy
    checks core.py with the snippet and finds the snippet's three writes only."""
    out, status = mypy_on(tmp_path, WRITES_THROUGH_THE_CORE,
                          ROOT / "vpnhub" / "concentrator" / "core.py")
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1 and all(line.startswith(str(tmp_path)) for line in errors), out
    assert '"user" defined in "SessionView" is read-only' in out, out
    assert '"assigned_ip" defined in "SessionView" is read-only' in out, out
    assert '"peak" defined in "SessionStore" is read-only' in out, out
    assert len(errors) == 3, out


def test_runtime_checks_and_the_group_factory() -> None:
    cfg = parse_config(
        '[concentrator]\npublic_address = "203.0.113.50"\nprivate_networks = ["192.168.2.0/24"]\n'
        '[[group]]\nname = "g"\npsk = "k"\naddress_pool = "10.40.1.0/29"\n'
        "reserve_first_address = true\n")
    pool = pool_for_group(cfg.groups[0])
    assert isinstance(pool, MemoryAddressPool) and isinstance(pool, AddressPool)
    assert (pool.name, pool.size) == ("g", 5)
    assert pool.allocate("k") == ipaddress.IPv4Address("10.40.1.2")
