"""The lean answer to a routine R-U-THERE (RFC 3706) on an established SA (issue 13).

With 10,000 idle sessions the concentrator answers 333 R-U-THEREs a second,
the bulk of its idle IKE work. Through the general path each one built a
`Header`, a `Message`, payload objects, a payload list to encode again for
the HASH, the answer's payload objects and `Message`, and walked the
transition table: ~110 us of CPU, of which the crypto is ~16 us
(bench/dpd_cost.py). This path takes only the one message shape every
client sends,

    HDR*(INFORMATIONAL, E), HASH(1), N(R-U-THERE, SPI = CKY-I | CKY-R, seq)

parses it in place after decryption and builds the R-U-THERE-ACK as bytes.
Every check of the general path stays (RFC 2409 5.7: HASH(1) =
prf(SKEYID_a, M-ID | N), compared in constant time, before anything
counts; RFC 3706 7: the sequence number, `informational.check_r_u_there_seq`)
and every effect is the same (the IV rule of appendix B, the peer followed to
a new NAT mapping, the message remembered so that a repeat of it is dropped as a
retransmission, the message ID window, the DPD idle period restarted, the event
and log line).

Anything else, or anything unusual (another payload, padding that is not
ours to judge, a retransmission, a decode log wanted at severity 8+), returns
False untouched and goes the general way, which keeps its own drop counters.
A HASH that does not verify raises the general path's `hash_mismatch`.
"""

from __future__ import annotations

import struct

from vpnhub.crypto.keys import hashes_equal, phase2_iv
from vpnhub.ike import events as ev
from vpnhub.ike.errors import IkeError
from vpnhub.ike.informational import check_r_u_there_seq
from vpnhub.ike.state import Address, SaState, State
from vpnhub.wire.constants import ExchangeType, Flag, NotifyType, PayloadType
from vpnhub.wire.message import HEADER_LEN

# RFC 2408 3.1 header: cookies, next payload, version, exchange, flags, M-ID, length
_HEADER = struct.Struct("!8s8sBBBBII")
# RFC 2408 3.14 notification payload after its generic header: DOI, protocol,
# SPI size, notify type (the SPI and the data follow)
_NOTIFY = struct.Struct("!BBHIBBH")
_NOTIFY_LEN = _NOTIFY.size + 16 + 4  # SPI = CKY-I | CKY-R, data = the sequence number
DOI_IPSEC = 1  # RFC 2407 4.2
PROTO_ISAKMP = 1
INFO = ExchangeType.INFORMATIONAL
VERSION = 0x10  # ISAKMP 1.0 (RFC 2408 3.1)


def answer(sa: SaState, data: bytes, remote: Address, local_port: int, now: float) -> bool:
    """Answer `data` if it is a plain R-U-THERE; False: not handled, nothing changed."""
    if sa.state is not State.ESTABLISHED or sa.config.log_severity >= 8 or \
            len(data) < HEADER_LEN or data[18] != INFO:  # octet 18: the exchange type
        return False
    _, _, next_payload, version, exchange, flags, mid, length = _HEADER.unpack_from(data)
    if exchange != INFO or flags != Flag.ENCRYPTION or next_payload != PayloadType.HASH \
            or version >> 4 != 1 or length != len(data) or mid == 0 \
            or mid in sa.exchanges or mid in sa._last_in or sa.cipher is None \
            or sa.hash is None or data[:8] != sa.icookie:
        return False
    bs = sa.cipher.block_size
    body = memoryview(data)[HEADER_LEN:]
    if not body or len(body) % bs:
        return False
    iv = phase2_iv(sa.hash, sa.p1_last_block, mid, bs)  # RFC 2409 appendix B
    plain = sa.cipher.decrypt(sa.enc_key, iv, bytes(body))
    seq = _r_u_there(sa, plain)
    if seq is None:
        return False
    hash_len = sa.hash.digest_size
    notify = plain[4 + hash_len:4 + hash_len + _NOTIFY_LEN]
    if not hashes_equal(sa.hash.prf(sa.skeyid_a, mid.to_bytes(4, "big") + notify),
                        plain[4:4 + hash_len]):
        raise IkeError("hash_mismatch", "informational message with a wrong HASH",
                       NotifyType.INVALID_HASH_INFORMATION, send_notify=False, fatal=False)
    check_r_u_there_seq(sa, seq)
    _authenticated(sa, remote, local_port, seq)
    _send_ack(sa, notify[-4:], now)
    sa._remember_in(mid, data)
    sa.last_heard = now
    if sa.dpd_next_at is not None and sa.dpd_outstanding == 0:
        sa.dpd_next_at = now + sa.config.dpd_interval  # RFC 3706 5.5, as sa._receive
    return True


