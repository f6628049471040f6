"""Build the optional C accelerators (docs/ARCHITECTURE.md, "C accelerators").

Everything else is in pyproject.toml.  Each accelerator is a small CPython
extension next to the pure-Python module it speeds up; that module stays the
reference and the fallback (tests check that both give the same bytes), and
``VPNHUB_PURE_PYTHON=1`` makes vpnhub ignore the accelerators.  An accelerator
is built when its C source exists, so adding one needs no edit here beyond
its libraries.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).parent

# name -> (source, libraries).  libcrypto: OpenSSL's EVP ciphers and HMAC
# (Debian's libssl-dev, installed by scripts/setup).
ACCELERATORS: dict[str, tuple[str, list[str]]] = {
    "vpnhub.net._netfast": ("vpnhub/net/_netfast.c", []),
    "vpnhub.esp._espfast": ("vpnhub/esp/_espfast.c", ["crypto"]),
}

CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]

setup(
    ext_modules=[
        Extension(name, [source], libraries=libraries, extra_compile_args=CFLAGS)
        for name, (source, libraries) in ACCELERATORS.items()
        if (HERE / source).exists()
    ],
)
