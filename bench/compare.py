"""Before/after benchmark of a change: the same commands on two commits, alternately.

    sudo .venv/bin/python bench/compare.py --before REV --after REV [--runs 3]
        [--out DIR] [--markdown FILE] [--prefix P] [--keep-going]
    sudo .venv/bin/python bench/compare.py --smoke

Each commit is checked out as a detached git worktree in a temporary
directory (removed afterwards, whatever happens). Each benchmark run is a
process of its own: that worktree's ``bench/throughput.py`` or
``bench/handshake.py`` with ``--json``, run from the worktree with this
Python (the repository's .venv) and ``PYTHONPATH=<worktree>``. The lab
starts ``vpnhub serve``, ``vpnhub.tools.loadgen`` etc. as ``sys.executable
-m ...`` with the environment and working directory it inherits, so every
vpnhub process of a run is that commit's code; the run's own bench scripts
are used because the harness moved with the code (e.g. the load
generator's module name). The command lines are otherwise identical.

Runs alternate -- per benchmark: before, after, before, after, ... -- so
both commits see the same drift of a shared machine. Each run measures
vpnhub and strongSwan in the same process, one after the other, and the
ratio vpnhub / strongSwan is computed per run from that run's two figures:
on a noisy machine the ratio is what compares, the absolute figures only
say how loaded the machine was.

Figures (one configuration each, so that one alternation of both
benchmarks takes about 5 minutes):

- throughput: vpnc as the client, one tunnel, AES-128/SHA1 (what vpnc
  negotiates), vpnhub vs strongSwan as the concentrator: Mbit/s and the
  concentrator's CPU seconds per GB;
- handshake: DH group 14, tunnels/s and the concentrator's CPU ms per tunnel.

Output (``--out``): ``summary.md`` and ``summary.json`` (per figure, before
and after: median and range of vpnhub, strongSwan and the ratio, and how
the median moved), and ``runs/``: each run's JSON and log.
``--smoke``: both commits HEAD, one run, seconds-long benchmark options;
it checks that the figures come out, not their size.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BENCHES = ("throughput", "handshake")
SIDES = ("before", "after")
IMPLS = ("vpnhub", "strongswan")
SUITE = "aes128-sha1"
DH_GROUP = 14

# The same options for both commits. Throughput: 10 s of iperf3 per
# concentrator; handshake: 600 tunnels (a few seconds each) with the
# benchmark's default concurrency.
BENCH_ARGS: dict[str, list[str]] = {
    "throughput": ["--runs", "1", "--seconds", "10", "--suites", SUITE,
                   "--pairs", "vpnc:vpnhub,vpnc:strongswan", "--tunnels", "1"],
    "handshake": ["--runs", "1", "--groups", str(DH_GROUP), "--tunnels", "600",
                  "--concurrency", "64", "--concentrators", "vpnhub,strongswan"],
}
# --smoke: the benchmarks' own --smoke would change the configuration
# (throughput: vpnhub client only; handshake: group 19), so shorter runs of
# the same configuration instead.
SMOKE_ARGS: dict[str, list[str]] = {
    "throughput": ["--runs", "1", "--seconds", "2", "--suites", SUITE,
                   "--pairs", "vpnc:vpnhub,vpnc:strongswan", "--tunnels", "1"],
    "handshake": ["--runs", "1", "--groups", str(DH_GROUP), "--tunnels", "20",
                  "--concurrency", "8", "--concentrators", "vpnhub,strongswan"],
}
RUN_TIMEOUT = 900.0  # seconds per benchmark process; a full run takes 1-3 minutes


@dataclass(frozen=True)
class Figure:
    """One compared figure: where it is in a benchmark's JSON and which way is better."""

    key: str
    bench: str
    label: str
    unit: str
    field: str
    higher_is_better: bool
    digits: int