def _r_u_there(sa: SaState, plain: bytes) -> int | None:
    """The sequence number if `plain` is HASH then N(R-U-THERE) for this SA, else None.

    Trailing bytes after the notify are the sender's padding (RFC 2409 5.3)."""
    assert sa.hash is not None
    hash_len = sa.hash.digest_size
    at = 4 + hash_len
    if len(plain) < at + _NOTIFY_LEN or plain[0] != PayloadType.NOTIFY or plain[1] \
            or int.from_bytes(plain[2:4], "big") != at:
        return None
    nxt, reserved, n_len, doi, proto, spi_size, kind = _NOTIFY.unpack_from(plain, at)
    if nxt or reserved or n_len != _NOTIFY_LEN or doi != DOI_IPSEC or \
            proto != PROTO_ISAKMP or spi_size != 16 or kind != NotifyType.R_U_THERE:
        return None
    spi_at = at + _NOTIFY.size
    if plain[spi_at:spi_at + 16] != sa.icookie + sa.rcookie:  # RFC 3706 7
        return None
    return int.from_bytes(plain[spi_at + 16:spi_at + 20], "big")


def _authenticated(sa: SaState, remote: Address, local_port: int, seq: int) -> None:
    """What `commit_iv` and `informational._notify` do once the HASH is good: an
    informational exchange keeps no IV (appendix B), the peer may have moved (RFC
    3947 5), the event and the (severity 9) log line."""
    sa._unauth_source = None
    sa._follow_peer(remote, local_port)
    if sa.config.log_severity >= 9:
        sa.log("DPD", 9, f"received DPD R-U-THERE (seq {seq:#x}); sending R-U-THERE-ACK")
    sa.emit(ev.KeepaliveReceived("dpd-r-u-there"))


def _send_ack(sa: SaState, seq: bytes, now: float) -> None:
    """HDR*, HASH(1), N(R-U-THERE-ACK, same SPI, same sequence): `_send_info` as bytes."""
    assert sa.hash is not None and sa.cipher is not None
    mid = sa.new_message_id()
    spi = sa.icookie + sa.rcookie
    notify = _NOTIFY.pack(0, 0, _NOTIFY_LEN, DOI_IPSEC, PROTO_ISAKMP, 16,
                          NotifyType.R_U_THERE_ACK) + spi + seq
    mid_b = mid.to_bytes(4, "big")
    h = sa.hash.prf(sa.skeyid_a, mid_b + notify)
    body = bytes((PayloadType.NOTIFY, 0)) + (4 + len(h)).to_bytes(2, "big") + h + notify
    bs = sa.cipher.block_size
    body += bytes(-len(body) % bs)  # RFC 2409 5.3: zero padding to the block size
    ct = sa.cipher.encrypt(sa.enc_key, phase2_iv(sa.hash, sa.p1_last_block, mid, bs), body)
    out = _HEADER.pack(sa.icookie, sa.rcookie, PayloadType.HASH, VERSION, INFO,
                       Flag.ENCRYPTION, mid, HEADER_LEN + len(ct)) + ct
    sa.queue_sent(mid, out, expect_reply=False, now=now)
