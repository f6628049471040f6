"""Client profiles for `vpnhub connect --profile FILE`: our TOML format and Cisco .pcf.

`load_profile(path)` reads either kind and returns one frozen `ClientProfile`.
A `.pcf` file (or, whatever its name, a file whose first line is `[main]`) is
read the way the Cisco VPN Client reads it; anything else is our TOML format.
docs/CLIENT-PROFILES.md documents both and how .pcf keys map to the fields.

Every problem is one `ProfileError` naming the file and the line, e.g.::

    work.pcf, line 6: enc_GroupPwd: cannot be decoded: checksum mismatch (...)
    home.toml, line 4: unknown key 'groupname' (did you mean 'group'?)

Group and user passwords are kept in `Secret`; no message quotes them.
"""

from __future__ import annotations

import codecs
import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar

from vpnhub.client.cisco_decrypt import CiscoDecodeError, decode_password
from vpnhub.ike.policy import MODERN_GROUPS
from vpnhub.secret import Secret

__all__ = [
    "ClientProfile",
    "IkeMode",
    "ProfileError",
    "TunnelingMode",
    "load_profile",
    "parse_pcf",
    "parse_toml_profile",
]

IKE_PORT = 500
DEFAULT_TCP_PORT = 10000  # the Cisco client's default TcpTunnelingPort
DEFAULT_INTERFACE = "vpnhub-c0"
DEFAULT_DPD_INTERVAL = 30
MODERN_DH_GROUPS = MODERN_GROUPS  # what the IKE policy accepts without allow_legacy
# What VPN 3000 era peers offer (RFC 2409 6.2, RFC 3526 2).
LEGACY_DH_GROUPS: Mapping[int, str] = MappingProxyType({2: "modp1024", 5: "modp1536"})


class TunnelingMode(StrEnum):
    """How to get through NAT when transparent tunneling is on."""

    NATT = "natt"  # NAT-T (UDP 4500) if the concentrator offers it, else IPsec over UDP
    UDP = "udp"  # Cisco IPsec over UDP only, on the port Mode Config gives
    TCP = "tcp"  # Cisco IPsec over TCP (cTCP) to tcp_port


class IkeMode(StrEnum):
    AGGRESSIVE = "aggressive"
    MAIN = "main"


class ProfileError(ValueError):
    """A profile cannot be used. `str()` is the message for the user.

    Attributes: `source` (file name), `line` (1-based; None when the file could
    not be read at all), `key` ("" for file-level problems), `reason`.
    """

    def __init__(self, reason: str, *, source: str, line: int | None = None, key: str = "") -> None:
        self.reason = reason
        self.source = source
        self.line = line
        self.key = key
        where = source if line is None else f"{source}, line {line}"
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")


@dataclass(frozen=True, kw_only=True)
class ClientProfile:
    """One connection entry, whichever file it came from (see CLIENT-PROFILES.md)."""

    host: str
    group: str
    group_password: Secret
    port: int = IKE_PORT
    username: str | None = None
    password: Secret | None = None
    transparent_tunneling: bool = True
    tunneling_mode: TunnelingMode = TunnelingMode.NATT
    tcp_port: int = DEFAULT_TCP_PORT
    force_keepalives: bool = False
    local_lan: bool = False
    dh_group: int = 14
    allow_legacy: bool = False
    ike_mode: IkeMode = IkeMode.AGGRESSIVE
    dpd_interval: int = DEFAULT_DPD_INTERVAL
    reconnect: bool = False
    no_dns: bool = False
    tunnel_interface: str = DEFAULT_INTERFACE
    description: str = ""
    backup_servers: tuple[str, ...] = ()
    # issue 14: "psk" (group key + XAUTH), "hybrid" (the concentrator's certificate,
    # checked against ca_file, + XAUTH) or "rsa" (our certificate and key too)
    auth: str = "psk"
    ca_file: Path | None = None
    certificate: Path | None = None
    key: Path | None = None
    source: Path | None = None
    source_format: str = "toml"  # "toml" or "pcf"
    locked: frozenset[str] = frozenset()  # .pcf keys the admin locked with '!'
    # .pcf keys vpnhub does not use, as written (key -> value); read-only.
    extra: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, repr=False
    )


