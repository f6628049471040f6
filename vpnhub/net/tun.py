"""Linux TUN device (layer-3 packets, no packet-information header).

``TunDevice`` opens ``/dev/net/tun`` with ``IFF_TUN | IFF_NO_PI`` (one IP
packet per read/write, no 4-byte prefix) and optionally ``IFF_MULTI_QUEUE``
(several fds on one interface, one per worker; see dataplane.py).  The fd is
non-blocking by default: the data plane reads until ``EAGAIN``.

``TunDevice(name, queues=N)`` opens N queues of one multi-queue interface
(``TunDevice.queues``, one ``TunQueue`` per data-plane worker, issue 16).
A packet written on any queue enters the host's stack the same way. Which
queue a packet from the host (from the LAN, to be encrypted) is read from is
the kernel's choice, not ours: tun_select_queue (drivers/net/tun.c) runs the
steering eBPF program if one was set (TUNSETSTEERINGEBPF, Linux 4.16), else
tun_automq_select_queue, which looks the packet's symmetric flow hash up in
the device's flow table and takes the queue that last *wrote* a packet of
that flow (tun_get_user records it with tun_flow_update; entries expire after
TUN_FLOW_EXPIRE, 3 s), or for an unknown flow the hash scaled to the number
of queues. So the replies to traffic a worker decrypted and wrote mostly come
back on its own queue, but a flow started from the LAN, or one idle for 3 s,
can be read by any worker, possibly not the one owning the SA it must be
encrypted with: the worker pool has to hand such packets over to the owner.

Interface set-up (link up, address, MTU, routes) calls the ``ip`` command of
iproute2 through ``subprocess``; pyroute2 is not needed for the handful of
calls made once per tunnel, and ``ip`` is on every machine that has TUN.
All of them accept ``netns=`` ("ip -n NAME ...").

``TunDevice(offload=True)`` (issue 16, vpnhub/net/tunoffload.py) adds
``IFF_VNET_HDR`` (a 10-byte ``virtio_net_hdr`` before every packet read and
written) and asks ``TUNSETOFFLOAD`` for checksum offload, TSO and USO: the
host stack may then hand up to 64 KiB TCP super-packets, and we may write
them. The flags are the interface's, so every queue is opened with the same
ones. What the kernel refuses is given up step by step (USO needs Linux
6.2; no offload at all still leaves the header); ``vnet_hdr`` and
``offloads`` say what was taken, ``offload_refused`` why not.

``FakeTun`` has the same small interface over a ``SOCK_SEQPACKET`` socket
pair: the data plane sees a real pollable fd with one packet per read, and
the test plays the kernel on the other end (``inject`` / ``sent``).

``enter_netns`` switches the calling thread into a named network namespace
(``ip netns add``) for as long as it takes to create TUN fds and sockets
there; they stay in that namespace afterwards.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Final, Protocol

from vpnhub.net import tunoffload
from vpnhub.net.accel import NETFAST

TUNSETIFF: Final = 0x400454CA
IFF_TUN: Final = 0x0001
IFF_NO_PI: Final = 0x1000
IFF_MULTI_QUEUE: Final = 0x0100
IFF_VNET_HDR: Final = 0x4000
TUNSETOFFLOAD: Final = 0x400454D0  # _IOW('T', 208, unsigned int)
CLONE_NEWNET: Final = 0x40000000
_IFREQ: Final = struct.Struct("16sH22x")  # struct ifreq: name + flags, padded to 40 bytes
MAX_PACKET: Final = 65535


def read_frames_py(fd: int, size: int, count: int) -> list[bytes]:
    """Up to `count` reads of at most `size` bytes on the non-blocking `fd`, in order,
    until one finds nothing (``EAGAIN`` ends the list, no exception). Another error
    is raised if it comes first, else the frames read before it are returned (the
    next call meets it again). The reference of ``_netfast.read_frames``: a wake-up's
    TUN reads end without the exception that cost as much as the read (issue 16)."""
    if fd < 0 or not 1 <= size <= READ_FRAMES_MAX_SIZE or not 1 <= count <= READ_FRAMES_MAX:
        raise ValueError("read_frames(): fd must be >= 0, size 1..1048576, count 1..64")
    frames: list[bytes] = []
    while len(frames) < count:
        try:
            frames.append(os.read(fd, size))
        except BlockingIOError:
            break
        except OSError:
            if frames:
                break
            raise
    return frames


class _ReadFrames(Protocol):
    def __call__(self, fd: int, size: int, count: int, /) -> list[bytes]: ...


READ_FRAMES_MAX: Final = 64  # frames a read_frames call may ask for
READ_FRAMES_MAX_SIZE: Final = 1 << 20
read_frames: _ReadFrames = read_frames_py if NETFAST is None else NETFAST.read_frames


class PacketDevice(Protocol):
    """What the data plane needs from a TUN: an fd carrying one packet per I/O."""

    name: str

    def fileno(self) -> int: ...

    def read(self) -> bytes: ...

    def write(self, packet: bytes) -> int: ...

    def close(self) -> None: ...


def ip(*args: str, netns: str | None = None) -> str:
    """Run ``ip [-n netns] args...``; raise ``RuntimeError`` with its stderr on failure."""
    cmd = ["ip", *(("-n", netns) if netns else ()), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")
    return res.stdout


@contextmanager
def enter_netns(name: str) -> Iterator[None]:
    """Run the body with the calling thread inside network namespace ``name``."""
    setns = getattr(os, "setns", None)  # Python >= 3.12
    libc = None if setns else ctypes.CDLL(None, use_errno=True)

    def _setns(fd: int) -> None:
        if setns is not None:
            setns(fd, CLONE_NEWNET)
        elif libc is not None and libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")

    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


class TunQueue:
    """One fd (queue) of a TUN interface: one packet per read/write.

    A multi-queue interface has one per worker; each is a ``PacketDevice`` the
    worker's data plane can poll on its own."""

    def __init__(self, fd: int, name: str, vnet_hdr: bool = False) -> None:
        self._fd = fd
        self.name = name
        self.vnet_hdr = vnet_hdr  # a virtio_net_hdr before every packet (tunoffload.py)

    def fileno(self) -> int:
        return self._fd

    def read(self) -> bytes:
        """One packet (with its virtio_net_hdr if ``vnet_hdr``); raises
        ``BlockingIOError`` when none is queued."""
        return os.read(self._fd, tunoffload.READ_SIZE)

    def write(self, packet: bytes) -> int:
        return os.write(self._fd, packet)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# TUNSETOFFLOAD sets, best first. USO needs Linux 6.2 and both families at once
