"""The Transaction exchange: XAUTH (draft-ietf-ipsec-isakmp-xauth-06) and
Mode Config (draft-dukes-ike-mode-cfg / mode-cfg-05) with the Cisco Unity
attributes, for both roles.

    Server                                   Client
    HDR*, HASH, ATTR(REQUEST: NAME, PASSWORD) -->
                                         <-- HDR*, HASH, ATTR(REPLY: NAME, PASSWORD)
    HDR*, HASH, ATTR(SET: STATUS)         -->  (a new message ID)
                                         <-- HDR*, HASH, ATTR(ACK: STATUS)
                                         <-- HDR*, HASH, ATTR(REQUEST: ADDRESS, DNS, ...)  (pull)
    HDR*, HASH, ATTR(REPLY: ADDRESS, ...) -->

Every message carries HASH(1) = prf(SKEYID_a, M-ID | ATTR) first. vpnc wants
a SET with exactly one attribute, XAUTH_STATUS, UNITY_PFS as a 16-bit
attribute and 14-byte split-include entries (interop README).
"""

from __future__ import annotations

import ipaddress

from vpnhub.crypto.keys import hashes_equal, info_hash
from vpnhub.ike import events as ev
from vpnhub.ike import informational
from vpnhub.ike.errors import IkeError
from vpnhub.ike.state import Address, Exchange, Role, SaState
from vpnhub.secret import Secret
from vpnhub.text import printable
from vpnhub.wire.attributes import (
    DataAttribute,
    SplitNetwork,
    decode_split_networks,
    encode_split_networks,
)
from vpnhub.wire.constants import CfgAttr, CfgType, ExchangeType, NotifyType
from vpnhub.wire.errors import WireError
from vpnhub.wire.message import Message
from vpnhub.wire.payloads import (
    AttributePayload,
    HashPayload,
    Payload,
    encode_hashed,
    encode_payloads,
)

TRANS = ExchangeType.TRANSACTION
XAUTH_FIELDS = (CfgAttr.XAUTH_TYPE, CfgAttr.XAUTH_USER_NAME, CfgAttr.XAUTH_USER_PASSWORD,
                CfgAttr.XAUTH_PASSCODE, CfgAttr.XAUTH_MESSAGE, CfgAttr.XAUTH_CHALLENGE,
                CfgAttr.XAUTH_DOMAIN, CfgAttr.XAUTH_STATUS, CfgAttr.XAUTH_NEXT_PIN,
                CfgAttr.XAUTH_ANSWER)
# What a client pulls (vpnc's list, interop README).
CLIENT_REQUEST = (
    CfgAttr.INTERNAL_IP4_ADDRESS, CfgAttr.INTERNAL_IP4_NETMASK, CfgAttr.INTERNAL_IP4_DNS,
    CfgAttr.INTERNAL_IP4_NBNS, CfgAttr.UNITY_DEF_DOMAIN, CfgAttr.UNITY_FW_TYPE,
    CfgAttr.UNITY_PFS, CfgAttr.UNITY_BANNER, CfgAttr.UNITY_SAVE_PASSWD,
    CfgAttr.UNITY_SPLIT_INCLUDE, CfgAttr.UNITY_SPLIT_DNS, CfgAttr.UNITY_DDNS_HOSTNAME,
    CfgAttr.UNITY_NATT_PORT,  # Cisco IPsec over UDP: the concentrator's port, if it offers one
    CfgAttr.APPLICATION_VERSION,
)


# ------------------------------------------------------------------ framing
def _send(sa: SaState, x: Exchange, cfg_type: int, attrs: list[DataAttribute], now: float, *,
          identifier: int = 0, expect_reply: bool = True) -> None:
    assert sa.hash is not None
    ap = AttributePayload(cfg_type, identifier, attrs)
    rest = encode_payloads([ap])
    hp = HashPayload(info_hash(sa.hash, sa.keyed(sa.skeyid_a), x.message_id, rest))
    payloads: list[Payload] = [hp, ap]
    sa.send(TRANS, payloads, message_id=x.message_id, encrypt=True,
            expect_reply=expect_reply, now=now, body=encode_hashed(hp, [ap], rest))


