"""FreeRADIUS (Debian's package) in a lab namespace, with a configuration of its own.

`start_freeradius(topo, users, clients)` copies the package's configuration
into the lab's run directory (the system's is never touched), points its
directories there, runs as root (no privilege drop: the run directory is
root's), replaces `clients.conf` and the `users` file, and makes it sign every
Access-Accept / Access-Reject with a Message-Authenticator (FreeRADIUS before
3.2.5 does not by itself; vpnhub requires it, RFC 3579 3.2). Then
``freeradius -X -d DIR`` in the namespace (foreground, debug log to the run
directory), stopped by the topology's ``down()`` whatever happens.

`detail_records()` parses the accounting detail file (one block per
Accounting-Request). `radclient()` sends a Disconnect / CoA request.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vpnhub.lab.procs import Proc
from vpnhub.lab.topology import Host, LabError, Topology, wait_until

SYSTEM_CONFIG = Path("/etc/freeradius/3.0")
SIGN_REPLY = "\tupdate reply {\n\t\tMessage-Authenticator := 0x00\n\t}\n"


@dataclass
class FreeRadius:
    topo: Topology
    host: Host
    proc: Proc
    config: Path
    log_dir: Path

    def log_text(self) -> str:
        return self.proc.log_text()

    def detail_records(self) -> list[dict[str, str]]:
        """Every accounting record of the detail files: attribute -> value (unquoted)."""
        records: list[dict[str, str]] = []
        for path in sorted((self.log_dir / "radacct").rglob("detail*")):
            for block in path.read_text(errors="replace").split("\n\n"):
                attrs = dict(re.findall(r"^\s+([\w-]+) = (.*)$", block, re.M))
                if attrs:
                    records.append({k: v.strip('"') for k, v in attrs.items()})
        return records

    def radclient(self, target: str, command: str, secret: str, attributes: str,
                  timeout: float = 3.0) -> subprocess.CompletedProcess[str]:
        """``radclient -x TARGET COMMAND SECRET`` with `attributes` on stdin."""
        argv = ["sh", "-c", f"printf '%s\\n' \"$0\" | radclient -x -r 1 -t {timeout:g}"
                f" {target} {command} \"$1\"", attributes, secret]
        return self.topo.exec(self.host, argv, timeout=timeout * 3 + 10)


def write_config(run_dir: Path, clients: dict[str, str], users: str,
                 instance: str = "") -> tuple[Path, Path]:
    """The package's configuration, adapted, in run_dir/raddb; returns (raddb, logdir).
    `instance`: a suffix of the directories, for a second server in the same lab."""
    raddb = run_dir / f"raddb{instance}"
    logs = run_dir / f"radius-log{instance}"
    if raddb.exists():
        shutil.rmtree(raddb)
    shutil.copytree(SYSTEM_CONFIG, raddb, symlinks=True)
    (run_dir / f"radius-run{instance}").mkdir(exist_ok=True)
    logs.mkdir(exist_ok=True)
    conf = raddb / "radiusd.conf"
    text = conf.read_text()
    text = re.sub(r"(?m)^raddbdir = .*$", f"raddbdir = {raddb}", text)
    text = re.sub(r"(?m)^logdir = .*$", f"logdir = {logs}", text)
    text = re.sub(r"(?m)^run_dir = .*$", f"run_dir = {run_dir / f'radius-run{instance}'}",
                  text)
    text = re.sub(r"(?m)^\s*(user|group) = freerad\s*$", "", text)
    conf.write_text(text)
    (raddb / "clients.conf").write_text("".join(
        f"client c{i} {{\n\tipaddr = {addr}\n\tsecret = {secret}\n}}\n"
        for i, (addr, secret) in enumerate(clients.items())))
    authorize = raddb / "mods-config" / "files" / "authorize"
    authorize.write_text(users)
    site = raddb / "sites-enabled" / "default"
    body = site.read_text()
    site.unlink()  # a link into sites-available: write our own file instead
    body = body.replace("post-auth {\n", "post-auth {\n" + SIGN_REPLY, 1)
    body = body.replace("Post-Auth-Type REJECT {\n", "Post-Auth-Type REJECT {\n" + SIGN_REPLY, 1)
    site.write_text(body)
    return raddb, logs


def start_freeradius(topo: Topology, host: Host | str, clients: dict[str, str],
                     users: str, timeout: float = 15.0, instance: str = "") -> FreeRadius:
    """`instance`: a suffix naming a second server (its own directories and log)."""
    h = topo.host(host)
    raddb, logs = write_config(topo.run_dir, clients, users, instance)
    proc = topo.spawn(h, ["freeradius", "-X", "-d", str(raddb)], f"freeradius{instance}.log",
                      name=f"freeradius{instance}")
    server = FreeRadius(topo, h, proc, raddb, logs)

    def ready() -> bool:
        if not proc.alive():
            raise LabError(f"freeradius exited with {proc.returncode}:\n"
                           + "\n".join(proc.log_text().splitlines()[-30:]))
        return "Ready to process requests" in proc.log_text()

    wait_until(ready, timeout, interval=0.1, what="freeradius to be ready")
    return server
