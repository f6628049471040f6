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
    def receive(self, esp: bytes, window: Window, next_headers: bytes,
                allowed_src: bytes | None, /) -> bytes | int | tuple[int, bytes]: ...
    def receive_run(self, batch: list[tuple[bytes, tuple[str, int], int]], start: int,
                    window: Window, next_headers: bytes, allowed_src: bytes | None,
                    spi: bytes, addr: tuple[str, int], limit: int, min_inner: int,
                    /) -> tuple[int, list[bytes], int, int, list[int], bytes | None]: ...
ERR_REPLAY: Final[int]
ERR_NEXT_HEADER: Final[int]
ERR_DUMMY: Final[int]
ERR_SPOOFED: Final[int]
ERR_BAD_INNER: Final[int]

class Window:
    top: int
    @property
    def size(self) -> int: ...
    def __init__(self, size: int = 1024) -> None: ...
    def check(self, seq: int, /) -> bool: ...
    def update(self, seq: int, /) -> None: ...
    def check_and_update(self, seq: int, /) -> bool: ...