def _verified_attr(sa: SaState, msg: Message) -> AttributePayload:
    """HASH first, then exactly one ATTR payload; the hash must match."""
    assert sa.hash is not None
    p = msg.payloads
    if len(p) < 2 or not isinstance(p[0], HashPayload) or not isinstance(p[1], AttributePayload):
        raise IkeError("bad_transaction", "transaction message is not HASH, ATTR",
                       NotifyType.PAYLOAD_MALFORMED, send_notify=False, fatal=False)
    rest = b"".join([x.raw for x in p[1:]])
    want = info_hash(sa.hash, sa.keyed(sa.skeyid_a), msg.message_id, rest)
    if not hashes_equal(want, p[0].data):
        raise IkeError("hash_mismatch", "transaction message with a wrong HASH",
                       NotifyType.INVALID_HASH_INFORMATION, send_notify=False, fatal=False)
    sa.commit_iv()
    return p[1]


def receive(sa: SaState, msg: Message, remote: Address, local_port: int, now: float) -> None:
    x = sa.exchanges.get(msg.message_id)
    if x is None:
        x = sa.start_exchange("transaction", msg.message_id, False, "new")
        try:
            ap = _verified_attr(sa, msg)
        except IkeError:
            sa.end_exchange(msg.message_id)
            raise
    else:
        ap = _verified_attr(sa, msg)
    if sa.logs(9):
        sa.log("MODECFG" if not _is_xauth(ap) else "XAUTH", 9,
               f"received {_cfg_name(ap.cfg_type)} with {len(ap.attributes)} attribute(s)")
    if sa.role is Role.RESPONDER:
        _server_receive(sa, x, ap, now)
    else:
        _client_receive(sa, x, ap, now)


def _is_xauth(ap: AttributePayload) -> bool:
    return any(a.type in XAUTH_FIELDS for a in ap.attributes)


def _cfg_name(t: int) -> str:
    try:
        return CfgType(t).name
    except ValueError:
        return f"CFG type {t}"


# ------------------------------------------------------------------- server
def after_phase1(sa: SaState, now: float) -> None:
    """Server: XAUTH starts right after phase 1 (Cisco concentrators, vpnc expects it)."""
    if not sa.config.xauth:
        sa.xauth_done = True
        return
    if sa.config.redirect_for is not None:  # a cluster's virtual address (issue 17)
        target = sa.config.redirect_for(sa)
        if target is not None:
            informational.send_redirect(sa, target, now)
            return
    x = sa.start_exchange("xauth", sa.new_message_id(), True, "request_sent")
    attrs = [DataAttribute(CfgAttr.XAUTH_TYPE, 0),  # generic (RFC-less, xauth-06 6.2)
             DataAttribute(CfgAttr.XAUTH_USER_NAME, b""),
             DataAttribute(CfgAttr.XAUTH_USER_PASSWORD, b"")]
    _send(sa, x, CfgType.REQUEST, attrs, now)
    sa.log("XAUTH", 6, "XAUTH: asking the user for name and password")


def _server_receive(sa: SaState, x: Exchange, ap: AttributePayload, now: float) -> None:
    if x.kind == "xauth" and x.state == "request_sent" and ap.cfg_type == CfgType.REPLY:
        _server_xauth_reply(sa, x, ap)
    elif x.kind == "xauth_status" and ap.cfg_type == CfgType.ACK:
        sa.end_exchange(x.message_id)
        if not x.xauth_ok:
            informational.terminate(sa, "XAUTH failed", now, by_peer=False, notify_peer=True)
    elif x.kind == "modecfg_set" and ap.cfg_type == CfgType.ACK:
        sa.end_exchange(x.message_id)
    elif x.kind == "transaction" and ap.cfg_type == CfgType.REQUEST:
        _server_modecfg_request(sa, x, ap)
    else:
        sa.end_exchange(x.message_id)
        raise IkeError("unexpected_transaction",
                       f"unexpected {_cfg_name(ap.cfg_type)} in transaction {x.kind}",
                       NotifyType.INVALID_PAYLOAD_TYPE, send_notify=False, fatal=False)


