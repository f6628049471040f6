"""Time listing the sessions of a running concentrator (run inside its namespace).

    python bench/listing.py --socket ADMIN.sock [--web http://127.0.0.1:8443 --user U
                             --password-file F] [--repeat 3]

Prints one JSON object: for each way of listing, the wall-clock seconds of
every repetition and the number of sessions it returned:

- ``cli``: ``vpnhub sessions --json`` as an operator runs it (a new Python
  process: interpreter start-up included);
- ``admin_socket``: the same request on the admin socket from this process
  (the concentrator's own share);
- ``web_api``: ``GET /api/v1/sessions`` of the web manager with a bearer token
  (logged in once, not timed), when ``--web`` is given and it answers;
- ``web_page``: ``GET /sessions`` (the Remote Access Sessions HTML page).

A web request that runs into ``--web-timeout`` is recorded as such (the
concentrator may still be busy answering it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def _time_cli(sock: str) -> tuple[float, int | str]:
    t = time.monotonic()
    cp = subprocess.run([sys.executable, "-m", "vpnhub", "sessions", "--json", "--socket", sock],
                        capture_output=True, text=True, timeout=300)
    dt = time.monotonic() - t
    try:
        return dt, len(json.loads(cp.stdout)["sessions"])
    except (ValueError, KeyError):
        return dt, f"error: exit {cp.returncode}: {cp.stderr.strip()[-200:]}"


def _time_socket(sock: str) -> tuple[float, int | str]:
    from vpnhub.admin import request_sessions

    t = time.monotonic()
    try:
        reply = request_sessions(sock, timeout=300)  # every page (issue 13)
    except (OSError, ValueError) as e:
        return time.monotonic() - t, f"error: {e}"
    return time.monotonic() - t, len(reply.get("sessions", []))


def _http(url: str, headers: dict[str, str], data: bytes | None = None,
          timeout: float = 300) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers,
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _web(base: str, user: str, password: str, repeat: int, timeout: float,
         page: bool) -> dict[str, Any]:
    login = json.dumps({"username": user, "password": password}).encode()
    try:
        status, body = _http(f"{base}/api/v1/login", {"Content-Type": "application/json"},
                             login, timeout=30)
    except OSError as e:
        return {"error": f"web manager not reachable at {base}: {e}"}
    if status != 200:
        return {"error": f"login: HTTP {status}: {body[:200]!r}"}
    token = json.loads(body)["token"]
    auth = {"Authorization": f"Bearer {token}"}
    out: dict[str, Any] = {"web_api": []}
    todo = [("web_api", "/api/v1/sessions")]
    if page:
        out["web_page"] = []
        todo.append(("web_page", "/sessions"))
    for what, path in todo:
        for _ in range(repeat):
            t = time.monotonic()
            try:
                status, body = _http(f"{base}{path}", auth, timeout=timeout)
            except (OSError, TimeoutError) as e:  # e.g. the client's timeout
                out[what].append({"s": time.monotonic() - t, "timeout": True,
                                  "error": str(e)[:100]})
                break  # the server is still busy with it: do not pile up more
            dt = time.monotonic() - t
            entry: dict[str, Any] = {"s": dt, "status": status, "bytes": len(body)}
            if what == "web_api" and status == 200:
                entry["sessions"] = len(json.loads(body).get("sessions", []))
            out[what].append(entry)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--web")
    ap.add_argument("--user", default="")
    ap.add_argument("--password-file", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-cli", action="store_true", help="only the web manager")
    ap.add_argument("--web-page", action="store_true", help="also the /sessions HTML page")
    ap.add_argument("--web-timeout", type=float, default=300.0,
                    help="give up on one web request after this many seconds")
    args = ap.parse_args(argv)
    out: dict[str, Any] = {}
    if not args.no_cli:
        out["cli"], out["admin_socket"] = [], []
        for _ in range(args.repeat):
            dt, n = _time_cli(args.socket)
            out["cli"].append({"s": dt, "sessions": n})
            dt, n = _time_socket(args.socket)
            out["admin_socket"].append({"s": dt, "sessions": n})
    if args.web:
        pw = args.password_file.read_text().strip() if args.password_file else ""
        out.update(_web(args.web.rstrip("/"), args.user, pw, args.repeat, args.web_timeout,
                        args.web_page))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
