"""`vpnhub serve` limits glibc's malloc arenas, and only there (issue 13)."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from vpnhub.concentrator import service

# Threads allocate; malloc_info's XML has one <heap nr=...> per arena in use.
_CHILD = textwrap.dedent("""
    import ctypes, os, sys, tempfile, threading
    from vpnhub.concentrator.memory import limit_arenas
    if sys.argv[1] == "limit":
        assert limit_arenas(1)
    def work():
        keep = [bytes(200 + i % 300) for i in range(20000)]
        del keep
    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    path = os.path.join(tempfile.mkdtemp(), "info.xml")
    f = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, f)
    libc.fclose(f)
    print(open(path).read().count("<heap nr="))
""")


def _arenas(mode: str) -> int:
    cp = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True,
                        env={"PYTHONMALLOC": "malloc", "PATH": "/usr/bin:/bin",
                             "PYTHONPATH": ":".join(sys.path)}, timeout=60, check=True)
    return int(cp.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc arenas")
def test_threads_share_one_arena_once_limited() -> None:
    assert _arenas("limit") == 1
    assert _arenas("default") > 1  # what the limit is for: one arena per thread


def test_serve_limits_the_arenas_before_the_concentrator_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(service, "limit_arenas", lambda: calls.append("limit_arenas") or True)
    monkeypatch.setattr(gc, "set_threshold", lambda *a: None)  # this process's GC stays
    monkeypatch.setattr(sys, "setswitchinterval", lambda s: None)

    class FakeConcentrator:
        def __init__(self, config: Any, log: Any) -> None:
            calls.append("Concentrator")
            self.own_process = False

        async def run(self) -> int:
            return 0

    monkeypatch.setattr(service, "Concentrator", FakeConcentrator)
    assert service.serve(object(), object()) == 0  # type: ignore[arg-type]
    assert calls == ["limit_arenas", "Concentrator"]

