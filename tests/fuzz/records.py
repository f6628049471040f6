"""The input format of the sequence targets: a byte string cut into records.

A fuzz input that must carry several datagrams (an IKE exchange, a burst on
UDP 4500) is a list of records ``op (1 byte) | length (2 bytes, big endian) |
data``. The fuzzer mutates ops, lengths and data alike; a record whose
length runs past the end takes what is left, so every byte string is a valid
input (libFuzzer inputs are never rejected, only explored).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

MAX_RECORDS = 64  # bounds the work of one input (an IKE exchange needs ~12)


def split(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos = 0
    for _ in range(MAX_RECORDS):
        if pos + 3 > len(data):
            return
        op, length = data[pos], int.from_bytes(data[pos + 1:pos + 3], "big")
        yield op, data[pos + 3:pos + 3 + length]
        pos += 3 + length


def join(records: Iterable[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for op, body in records:
        if len(body) > 0xFFFF:
            raise ValueError("record longer than 65535 bytes")
        out += bytes([op]) + len(body).to_bytes(2, "big") + body
    return bytes(out)
