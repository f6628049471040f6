"""Stand-in keys for unknown group names: enumeration must learn nothing.

Aggressive Mode names the group in message 1 (ID_KEY_ID), and a responder that
answers an unknown name differently from a known one (INVALID-ID-INFORMATION,
as we did, or silence) lets a scanner such as `ike-scan -A --id=NAME` list the
configured groups, then crack the group key offline from a real message 2.
Cisco closed the same hole in the ASA (its group name enumeration fix): an
unknown group is answered like a known one.

So an unknown group gets a normal message 2, computed with a key derived from
a per-process random secret and the name: same payloads, same sizes, the
same DH work, and the same answer to a repeated query within a process.
Message 3 then fails exactly as with a wrong pre-shared key; only the
operator's log says the group does not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from vpnhub.secret import Secret

# Drawn once per process: never stored, never logged; nobody can compute the key.
_PROCESS_SECRET = os.urandom(32)


def stand_in_psk(group_name: bytes) -> Secret:
    """The pre-shared key an unknown group is answered with (HMAC-SHA256)."""
    return Secret(hmac.new(_PROCESS_SECRET, b"unknown group\x00" + group_name,
                           hashlib.sha256).digest())
