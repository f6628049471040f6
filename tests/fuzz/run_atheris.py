"""Run one fuzz target under atheris (coverage-guided, libFuzzer).

    PYTHONPATH=. python tests/fuzz/run_atheris.py TARGET [libFuzzer options] [CORPUS_DIR ...]

TARGET is codec, endpoint, dataplane or client. vpnhub is instrumented for coverage
(atheris.instrument_imports); the harness itself is not. libFuzzer prints
its status lines (inputs, coverage, exec/s, rss) on stderr; a Python
exception escaping the target is a crash: libFuzzer prints the traceback,
writes the input to ``-artifact_prefix`` and exits non-zero. atheris calls
sys.exit, so tests and bench/fuzz.py run this script in a subprocess.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGETS = ("codec", "endpoint", "dataplane", "client")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: run_atheris.py {{{'|'.join(TARGETS)}}} [libFuzzer options]")
    target = sys.argv.pop(1)
    # The data plane's warnings (outer fragmentation, ...) are built but not printed:
    # millions of inputs would bury libFuzzer's own lines.
    logging.getLogger("vpnhub").addHandler(logging.NullHandler())
    logging.getLogger("vpnhub").propagate = False
    with atheris.instrument_imports(include=["vpnhub"]):
        import vpnhub.esp.sa
        import vpnhub.ike.endpoint
        import vpnhub.net.dataplane
        import vpnhub.wire  # noqa: F401
        if target == "codec":
            import fuzz_codec as harness
        elif target == "endpoint":
            import fuzz_endpoint as harness  # type: ignore[no-redef]
        elif target == "dataplane":
            import fuzz_dataplane as harness  # type: ignore[no-redef]
        else:
            import fuzz_client as harness  # type: ignore[no-redef]
    atheris.Setup(sys.argv, harness.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
