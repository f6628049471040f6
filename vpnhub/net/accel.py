"""The C accelerator of vpnhub/net (``_netfast.c``), or None.

docs/ARCHITECTURE.md, "C accelerators": the pure-Python code stays the reference
and the fallback; ``VPNHUB_PURE_PYTHON=1`` in the environment makes vpnhub ignore
the accelerator, and a machine without a compiler simply has none.
"""

from __future__ import annotations

import os
from types import ModuleType


def pure_python() -> bool:
    """Whether the accelerators are switched off (``VPNHUB_PURE_PYTHON=1``)."""
    return os.environ.get("VPNHUB_PURE_PYTHON", "") not in ("", "0")


def load_netfast() -> ModuleType | None:
    """``vpnhub.net._netfast`` if it is built and allowed, else None."""
    if pure_python():
        return None
    try:
        from vpnhub.net import _netfast
    except ImportError:
        return None
    return _netfast


NETFAST: ModuleType | None = load_netfast()


def describe() -> tuple[bool, str]:
    """(all on, one line for the event log at start): whether the per-packet work
    runs in C, and what to do when it does not (docs/ARCHITECTURE.md)."""
    from vpnhub.esp.sa import ACCELERATED as esp_c

    parts = {"ESP codec": esp_c, "checksums, recvmmsg and sendmmsg": NETFAST is not None}
    if all(parts.values()):
        return True, "C accelerators on: " + ", ".join(parts)
    missing = ", ".join(name for name, on in parts.items() if not on)
    if pure_python():
        return False, f"C accelerators off (VPNHUB_PURE_PYTHON): {missing} in Python"
    return False, (f"C accelerators not built: {missing} in Python, about half the"
                   " data plane's speed; scripts/setup builds them (gcc, python3-dev,"
                   " libssl-dev)")