FIGURES = (
    Figure("throughput_mbit_s", "throughput",
           "throughput, vpnc client, AES-128/SHA1, 1 tunnel", "Mbit/s", "mbit_s", True, 0),
    Figure("throughput_conc_cpu_s_per_gb", "throughput",
           "concentrator CPU per GB, vpnc client, AES-128/SHA1, 1 tunnel", "CPU s/GB",
           "conc_cpu_s_per_gb", False, 1),
    Figure("handshake_tunnels_per_s", "handshake",
           f"handshakes, DH group {DH_GROUP}", "tunnels/s", "tunnels_per_s", True, 0),
    Figure("handshake_conc_cpu_ms_per_tunnel", "handshake",
           f"concentrator CPU per tunnel, DH group {DH_GROUP}", "CPU ms/tunnel",
           "conc_cpu_ms_per_tunnel", False, 2),
)


@dataclass(frozen=True)
class Side:
    """One of the two commits, checked out in a worktree of its own."""

    name: str  # "before" | "after"
    rev: str  # as given on the command line
    commit: str  # the full hash it resolved to
    tree: Path


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


# ----------------------------------------------------------------------------- git
def git(*argv: str) -> str:
    cp = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True,
                        check=False, timeout=120)
    if cp.returncode != 0:
        raise RuntimeError(f"git {' '.join(argv)}: {cp.stderr.strip()}")
    return cp.stdout.strip()


def resolve(rev: str) -> str:
    return git("rev-parse", "--verify", f"{rev}^{{commit}}")


@contextmanager
def worktrees(revs: dict[str, str], commands: list[str],
              patches: dict[str, Path] | None = None) -> Iterator[dict[str, Side]]:
    """A detached worktree per side under one temporary directory; both are
    removed (and unregistered from the repository) on the way out. `patches`: a
    patch to apply to a side's worktree (`git apply`), e.g. a fix of the benchmark
    itself that came with the change, so that both sides are measured alike."""
    base = Path(tempfile.mkdtemp(prefix="vpnhub-compare-"))
    made: list[Path] = []
    try:
        sides = {}
        for name, rev in revs.items():
            commit = resolve(rev)
            tree = base / name
            argv = ["worktree", "add", "--detach", str(tree), commit]
            commands.append(shlex.join(["git", "-C", str(REPO), *argv]))
            git(*argv)
            made.append(tree)
            patch = (patches or {}).get(name)
            if patch is not None:
                apply = ["-C", str(tree), "apply", str(patch.resolve())]
                commands.append(shlex.join(["git", *apply]))
                git(*apply)
            sides[name] = Side(name, rev, commit, tree)
        yield sides
    finally:
        for tree in made:
            argv = ["worktree", "remove", "--force", str(tree)]
            commands.append(shlex.join(["git", "-C", str(REPO), *argv]))
            with suppress(RuntimeError, subprocess.TimeoutExpired):
                git(*argv)
        shutil.rmtree(base, ignore_errors=True)
        with suppress(RuntimeError, subprocess.TimeoutExpired):
            git("worktree", "prune")


def side_env(side: Side) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(side.tree)}


def check_import(side: Side) -> str:
    """Where ``import vpnhub`` resolves for this side's runs (must be its worktree)."""
    cp = subprocess.run([PYTHON, "-c", "import vpnhub; print(vpnhub.__file__)"],
                        cwd=side.tree, env=side_env(side), capture_output=True, text=True,
                        check=False, timeout=60)
    where = Path(cp.stdout.strip()).resolve()
    if cp.returncode != 0 or not where.is_relative_to(side.tree.resolve()):
        raise RuntimeError(f"{side.name}: vpnhub imports from {where} ({cp.stderr.strip()}),"
                           f" not from {side.tree}")
    return str(where)


# ----------------------------------------------------------------------------- running
def bench_argv(side: Side, bench: str, args: Sequence[str], prefix: str, out: Path
               ) -> list[str]:
    return [PYTHON, str(side.tree / "bench" / f"{bench}.py"), *args, "--prefix", prefix,
            "--json", str(out)]


def shown(side: Side, argv: Sequence[str]) -> str:
    """The command as one could type it again."""
    tree = shlex.quote(str(side.tree))
    return f"cd {tree} && PYTHONPATH={tree} {shlex.join(argv)}"


def stop_group(p: subprocess.Popen[bytes]) -> None:
    """Interrupt a benchmark so that it takes its lab down itself, then insist."""
    for sig, wait in ((signal.SIGINT, 60.0), (signal.SIGTERM, 15.0), (signal.SIGKILL, 15.0)):
        with suppress(ProcessLookupError):
            os.killpg(p.pid, sig)  # its own session: the group is the benchmark's
        with suppress(subprocess.TimeoutExpired):
            p.wait(wait)
            return