# (drivers/net/tun.c set_offload: EINVAL otherwise); the IPv6 ones cost nothing, the
# data plane drops IPv6 whatever its size.
_TSO: Final = tunoffload.TUN_F_CSUM | tunoffload.TUN_F_TSO4 | tunoffload.TUN_F_TSO6
OFFLOAD_SETS: Final = (
    _TSO | tunoffload.TUN_F_USO4 | tunoffload.TUN_F_USO6,
    _TSO,
    tunoffload.TUN_F_CSUM,
)


def set_offload(fd: int) -> tuple[int, str]:
    """The best TUNSETOFFLOAD set the kernel takes on `fd` (0 if none) and, when
    the first was refused, the kernel's answer."""
    refused = ""
    for flags in OFFLOAD_SETS:
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, flags)
        except OSError as exc:
            refused = refused or f"TUNSETOFFLOAD {flags:#x}: {exc.strerror}"
            continue
        return flags, refused
    return 0, refused


def _open_queue(name: str, flags: int, nonblocking: bool, netns: str | None) -> tuple[int, str]:
    """An fd of interface `name` (created if missing) and the name the kernel gave."""
    oflags = os.O_RDWR | os.O_CLOEXEC | (os.O_NONBLOCK if nonblocking else 0)
    # The namespace of the device is the one current when /dev/net/tun is opened.
    with enter_netns(netns) if netns else nullcontext():
        fd = os.open("/dev/net/tun", oflags)
    try:
        ifr = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), flags))
    except OSError:
        os.close(fd)
        raise
    return fd, _IFREQ.unpack(ifr)[0].rstrip(b"\0").decode()


