"""The `vpnhub` command: serve, sessions, logout, cluster, connect, status, lab."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vpnhub.admin import request, request_sessions
from vpnhub.admintext import format_cluster, format_cluster_sessions, format_sessions

DEFAULT_SOCKET = "/run/vpnhub/admin.sock"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vpnhub", description="IPsec remote-access VPN with NAT-T")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the concentrator in the foreground")
    s.add_argument("--config", required=True, type=Path, help="TOML configuration file")
    s.add_argument("--check", action="store_true", help="only check the configuration")
    for name, helptext in (("sessions", "the Session Summary and Remote Access Sessions"),
                           ("logout", "end a user's sessions, or one session by its id"),
                           ("cluster", "the cluster's members, their load, the database")):
        c = sub.add_parser(name, help=helptext)
        if name == "logout":
            c.add_argument("user", help="a user name; with --member or --session, a session"
                           " id (as `vpnhub sessions --cluster` shows it)")
            c.add_argument("--member", help="the cluster member that has the session")
            c.add_argument("--session", action="store_true",
                           help="the argument is a session id of this concentrator")
        c.add_argument("--config", type=Path, help="find the admin socket in this config")
        c.add_argument("--socket", help=f"admin socket (default {DEFAULT_SOCKET})")
        if name == "sessions":
            c.add_argument("--cluster", action="store_true",
                           help="every cluster member's sessions (the cluster directory)")
        if name in ("sessions", "cluster"):
            c.add_argument("--json", action="store_true", help="machine-readable output")
    c = sub.add_parser("connect", help="connect to a concentrator (the client)")
    c.add_argument("--profile", required=True, type=Path, help="TOML profile or Cisco .pcf")
    c.add_argument("--user", help="XAUTH user name (default: the profile's)")
    c.add_argument("--password-file", type=Path, help="read the XAUTH password from here")
    c.add_argument("-v", "--verbose", action="store_true",
                   help="log every message, vendor ID, NAT detection, Mode Config, SPIs")
    c.add_argument("--log-file", type=Path, help="also write the full log here")
    c.add_argument("--no-dns", action="store_true", help="print the DNS servers, do not set")
    c.add_argument("--reconnect", action="store_true", help="reconnect after a failure")
    c.add_argument("--status-socket", type=Path, help="where `vpnhub status` asks")
    c.add_argument("--no-tun-offload", action="store_true",
                   help="open the TUN without IFF_VNET_HDR offloads (one packet per I/O)")
    st = sub.add_parser("status", help="the client's status window")
    st.add_argument("--socket", type=Path, help="status socket of `vpnhub connect`")
    st.add_argument("--json", action="store_true")
    from vpnhub.lab.commands import add_lab_parser, run_lab

    add_lab_parser(sub)
    args = p.parse_args(argv)
    if args.command == "lab":
        return run_lab(args)
    if args.command == "serve":
        return _serve(args.config, args.check)
    if args.command == "connect":
        return _connect(args)
    if args.command == "status":
        return _status(args)
    sock = _socket_path(args)
    if args.command == "sessions":
        return _sessions(sock, args.json, cluster=args.cluster)
    if args.command == "cluster":
        return _cluster(sock, args.json)
    if args.member or args.session:
        return _logout_session(sock, args.user, args.member)
    return _logout(sock, args.user)


def _serve(path: Path, check_only: bool) -> int:
    from vpnhub.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as e:
        print(f"vpnhub: configuration error: {e}", file=sys.stderr)
        return 2
    if config.pki is not None:  # the files are X.509: checked by vpnhub.pki (issue 14)
        from vpnhub.pki.credentials import PkiError, load_credentials

        try:
            load_credentials(config.pki)
        except PkiError as e:
            print(f"vpnhub: configuration error: {path}: {e}", file=sys.stderr)
            return 2
    if check_only:
        print(f"{path}: configuration OK ({len(config.groups)} group(s),"
              f" {len(config.users)} user(s))")
        return 0
    from vpnhub.concentrator.memory import use_system_malloc

    use_system_malloc()  # memory freed after a flood goes back to the system
    from vpnhub.concentrator.service import serve
    from vpnhub.eventlog import EventLog

    log = EventLog(console_severity=config.log.console_severity,
                   keep_severity=config.log.keep_severity, size=config.log.buffer_events)
    return serve(config, log)


def _socket_path(args: argparse.Namespace) -> str:
    if args.socket:
        return str(args.socket)
    if args.config:
        from vpnhub.config import ConfigError, load_config

        try:
            return str(load_config(args.config).admin.socket)
        except ConfigError as e:
            print(f"vpnhub: configuration error: {e}", file=sys.stderr)
            raise SystemExit(2) from e
    return DEFAULT_SOCKET


def _talk(sock_path: str, req: dict[str, Any], *, walk: bool = False) -> dict[str, Any] | None:
    """One request (`walk`: every page of `sessions`, joined)."""
    try:
        if walk:
            return request_sessions(sock_path, cluster=bool(req.get("cluster")))
        return request(sock_path, req)
    except (OSError, ValueError) as e:
        print(f"vpnhub: cannot reach the concentrator at {sock_path}: {e}"
              " (is `vpnhub serve` running? --socket / --config name its admin socket)",
              file=sys.stderr)
        return None


def _sessions(sock_path: str, as_json: bool, *, cluster: bool = False) -> int:
    reply = _talk(sock_path, {"cmd": "sessions", "cluster": cluster}, walk=True)
    if reply is None:
        return 1
    if cluster and "error" in reply:
        print(f"vpnhub: {reply['error']}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(reply, indent=2))
        return 0
    print(format_cluster_sessions(reply) if cluster else format_sessions(reply))
    return 0


def _cluster(sock_path: str, as_json: bool) -> int:
    reply = _talk(sock_path, {"cmd": "cluster"})
    if reply is None:
        return 1
    if "error" in reply:
        print(f"vpnhub: {reply['error']}", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2) if as_json else format_cluster(reply))
    return 0


def _logout_session(sock_path: str, sid: str, member: str | None) -> int:
    req: dict[str, Any] = {"cmd": "logout", "session": sid.lower()}
    if member:
        req["member"] = member
    reply = _talk(sock_path, req)
    if reply is None:
        return 1
    if "error" in reply:
        print(f"vpnhub: {reply['error']}", file=sys.stderr)
        return 1
    where = f" on member {reply['member']}" if reply.get("member") else ""
    print(f"logged out session {sid}{where}")
    return 0


def _logout(sock_path: str, user: str) -> int:
    reply = _talk(sock_path, {"cmd": "logout", "user": user})
    if reply is None:
        return 1
    if "error" in reply:
        print(f"vpnhub: {reply['error']}", file=sys.stderr)
        return 1
    print(f"logged out {reply.get('logged_out')} session(s) of {user}")
    return 0


def _connect(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from vpnhub.client.certs import client_signer
    from vpnhub.client.credentials import resolve_credentials
    from vpnhub.client.driver import EXIT_CONFIG, Options, VpnClient
    from vpnhub.client.profile import ProfileError, load_profile

    try:
        profile = load_profile(args.profile)
        signer = client_signer(profile)
        user, password = resolve_credentials(
            profile, user=args.user, password_file=args.password_file, env=os.environ,
            interactive=sys.stdin.isatty())
    except (ProfileError, ValueError, OSError) as e:
        print(f"vpnhub: {e}", file=sys.stderr)
        return EXIT_CONFIG
    opts = Options(user=user, password=password, verbose=args.verbose,
                   no_dns=args.no_dns or bool(getattr(profile, "no_dns", False)),
                   reconnect=args.reconnect or bool(getattr(profile, "reconnect", False)),
                   status_socket=args.status_socket, log_file=args.log_file, signer=signer,
                   tun_offload=not args.no_tun_offload)
    return asyncio.run(VpnClient(profile, opts).run())


def _status(args: argparse.Namespace) -> int:
    from vpnhub.client.driver import DEFAULT_STATUS_DIR, format_status

    path = args.socket
    if path is None:
        found = sorted(DEFAULT_STATUS_DIR.glob("client-*.sock"))
        if not found:
            print("vpnhub: no client is running (no status socket in"
                  f" {DEFAULT_STATUS_DIR}; --socket names one)", file=sys.stderr)
            return 1
        path = found[0]
    reply = _talk(str(path), {"cmd": "status"})
    if reply is None:
        return 1
    print(json.dumps(reply, indent=2) if args.json else format_status(reply))
    return 0