def run_child(argv: Sequence[str], side: Side, log_path: Path, timeout: float) -> int:
    """One benchmark process; its output goes to log_path. Returns its exit status."""
    with log_path.open("wb") as out:
        p = subprocess.Popen(list(argv), cwd=side.tree, env=side_env(side), stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_group(p)
            return -1
        except BaseException:
            stop_group(p)
            raise


def clean_lab(prefix: str) -> list[str]:
    """What a benchmark's lab left behind (nothing, unless it was killed)."""
    from vpnhub.lab.topology import cleanup

    return cleanup(prefix)


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def one_run(i: int, bench: str, side: Side, args: Sequence[str], prefix: str, runs_dir: Path,
            commands: list[str]) -> dict[str, Any]:
    tag = f"{i}-{bench}-{side.name}"
    out, log_path = runs_dir / f"{tag}.json", runs_dir / f"{tag}.log"
    argv = bench_argv(side, bench, args, prefix, out)
    commands.append(shown(side, argv))
    rec: dict[str, Any] = {"run": i, "bench": bench, "side": side.name, "commit": side.commit,
                           "loadavg": loadavg(), "json": str(out), "log": str(log_path)}
    log(f"run {i} {bench} {side.name} ({side.commit[:12]}): {shown(side, argv)}")
    t0 = time.monotonic()
    try:
        rec["exit"] = run_child(argv, side, log_path, RUN_TIMEOUT)
    finally:
        left = clean_lab(prefix)
        if left:
            log(f"  removed what the lab left: {', '.join(left)}")
    rec["wall_s"] = round(time.monotonic() - t0, 1)
    doc = json.loads(out.read_text()) if out.exists() else {}
    rec["figures"] = extract(bench, doc)
    rec["machine_busy"] = machine_busy(bench, doc)
    log(f"  exit {rec['exit']} in {rec['wall_s']} s: " + ", ".join(
        f"{k}: {describe(v)}" for k, v in rec["figures"].items()))
    return rec


# ----------------------------------------------------------------------------- figures
def result_of(bench: str, doc: dict[str, Any], impl: str) -> dict[str, Any] | None:
    """The configuration's result for one concentrator in a benchmark's JSON."""
    for r in doc.get("results", []):
        if r.get("concentrator") != impl or "error" in r:
            continue
        if bench == "throughput" and (r.get("client"), r.get("suite"), r.get("tunnels")) == (
                "vpnc", SUITE, 1):
            return dict(r)
        if bench == "handshake" and r.get("dh_group") == DH_GROUP and r.get("runs_ok"):
            return dict(r)
    return None


def number(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def extract(bench: str, doc: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per figure of this benchmark: vpnhub's, strongSwan's and their ratio (this run)."""
    found = {impl: result_of(bench, doc, impl) for impl in IMPLS}
    out: dict[str, dict[str, float | None]] = {}
    for f in FIGURES:
        if f.bench != bench:
            continue
        v = {impl: number(r.get(f.field)) if r else None for impl, r in found.items()}
        hub, swan = v["vpnhub"], v["strongswan"]
        out[f.key] = {**v, "ratio": hub / swan if hub is not None and swan else None}
    return out


def machine_busy(bench: str, doc: dict[str, Any]) -> float | None:
    """Share of both cores busy during the measurements (all processes)."""
    vals = [number(r.get("machine_busy")) for impl in IMPLS
            if (r := result_of(bench, doc, impl))]
    got = [v for v in vals if v is not None]
    return statistics.mean(got) if got else None


def describe(v: dict[str, float | None]) -> str:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.3g}"

    return f"vpnhub {f(v['vpnhub'])}, strongSwan {f(v['strongswan'])}, ratio {f(v['ratio'])}"


def spread(values: Sequence[float | None], runs: int) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    if not got:
        return {"median": None, "min": None, "max": None, "n": 0, "of": runs}
    return {"median": statistics.median(got), "min": min(got), "max": max(got),
            "n": len(got), "of": runs}


def moved(before: float | None, after: float | None) -> float | None:
    """Change of a median in % (after vs before)."""
    if before is None or after is None or before == 0:
        return None
    return (after / before - 1.0) * 100.0


def summarise(records: list[dict[str, Any]], runs: int) -> list[dict[str, Any]]:
    out = []
    for f in FIGURES:
        item: dict[str, Any] = {"key": f.key, "label": f.label, "unit": f.unit,
                                "higher_is_better": f.higher_is_better}
        for side in SIDES:
            recs = [r for r in records if r["side"] == side and f.key in r["figures"]]
            item[side] = {what: spread([r["figures"][f.key][what] for r in recs], runs)
                          for what in (*IMPLS, "ratio")}
        item["change_pct"] = {what: moved(item["before"][what]["median"],
                                          item["after"][what]["median"])
                              for what in (*IMPLS, "ratio")}
        out.append(item)
    return out


def complete(figures: list[dict[str, Any]]) -> bool:
    return all(f[side][what]["n"] == f[side][what]["of"]
               for f in figures for side in SIDES for what in (*IMPLS, "ratio"))


# ----------------------------------------------------------------------------- Markdown
def fmt(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def cell(s: dict[str, Any], digits: int, suffix: str = "") -> str:
    if s["median"] is None:
        return f"- (0/{s['of']} runs)"
    text = (f"{fmt(s['median'], digits)}{suffix} "
            f"({fmt(s['min'], digits)}..{fmt(s['max'], digits)})")
    return text if s["n"] == s["of"] else f"{text} [{s['n']}/{s['of']} runs]"


def change(pct: float | None, higher_is_better: bool | None) -> str:
    if pct is None:
        return "-"
    text = f"{pct:+.1f}%"
    if higher_is_better is None or abs(pct) < 0.05:
        return text
    better = (pct > 0) == higher_is_better
    return f"{text} ({'better' if better else 'worse'})"


def figures_table(figures: list[dict[str, Any]]) -> list[str]:
    lines = ["| figure | | before: median (min..max) | after: median (min..max) |"
             " median moved |", "| --- | --- | --- | --- | --- |"]
    for f in figures:
        digits = next(x.digits for x in FIGURES if x.key == f["key"])
        for what, name in (("vpnhub", "vpnhub"), ("strongswan", "strongSwan"),
                           ("ratio", "**ratio vpnhub/strongSwan**")):
            d, suffix = (2, "x") if what == "ratio" else (digits, "")
            better = f["higher_is_better"] if what != "strongswan" else None
            label = f"{f['label']} ({f['unit']})" if what == "vpnhub" else ""
            lines.append(f"| {label} | {name} | {cell(f['before'][what], d, suffix)} | "
                         f"{cell(f['after'][what], d, suffix)} | "
                         f"{change(f['change_pct'][what], better)} |")
    return lines


def runs_table(records: list[dict[str, Any]]) -> list[str]:
    lines = ["| run | benchmark | commit | load avg before | both cores busy | exit |"
             " vpnhub / strongSwan / ratio |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        busy = "-" if r["machine_busy"] is None else f"{r['machine_busy'] * 100:.0f}%"
        figs = "; ".join(
            f"{k}: {fmt(v['vpnhub'], 2)} / {fmt(v['strongswan'], 2)} / {fmt(v['ratio'], 2)}x"
            for k, v in r["figures"].items())
        lines.append(f"| {r['run']} | {r['bench']} | {r['side']} {r['commit'][:7]} | "
                     f"{' '.join(r['loadavg'])} | {busy} | {r['exit']} | {figs} |")
    return lines


def named(side: dict[str, str]) -> str:
    """A revision as given, with its commit unless it was given as a hash."""
    short = side["commit"][:7]
    return short if side["commit"].startswith(side["rev"]) else f"{side['rev']} ({short})"


def markdown(doc: dict[str, Any]) -> str:
    b, a = doc["sides"]["before"], doc["sides"]["after"]
    env = doc["environment"]
    lines = [
        f"# Before/after: {named(b)} vs {named(a)}",
        "",
        f"`bench/compare.py`, {doc['started']} to {doc['finished']} UTC,"
        f" {doc['runs']} run(s) of each benchmark per commit, alternating before/after."
        f" Machine: {env['cpus']} CPUs ({env['cpu_model']}), Python {env['python']},"
        f" load average at the start {' '.join(doc['loadavg_start'])}."
        + (" **Smoke run: seconds-long benchmarks, the figures mean nothing.**"
           if doc["smoke"] else ""),
        "",
        "Each run measures vpnhub and strongSwan in the same process; the ratio"
        " vpnhub/strongSwan is computed per run, then its median and range are taken."
        " \"median moved\" is the after median against the before median.",
        "",
        *figures_table(doc["figures"]),
        "",
        "## Runs",
        "",
        *runs_table(doc["records"]),
        "",
        "## Commands",
        "",
        "```",
        *doc["commands"],
        "```",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def environment() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    return {"cpus": os.cpu_count(), "cpu_model": model,
            "python": sys.version.split()[0], "python_path": PYTHON}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="the commit before the change (any git revision)")
    ap.add_argument("--after", help="the commit with the change")
    ap.add_argument("--runs", type=int, default=3, help="runs of each benchmark per commit")
    ap.add_argument("--out", type=Path, help="results directory (default: a new one under"
                                             " /tmp/vpnhub-bench/)")
    ap.add_argument("--markdown", type=Path, help="also write the Markdown summary here")
    ap.add_argument("--prefix", help="lab prefix of the benchmark runs (default: vhbc + hex)")
    ap.add_argument("--patch-before", type=Path,
                    help="a patch applied to the before commit's worktree (git apply):"
                         " a fix of the benchmark scripts that came with the change")
    ap.add_argument("--smoke", action="store_true",
                    help="both commits HEAD, 1 run, seconds-long benchmarks")
    args = ap.parse_args(argv)
    if args.smoke:
        args.before, args.after, args.runs = args.before or "HEAD", args.after or "HEAD", 1
    if not args.before or not args.after:
        ap.error("--before and --after are required (or --smoke)")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    return args


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    # a KeyboardInterrupt unwinds through the finally blocks that stop the
    # running benchmark and remove the worktrees
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return compare(args)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'Ctrl-C'}): the running benchmark was stopped,"
            " its lab and the worktrees removed")
        return 130


def compare(args: argparse.Namespace) -> int:
    out: Path = args.out or Path("/tmp/vpnhub-bench") / time.strftime("compare-%Y%m%d-%H%M%S")
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    prefix = args.prefix or f"vhbc{secrets.token_hex(2)}"
    bench_args = SMOKE_ARGS if args.smoke else BENCH_ARGS
    commands: list[str] = []
    records: list[dict[str, Any]] = []
    doc: dict[str, Any] = {"bench": "compare", "smoke": args.smoke, "runs": args.runs,
                           "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                           "loadavg_start": loadavg(), "environment": environment(),
                           "prefix": prefix}
    patches = {"before": args.patch_before} if args.patch_before else None
    doc["patch_before"] = str(args.patch_before) if args.patch_before else None
    with worktrees({"before": args.before, "after": args.after}, commands, patches) as sides:
        doc["sides"] = {n: {"rev": s.rev, "commit": s.commit, "tree": str(s.tree),
                            "vpnhub_imported_from": check_import(s)}
                        for n, s in sides.items()}
        for i in range(1, args.runs + 1):
            for bench in BENCHES:
                for name in SIDES:
                    records.append(one_run(i, bench, sides[name], bench_args[bench], prefix,
                                           runs_dir, commands))
    doc["worktrees_removed"] = not any(Path(s["tree"]).exists()
                                       for s in doc["sides"].values())
    doc["finished"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    doc["commands"] = commands
    doc["records"] = records
    doc["figures"] = summarise(records, args.runs)
    text = markdown(doc)
    (out / "summary.json").write_text(json.dumps(doc, indent=2))
    (out / "summary.md").write_text(text)
    if args.markdown is not None:
        args.markdown.write_text(text)
    print(text)
    log(f"results: {out / 'summary.md'}, {out / 'summary.json'}")
    return 0 if complete(doc["figures"]) else 1


if __name__ == "__main__":
    sys.exit(main())
