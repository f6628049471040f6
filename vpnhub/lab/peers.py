"""Real open-source peers for interop in the lab: vpnc and strongSwan charon.

- ``start_vpnc``: the Cisco-compatible client vpnc in a client namespace
  (Aggressive Mode, group PSK, XAUTH, Mode Config, NAT-T, ESP on a TUN).
- ``start_strongswan_concentrator``: charon as the concentrator (what the
  vpnhub concentrator is compared with and will be swapped in for).
- ``start_strongswan_client``: charon as a second, independent IKEv1 XAUTH
  client implementation.

Nothing host-wide is used or changed: configurations are rendered from
``templates/`` into the lab's run directory, charon runs in a private mount
namespace with a tmpfs on /run (its pid file), credentials go to 0600 files
and never to a command line or a log line.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vpnhub.lab.procs import Proc
from vpnhub.lab.topology import (
    CONC_PUBLIC,
    LAN_HOST,
    POOL,
    PRIVATE_LAN,
    Host,
    LabError,
    Topology,
    wait_until,
)

GROUP_ID = "vpngroup"
GROUP_PSK = "labgroupsecret"
MAX_USERS = 16
# XAUTH users: client n (c1.., then d1..) logs in as vpnuser<n> / userpass<n>
USERS: dict[str, str] = {f"vpnuser{n}": f"userpass{n}" for n in range(1, MAX_USERS + 1)}

CHARON = "/usr/lib/ipsec/charon"
SWANCTL_SUBDIRS = ("x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey",
                   "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12")


@dataclass(frozen=True)
class Suite:
    """One cipher suite: strongSwan proposal strings, and whether vpnc needs its weak flags."""

    name: str
    ike: str
    esp: str
    weak: bool = False


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("aes128-sha1", "aes128-sha1-modp1024", "aes128-sha1"),
        Suite("aes256-sha1", "aes256-sha1-modp1024", "aes256-sha1"),
        Suite("3des-md5", "3des-md5-modp1024", "3des-md5", weak=True),  # the document's
    )
}


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill the ``@NAME@`` placeholders of templates/<template>; all must be given."""
    text = (resources.files("vpnhub.lab") / "templates" / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    missing = sorted(set(re.findall(r"@([A-Z_]+)@", text)))
    if missing:
        raise LabError(f"template {template}: no value for {', '.join(missing)}")
    return text


def _write_private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def client_number(topo: Topology, host: Host) -> int:
    """1-based position of host among the lab's clients (behind the PAT first)."""
    return [*topo.clients, *topo.direct].index(host) + 1


def vpnc_script_path() -> Path:
    return Path(str(resources.files("vpnhub.lab") / "vpnc-script-lab"))


# ---------------------------------------------------------------------------- vpnc
@dataclass
class VpncClient:
    """A running vpnc in one lab client."""

    topo: Topology
    host: Host
    proc: Proc
    env_dir: Path
    username: str

    @property
    def log(self) -> Path:
        return self.proc.log

    def exited(self) -> str | None:
        """Why vpnc is gone (for wait helpers), or None while it runs."""
        rc = self.proc.returncode
        if rc is None:
            return None
        tail = self.proc.log_text().strip().splitlines()[-3:]
        return f"vpnc exited with {rc}: {' | '.join(tail)}"

    def env(self, reason: str = "connect") -> dict[str, str] | None:
        """Variables vpnc gave its script for `reason`, or None if not called yet."""
        f = self.env_dir / f"vpnc-env-{self.host.role}-{reason}.txt"
        try:
            lines = f.read_text().splitlines()
        except OSError:
            return None
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def wait_connected(self, timeout: float = 30.0) -> dict[str, str]:
        """Wait until the connect script has configured the TUN; returns its environment."""

        def connected() -> dict[str, str] | None:
            if reason := self.exited():
                raise LabError(f"[{self.host.role}] {reason}")
            return self.env("connect")

        return wait_until(connected, timeout, interval=0.01,
                          what=f"vpnc in {self.host.role} to configure {self.host.tun}")

    def wait_usable(self, timeout: float = 30.0, *, dst: str = LAN_HOST) -> float:
        """Seconds until dst answers a ping sent out of the TUN (not just "connected")."""
        return self.topo.wait_ping(self.host, dst, interface=self.host.tun, timeout=timeout,
                                   abort=self.exited)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM: vpnc sends its DELETEs and runs the disconnect script."""
        return self.proc.stop(timeout)


# `sh -c` loop: restart on exit; SIGTERM is passed on to vpnc (its DELETEs), then ends.
_SUPERVISOR = (
    'trap \'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0\' TERM INT; '
    'while :; do "$@" & child=$!; wait "$child"; '
    'echo "supervisor: vpnc exited with $?, starting it again in 1 s"; sleep 1; done'
)


def start_vpnc(
    topo: Topology,
    client: Host | str,
    *,
    username: str | None = None,
    password: str | None = None,
    gateway: str = CONC_PUBLIC,
    group: str = GROUP_ID,
    secret: str = GROUP_PSK,
    natt_mode: str = "natt",
    local_port: int = 500,
    dh: str = "dh2",
    pfs: str = "nopfs",
    dpd_idle: int = 300,
    weak: bool = False,
    debug: int = 1,
    extra_args: Sequence[str] = (),
    supervise: bool = False,
) -> VpncClient:
    """Start vpnc in `client` (foreground, non-interactive) towards the concentrator.

    local_port: vpnc's IKE source port. 500 like the Cisco client; every lab
    client has its own namespace, so several can all use 500 (two vpnc in ONE
    namespace need different ports, 0 = any). natt_mode: natt | none |
    force-natt | cisco-udp. weak: allow 3DES/MD5 if the concentrator picks them.
    Credentials go to a 0600 config file, not to the command line.
    supervise: run vpnc under a shell loop that starts it again 1 s after it exits
    (as operators run it from an init system); SIGTERM stops the loop and vpnc.
    """
    host = topo.host(client)
    n = client_number(topo, host)
    user = username or f"vpnuser{n}"
    pw = password if password is not None else USERS.get(user, "")
    run = topo.run_dir / f"vpnc-{host.role}"
    run.mkdir(parents=True, exist_ok=True)
    for old in run.glob("vpnc-env-*.txt"):
        old.unlink()
    conf = _write_private(
        run / "vpnc.conf",
        f"IPSec gateway {gateway}\nIPSec ID {group}\nIPSec secret {secret}\n"
        f"Xauth username {user}\nXauth password {pw}\n",
    )
    argv = [
        # vpnc prints with stdio: line-buffer it, or the log stays empty until exit
        "stdbuf", "-oL", "-eL",
        "vpnc", "--no-detach", "--non-inter", "--debug", str(debug),
        "--natt-mode", natt_mode, "--local-port", str(local_port),
        "--dh", dh, "--pfs", pfs, "--dpd-idle", str(dpd_idle),
        "--ifname", host.tun, "--ifmode", "tun",
        # system() runs it: "/bin/sh FILE" needs no exec bit on the file
        "--script", f"/bin/sh {shlex.quote(str(vpnc_script_path()))}",
        "--pid-file", str(run / "vpnc.pid"),
    ]
    if weak:
        argv += ["--enable-weak-encryption", "--enable-weak-authentication"]
    argv += [*extra_args, str(conf)]
    if supervise:
        argv = ["sh", "-c", _SUPERVISOR, "vpnc-supervisor", *argv]
    env = {"VPNHUB_LAB_ENV_DIR": str(run), "VPNHUB_LAB_HOST": host.role}
    proc = topo.spawn(host, argv, run / "vpnc.log", env=env, name=f"vpnc-{host.role}")
    return VpncClient(topo, host, proc, run, user)


# ---------------------------------------------------------------------------- charon
@dataclass
class Charon:
    """A running strongSwan charon in one lab host, driven with swanctl over vici."""

    topo: Topology
    host: Host
    proc: Proc
    run_dir: Path
    role: str  # "concentrator" | "client"

    @property
    def log(self) -> Path:
        return self.run_dir / "charon.log"

    @property
    def tun(self) -> str:
        """The TUN device kernel-libipsec creates in the host (ESP in userspace)."""
        return "ipsec0"

    @property
    def vici_uri(self) -> str:
        return f"unix://{self.run_dir / 'charon.vici'}"

    @property
    def swanctl_conf(self) -> Path:
        return self.run_dir / "swanctl" / "swanctl.conf"

    def swanctl(self, *args: str, check: bool = True,
                timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self.topo.exec(
            self.host, ["swanctl", *args, "--uri", self.vici_uri], check=check,
            timeout=timeout, env={"STRONGSWAN_CONF": str(self.run_dir / "strongswan.conf")},
        )

    def load(self) -> None:
        """(Re)load connections, pools and secrets from the rendered swanctl.conf."""
        self.swanctl("--load-all", "--file", str(self.swanctl_conf))

    def list_sas(self) -> str:
        return self.swanctl("--list-sas", check=False).stdout

    def established(self) -> int:
        """Number of IKE SAs in state ESTABLISHED."""
        return len(re.findall(r"\bESTABLISHED\b", self.list_sas()))

    def initiate(self, child: str = "lan", ike: str = "home",
                 timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self.swanctl("--initiate", "--child", child, "--ike", ike,
                            "--timeout", str(int(timeout)), check=False, timeout=timeout + 5)

    def terminate(self, ike: str = "home") -> None:
        self.swanctl("--terminate", "--ike", ike, check=False)

    def stop(self, timeout: float = 5.0) -> int | None:
        return self.proc.stop(timeout)


def _start_charon(topo: Topology, host: Host, role: str, strongswan_conf: str,
                  swanctl_conf: str) -> Charon:
    run = topo.run_dir / f"charon-{host.role}"
    for sub in SWANCTL_SUBDIRS:  # swanctl --load-all scans these next to the file
        (run / "swanctl" / sub).mkdir(parents=True, exist_ok=True)
    vici = run / "charon.vici"
    if len(str(vici)) > 100:  # sun_path is 108 bytes
        raise LabError(f"run directory too long for a unix socket: {vici}")
    vici.unlink(missing_ok=True)
    conf = _write_private(run / "strongswan.conf", strongswan_conf)
    _write_private(run / "swanctl" / "swanctl.conf", swanctl_conf)
    # /run/charon.pid must not meet another charon's: own mount namespace, tmpfs /run
    argv = ["unshare", "--mount", "sh", "-c",
            f"mount -t tmpfs vpnhub-lab /run && exec {CHARON}"]
    proc = topo.spawn(host, argv, run / "charon.stdout", env={"STRONGSWAN_CONF": str(conf)},
                      name=f"charon-{host.role}")
    charon = Charon(topo, host, proc, run, role)

    def ready() -> bool:
        if not proc.alive():
            tail = charon.log.read_text(errors="replace") if charon.log.exists() else ""
            raise LabError(f"charon in {host.role} exited: {proc.log_text()[-300:]}"
                           f"{tail[-800:]}")
        return vici.is_socket()

    wait_until(ready, 15.0, what=f"charon vici socket in {host.role}")
    charon.load()
    return charon


def start_strongswan_concentrator(
    topo: Topology,
    *,
    suite: str = "aes128-sha1",
    users: Mapping[str, str] = USERS,
    group: str = GROUP_ID,
    psk: str = GROUP_PSK,
    pool: str = POOL,
    split_include: str = PRIVATE_LAN,
    dns: str = LAN_HOST,
) -> Charon:
    """charon + kernel-libipsec as the concentrator in topo.conc, loaded and ready."""
    s = SUITES[suite]
    ipaddress.ip_network(pool)  # fail early on a typo
    secrets = "\n".join(
        f'    xauth-{i} {{\n        id = {name}\n        secret = "{pw}"\n    }}'
        for i, (name, pw) in enumerate(users.items(), start=1)
    )
    run = topo.run_dir / f"charon-{topo.conc.role}"
    sw = render("strongswan-concentrator.conf", {"RUN": str(run)})
    sc = render("swanctl-concentrator.conf", {
        "LOCAL_ADDR": topo.conc.addr, "IKE": s.ike, "ESP": s.esp, "GROUP": group, "PSK": psk,
        "POOL": pool, "DNS": dns, "SPLIT": split_include, "XAUTH_SECRETS": secrets,
    })
    return _start_charon(topo, topo.conc, "concentrator", sw, sc)


def start_strongswan_client(
    topo: Topology,
    client: Host | str,
    *,
    username: str | None = None,
    password: str | None = None,
    suite: str = "aes128-sha1",
    gateway: str = CONC_PUBLIC,
    group: str = GROUP_ID,
    psk: str = GROUP_PSK,
    fragmentation: str = "yes",
    fragment_size: int = 1280,
) -> Charon:
    """charon as an IKEv1 XAUTH client in `client` (connection "home", child "lan").

    fragmentation: strongSwan's IKE fragmentation setting (yes | accept | force | no);
    "force" sends even the first message in IKEv1 fragments.

    Loaded but not connected: call ``.initiate()``.
    """
    host = topo.host(client)
    s = SUITES[suite]
    user = username or f"vpnuser{client_number(topo, host)}"
    pw = password if password is not None else USERS.get(user, "")
    run = topo.run_dir / f"charon-{host.role}"
    sw = render("strongswan-client.conf", {"RUN": str(run), "FRAGSIZE": str(fragment_size)})
    sc = render("swanctl-client.conf", {
        "GATEWAY": gateway, "IKE": s.ike, "ESP": s.esp, "GROUP": group, "PSK": psk,
        "USER": user, "PASSWORD": pw, "FRAG": fragmentation,
    })
    return _start_charon(topo, host, "client", sw, sc)