# --------------------------------------------------------------------------- loading


def load_profile(path: str | PathLike[str]) -> ClientProfile:
    """Read a profile file: Cisco .pcf by extension or content, else TOML."""
    p = Path(path)
    source = str(p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ProfileError(f"cannot read file: {exc.strerror or exc}", source=source) from None
    suffix = p.suffix.lower()
    if suffix == ".pcf" or (suffix != ".toml" and _looks_like_pcf(_pcf_text(raw, source))):
        profile = parse_pcf(_pcf_text(raw, source), source)
    else:
        profile = parse_toml_profile(_utf8_text(raw, source), source, base_dir=p.resolve().parent)
    return replace(profile, source=p)


def _pcf_text(raw: bytes, source: str) -> str:
    """UTF-16 or UTF-8 (with or without BOM); else Windows ANSI, as .pcf files often are."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise ProfileError("file is not valid UTF-16", source=source) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; latin-1 maps every byte.
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


def _utf8_text(raw: bytes, source: str) -> str:
    """TOML is UTF-8 (TOML 1.0, section "Spec")."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ProfileError("file is not valid UTF-8", source=source, line=line) from None


def _looks_like_pcf(text: str) -> bool:
    for line in _split_lines(text):
        stripped = line.strip()
        if stripped and not stripped.startswith((";", "#")):
            return stripped.lower() == "[main]"
    return False


def _split_lines(text: str) -> list[str]:
    # Not str.splitlines(): it also breaks at \x0b, \x1c, U+2028... and would
    # make our line numbers disagree with an editor's.
    return [line.removesuffix("\r") for line in text.split("\n")]


def _show(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _valid_host(host: str) -> bool:
    return 0 < len(host) <= 253 and not any(c.isspace() or c in "/\\@" for c in host)


def _interface_problem(name: str) -> str | None:
    # Linux IFNAMSIZ is 16 with the NUL; dev_valid_name() refuses '/', ':', spaces.
    if not 1 <= len(name) <= 15:
        return "must be 1 to 15 characters long"
    if name in (".", "..") or any(c in "/:" or c.isspace() for c in name):
        return "must not be '.' or '..' or contain '/', ':' or spaces"
    return None


def _dh_problem(group: int, allow_legacy: bool) -> str | None:
    if group in LEGACY_DH_GROUPS and not allow_legacy:
        return (
            f"DH group {group} is legacy ({LEGACY_DH_GROUPS[group]}, too weak today);"
            " set allow_legacy = true to use it"
        )
    if group not in MODERN_DH_GROUPS and group not in LEGACY_DH_GROUPS:
        modern = ", ".join(map(str, MODERN_DH_GROUPS))
        return (
            f"DH group {group} is not supported (choose {modern},"
            " or 2 or 5 with allow_legacy = true)"
        )
    return None


# --------------------------------------------------------------------------- Cisco .pcf


@dataclass(frozen=True)
class _PcfEntry:
    key: str  # as written, without '!'
    value: str
    line: int
    locked: bool


# Lower-cased .pcf keys that become ClientProfile fields; the rest go to `extra`.
_PCF_KNOWN = frozenset(
    [
        "description",
        "host",
        "authtype",
        "groupname",
        "grouppwd",
        "enc_grouppwd",
        "username",
        "userpassword",
        "enc_userpassword",
        "saveuserpassword",
        "enablenat",
        "tunnelingmode",
        "tcptunnelingport",
        "forcekeepalives",
        "enablelocallan",
        "dhgroup",
        "enablebackup",
        "backupserver",
    ]
)

# pcf2vpnc's table: 1 = psk, 3 = cert, 5 = hybrid.
_AUTH_TYPES_UNSUPPORTED = {
    3: "mutual certificate authentication",
    5: "hybrid authentication (the concentrator's certificate + XAUTH)",
}
AUTH_MODES = ("psk", "hybrid", "rsa")


def parse_pcf(text: str, source: str = "<string>") -> ClientProfile:
    """Read a Cisco VPN Client profile (.pcf) from its text."""
    return _PcfReader(source, *_pcf_main_section(text, source)).profile()


def _pcf_main_section(text: str, source: str) -> tuple[dict[str, _PcfEntry], int]:
    """The [main] entries by lower-cased key, and the line of the [main] header.

    Like Windows' GetPrivateProfileString: keys are case-insensitive, the
    first occurrence of a key wins, blanks around keys and values are dropped,
    and one pair of quotes around a whole value is removed. Stricter than
    Windows: a line without '=' or outside any section is an error.
    """
    entries: dict[str, _PcfEntry] = {}
    section: str | None = None
    main_line: int | None = None
    first_line: int | None = None
    for number, line in enumerate(_split_lines(text), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith((";", "#")):
            continue
        if first_line is None:
            first_line = number
        if stripped.startswith("["):
            if not stripped.endswith("]"):
                raise ProfileError(
                    "section header without a closing ']'", source=source, line=number
                )
            section = stripped[1:-1].strip().lower()
            if section == "main" and main_line is None:
                main_line = number
            continue
        key, sep, value = stripped.partition("=")
        if not sep:
            raise ProfileError(
                f"line without '=' (expected Key=Value): {_show(stripped)}",
                source=source,
                line=number,
            )
        locked = key.startswith("!")
        key = key.lstrip("!").strip()
        if not key:
            raise ProfileError("'=' without a key before it", source=source, line=number)
        if section is None:
            raise ProfileError(
                f"{key} is outside any section (a .pcf starts with [main])",
                source=source,
                line=number,
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if section == "main":
            entries.setdefault(key.lower(), _PcfEntry(key, value, number, locked))
    if main_line is None:
        raise ProfileError(
            "no [main] section: not a Cisco VPN Client profile", source=source, line=first_line or 1
        )
    return entries, main_line


class _PcfReader:
    """Turns the [main] entries into a ClientProfile, one helper per kind of value."""

    def __init__(self, source: str, entries: dict[str, _PcfEntry], main_line: int) -> None:
        self.source = source
        self.entries = entries
        self.main_line = main_line

    def fail(self, key: str, reason: str) -> NoReturn:
        entry = self.entries.get(key.lower())
        line = entry.line if entry else self.main_line
        raise ProfileError(reason, source=self.source, line=line, key=entry.key if entry else key)

    def text(self, key: str) -> str:
        entry = self.entries.get(key.lower())
        return entry.value if entry else ""

    def number(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.text(key)
        if value == "":
            return default
        if not (value.isascii() and value.isdigit()):
            self.fail(key, f"{_show(value)} is not a number")
        number = int(value)
        if not lo <= number <= hi:
            self.fail(key, f"{number} is out of range ({lo}..{hi})")
        return number

    def flag(self, key: str, default: bool) -> bool:
        value = self.text(key)
        if value not in ("", "0", "1"):
            self.fail(key, f"expected 0 or 1, got {_show(value)}")
        return default if value == "" else value == "1"

    def required(self, key: str) -> str:
        value = self.text(key)
        if not value:
            self.fail(key, "is empty" if key.lower() in self.entries else "missing required key")
        return value

    def secret(self, clear_key: str, enc_key: str) -> Secret | None:
        """The clear value if set (the Cisco client re-encodes it on first use), else the decoded
        enc_ value, else None."""
        if clear := self.text(clear_key):
            return Secret(clear)
        if enc := self.text(enc_key):
            try:
                return Secret(decode_password(enc))
            except CiscoDecodeError as exc:
                self.fail(enc_key, f"cannot be decoded: {exc}")
        return None

    def profile(self) -> ClientProfile:
        self._check_auth_type()
        host = self.required("Host")
        if not _valid_host(host):
            self.fail("Host", f"{_show(host)} is not a host name or address")
        group = self.required("GroupName")
        group_password = self.secret("GroupPwd", "enc_GroupPwd")
        if group_password is None:
            self.fail(
                "enc_GroupPwd" if "enc_grouppwd" in self.entries else "GroupPwd",
                "no group password: GroupPwd and enc_GroupPwd are both empty",
            )
        save_password = self.flag("SaveUserPassword", False)
        dh_group = self.number("DHGroup", 2, 0, 65535)  # the Cisco client's default: 2
        if dh_group not in MODERN_DH_GROUPS and dh_group not in LEGACY_DH_GROUPS:
            self.fail("DHGroup", f"DH group {dh_group} is not supported (use 2, 5 or 14)")
        transparent = self.flag("EnableNat", True)
        mode = self.number("TunnelingMode", 0, 0, 1)  # 0 = IPsec over UDP (NAT-T / UDP), 1 = TCP
        return ClientProfile(
            host=host,
            group=group,
            group_password=group_password,
            username=self.text("Username") or None,
            # Only a saved password counts: with SaveUserPassword=0 the Cisco client asks.
            password=self.secret("UserPassword", "enc_UserPassword") if save_password else None,
            transparent_tunneling=transparent,
            tunneling_mode=TunnelingMode.TCP if mode == 1 else TunnelingMode.NATT,
            tcp_port=self.number("TcpTunnelingPort", DEFAULT_TCP_PORT, 1, 65535),
            force_keepalives=self.flag("ForceKeepAlives", False),
            local_lan=self.flag("EnableLocalLAN", False),
            dh_group=dh_group,
            # A .pcf speaks for a Cisco concentrator of its time: its DHGroup is the
            # administrator's choice, so groups 2 and 5 are allowed here.
            allow_legacy=dh_group in LEGACY_DH_GROUPS,
            ike_mode=IkeMode.AGGRESSIVE,  # the Cisco client's mode for group PSK + XAUTH
            description=self.text("Description"),
            backup_servers=self._backup_servers(),
            source_format="pcf",
            locked=frozenset(e.key for e in self.entries.values() if e.locked),
            extra=MappingProxyType(
                {e.key: e.value for k, e in self.entries.items() if k not in _PCF_KNOWN}
            ),
        )

    def _check_auth_type(self) -> None:
        auth = self.number("AuthType", 1, 0, 65535)
        if auth in _AUTH_TYPES_UNSUPPORTED:
            self.fail(
                "AuthType",
                f"not supported yet: AuthType={auth} (certificates):"
                f" {_AUTH_TYPES_UNSUPPORTED[auth]}; it reads the Cisco client's certificate"
                " store, which vpnhub cannot: use a TOML profile with"
                f" auth = {'hybrid' if auth == 5 else 'rsa'!r} and its ca_file"
                f"{', certificate and key' if auth == 3 else ''} (docs/CLIENT-PROFILES.md)",
            )
        if auth != 1:
            self.fail(
                "AuthType",
                f"unknown AuthType={auth} (1 = group pre-shared key, 3 = certificates, 5 = hybrid)",
            )

    def _backup_servers(self) -> tuple[str, ...]:
        if not self.flag("EnableBackup", False):
            return ()
        servers = tuple(s.strip() for s in self.text("BackupServer").split(",") if s.strip())
        for server in servers:
            if not _valid_host(server):
                self.fail("BackupServer", f"{_show(server)} is not a host name or address")
        return servers


# --------------------------------------------------------------------------- TOML


_TOML_KEYS = frozenset(
    [
        "host",
        "port",
        "group",
        "group_password",
        "group_password_file",
        "username",
        "password",
        "transparent_tunneling",
        "tunneling_mode",
        "tcp_port",
        "force_keepalives",
        "local_lan",
        "dh_group",
        "allow_legacy",
        "ike_mode",
        "dpd_interval",
        "reconnect",
        "no_dns",
        "tunnel_interface",
        "description",
        "backup_servers",
        "auth",
        "ca_file",
        "certificate",
        "key",
    ]
)
_NON_EMPTY_KEYS = frozenset(
    {"host", "group", "group_password", "group_password_file", "username", "password"}
)
_E = TypeVar("_E", bound=StrEnum)
_MAX_LINES_SEARCHED = 2000  # a profile is a few dozen lines
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_HEADER = re.compile(r"""\s*\[\[?\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)""")
_TOML_KEY = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*[=.]""")


def _toml_key_lines(text: str) -> dict[str, int]:
    """Line of each top-level key (and of each table header, by its first key).

    Runs only on text tomllib accepted. Lines inside multi-line strings are
    skipped; arrays spread over lines hold values, which never match a key.
    """
    lines: dict[str, int] = {}
    in_string: str | None = None
    in_table = False
    for number, line in enumerate(_split_lines(text), start=1):
        if in_string is not None:
            if line.count(in_string) % 2:
                in_string = None
            continue
        header = _TOML_HEADER.match(line)
        match = header or (None if in_table else _TOML_KEY.match(line))
        if match:
            in_table = in_table or header is not None
            lines.setdefault(_toml_unquote(match.group(1)), number)
        for quote in ('"""', "'''"):
            if line.count(quote) % 2:
                in_string = quote
                break
    return lines


def _toml_syntax_error(exc: tomllib.TOMLDecodeError, text: str, source: str) -> ProfileError:
    message = str(exc)
    if m := _TOML_POSITION.search(message):
        return ProfileError(
            f"TOML syntax error: {message[: m.start()]} (column {m.group(2)})",
            source=source,
            line=int(m.group(1)),
        )
    # "at end of document": an unterminated string or array. The longest prefix of
    # whole lines that parses ends just before the line where it starts.
    lines = text.split("\n")
    for k in range(len(lines) - 1, -1, -1) if len(lines) <= _MAX_LINES_SEARCHED else ():
        try:
            tomllib.loads("\n".join(lines[:k]))
        except tomllib.TOMLDecodeError:
            continue
        while k < len(lines) - 1 and (not lines[k].strip() or lines[k].lstrip()[0] == "#"):
            k += 1
        return ProfileError(
            "TOML syntax error: what starts on this line is never closed", source=source, line=k + 1
        )
    return ProfileError(f"TOML syntax error: {message}", source=source)


def _toml_unquote(key: str) -> str:
    if key[:1] in "\"'":
        value = tomllib.loads(f"k = {key}")["k"]
        return value if isinstance(value, str) else key
    return key


def _type_name(value: object) -> str:
    for cls, name in (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
    ):
        if isinstance(value, cls):
            return name
    return "a date/time"


class _TomlReader:
    def __init__(self, text: str, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir
        try:
            self.data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _toml_syntax_error(exc, text, source) from None
        except ValueError:  # an integer beyond sys.get_int_max_str_digits()
            raise ProfileError("TOML syntax error: number too long", source=source) from None
        self.lines = _toml_key_lines(text)
        unknown = [k for k in self.data if k not in _TOML_KEYS]
        if unknown:
            first = min(unknown, key=lambda k: self.lines.get(k, 1))
            hint = difflib.get_close_matches(first, sorted(_TOML_KEYS), n=1)
            self.fail(
                first,
                f"unknown key {_show(first)}" + (f" (did you mean '{hint[0]}'?)" if hint else ""),
                key_in_message=False,
            )

    def fail(self, key: str, reason: str, *, key_in_message: bool = True) -> NoReturn:
        raise ProfileError(
            reason,
            source=self.source,
            line=self.lines.get(key, 1),
            key=key if key_in_message else "",
        )

    def _get(self, key: str, kind: type, what: str) -> object:
        value = self.data.get(key)
        if value is not None and (
            not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)
        ):
            self.fail(key, f"expected {what}, got {_type_name(value)}")
        return value

    def string(self, key: str) -> str | None:
        """The string at `key`, None when absent; "" is refused for names and secrets."""
        value = self._get(key, str, "a string")
        if value is None:
            return None
        assert isinstance(value, str)
        if value == "" and key in _NON_EMPTY_KEYS:
            self.fail(key, "is empty")
        return value

    def required(self, key: str) -> str:
        value = self.string(key)
        if value is None:
            self.fail(key, "missing required key")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, bool, "a boolean (true or false)")
        return default if value is None else bool(value)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self._get(key, int, "an integer")
        if value is None:
            return default
        assert isinstance(value, int)
        if not lo <= value <= hi:
            self.fail(key, f"{value} is out of range ({lo}..{hi})")
        return value

    def choice(self, key: str, default: _E) -> _E:
        value = self.string(key)
        if value is None:
            return default
        names = [m.value for m in type(default)]
        if value not in names:
            self.fail(key, f"{_show(value)} is not one of {', '.join(map(repr, names))}")
        return type(default)(value)

    def group_password(self) -> Secret:
        inline = self.string("group_password")
        path = self.string("group_password_file")
        if inline is not None and path is not None:
            self.fail("group_password_file", "give group_password or group_password_file, not both")
        if inline is not None:
            return Secret(inline)
        if path is None:
            self.fail("group_password", "missing required key (or give group_password_file)")
        file = self.base_dir / Path(path).expanduser()
        try:
            first = file.read_bytes().split(b"\n", 1)[0].removesuffix(b"\r")
        except OSError as exc:
            self.fail("group_password_file", f"cannot read {str(file)!r}: {exc.strerror or exc}")
        if not first:
            self.fail("group_password_file", f"the first line of {str(file)!r} is empty")
        return Secret(first)

    def backup_servers(self) -> tuple[str, ...]:
        value = self._get("backup_servers", list, "an array of host names")
        if value is None:
            return ()
        assert isinstance(value, list)
        for server in value:
            if not isinstance(server, str) or not _valid_host(server):
                self.fail("backup_servers", f"{server!r} is not a host name or address")
        return tuple(value)

    def profile(self) -> ClientProfile:
        host = self.required("host")
        if not _valid_host(host):
            self.fail("host", f"{_show(host)} is not a host name or address")
        allow_legacy = self.boolean("allow_legacy", False)
        dh_group = self.integer("dh_group", 14, 0, 65535)
        if problem := _dh_problem(dh_group, allow_legacy):
            self.fail("dh_group", problem)
        interface = self.string("tunnel_interface")
        interface = DEFAULT_INTERFACE if interface is None else interface
        if problem := _interface_problem(interface):
            self.fail("tunnel_interface", f"{_show(interface)} {problem}")
        password = self.string("password")
        return ClientProfile(
            host=host,
            port=self.integer("port", IKE_PORT, 1, 65535),
            group=self.required("group"),
            group_password=self.group_password(),
            username=self.string("username"),
            password=None if password is None else Secret(password),
            transparent_tunneling=self.boolean("transparent_tunneling", True),
            tunneling_mode=self.choice("tunneling_mode", TunnelingMode.NATT),
            tcp_port=self.integer("tcp_port", DEFAULT_TCP_PORT, 1, 65535),
            force_keepalives=self.boolean("force_keepalives", False),
            local_lan=self.boolean("local_lan", False),
            dh_group=dh_group,
            allow_legacy=allow_legacy,
            ike_mode=self.choice("ike_mode", IkeMode.AGGRESSIVE),
            dpd_interval=self.integer("dpd_interval", DEFAULT_DPD_INTERVAL, 0, 3600),
            reconnect=self.boolean("reconnect", False),
            no_dns=self.boolean("no_dns", False),
            tunnel_interface=interface,
            description=self.string("description") or "",
            backup_servers=self.backup_servers(),
            source_format="toml",
            **self.certificates(),
        )

    def certificates(self) -> dict[str, Any]:
        """auth, ca_file, certificate, key (issue 14); files relative to the profile."""
        auth = self.string("auth") or "psk"
        if auth not in AUTH_MODES:
            self.fail("auth", f"{_show(auth)} is not one of {', '.join(map(repr, AUTH_MODES))}")
        files = {k: self.string(k) for k in ("ca_file", "certificate", "key")}
        needed = {"psk": (), "hybrid": ("ca_file",), "rsa": ("ca_file", "certificate", "key")}
        for k in needed[auth]:
            if not files[k]:
                self.fail("auth", f"auth = {auth!r} needs {k}")
        out: dict[str, Any] = {"auth": auth}
        for k, v in files.items():
            out[k] = self.base_dir / Path(v).expanduser() if v else None
        return out


def parse_toml_profile(
    text: str, source: str = "<string>", *, base_dir: Path | None = None
) -> ClientProfile:
    """Read a vpnhub TOML profile from its text. `group_password_file` is taken
    relative to `base_dir` (default: the current directory)."""
    return _TomlReader(text, source, base_dir or Path.cwd()).profile()
