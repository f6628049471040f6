"""The one exception the codec raises, with a stable reason and the RFC notify.

Every malformed input becomes a `WireError`: its `reason` is the drop counter
key shared by the tests, the event log and the metrics; its `notify` is the
Notify Message Type RFC 2408 5 says to report (or None when none fits).
"""

from __future__ import annotations

from enum import StrEnum

from vpnhub.wire.constants import NotifyType


class Reason(StrEnum):
    """Stable drop reasons (the values are what `WireError.reason` compares equal to)."""

    TRUNCATED_HEADER = "truncated_header"  # fewer than 28 bytes (RFC 2408 3.1)
    BAD_VERSION = "bad_version"  # major version is not 1 (RFC 2408 5.1)
    BAD_LENGTH = "bad_length"  # header length != datagram length (RFC 2408 5.1)
    ENCRYPTED_MESSAGE = "encrypted_message"  # E flag set and no plaintext given
    PAYLOAD_OVERRUN = "payload_overrun"  # a payload runs past the end of the data
    ZERO_LENGTH_PAYLOAD = "zero_length_payload"  # length field < 4: no progress possible
    PAYLOAD_TOO_SHORT = "payload_too_short"  # shorter than its fixed fields
    PAYLOAD_LOOP = "payload_loop"  # more payloads than MAX_PAYLOADS
    TRAILING_DATA = "trailing_data"  # bytes after the last payload
    INVALID_PAYLOAD_TYPE = "invalid_payload_type"  # PROPOSAL/TRANSFORM outside an SA
    UNSUPPORTED_CRITICAL_PAYLOAD = "unsupported_critical_payload"
    BAD_PROPOSAL_SYNTAX = "bad_proposal_syntax"  # proposal/transform chain broken
    DOI_NOT_SUPPORTED = "doi_not_supported"
    SITUATION_NOT_SUPPORTED = "situation_not_supported"
    BAD_ATTRIBUTE = "bad_attribute"  # data attribute truncated or malformed
    BAD_SPI_SIZE = "bad_spi_size"  # notify/delete SPI fields inconsistent
    BAD_FRAGMENT = "bad_fragment"  # Cisco fragment number 0
    BAD_ID = "bad_id"  # ID data does not match its ID type
    ENCODE_ERROR = "encode_error"  # a value does not fit its field when encoding


class WireError(Exception):
    """A message, payload or attribute that the codec rejects (or cannot encode)."""

    def __init__(
        self,
        reason: str,
        notify: NotifyType | None = NotifyType.PAYLOAD_MALFORMED,
        detail: str = "",
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.notify = notify
        self.detail = detail
