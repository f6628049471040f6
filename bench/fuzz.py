"""The long fuzz run: each target of tests/fuzz under atheris for N inputs.

    PYTHONPATH=. python bench/fuzz.py --runs 1000000 --json bench/results/fuzz.json
    PYTHONPATH=. python bench/fuzz.py --smoke --json /tmp/fuzz.json

For each target (codec, endpoint, dataplane, client) it runs
``tests/fuzz/run_atheris.py`` in a subprocess (atheris ends with sys.exit)
for ``--runs`` inputs, seeded with tests/fuzz/corpus/<target> (libFuzzer adds
what it finds to a scratch corpus), and reads libFuzzer's status lines
(``#N ... exec/s: E rss: RMb``). It reports per target: inputs run, seconds,
inputs/s, RSS at the first status line, the middle and the end (memory
flat or not), crashes and unhandled exceptions (0 expected; a finding's input
is kept under ``--workdir``). ``--rate-repeats K --rate-seconds S``
adds K timed runs of S seconds for the inputs/s median and range.
``--plain N`` instead feeds N random mutations of a corpus (default: the
seeds) to the harness in plain Python, without libFuzzer, and reports the
process RSS six times along the way: libFuzzer's own corpus and tables grow
during a run, this shows whether vpnhub's memory does.

No lab and no root needed. The machine is shared: inputs/s is what this
run measured, a figure for the report, never asserted by a test.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "fuzz" / "run_atheris.py"
CORPUS = REPO / "tests" / "fuzz" / "corpus"
TARGETS = ("codec", "endpoint", "dataplane", "client")
STATUS = re.compile(r"^#(\d+)\s+\w+\s.*?exec/s: (\d+) rss: (\d+)Mb")
DONE = re.compile(r"^Done (\d+) runs in (\d+) second")


def fuzz(target: str, workdir: Path, args: list[str]) -> dict[str, Any]:
    """One libFuzzer run of `target`; its figures from the status lines."""
    scratch = workdir / f"corpus-{target}"
    scratch.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{target}-{int(time.time() * 1000)}.log"
    cmd = [sys.executable, str(RUNNER), target, *args, "-rss_limit_mb=2048", "-timeout=60",
           f"-artifact_prefix={workdir}/{target}-", str(scratch), str(CORPUS / target)]
    t0 = time.monotonic()
    with log_path.open("w") as log:
        rc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            check=False).returncode
    wall = time.monotonic() - t0
    text = log_path.read_text(errors="replace")
    status = [(int(m[1]), int(m[2]), int(m[3])) for line in text.splitlines()
              if (m := STATUS.match(line))]
    done = next((m for line in text.splitlines() if (m := DONE.match(line))), None)
    runs = int(done[1]) if done else (status[-1][0] if status else 0)
    exceptions = text.count("Uncaught Python exception")
    crashed = rc != 0 or "==ERROR" in text or "deadly signal" in text
    rss = [s[2] for s in status]
    mid = min(status, key=lambda s: abs(s[0] - runs / 2))[2] if status else None
    return {
        "target": target, "inputs": runs, "seconds": round(wall, 1),
        "inputs_per_s": round(runs / wall, 1) if wall else None,
        "rss_mb_start": rss[0] if rss else None, "rss_mb_middle": mid,
        "rss_mb_end": rss[-1] if rss else None,
        "unhandled_exceptions": exceptions,
        "crashes": int(crashed and not exceptions) + exceptions if crashed else 0,
        "exit_code": rc, "log": str(log_path),
        "corpus_files": sum(1 for _ in scratch.iterdir()),
    }


def rate(target: str, workdir: Path, seconds: int, repeats: int) -> dict[str, Any]:
    """inputs/s over `repeats` timed runs of `seconds` each (median and range)."""
    rates = []
    for _ in range(repeats):
        r = fuzz(target, workdir, [f"-max_total_time={seconds}"])
        if r["crashes"]:
            return {"error": f"crash during the rate run, see {r['log']}"}
        rates.append(r["inputs"] / max(seconds, 1))
    return {"seconds_each": seconds, "runs": len(rates),
            "inputs_per_s": [round(x) for x in rates],
            "median": round(statistics.median(rates)),
            "min": round(min(rates)), "max": round(max(rates))}


def plain(target: str, inputs: int, corpus: Path) -> dict[str, Any]:
    """RSS (KiB) while feeding `inputs` byte-level mutations of `corpus` to the harness."""
    import importlib
    import logging
    import random

    sys.path.insert(0, str(REPO / "tests" / "fuzz"))
    logging.getLogger("vpnhub").addHandler(logging.NullHandler())
    logging.getLogger("vpnhub").propagate = False
    harness = importlib.import_module(f"fuzz_{target}")
    seeds = [p.read_bytes() for p in sorted(corpus.iterdir()) if p.is_file()]
    rng = random.Random(1)

    def mutate(data: bytes) -> bytes:
        b = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            if b and rng.random() < 0.7:
                b[rng.randrange(len(b))] = rng.randrange(256)
            else:
                b += rng.randbytes(rng.randrange(1, 8))
        return bytes(b)

    def rss_kib() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 // 1024

    points = []
    step = max(inputs // 6, 1)
    for i in range(inputs + 1):
        if i % step == 0:
            points.append((i, rss_kib()))
        harness.one_input(mutate(rng.choice(seeds)))
    return {"target": target, "plain_inputs": inputs, "corpus_files": len(seeds),
            "rss_kib": points}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--runs", type=int, default=1_000_000, help="inputs per target")
    ap.add_argument("--rate-seconds", type=int, default=0)
    ap.add_argument("--rate-repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="a few hundred inputs per target")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="logs, scratch corpora and crash inputs (default: a temp dir)")
    ap.add_argument("--plain", type=int, default=0, metavar="N",
                    help="N mutated inputs in plain Python (no libFuzzer): RSS only")
    ap.add_argument("--corpus", type=Path, default=None, help="for --plain (default: seeds)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--prefix", default="", help=argparse.SUPPRESS)  # bench smoke-test API
    a = ap.parse_args()
    runs = 300 if a.smoke else a.runs
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="vpnhub-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"bench": "fuzz", "runs_per_target": runs, "workdir": str(workdir),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "results": []}
    for target in a.targets.split(","):
        if a.plain:
            result = plain(target, a.plain, a.corpus or CORPUS / target)
            doc["results"].append(result)
            print(json.dumps(result), flush=True)
            continue
        result = fuzz(target, workdir, [f"-runs={runs}"])
        if a.rate_seconds:
            result["rate"] = rate(target, workdir, a.rate_seconds, a.rate_repeats)
        doc["results"].append(result)
        print(json.dumps(result), flush=True)
    doc["inputs_total"] = sum(r.get("inputs", 0) for r in doc["results"])
    doc["crashes_total"] = sum(r.get("crashes", 0) for r in doc["results"])
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if doc["crashes_total"] else 0


if __name__ == "__main__":
    sys.exit(main())
