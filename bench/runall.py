"""Run every benchmark, then write bench/results/<date>.md and the charts (``bench/run``).

    sudo bench/run                  # the full run (under 20 minutes on the 2-core lab machine)
    sudo bench/run --smoke          # every benchmark in its seconds-long smoke mode
    sudo bench/run --only throughput,latency [--out DIR]

Each benchmark runs as its own process (``bench/<name>.py --json ...``), its
output mirrored to the terminal and to ``<results>/logs/<name>.log``; one
that fails does not stop the others. The full run's plan (what keeps it
under 20 minutes: ``--quick`` shrinks it further):

- latency: 300 pings at 10 ms per path, 5 connects per client (~1 min);
- handshake: 500 tunnels x 3 runs for DH groups 2, 14, 19, vpnhub and
  strongSwan, plus one profiled run (~1.5 min);
- throughput: 10 s iperf3 runs; AES-128/SHA1 through one tunnel: median of
  5 for the vpnc pairs (the targets), of 3 for the native pairs and for two
  tunnels at once (vpnc pairs: the document's two PCs); AES-256/SHA2-256,
  AES-256-GCM (native clients) and 3DES/MD5 (vpnc), one tunnel, median of 3,
  plus one profiled run (~7.5 min);
- scale: 10,000 sessions held, idle window after the 300 s history wait,
  1,000 of them pinging for 60 s, 2 minutes of five Sessions tabs, SIGTERM
  (~15 min).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ORDER = ("latency", "handshake", "throughput", "scale")


def plan(name: str, smoke: bool, quick: bool) -> list[str]:
    if smoke:
        return ["--smoke"]
    if name == "latency":
        return ["--count", "300", "--connects", "5"] if not quick else \
            ["--count", "100", "--connects", "1"]
    if name == "handshake":
        return ["--tunnels", "500", "--runs", "3"] if not quick else \
            ["--tunnels", "300", "--runs", "1"]
    if name == "throughput":
        if quick:
            return ["--runs", "1", "--seconds", "5", "--tunnels", "1"]
        return ["--runs", "5", "--seconds", "10", "--headline", "aes128-sha1",
                "--headline-pairs", "vpnc:strongswan,vpnc:vpnhub", "--tunnels", "1,2",
                "--two-tunnel-pairs", "vpnc:strongswan,vpnc:vpnhub", "--other-runs", "3",
                "--other-tunnels", "1", "--lean-others"]
    if name == "scale":
        return [] if not quick else ["--sessions", "2000", "--history-wait", "30",
                                     "--window", "30", "--traffic-sessions", "200",
                                     "--traffic-hold", "30"]
    raise ValueError(name)


def run_one(name: str, args: list[str], out: Path, logs: Path, profiles: Path | None
            ) -> tuple[int, float]:
    argv = [sys.executable, str(HERE / f"{name}.py"), *args, "--json", str(out / f"{name}.json")]
    if profiles is not None and name in ("handshake", "throughput", "scale"):
        argv += ["--profile-dir", str(profiles)]
    print(f"\n==== {name}: {' '.join(argv[1:])}", flush=True)
    t = time.monotonic()
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("w") as log:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=REPO)
        assert p.stdout is not None
        for line in p.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            log.write(line)
        rc = p.wait()
    dt = time.monotonic() - t
    print(f"==== {name}: exit {rc} after {dt:.0f} s", flush=True)
    return rc, dt


def compress_raw_profiles(profiles: Path) -> None:
    """py-spy raw stacks: keep them (flame graphs), gzipped."""
    for raw in profiles.glob("*.raw.txt"):
        with raw.open("rb") as src, gzip.open(str(raw) + ".gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        raw.unlink()


def update_index(results: Path, md: Path, summary: str) -> None:
    index = results / "README.md"
    head = "# Benchmark results\n\nNewest first; each file links its charts and raw data." \
           " How they are made: [docs/BENCHMARKS.md](../../docs/BENCHMARKS.md).\n\n"
    lines = []
    if index.exists():
        lines = [ln for ln in index.read_text().splitlines() if ln.startswith("- [")]
    entry = f"- [{md.stem}]({md.name}): {summary}"
    lines = [entry] + [ln for ln in lines if not ln.startswith(f"- [{md.stem}]")]
    index.write_text(head + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="every benchmark's smoke mode")
    ap.add_argument("--quick", action="store_true", help="fewer runs, shorter holds (~8 min)")
    ap.add_argument("--only", default=",".join(ORDER), help="comma-separated benchmarks")
    ap.add_argument("--out", type=Path,
                    help="results directory (default: bench/results/<date>; smoke: a temp dir)")
    ap.add_argument("--no-index", action="store_true", help="do not update bench/results/README.md")
    args = ap.parse_args(argv)
    names = [n for n in ORDER if n in args.only.split(",")]
    date = time.strftime("%Y-%m-%d")
    if args.out is not None:
        out = args.out
    elif args.smoke:
        out = Path("/tmp/vpnhub-bench") / f"smoke-{time.strftime('%H%M%S')}"
    else:
        out = HERE / "results" / date
    if out.exists() and not args.smoke and args.out is None:
        shutil.rmtree(out)  # a re-run the same day replaces that day's results
    out.mkdir(parents=True, exist_ok=True)
    profiles = None if args.smoke else out / "profiles"
    t0 = time.monotonic()
    status = {}
    for name in names:
        status[name] = run_one(name, plan(name, args.smoke, args.quick), out, out / "logs",
                               profiles)
    if profiles is not None and profiles.exists():
        compress_raw_profiles(profiles)
    total = time.monotonic() - t0
    md = out.with_suffix(".md")
    mode = " --smoke" if args.smoke else (" --quick" if args.quick else "")
    sys.path.insert(0, str(HERE))
    from report import build

    build(out, md, f"vpnhub benchmarks, {date}" + (" (smoke)" if args.smoke else ""),
          f"sudo bench/run{mode}  ({total / 60:.1f} min)")
    print(f"\nresults: {md}")
    for name, (rc, dt) in status.items():
        print(f"  {name:10} exit {rc}  {dt:5.0f} s")
    print(f"  total {total / 60:.1f} min")
    if not args.smoke and not args.no_index and out.parent == HERE / "results":
        update_index(out.parent, md, f"bench/run{mode}, {total / 60:.1f} min")
    return 0 if all(rc == 0 for rc, _ in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