def _server_xauth_reply(sa: SaState, x: Exchange, ap: AttributePayload) -> None:
    user = password = None
    for a in ap.attributes:
        if a.type == CfgAttr.XAUTH_USER_NAME:
            # peer text: made printable here, once, before anything logs or shows it
            user = printable(a.as_bytes())
        elif a.type == CfgAttr.XAUTH_USER_PASSWORD:
            password = Secret(a.as_bytes())
    sa.answered(x.message_id)
    sa.end_exchange(x.message_id)
    if user is None or password is None:
        raise IkeError("xauth_incomplete", "XAUTH reply without user name or password",
                       NotifyType.ATTRIBUTES_NOT_SUPPORTED, send_notify=False, fatal=False)
    sa.xauth_user = user
    sa.trans.xauth_pending = True
    sa.emit(ev.XauthCredentials(user, password))


def server_xauth_result(sa: SaState, ok: bool, now: float, message: str = "") -> None:
    """The driver checked the credentials: send SET(XAUTH_STATUS), exactly one attribute."""
    if not sa.trans.xauth_pending:
        return
    sa.trans.xauth_pending = False
    x = sa.start_exchange("xauth_status", sa.new_message_id(), True, "set_sent")
    x.xauth_ok = ok
    _send(sa, x, CfgType.SET, [DataAttribute(CfgAttr.XAUTH_STATUS, 1 if ok else 0)], now)
    sa.xauth_done = ok
    if ok:
        sa.log("XAUTH", 4, f"user {sa.xauth_user!r} authenticated")
    else:
        sa.log("XAUTH", 3, f"user {sa.xauth_user!r} failed authentication"
               + (f": {message}" if message else ""))
    sa.emit(ev.XauthCompleted(ok, sa.xauth_user, message))


def _server_modecfg_request(sa: SaState, x: Exchange, ap: AttributePayload) -> None:
    if sa.config.xauth and not sa.xauth_done:
        sa.end_exchange(x.message_id)
        raise IkeError("modecfg_before_xauth", "Mode Config request before XAUTH completed",
                       NotifyType.AUTHENTICATION_FAILED, send_notify=False, fatal=False)
    x.kind, x.state = "modecfg", "wait_driver"
    requested = tuple([a.type for a in ap.attributes])
    x.identifier = ap.identifier
    x.requested = requested
    version = ""
    for a in ap.attributes:
        if a.type == CfgAttr.APPLICATION_VERSION and a.as_bytes():
            version = printable(a.as_bytes())
        elif a.type == CfgAttr.UNITY_DDNS_HOSTNAME and a.as_bytes():
            sa.trans.ddns_hostname = printable(a.as_bytes())
    sa.peer_application_version = version
    sa.trans.modecfg_pending = x.message_id
    sa.emit(ev.ModeConfigRequested(requested, version))


def server_modecfg_reply(sa: SaState, cfg: ev.ModeConfig, now: float) -> None:
    mid, sa.trans.modecfg_pending = sa.trans.modecfg_pending, None
    if mid is None or mid not in sa.exchanges:
        return
    x = sa.exchanges[mid]
    attrs = encode_modecfg(cfg, x.requested)
    _send(sa, x, CfgType.REPLY, attrs, now, identifier=x.identifier, expect_reply=False)
    sa.end_exchange(mid)
    _assigned(sa, cfg)


def server_modecfg_set(sa: SaState, cfg: ev.ModeConfig, now: float) -> None:
    """Push mode: the server sets the attributes, the client acknowledges."""
    x = sa.start_exchange("modecfg_set", sa.new_message_id(), True, "set_sent")
    _send(sa, x, CfgType.SET, encode_modecfg(cfg, ()), now)
    _assigned(sa, cfg)


def _assigned(sa: SaState, cfg: ev.ModeConfig) -> None:
    sa.modecfg = cfg
    sa.assigned_address = cfg.address
    sa.log("MODECFG", 5, f"Mode Config: assigned {cfg.address} to {sa.xauth_user or 'peer'}"
           + (f", split include {', '.join(map(str, cfg.split_include))}"
              if cfg.split_include else ", tunnel all"))


