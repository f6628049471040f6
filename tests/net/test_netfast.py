"""The C accelerator of vpnhub/net (_netfast.c) against its Python reference.

docs/ARCHITECTURE.md, "C accelerators": same results on any input; under
``CI=true`` the accelerator must be built (a missing one fails, not skips).
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st
from netns_util import in_ci

from vpnhub.net import tunoffload as t
from vpnhub.net.accel import NETFAST


@pytest.fixture(scope="module")
def fast() -> ModuleType:
    if NETFAST is None:
        if in_ci():
            pytest.fail("vpnhub.net._netfast is not built (CI=true: the accelerator is required)")
        pytest.skip("vpnhub.net._netfast not built, or VPNHUB_PURE_PYTHON=1")
    return NETFAST


def test_under_ci_the_accelerator_is_built_and_used() -> None:
    if not in_ci():
        pytest.skip("only under CI=true")
    assert NETFAST is not None, "vpnhub.net._netfast is not built"
    assert t.ones_sum is NETFAST.ones_sum


def test_vpnhub_pure_python_switches_it_off() -> None:
    code = ("from vpnhub.net import tunoffload as t, accel;"
            "print(accel.NETFAST is None, t.ones_sum is t.ones_sum_py)")
    env = dict(os.environ, VPNHUB_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["True", "True"]


@given(data=st.binary(max_size=3000), initial=st.integers(-2**80, 2**80),
       start=st.integers(0, 3100), kind=st.sampled_from(["bytes", "bytearray", "memoryview"]))
def test_ones_sum_equals_the_reference(fast: ModuleType, data: bytes, initial: int,
                                       start: int, kind: str) -> None:
    buf: bytes | bytearray | memoryview = {
        "bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data)[1:],
    }[kind]
    assert fast.ones_sum(buf) == t.ones_sum_py(buf)
    assert fast.ones_sum(buf, initial) == t.ones_sum_py(buf, initial)
    assert fast.ones_sum(buf, initial, start) == t.ones_sum_py(buf, initial, start)


def test_ones_sum_edges(fast: ModuleType) -> None:
    s = fast.ones_sum
    assert s(b"") == 0 and s(b"\xff\xff") == 0 and s(b"\xff\xff" * 999) == 0  # 0, not 0xFFFF
    assert s(b"\x01") == 0x100 and s(b"\x12\x34\x56") == 0x1234 + 0x5600  # odd: padded
    assert s(b"\xff\xfe", 1) == 0 and s(b"", -1) == 0xFFFE and s(b"", 2**70) == 2**70 % 0xFFFF
    assert s(b"\x00\x01\x00\x02", start=2) == 2 and s(b"ab", 0, 99) == 0
    assert s(data=b"\x00\x05", initial=1) == 6
    for bad in ((), ("text",), (b"", 1.5), (b"", 0, -1), (b"", 0, 0, 0)):
        with pytest.raises((TypeError, ValueError)):
            s(*bad)
    with pytest.raises(TypeError):
        s(b"", nope=1)
    with pytest.raises(BufferError):  # not contiguous: refused, never read past it
        s(memoryview(b"abcdef")[::2])
