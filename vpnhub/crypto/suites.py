"""Names of IKE and ESP algorithms for logs and the web manager, and the legacy policy.

Only numbers go in (the IANA values of RFC 2409 appendix A, RFC 2407 4.4-4.5,
RFC 4106, RFC 4868), so callers need no crypto objects to describe a
proposal they reject. Unknown values get a readable fallback such as
"ENCR_9" instead of an exception.

Legacy: DES, 3DES (and the other 64-bit block ciphers), MD5, Tiger and the
DH groups 1, 2, 5 (and the RFC 5114 groups 22-24, RFC 8247 section 2.4).
They still work -- the Cisco clients of the source document propose 3DES,
MD5 and group 2 -- but the event log and the session page flag them.
"""

from __future__ import annotations

# --- IKE phase 1 -------------------------------------------------------------

IKE_ENCR_NAMES: dict[int, str] = {
    1: "DES",
    2: "IDEA",
    3: "Blowfish",
    4: "RC5",
    5: "3DES",
    6: "CAST",
    7: "AES",
}

IKE_HASH_NAMES: dict[int, str] = {
    1: "MD5",
    2: "SHA1",
    3: "Tiger",
    4: "SHA2-256",
    5: "SHA2-384",
    6: "SHA2-512",
}

DH_GROUP_NAMES: dict[int, str] = {
    1: "MODP_768",
    2: "MODP_1024",
    5: "MODP_1536",
    14: "MODP_2048",
    15: "MODP_3072",
    16: "MODP_4096",
    17: "MODP_6144",
    18: "MODP_8192",
    19: "ECP_256",
    20: "ECP_384",
    21: "ECP_521",
    22: "MODP_1024_160",
    23: "MODP_2048_224",
    24: "MODP_2048_256",
}

AUTH_METHOD_NAMES: dict[int, str] = {
    1: "PSK",
    2: "DSS",
    3: "RSA-SIG",
    4: "RSA-ENC",
    5: "RSA-REV-ENC",
    64221: "HYBRID-INIT-RSA",
    64222: "HYBRID-RESP-RSA",
    65001: "XAUTH-INIT-PSK",
    65002: "XAUTH-RESP-PSK",
    65005: "XAUTH-INIT-RSA",
    65006: "XAUTH-RESP-RSA",
}

_IKE_FIXED_KEY = frozenset({1, 2, 5})  # DES, IDEA, 3DES

LEGACY_IKE_ENCR = frozenset({1, 2, 3, 4, 5, 6})
LEGACY_IKE_HASH = frozenset({1, 3})
LEGACY_DH_GROUPS = frozenset({1, 2, 5, 22, 23, 24})


def _with_key_len(name: str, key_len: int | None) -> str:
    return f"{name}-{key_len}" if key_len else name


def ike_encr_name(encr: int, key_len: int | None = None) -> str:
    """Name like AES-256, 3DES, DES; key_len in bits, shown only where it varies."""
    name = IKE_ENCR_NAMES.get(encr, f"ENCR_{encr}")
    return name if encr in _IKE_FIXED_KEY else _with_key_len(name, key_len)


def ike_hash_name(hash_id: int) -> str:
    return IKE_HASH_NAMES.get(hash_id, f"HASH_{hash_id}")


def dh_group_name(group: int | None) -> str:
    """Name like MODP_1024 or ECP_256; None or 0 (no PFS) is "none"."""
    if group is None or group == 0:
        return "none"
    return DH_GROUP_NAMES.get(group, f"GROUP_{group}")


def auth_method_name(method: int) -> str:
    return AUTH_METHOD_NAMES.get(method, f"AUTH_{method}")


def ike_suite_name(encr: int, key_len: int | None, hash: int, group: int) -> str:
    """E.g. "AES-256/SHA1/MODP_2048", "3DES/MD5/MODP_1024"."""
    return f"{ike_encr_name(encr, key_len)}/{ike_hash_name(hash)}/{dh_group_name(group)}"


def ike_legacy_reasons(encr: int, hash: int, group: int) -> list[str]:
    """Plain-words reasons a phase 1 suite is legacy, for the event log; [] if none."""
    reasons = []
    if encr in LEGACY_IKE_ENCR:
        reasons.append(f"{ike_encr_name(encr)} is a legacy 64-bit block cipher")
    if hash in LEGACY_IKE_HASH:
        reasons.append(f"{ike_hash_name(hash)} is a legacy hash")
    if group in LEGACY_DH_GROUPS:
        reasons.append(f"DH group {group} ({dh_group_name(group)}) is a legacy group")
    return reasons