# ------------------------------------------------------------------- client
def _client_receive(sa: SaState, x: Exchange, ap: AttributePayload, now: float) -> None:
    if ap.cfg_type == CfgType.REQUEST and _is_xauth(ap):
        x.kind, x.state = "xauth", "wait_user"
        x.identifier = ap.identifier
        fields = tuple(_attr_name(a.type) for a in ap.attributes)
        msg = ""
        for a in ap.attributes:
            if a.type == CfgAttr.XAUTH_TYPE and a.as_int() != 0:
                sa.end_exchange(x.message_id)
                raise IkeError("xauth_type_unsupported", f"XAUTH type {a.as_int()} is not"
                               " supported (only generic)", NotifyType.ATTRIBUTES_NOT_SUPPORTED,
                               send_notify=False, fatal=False)
            if a.type == CfgAttr.XAUTH_MESSAGE:
                msg = a.as_bytes().decode("utf-8", "replace")
        sa.trans.xauth_mid = x.message_id
        sa.emit(ev.XauthRequested(fields, msg))
    elif ap.cfg_type == CfgType.SET and _is_xauth(ap):
        status = next((a.as_int() for a in ap.attributes if a.type == CfgAttr.XAUTH_STATUS), 0)
        _send(sa, x, CfgType.ACK, [DataAttribute(CfgAttr.XAUTH_STATUS, status)], now,
              identifier=ap.identifier, expect_reply=False)
        sa.end_exchange(x.message_id)
        sa.xauth_done = status == 1
        sa.emit(ev.XauthCompleted(status == 1, sa.xauth_user))
        if status == 1:
            sa.log("XAUTH", 4, "XAUTH: authentication succeeded")
            if sa.modecfg is None:  # a phase 1 rekey keeps its address
                client_modecfg_request(sa, now)
        else:
            sa.log("XAUTH", 3, "XAUTH: authentication failed (wrong user name or password)")
    elif ap.cfg_type in (CfgType.REPLY, CfgType.SET) and x.kind in ("modecfg", "transaction"):
        cfg = decode_modecfg(ap.attributes)
        if ap.cfg_type == CfgType.SET:
            _send(sa, x, CfgType.ACK, [DataAttribute(a.type, b"") for a in ap.attributes], now,
                  identifier=ap.identifier, expect_reply=False)
        sa.answered(x.message_id)
        sa.end_exchange(x.message_id)
        if cfg.address is None:
            raise IkeError("modecfg_no_address", "Mode Config gave no INTERNAL_IP4_ADDRESS",
                           NotifyType.ATTRIBUTES_NOT_SUPPORTED, send_notify=False, fatal=False)
        sa.modecfg = cfg
        sa.assigned_address = cfg.address
        if sa.logs(5):
            for line in describe_modecfg(cfg):
                sa.log("MODECFG", 5, line)
        sa.emit(ev.ModeConfigReceived(cfg))
    else:
        sa.end_exchange(x.message_id)
        raise IkeError("unexpected_transaction", f"unexpected {_cfg_name(ap.cfg_type)}",
                       NotifyType.INVALID_PAYLOAD_TYPE, send_notify=False, fatal=False)


def client_xauth_reply(sa: SaState, user: str, password: Secret, now: float) -> None:
    mid, sa.trans.xauth_mid = sa.trans.xauth_mid, None
    if mid is None or mid not in sa.exchanges:
        return
    x = sa.exchanges[mid]
    sa.xauth_user = user
    attrs = [DataAttribute(CfgAttr.XAUTH_USER_NAME, user.encode()),
             DataAttribute(CfgAttr.XAUTH_USER_PASSWORD, password.reveal())]
    _send(sa, x, CfgType.REPLY, attrs, now, identifier=x.identifier, expect_reply=False)
    sa.end_exchange(mid)


def client_modecfg_request(sa: SaState, now: float) -> None:
    x = sa.start_exchange("modecfg", sa.new_message_id(), True, "request_sent")
    attrs = [DataAttribute(t, b"") for t in CLIENT_REQUEST if t != CfgAttr.UNITY_PFS
             and t != CfgAttr.APPLICATION_VERSION]
    attrs.insert(6, DataAttribute(CfgAttr.UNITY_PFS, 0))
    attrs.append(DataAttribute(CfgAttr.APPLICATION_VERSION, sa.config.application_version.encode()))
    _send(sa, x, CfgType.REQUEST, attrs, now)


