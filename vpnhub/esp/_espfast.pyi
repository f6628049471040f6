"""Types of the C twin of the ESP codec (vpnhub/esp/_espfast.c)."""

from typing import Final

ERR_SHORT: Final[int]
ERR_AUTH: Final[int]
ERR_PADDING: Final[int]
ERR_REPLAY_CHECK: Final[int]

class Codec:
    def __init__(self, spi: int, transform: int, enc_key: bytes, digest: str | None,
                 integ_key: bytes, icv_len: int, encrypt: bool, strict_padding: bool) -> None: ...
    def encap(self, inner: bytes, next_header: int, seq: int, iv: bytes, /) -> bytes: ...
    def decap(self, esp: bytes, top: int, /) -> tuple[bytes, int, int] | int: ...
