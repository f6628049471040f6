"""ESP (RFC 4303) data plane core: SAs, replay window, suites. Sans-I/O."""

from .errors import ALL_REASONS, EspDrop, UnsupportedSuite
from .inner import check_inner_source, inner_source_reason, ipv4_bytes
from .replay import ReplayWindow
from .sa import NH_IPV4, EspSA, IvPool, SaParams
from .suites import (
    AUTH_NONE,
    ESP_3DES,
    ESP_AES_CBC,
    ESP_AES_GCM_16,
    ESP_NULL,
    HMAC_MD5_96,
    HMAC_SHA1_96,
    HMAC_SHA2_256_128,
    HMAC_SHA2_384_192,
    HMAC_SHA2_512_256,
    Suite,
    get_suite,
    key_lengths,
)

__all__ = [
    "ALL_REASONS",
    "AUTH_NONE",
    "ESP_3DES",
    "ESP_AES_CBC",
    "ESP_AES_GCM_16",
    "ESP_NULL",
    "HMAC_MD5_96",
    "HMAC_SHA1_96",
    "HMAC_SHA2_256_128",
    "HMAC_SHA2_384_192",
    "HMAC_SHA2_512_256",
    "NH_IPV4",
    "EspDrop",
    "EspSA",
    "IvPool",
    "ReplayWindow",
    "SaParams",
    "Suite",
    "UnsupportedSuite",
    "check_inner_source",
    "get_suite",
    "inner_source_reason",
    "ipv4_bytes",
    "key_lengths",
]