# --------------------------------------------------------------- attributes
def _attr_name(t: int) -> str:
    try:
        return CfgAttr(t).name
    except ValueError:
        return str(t)


def encode_modecfg(cfg: ev.ModeConfig, requested: tuple[int, ...]) -> list[DataAttribute]:
    """The attributes we have, limited to those requested (pull) or all (push)."""

    def want(t: int) -> bool:
        return not requested or t in requested

    out: list[DataAttribute] = []
    if cfg.address is not None:  # vpnc rejects a reply without it
        out.append(DataAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, cfg.address.packed))
    if cfg.netmask is not None and want(CfgAttr.INTERNAL_IP4_NETMASK):
        out.append(DataAttribute(CfgAttr.INTERNAL_IP4_NETMASK, cfg.netmask.packed))
    if want(CfgAttr.INTERNAL_IP4_DNS):
        out += [DataAttribute(CfgAttr.INTERNAL_IP4_DNS, d.packed) for d in cfg.dns]
    if want(CfgAttr.INTERNAL_IP4_NBNS):
        out += [DataAttribute(CfgAttr.INTERNAL_IP4_NBNS, d.packed) for d in cfg.nbns]
    if cfg.default_domain and want(CfgAttr.UNITY_DEF_DOMAIN):
        out.append(DataAttribute(CfgAttr.UNITY_DEF_DOMAIN, cfg.default_domain.encode()))
    if cfg.banner and want(CfgAttr.UNITY_BANNER):
        out.append(DataAttribute(CfgAttr.UNITY_BANNER, cfg.banner.encode()))
    if cfg.save_password is not None and want(CfgAttr.UNITY_SAVE_PASSWD):
        out.append(DataAttribute(CfgAttr.UNITY_SAVE_PASSWD, int(cfg.save_password)))
    if cfg.pfs is not None and want(CfgAttr.UNITY_PFS):
        out.append(DataAttribute(CfgAttr.UNITY_PFS, int(cfg.pfs)))  # 16-bit TV (vpnc)
    if cfg.split_include and want(CfgAttr.UNITY_SPLIT_INCLUDE):
        out.append(DataAttribute(CfgAttr.UNITY_SPLIT_INCLUDE, encode_split_networks(
            SplitNetwork(n) for n in cfg.split_include)))
    if cfg.local_lan and want(CfgAttr.UNITY_LOCAL_LAN):
        out.append(DataAttribute(CfgAttr.UNITY_LOCAL_LAN, encode_split_networks(
            SplitNetwork(n) for n in cfg.local_lan)))
    if cfg.split_dns and want(CfgAttr.UNITY_SPLIT_DNS):
        out.append(DataAttribute(CfgAttr.UNITY_SPLIT_DNS, ",".join(cfg.split_dns).encode()))
    if cfg.natt_port is not None and want(CfgAttr.UNITY_NATT_PORT):
        out.append(DataAttribute(CfgAttr.UNITY_NATT_PORT, cfg.natt_port))
    if cfg.backup_servers and want(CfgAttr.UNITY_BACKUP_SERVERS):
        out.append(DataAttribute(CfgAttr.UNITY_BACKUP_SERVERS,
                                 ",".join(cfg.backup_servers).encode()))
    if cfg.application_version and want(CfgAttr.APPLICATION_VERSION):
        out.append(DataAttribute(CfgAttr.APPLICATION_VERSION, cfg.application_version.encode()))
    return out


def decode_modecfg(attrs: list[DataAttribute]) -> ev.ModeConfig:
    cfg = ev.ModeConfig()
    for a in attrs:
        try:
            _apply(cfg, a)
        except (WireError, ValueError):
            continue  # a malformed optional attribute is ignored, like vpnc does
    return cfg


def _ip(a: DataAttribute) -> ipaddress.IPv4Address | None:
    b = a.as_bytes()
    return ipaddress.IPv4Address(b) if len(b) == 4 else None


