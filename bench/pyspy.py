"""Sampling profiles of a running process with py-spy, summarised as text.

    sudo .venv/bin/python bench/pyspy.py PID [--seconds 10] [--out prof.txt]

``record()`` runs ``py-spy record --format raw`` (collapsed stacks, one line
per distinct stack with its sample count; idle threads are not sampled, so
the samples are where the CPU went) and ``summarise()`` turns that file into
the two lists that matter: where the CPU is spent *in* a function (self) and
*under* it (inclusive), both as shares of all samples. The raw file stays
next to the summary; ``py-spy`` can also render it as a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import functools
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    exe = Path(sys.executable).parent / "py-spy"
    if exe.exists():
        return str(exe)
    return shutil.which("py-spy")


def record(pid: int, seconds: float, raw_out: Path, *, rate: int = 250,
           stop: threading.Event | None = None) -> str | None:
    """Sample `pid` for `seconds`, or until `stop` is set (py-spy writes what it has
    on SIGINT); returns None on success, else why not."""
    exe = py_spy()
    if exe is None:
        return "py-spy is not installed (pip install -r bench/requirements.txt)"
    raw_out.parent.mkdir(parents=True, exist_ok=True)
    argv = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
            "--rate", str(rate), "--format", "raw", "--output", str(raw_out), "--nonblocking",
            "--threads"]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    except OSError as e:
        return f"py-spy failed: {e}"
    deadline = time.monotonic() + seconds + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if stop is not None and stop.wait(0.05):
            proc.send_signal(signal.SIGINT)
            break
        if stop is None:
            time.sleep(0.05)
    try:
        out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return "py-spy failed: it did not end"
    if proc.returncode != 0 or not raw_out.exists():
        return f"py-spy exit {proc.returncode}: {out.strip()[-300:]}"
    return None


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("/vpnhub/", "/site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/vpnhub/":
                path = "vpnhub/" + path
            break
    return f"{m.group('func')} ({path})"


# Frames every sample passes through (event loop, thread start, entry points):
# left out of the inclusive list, which would otherwise start with a dozen 100 % rows.
_PLUMBING = ("(asyncio/", "(<frozen runpy>", "(threading.py", "(vpnhub/__main__.py",
             "(vpnhub/cli.py", "(concurrent/futures/thread.py", "serve (vpnhub/concentrator",
             "Dataplane._run (", "<module> (")


def _with_line(frame: str) -> str:
    """'func (path:line)' -> 'path:line  <source text>' (the statement the samples are in)."""
    m = _FRAME.match(frame.strip())
    if not m or not m.group("line"):
        return _short(frame)
    path, line = m.group("file"), int(m.group("line"))
    short = _short(frame).rsplit("(", 1)[-1].rstrip(")")
    lines = _source(path)
    text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    return f"{short}:{line}  {text[:70]}"


@functools.lru_cache(maxsize=256)
def _source(path: str) -> list[str]:
    try:
        return Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return []


def summarise(raw: Path, top: int = 15) -> dict[str, object]:
    """Self and inclusive shares of the samples in a py-spy raw file, plus the self
    time per source file and per thread."""
    self_n: collections.Counter[str] = collections.Counter()
    incl_n: collections.Counter[str] = collections.Counter()
    by_file: collections.Counter[str] = collections.Counter()
    by_line: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if frames and frames[0].startswith(("thread ", "process ")):
            # --threads prefixes the stack with the thread (and process) name
            while frames and frames[0].startswith(("thread ", "process ")):
                head = frames.pop(0)
                if head.startswith("thread "):
                    threads[head] += n
        if not frames:
            continue
        total += n
        names = [_short(f) for f in frames]
        self_n[names[-1]] += n
        by_line[_with_line(frames[-1])] += n
        leaf_file = names[-1].rsplit("(", 1)[-1].rstrip(")")
        by_file[leaf_file] += n
        for name in set(names):
            if not any(p in name for p in _PLUMBING):
                incl_n[name] += n

    def share(c: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(k, v / total) for k, v in c.most_common(top)] if total else []

    return {"samples": total, "self": share(self_n), "inclusive": share(incl_n),
            "by_file": share(by_file), "lines": share(by_line),
            "threads": [(k, v / total) for k, v in threads.most_common()] if total else []}


def format_summary(title: str, s: dict[str, object], top: int = 12) -> str:
    lines = [f"### {title}", "", f"{s['samples']} samples (CPU only, idle not sampled)", ""]
    for what in ("self", "lines", "inclusive", "by_file", "threads"):
        rows = s.get(what) or []
        assert isinstance(rows, list)
        if not rows:
            continue
        lines.append(f"{what}:")
        lines += [f"  {share * 100:5.1f}%  {name}" for name, share in rows[:top]]
        lines.append("")
    return "\n".join(lines)


def profile(pid: int, seconds: float, out_dir: Path, name: str, title: str, *,
            stop: threading.Event | None = None) -> tuple[str, dict[str, object] | None]:
    """Record and summarise; writes out_dir/name.raw.txt and name.txt. Returns
    (summary text or the reason it failed, summary dict or None). `stop`: as record."""
    raw = out_dir / f"{name}.raw.txt"
    err = record(pid, seconds, raw, stop=stop)
    if err is not None:
        return err, None
    s = summarise(raw)
    text = format_summary(title, s)
    (out_dir / f"{name}.txt").write_text(text + "\n")
    return text, s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pid", type=int)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=Path("profile"))
    args = ap.parse_args()
    text, _ = profile(args.pid, args.seconds, args.out.parent, args.out.name,
                      f"pid {args.pid}, {args.seconds:g} s")
    print(text)


if __name__ == "__main__":
    main()
