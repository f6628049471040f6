"""ESP drop reasons and exceptions.

Every packet the data plane refuses is counted under one of the stable names
below; tests, the event log and the metrics share them (STYLE.md: "no exception
escapes the receive path").
"""

from __future__ import annotations

# Inbound, before an SA is known (counted by the demux / data plane).
SHORT_PACKET = "short_packet"  # shorter than SPI + seq + IV + ICV, or not block aligned
UNKNOWN_SPI = "unknown_spi"  # no inbound SA with this SPI (RFC 4303 3.4.2)
# Inbound, per SA (counted on the SA).
REPLAY = "replay"  # duplicate or left of the window (RFC 4303 3.4.3)
AUTH_FAILED = "auth_failed"  # ICV mismatch / AEAD tag invalid (RFC 4303 3.4.4)
BAD_PADDING = "bad_padding"  # pad length overruns, or padding not 1, 2, 3... (RFC 4303 2.4)
BAD_NEXT_HEADER = "bad_next_header"  # next header not one this SA carries
DUMMY_PACKET = "dummy_packet"  # next header 59: traffic-flow-confidentiality dummy (RFC 4303 2.6)
SPOOFED_SOURCE = "spoofed_source"  # inner IPv4 source is not the peer's assigned address
BAD_INNER_PACKET = "bad_inner_packet"  # decrypted payload is not an IPv4 packet
# Outbound.
SEQ_EXHAUSTED = "seq_exhausted"  # 2^32-1 packets sent: the SA must be rekeyed (RFC 4303 3.3.3)

ALL_REASONS = (
    SHORT_PACKET,
    UNKNOWN_SPI,
    REPLAY,
    AUTH_FAILED,
    BAD_PADDING,
    BAD_NEXT_HEADER,
    DUMMY_PACKET,
    SPOOFED_SOURCE,
    BAD_INNER_PACKET,
    SEQ_EXHAUSTED,
)


class EspDrop(Exception):
    """A packet was refused; ``reason`` is one of the stable names above."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedSuite(ValueError):
    """The (transform, key length, auth) combination cannot be built."""