def _apply(cfg: ev.ModeConfig, a: DataAttribute) -> None:
    t = a.type
    if t == CfgAttr.INTERNAL_IP4_ADDRESS:
        cfg.address = _ip(a)
    elif t == CfgAttr.INTERNAL_IP4_NETMASK:
        cfg.netmask = _ip(a)
    elif t == CfgAttr.INTERNAL_IP4_DNS and (ip := _ip(a)) is not None:
        cfg.dns.append(ip)
    elif t == CfgAttr.INTERNAL_IP4_NBNS and (ip := _ip(a)) is not None:
        cfg.nbns.append(ip)
    elif t == CfgAttr.UNITY_BANNER:
        cfg.banner = a.as_bytes().decode("utf-8", "replace")
    elif t == CfgAttr.UNITY_DEF_DOMAIN:
        cfg.default_domain = printable(a.as_bytes())
    elif t == CfgAttr.UNITY_SPLIT_INCLUDE:
        cfg.split_include += [s.network for s in decode_split_networks(a.as_bytes())]
    elif t == CfgAttr.UNITY_LOCAL_LAN:
        cfg.local_lan += [s.network for s in decode_split_networks(a.as_bytes())]
    elif t == CfgAttr.UNITY_SPLIT_DNS:
        cfg.split_dns += [printable(d) for d in a.as_bytes().decode("utf-8", "replace").split(",")
                          if d]
    elif t == CfgAttr.UNITY_SAVE_PASSWD:
        cfg.save_password = bool(a.as_int())
    elif t == CfgAttr.UNITY_PFS:
        cfg.pfs = bool(a.as_int())
    elif t == CfgAttr.UNITY_NATT_PORT:
        cfg.natt_port = a.as_int()
    elif t == CfgAttr.UNITY_BACKUP_SERVERS:
        cfg.backup_servers = [printable(s)
                              for s in a.as_bytes().decode("utf-8", "replace").split(",") if s]
    elif t == CfgAttr.APPLICATION_VERSION:
        cfg.application_version = printable(a.as_bytes())
    elif t == CfgAttr.UNITY_DDNS_HOSTNAME:
        cfg.ddns_hostname = printable(a.as_bytes())
    elif t == CfgAttr.UNITY_FW_TYPE:
        cfg.firewall_type = a.as_bytes()


def describe_modecfg(cfg: ev.ModeConfig) -> list[str]:
    """One log line per attribute received, as the Cisco client's log shows them."""
    out = [f"MODE_CFG_REPLY: INTERNAL_IP4_ADDRESS = {cfg.address}"]
    if cfg.netmask:
        out.append(f"MODE_CFG_REPLY: INTERNAL_IP4_NETMASK = {cfg.netmask}")
    out += [f"MODE_CFG_REPLY: INTERNAL_IP4_DNS = {d}" for d in cfg.dns]
    out += [f"MODE_CFG_REPLY: INTERNAL_IP4_NBNS = {d}" for d in cfg.nbns]
    if cfg.default_domain:
        out.append(f"MODE_CFG_REPLY: MODECFG_UNITY_DEFDOMAIN = {cfg.default_domain}")
    if cfg.save_password is not None:
        out.append(f"MODE_CFG_REPLY: MODECFG_UNITY_SAVEPWD = {int(cfg.save_password)}")
    if cfg.pfs is not None:
        out.append(f"MODE_CFG_REPLY: MODECFG_UNITY_PFS = {int(cfg.pfs)}")
    out += [f"MODE_CFG_REPLY: MODECFG_UNITY_SPLIT_INCLUDE = {n}" for n in cfg.split_include]
    if cfg.banner:
        out.append(f"MODE_CFG_REPLY: MODECFG_UNITY_BANNER = {cfg.banner!r}")
    if cfg.natt_port is not None:
        out.append(f"MODE_CFG_REPLY: MODECFG_UNITY_NATT_PORT = {cfg.natt_port}")
    if cfg.application_version:
        out.append(f"MODE_CFG_REPLY: APPLICATION_VERSION = {cfg.application_version}")
    return out
