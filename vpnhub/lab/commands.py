"""`vpnhub lab`'s command line: the parser and the dispatch of its subcommands.

The lab itself (its plan, the running lab, the daemon, the commands that act on
it) is `labctl`; the scenarios build on `labctl`. This module sits above both,
so that `labctl` never imports the scenarios that import it, and the `vpnhub`
CLI imports only this.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vpnhub.lab import scenarios
from vpnhub.lab.labctl import (
    CLIENT_KINDS,
    SUITE_NAMES,
    cmd_console,
    cmd_down,
    cmd_exec,
    cmd_logs,
    cmd_status,
    cmd_up,
    cmd_xlate,
    fail,
    vpnhub_client_problem,
)
from vpnhub.lab.topology import DEFAULT_PREFIX, PREFIX_RE, LabError


def add_lab_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``lab`` and its subcommands to the ``vpnhub`` parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--prefix", default=DEFAULT_PREFIX,
                        help=f"lab name: namespaces <prefix>-<host> (default {DEFAULT_PREFIX};"
                             " tests use their own)")
    lab: argparse.ArgumentParser = subparsers.add_parser(
        "lab", help="the document's network in namespaces: up, status, xlate, exec, logs,"
                    " scenario, down",
        description="The Cisco note's network on this machine: clients behind a PAT, the"
                    " concentrator, the private LAN (docs/LAB.md).")
    sub = lab.add_subparsers(dest="lab_command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", parents=[common], help="build the lab and connect every client")
    up.add_argument("--clients", type=int, default=2, help="clients behind the PAT (default 2)")
    up.add_argument("--concentrators", type=int, default=1, metavar="N",
                    help="1 (default): one concentrator; 2 .. 4: a cluster behind the virtual"
                         " address (PostgreSQL, keepalived; docs/CLUSTER.md)")
    up.add_argument("--client", choices=CLIENT_KINDS, default="vpnc",
                    help="VPN client software (default vpnc)")
    up.add_argument("--suite", choices=SUITE_NAMES, default="modern",
                    help="legacy: the document's era (DH group 2, 3DES/MD5 allowed);"
                         " modern (default)")
    up.add_argument("--nat-t", choices=("on", "off"), default="on",
                    help="the concentrator's NAT-T checkbox (off: the document's failure)")
    up.add_argument("--ipsec-lifetime", type=int, default=28800, metavar="SECONDS",
                    help="IPsec SA lifetime (60 .. 2592000; short ones show rekeys)")

    sub.add_parser("down", parents=[common], help="remove every namespace, link, process and"
                                                  " file of the lab")
    sub.add_parser("status", parents=[common], help="hosts, processes, tunnels, sessions")
    sub.add_parser("console", parents=[common], help="the web console's address, user and"
                                                     " password (open it in this machine's"
                                                     " browser)")
    x = sub.add_parser("xlate", parents=[common], help="the PAT's translations (show xlate)")
    x.add_argument("--detail", action="store_true", help="protocol, peer and flags too")
    e = sub.add_parser("exec", parents=[common], help="run a command in a lab host",
                       description="Run CMD in HOST's namespace (c1 .. cN, pat, inet, conc,"
                                   " lan; a cluster: m1 .. mN, db); without CMD, a shell.")
    e.add_argument("host")
    e.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS]")
    lg = sub.add_parser("logs", parents=[common], help="a host's logs (default: the"
                                                       " concentrator's event log)")
    lg.add_argument("host", nargs="?", default="conc",
                    help="conc (default), c1 .. cN, lan, pat, lab (the lab daemon); a"
                         " cluster: m1 .. mN (vpnhub, keepalived), db (PostgreSQL)")
    lg.add_argument("-n", "--lines", type=int, default=0, help="only the last N lines")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    sc = sub.add_parser("scenario", parents=[common], help="run a scenario: PASS or FAIL",
                        description="Run a scenario of the document; it reuses the running"
                                    " lab when it can, else builds (and removes) its own.")
    sc.add_argument("name", nargs="?", help="scenario name (omit to list them)")
    sc.add_argument("--client", choices=CLIENT_KINDS, default="vpnc",
                    help="client software of a lab the scenario builds (default vpnc)")
    sc.add_argument("--fresh", action="store_true",
                    help="always build the scenario's own lab, even if one is running")
    sc.add_argument("--own-prefix", default=None,
                    help="prefix of the lab the scenario builds (default vhs + random hex)")
    sc.add_argument("--save-logs", type=Path, default=None, metavar="DIR",
                    help="copy the scenario lab's logs to DIR before removing it")
    return lab


def run_lab(args: argparse.Namespace) -> int:
    """Run ``vpnhub lab <command>``; returns the exit status."""
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "up": cmd_up, "down": cmd_down, "status": cmd_status, "xlate": cmd_xlate,
        "exec": cmd_exec, "logs": cmd_logs, "scenario": cmd_scenario, "console": cmd_console,
    }
    if not PREFIX_RE.match(args.prefix):
        return fail(f"--prefix must match {PREFIX_RE.pattern}", 2)
    if os.geteuid() != 0 and args.lab_command != "logs":
        return fail("the lab needs root (network namespaces, nft, TUN devices)", 2)
    try:
        return commands[args.lab_command](args)
    except LabError as e:
        return fail(str(e), 1)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:  # e.g. `vpnhub lab up | head`: the lab goes on being built
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


# -- scenario
def cmd_scenario(args: argparse.Namespace) -> int:
    if not args.name:
        print(scenarios.list_text())
        return 0
    if args.name not in scenarios.SCENARIOS:
        return fail(f"no scenario {args.name!r}; scenarios: {', '.join(scenarios.SCENARIOS)}",
                    2)
    if args.client == "vpnhub" and (why := vpnhub_client_problem()):
        return fail(why, 2)
    return scenarios.run_scenario(
        args.name, running_prefix=args.prefix, client=args.client, fresh=args.fresh,
        own_prefix=args.own_prefix, save_logs=args.save_logs)


