"""Open Sessions tabs against a running concentrator (issue 13; run inside its namespace).

    python bench/pollers.py --socket ADMIN.sock --web http://127.0.0.1:8443 --user U
        --password-file F [--tabs 5] [--seconds 120] [--every 3] [--export]

What an operator with `--tabs` Sessions pages open does: each tab logs in on
its own (its own bearer token) and every `--every` seconds asks for one page
(`GET /api/v1/sessions?limit=100`) and the Session Summary
(`GET /api/v1/summary`), as the page's refresh does. With `--export`, one full
export (`GET /api/v1/sessions/export?format=jsonl`, streamed) runs once the
tabs are going; a 404 is reported as "not available". Meanwhile the admin
socket's `status` is read every second for the loop's worst delay over the
last 10 s (`LoopWatch`). Prints one JSON object: latency p50/p99/max of each
request kind, errors, the export's time and lines, the worst loop delay.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from listing import _http as listing_http


def _http(url: str, headers: dict[str, str], data: bytes | None = None,
          timeout: float = 60.0) -> tuple[int, bytes]:
    return listing_http(url, headers, data, timeout)


def _login(base: str, user: str, password: str) -> dict[str, str]:
    body = json.dumps({"username": user, "password": password}).encode()
    status, raw = _http(f"{base}/api/v1/login", {"Content-Type": "application/json"}, body)
    if status != 200:
        raise RuntimeError(f"login: HTTP {status}: {raw[:200]!r}")
    return {"Authorization": f"Bearer {json.loads(raw)['token']}"}


def pct(values: list[float], p: float) -> float | None:
    vals = sorted(values)
    if not vals:
        return None
    return vals[min(len(vals) - 1, max(0, -(-len(vals) * p // 100) - 1))]


class Tabs:
    def __init__(self, args: argparse.Namespace, password: str) -> None:
        self.args = args
        self.password = password
        self.base = args.web.rstrip("/")
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = {"page": [], "summary": []}
        self.errors: list[str] = []
        self.page_bytes = 0
        self.end = time.monotonic() + args.seconds
        self.loop_recent_max_ms = 0.0
        self.status_reads = 0
        self.export: dict[str, Any] = {}

    def tab(self, k: int) -> None:
        try:
            auth = _login(self.base, self.args.user, self.password)
        except (OSError, RuntimeError) as e:
            with self.lock:
                self.errors.append(f"tab {k}: {e}")
            return
        time.sleep(self.args.every * k / self.args.tabs)  # tabs opened at different times
        while time.monotonic() < self.end:
            t_next = time.monotonic() + self.args.every
            for kind, path in (("page", "/api/v1/sessions?limit=100"),
                               ("summary", "/api/v1/summary")):
                t = time.monotonic()
                try:
                    status, body = _http(self.base + path, auth)
                except OSError as e:
                    status, body = -1, str(e).encode()
                dt = time.monotonic() - t
                with self.lock:
                    if status == 200:
                        self.times[kind].append(dt)
                        if kind == "page":
                            self.page_bytes = len(body)
                    else:
                        self.errors.append(f"{kind}: HTTP {status}: {body[:100]!r}")
            time.sleep(max(0.0, t_next - time.monotonic()))

    def run_export(self) -> None:
        try:
            auth = _login(self.base, self.args.user, self.password)
            req = urllib.request.Request(
                self.base + "/api/v1/sessions/export?format=jsonl", headers=auth)
            t = time.monotonic()
            lines = size = 0
            with urllib.request.urlopen(req, timeout=600) as r:
                for line in r:
                    lines += 1
                    size += len(line)
            self.export = {"s": time.monotonic() - t, "lines": lines, "bytes": size}
        except urllib.error.HTTPError as e:
            self.export = ({"result": "not available"} if e.code == 404
                           else {"error": f"HTTP {e.code}"})
        except (OSError, RuntimeError) as e:
            self.export = {"error": str(e)[:200]}

    def watch_loop(self) -> None:
        from vpnhub.admin import request

        while time.monotonic() < self.end:
            try:
                reply = request(self.args.socket, {"cmd": "status"}, timeout=10)
            except (OSError, ValueError):
                reply = {}
            recent = reply.get("loop_delay_recent_max_ms")
            if isinstance(recent, int | float):
                self.status_reads += 1
                self.loop_recent_max_ms = max(self.loop_recent_max_ms, float(recent))
            time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--web", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", type=Path, required=True)
    ap.add_argument("--tabs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--every", type=float, default=3.0)
    ap.add_argument("--export", action="store_true")
    args = ap.parse_args(argv)
    tabs = Tabs(args, args.password_file.read_text().strip())
    threads = [threading.Thread(target=tabs.tab, args=(k,)) for k in range(args.tabs)]
    threads.append(threading.Thread(target=tabs.watch_loop))
    if args.export:
        threads.append(threading.Thread(target=tabs.run_export))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out: dict[str, Any] = {"tabs": args.tabs, "seconds": args.seconds, "every": args.every,
                           "errors": tabs.errors[:20], "error_count": len(tabs.errors),
                           "page_bytes": tabs.page_bytes,
                           "loop_delay_recent_max_ms": tabs.loop_recent_max_ms,
                           "status_reads": tabs.status_reads}
    for kind, ts in tabs.times.items():
        out[kind] = {"n": len(ts), "p50_ms": _ms(pct(ts, 50)), "p99_ms": _ms(pct(ts, 99)),
                     "max_ms": _ms(max(ts, default=None))}
    if args.export:
        out["export"] = tabs.export
    print(json.dumps(out))
    return 0


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1e3, 2)


if __name__ == "__main__":
    sys.exit(main())
