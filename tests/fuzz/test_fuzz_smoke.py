"""The fuzz campaign in the test command: a short coverage-guided run per target,
the seeds and every input the fuzzer ever crashed on (tests/fuzz/crashes/).

The long run (>= 1,000,000 inputs per target) is bench/fuzz.py; its figures are
in docs/reliability/fuzzing.md. atheris ends its process with sys.exit, so
the short runs are subprocesses of tests/fuzz/run_atheris.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fuzz_client
import fuzz_codec
import fuzz_dataplane
import fuzz_endpoint
import pytest
from records import join

from vpnhub.ike import sa as ike_sa

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HARNESSES = {"codec": fuzz_codec, "endpoint": fuzz_endpoint, "dataplane": fuzz_dataplane,
             "client": fuzz_client}
# inputs of the short run: about 5-10 s of each target on a busy 2-core machine
SHORT_RUNS = {"codec": 20_000, "endpoint": 3_000, "dataplane": 5_000, "client": 3_000}


@pytest.mark.parametrize("target", sorted(HARNESSES))
def test_short_atheris_run(target: str, tmp_path: Path) -> None:
    runs = SHORT_RUNS[target]
    cp = subprocess.run(
        [sys.executable, str(HERE / "run_atheris.py"), target, f"-runs={runs}", "-seed=1",
         "-timeout=60", f"-artifact_prefix={tmp_path}/", str(tmp_path),
         str(HERE / "corpus" / target)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    log = cp.stderr + cp.stdout
    assert cp.returncode == 0, f"{target}: a finding (input under {tmp_path}):\n{log[-4000:]}"
    assert f"Done {runs} runs" in log, log[-2000:]
    assert "cov:" in log  # coverage-guided: libFuzzer saw vpnhub's coverage counters


def _files(kind: str, target: str) -> list[Path]:
    d = HERE / kind / target
    return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []


CASES = [(t, p) for t in sorted(HARNESSES) for kind in ("corpus", "crashes")
         for p in _files(kind, t)]


@pytest.mark.parametrize(("target", "path"), CASES,
                         ids=[f"{t}/{p.parent.parent.name}/{p.name}" for t, p in CASES])
def test_seeds_and_past_findings_run_clean(target: str, path: Path) -> None:
    HARNESSES[target].one_input(path.read_bytes())


@pytest.mark.parametrize("seed", [p for p in _files("corpus", "endpoint")
                                  if p.name.startswith("vpnhub-")], ids=lambda p: p.name)
def test_endpoint_seeds_reach_quick_mode(seed: Path) -> None:
    """The recorded exchanges replay in full against the deterministic responder:
    the fuzzer starts from phase 1 done, XAUTH, Mode Config and Quick Mode.
    If this fails the engine now draws randomness differently: re-run make_seeds.py."""
    r = fuzz_endpoint.run(seed.read_bytes())
    assert (r.established, r.children) == (1, 1)


@pytest.mark.parametrize("seed", _files("corpus", "client"), ids=lambda p: p.name)
def test_client_seeds_reach_quick_mode(seed: Path) -> None:
    """The concentrator's recorded answers take the fuzzed client through Quick Mode."""
    client = fuzz_client.run(seed.read_bytes())
    assert client is not None and client.state.name == "ESTABLISHED"
    assert len(client.children) == 1


def test_vpnc_message_1_is_answered() -> None:
    r = fuzz_endpoint.run((HERE / "corpus" / "endpoint" / "vpnc-aggressive-msg1").read_bytes())
    (sa,) = r.sas.values()
    assert sa.state.name == "AM_R_SENT2"


def test_endpoint_harness_reports_a_hidden_internal_error(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """The engine's catch-all turns a bug into a log line; the harness turns it back."""
    def broken(*_args: object) -> None:
        raise KeyError("bug")

    seed = (HERE / "corpus" / "endpoint" / "vpnc-aggressive-msg1").read_bytes()
    monkeypatch.setattr(ike_sa, "handler_for", lambda *_a: broken)
    with pytest.raises(fuzz_endpoint.InvariantViolation, match="internal error"):
        fuzz_endpoint.one_input(seed)


def test_client_harness_reports_a_hidden_internal_error(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    def broken(*_args: object) -> None:
        raise KeyError("bug")

    seed = _files("corpus", "client")[0].read_bytes()
    monkeypatch.setattr(ike_sa, "handler_for", lambda *_a: broken)
    with pytest.raises(fuzz_endpoint.InvariantViolation, match="internal error"):
        fuzz_client.one_input(seed)


def test_dataplane_harness_sees_spoofed_inner_sources() -> None:
    """An inner packet with a source other than the client's address never reaches the TUN
    (the harness would raise); the SA counts it."""
    h = fuzz_dataplane.harness()
    fuzz_dataplane.one_input((HERE / "corpus" / "dataplane" / "esp-spoofed-inner").read_bytes())
    entry = h.dp._in[fuzz_dataplane.SAS[0].spi.to_bytes(4, "big")]
    assert entry.sa.drops.get("spoofed_source") == 1
    fuzz_dataplane.one_input(join([(fuzz_dataplane.OP_SEAL, fuzz_dataplane._ipv4(
        "10.40.1.1", "192.168.2.10"))]))
    assert entry.sa.packets_in == 1