class TunDevice:
    """An open TUN interface (``IFF_TUN | IFF_NO_PI``) and its queue(s).

    ``fileno``, ``read`` and ``write`` use the first queue: with one queue this is
    the single-queue device it always was. ``queues`` lists every queue."""

    def __init__(
        self,
        name: str = "",
        *,
        multi_queue: bool = False,
        nonblocking: bool = True,
        netns: str | None = None,
        queues: int = 1,
        offload: bool = False,
    ) -> None:
        """Create (or attach to, for another multi-queue fd) interface ``name``.

        ``name`` may contain ``%d`` or be empty for a kernel-chosen ``tunN``.
        With ``netns`` the device is created inside that namespace. ``queues`` > 1
        opens that many fds with ``IFF_MULTI_QUEUE`` (TUNSETIFF with the same name
        on each attaches another queue; the kernel allows up to 256). ``offload``:
        ``IFF_VNET_HDR`` and TUNSETOFFLOAD (module doc); refused, the device is
        opened as without it and ``offload_refused`` says why.
        """
        if queues < 1:
            raise ValueError("a TUN has at least one queue")
        self.netns = netns
        self.multi_queue = multi_queue or queues > 1
        flags = IFF_TUN | IFF_NO_PI | (IFF_MULTI_QUEUE if self.multi_queue else 0)
        self.vnet_hdr = False
        self.offloads = 0
        self.offload_refused = ""
        fd, self.name = self._first_queue(name, flags, nonblocking, offload)
        if self.vnet_hdr:
            flags |= IFF_VNET_HDR
        self.queues: list[TunQueue] = [TunQueue(fd, self.name, self.vnet_hdr)]
        try:
            for _ in range(queues - 1):
                fd, _name = _open_queue(self.name, flags, nonblocking, netns)
                self.queues.append(TunQueue(fd, self.name, self.vnet_hdr))
        except OSError:
            self.close()
            raise

    def _first_queue(self, name: str, flags: int, nonblocking: bool,
                     offload: bool) -> tuple[int, str]:
        """The first fd, with IFF_VNET_HDR and the offloads if asked and taken."""
        if offload:
            try:
                fd, kname = _open_queue(name, flags | IFF_VNET_HDR, nonblocking, self.netns)
            except OSError as exc:
                self.offload_refused = f"IFF_VNET_HDR: {exc.strerror}"
            else:
                self.vnet_hdr = True
                self.offloads, self.offload_refused = set_offload(fd)
                return fd, kname
        return _open_queue(name, flags, nonblocking, self.netns)

    def fileno(self) -> int:
        return self.queues[0].fileno()

    def read(self) -> bytes:
        """One packet; raises ``BlockingIOError`` when none is queued."""
        return self.queues[0].read()

    def write(self, packet: bytes) -> int:
        return self.queues[0].write(packet)

    def add_queue(self) -> TunDevice:
        """Another fd on the same multi-queue interface (one per worker)."""
        if not self.multi_queue:
            raise ValueError("interface was not opened with IFF_MULTI_QUEUE")
        return TunDevice(self.name, multi_queue=True, netns=self.netns, offload=self.vnet_hdr)

    def close(self) -> None:
        """Every queue; a non-persistent TUN disappears with its last fd."""
        for q in self.queues:
            q.close()

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration through iproute2 ---------------------------------------

    def configure(
        self,
        address: str | None = None,
        *,
        peer: str | None = None,
        mtu: int | None = None,
        routes: Sequence[str] = (),
        up: bool = True,
    ) -> None:
        """Address (CIDR, e.g. "10.40.1.1/32"), MTU, link up, then routes via the TUN."""
        if mtu is not None:
            ip("link", "set", "dev", self.name, "mtu", str(mtu), netns=self.netns)
        if address is not None:
            extra = ("peer", peer) if peer else ()
            ip("addr", "add", address, *extra, "dev", self.name, netns=self.netns)
        if up:
            ip("link", "set", "dev", self.name, "up", netns=self.netns)
        for prefix in routes:
            self.add_route(prefix)

    def add_route(self, prefix: str, *, src: str | None = None) -> None:
        extra = ("src", src) if src else ()
        ip("route", "replace", prefix, "dev", self.name, *extra, netns=self.netns)

    def del_route(self, prefix: str) -> None:
        ip("route", "del", prefix, "dev", self.name, netns=self.netns)


class FakeTun:
    """In-memory TUN: a packet socket pair, the far end played by the test."""

    def __init__(self, name: str = "faketun0") -> None:
        self.name = name
        self._dev, self._kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._dev.setblocking(False)
        self._kernel.setblocking(False)
        for s in (self._dev, self._kernel):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)

    def fileno(self) -> int:
        return self._dev.fileno()

    def read(self) -> bytes:
        return os.read(self._dev.fileno(), MAX_PACKET)

    def write(self, packet: bytes) -> int:
        return os.write(self._dev.fileno(), packet)

    # The "kernel" side.
    def inject(self, packet: bytes) -> None:
        """Queue a packet as if the host routed it into the tunnel."""
        self._kernel.send(packet)

    def sent(self) -> list[bytes]:
        """Packets the data plane wrote to the device since the last call."""
        out = []
        while True:
            try:
                out.append(self._kernel.recv(MAX_PACKET))
            except BlockingIOError:
                return out
            except OSError as exc:  # pragma: no cover
                if exc.errno == errno.EAGAIN:
                    return out
                raise

    def close(self) -> None:
        self._dev.close()
        self._kernel.close()