def is_legacy_ike(encr: int, hash: int, group: int) -> bool:
    """True for 3DES, DES (and IDEA, Blowfish, RC5, CAST), MD5, Tiger, groups 1, 2, 5, 22-24."""
    return bool(ike_legacy_reasons(encr, hash, group))


# --- ESP (phase 2) -----------------------------------------------------------

ESP_ENCR_NAMES: dict[int, str] = {
    2: "DES",
    3: "3DES",
    11: "NULL",
    12: "AES",
    18: "AES-GCM-8",
    19: "AES-GCM-12",
    20: "AES-GCM-16",
}

# Integrity algorithms as ESP carries them (RFC 2404, 2403, 4868: truncated ICVs).
ESP_AUTH_NAMES: dict[int, str] = {
    1: "HMAC-MD5-96",
    2: "HMAC-SHA1-96",
    5: "HMAC-SHA2-256-128",
    6: "HMAC-SHA2-384-192",
    7: "HMAC-SHA2-512-256",
}

_ESP_FIXED_KEY = {2: 8, 3: 24, 11: 0}
_ESP_AEAD = frozenset({18, 19, 20})
_ESP_AUTH_KEY = {1: 16, 2: 20, 5: 32, 6: 48, 7: 64}

LEGACY_ESP_ENCR = frozenset({2, 3, 11})
LEGACY_ESP_AUTH = frozenset({1})


def esp_encr_name(transform: int, key_len: int | None = None) -> str:
    """Name like AES-128, AES-256-GCM-16, 3DES; key_len in bits where it varies.

    GCM names follow vpnhub.esp ("AES-256-GCM-16": key size, then ICV bytes).
    """
    if transform in _ESP_AEAD:
        icv = ESP_ENCR_NAMES[transform].rsplit("-", 1)[1]
        return f"{_with_key_len('AES', key_len)}-GCM-{icv}"
    name = ESP_ENCR_NAMES.get(transform, f"ESP_{transform}")
    return name if transform in _ESP_FIXED_KEY else _with_key_len(name, key_len)


def esp_auth_name(auth: int | None) -> str:
    if not auth:
        return "none"
    return ESP_AUTH_NAMES.get(auth, f"AUTH_{auth}")


def esp_suite_name(transform: int, key_len: int | None, auth: int | None) -> str:
    """E.g. "AES-128/HMAC-SHA1-96", "3DES/HMAC-MD5-96", "AES-256-GCM-16" (AEAD alone)."""
    encr = esp_encr_name(transform, key_len)
    if transform in _ESP_AEAD and not auth:
        return encr
    return f"{encr}/{esp_auth_name(auth)}"


def is_legacy_esp(transform: int, auth: int | None) -> bool:
    """True for DES, 3DES, NULL encryption and HMAC-MD5 integrity."""
    return transform in LEGACY_ESP_ENCR or auth in LEGACY_ESP_AUTH


def esp_key_lengths(transform: int, key_len: int | None, auth: int | None) -> tuple[int, int]:
    """(encryption, integrity) key bytes to take from KEYMAT, encryption first.

    AES-CBC takes key_len bits; AES-GCM takes key_len bits plus the 4-byte
    salt of RFC 4106 section 8.1. Raises ValueError for an unknown transform,
    an AES key_len other than 128/192/256, or an unknown integrity algorithm.
    """
    if transform in _ESP_FIXED_KEY:
        enc = _ESP_FIXED_KEY[transform]
    elif transform == 12 or transform in _ESP_AEAD:
        if key_len not in (128, 192, 256):
            raise ValueError(f"ESP {esp_encr_name(transform)}: key length {key_len}")
        enc = key_len // 8 + (4 if transform in _ESP_AEAD else 0)
    else:
        raise ValueError(f"unknown ESP transform {transform}")
    if not auth:
        return enc, 0
    if auth not in _ESP_AUTH_KEY:
        raise ValueError(f"unknown ESP integrity algorithm {auth}")
    return enc, _ESP_AUTH_KEY[auth]
