"""Event classes and severities: the names the event log and the configuration share.

Part of the configuration package (it imports nothing of vpnhub) so that the
configuration can check `[log.classes]` without importing the event log
(issue 12: the configuration is a leaf). vpnhub/eventlog.py re-exports these
names.
"""

from __future__ import annotations

__all__ = ["CLASSES", "MAX_SEVERITY", "MIN_SEVERITY", "SEVERITY_MEANING"]

SEVERITY_MEANING = {
    1: "fault", 2: "warning (major)", 3: "warning (minor)", 4: "information (main events)",
    5: "information (milestones)", 6: "information (details)", 7: "debug (state)",
    8: "debug (decode summary)", 9: "debug (full decode)", 10: "debug (internals)",
    11: "trace", 12: "trace (detailed)", 13: "trace (everything)",
}

# The event classes and what each covers (docs/MANAGER.md has the long form).
CLASSES: dict[str, str] = {
    "IKE": "IKE SAs: phase 1 negotiated, failed, rekeyed, deleted",
    "IKEDBG": "IKE internals: state changes, exchanges in progress",
    "IKEDECODE": "every ISAKMP message: header and payload list (8), full decode (9)",
    "IPSEC": "IPsec SAs: security negotiation complete, SPIs loaded, rekeys, deletes",
    "IPSECDBG": "the ESP data plane: SAs installed and removed, packets dropped",
    "NATT": "NAT detection, NAT-Traversal negotiated or refused, keepalives, new mappings",
    "AUTH": "authentication results: XAUTH users and manager logins",
    "XAUTH": "XAUTH exchanges: credentials asked for, checked, status sent",
    "MODECFG": "Mode Config: address, DNS, split tunnel and Unity attributes",
    "DPD": "dead peer detection (RFC 3706) and Cisco keepalives",
    "SESSION": "sessions start and end; the concentrator starts and stops",
    "CONFIG": "configuration loaded or changed",
    "ADMIN": "administrators: manager logins and logouts, logouts of users, settings",
    "CLUSTER": ("cluster membership (issue 17): database outages, members dead, address"
                " blocks, load-balancing redirects"),
}

MIN_SEVERITY = 1
MAX_SEVERITY = 13
