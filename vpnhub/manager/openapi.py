"""The manager API's OpenAPI 3.0 description: the one source of docs/openapi.yaml.

`spec()` is served at /api/v1/openapi.json; `python -m vpnhub.manager.openapi`
prints it as YAML (docs/openapi.yaml is that output; a test keeps them equal).
The tests run schemathesis against this description.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from vpnhub import __version__
from vpnhub.eventlog import CLASSES, MAX_SEVERITY, MIN_SEVERITY
from vpnhub.manager import clusterroutes, export, logsave, paging

SESSION_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$",
              "description": "The IKE SA's cookies (initiator then responder), in hex."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: list[str] | None = None,
         extra: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    if not extra:
        out["additionalProperties"] = False
    return out


INT = {"type": "integer", "minimum": 0}
STR = {"type": "string"}
BOOL = {"type": "boolean"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad request (the message says what)", 401: "Not logged in",
            403: "CSRF token missing or wrong (cookie sessions only), or the account's role"
                 " (monitor) may not do this",
            404: "No such session (or event class); for /cluster: not a cluster member",
            409: "The session has no assigned address yet",
            429: "Too many exports at once (Retry-After says when to try again)",
            503: "The cluster database is unreachable or did not answer in time"}
    return {str(c): {"description": text[c], "content": {"application/json": {
        "schema": _ref("Error")}}} for c in codes}


LEVEL = {"type": "integer", "minimum": 0, "maximum": MAX_SEVERITY,
         "description": "Events of severity 1 to this (0: none)."}


def _schemas() -> dict[str, Any]:
    cursor = {**_obj({"before_seq": INT, "after_seq": INT,
                      "order": {"type": "string", "enum": ["oldest"]}}), "nullable": True}
    summary_keys = ["active_lan_to_lan", "active_remote_access", "active_management",
                    "active", "total_active", "peak", "concurrent_limit", "cumulative"]
    ike = _obj({
        "encryption": STR, "hash": STR, "dh_group": STR, "authentication": STR, "mode": STR,
        "rekey_interval": INT, "local_behind_nat": BOOL, "peer_behind_nat": BOOL,
        "auth_mode": STR, "certificate": STR}, extra=True)
    ipsec = _obj({
        "spi_in": STR, "spi_out": STR, "encryption": STR, "hashing": STR,
        "encapsulation": STR, "local_network": STR, "remote_network": STR,
        "remote_address": {"type": "string", "nullable": True}, "local_address": STR,
        "peer_address": STR, "peer_port": INT, "udp_src_port": INT, "udp_dst_port": INT,
        "rekey_interval": INT, "bytes_rx": INT, "bytes_tx": INT, "packets_rx": INT,
        "packets_tx": INT, "idle_seconds": INT, "established": STR, "legacy_crypto": BOOL,
        "pfs": STR, "pfs_group": INT},
        ["spi_in", "spi_out", "encryption", "encapsulation", "udp_src_port", "udp_dst_port",
         "pfs", "rekey_interval", "bytes_rx", "bytes_tx", "idle_seconds"], extra=True)
    session = _obj({
        "id": SESSION_ID, "user": STR, "group": STR,
        "lan_to_lan": {"type": "string", "description": "Tunnel name (LAN-to-LAN only)."},
        "assigned_ip": {"type": "string", "nullable": True}, "public_ip": STR,
        "public_port": INT, "protocol": {"type": "string", "enum": ["IPsec", "IPsec/NAT-T"]},
        "encryption": STR, "login_time": {"type": "string", "format": "date-time"},
        "auth": {"type": "string", "enum": ["psk", "rsa", "hybrid"],
                 "description": "Phase 1 authentication (issue 14)."},
        "duration": {"type": "integer"}, "client": STR, "bytes_tx": INT, "bytes_rx": INT,
        "packets_tx": INT, "packets_rx": INT, "nat_t": BOOL, "peer_behind_nat": BOOL,
        "diagnosis": {"type": "string", "description": "Why no data can pass, if detected."},
        "decrypt_failures": INT, "replays": INT,
        "drops": {"type": "object", "additionalProperties": INT},
        "nat_keepalives_rx": INT, "nat_keepalives_tx": INT, "legacy_crypto": BOOL,
        "ike": _ref("IkeSA"), "ipsec": {"type": "array", "items": _ref("IpsecSA")}},
        ["id", "user", "group", "assigned_ip", "public_ip", "public_port", "protocol",
         "encryption", "login_time", "duration", "client", "bytes_tx", "bytes_rx", "nat_t",
         "diagnosis", "ike", "ipsec"], extra=True)
    event = _obj({
        "seq": {"type": "integer", "minimum": 1},
        "time": {"type": "string", "format": "date-time"},
        "last": {"type": "string", "format": "date-time",
                 "description": "Time of the latest repeat."},
        "class": STR, "severity": {"type": "integer", "minimum": MIN_SEVERITY,
                                   "maximum": MAX_SEVERITY},
        "repeat": {"type": "integer", "minimum": 1},
        "peer_address": {"type": "string", "nullable": True},
        "peer_port": {"type": "integer", "nullable": True}, "group": STR, "user": STR,
        "authenticated": {"type": "boolean", "description": "False: caused by a message that"
                          " did not authenticate; peer_address is then its source"},
        "text": STR},
        ["seq", "time", "last", "class", "severity", "repeat", "peer_address", "peer_port",
         "group", "user", "text", "authenticated"])
    natt = _obj({
        "ipsec_over_natt": BOOL, "natt_port": INT, "ipsec_over_udp": BOOL,
        "ipsec_over_udp_port": INT, "ipsec_over_tcp": BOOL,
        "ipsec_over_tcp_ports": {"type": "array", "items": INT}, "changed": BOOL},
        ["ipsec_over_natt", "natt_port"])
    return {
        "Error": _obj({"error": STR}, ["error"]),
        "Summary": _obj({k: INT for k in summary_keys}, summary_keys, extra=True),
        "IkeSA": ike, "IpsecSA": ipsec, "Session": session,
        "Sessions": _obj({"summary": _ref("Summary"),
                          "sessions": {"type": "array", "items": _ref("Session"),
                                       "description": "This page of the Remote Access"
                                       " Sessions."},
                          "total": {**INT, "description": "Remote Access Sessions matching"
                                    " the filters (all pages)."},
                          "limit": {"type": "integer", "minimum": 1,
                                    "maximum": paging.MAX_LIMIT},
                          "sort": {"type": "string", "enum": list(paging.SORTS)},
                          "order": {"type": "string", "enum": list(paging.ORDERS)},
                          "next_cursor": {"type": "string", "nullable": True,
                                          "description": "The cursor of the next page;"
                                          " null on the last page."},
                          "lan_to_lan": {"type": "array", "items": _ref("Session"),
                                         "description": "Every LAN-to-LAN Session (not"
                                         " paged: one per configured tunnel at most)."}},
                         ["summary", "sessions", "total", "limit", "sort", "order",
                          "next_cursor", "lan_to_lan"]),
        "Event": event,
        "Events": _obj({"count": INT, "events": {"type": "array", "items": _ref("Event")},
                        "cursors": _obj({
                            "previous": {**cursor, "description": "Parameters to add to"
                                         " the same filter for the page before (older);"
                                         " null: this is the first page."},
                            "next": {**cursor, "description": "Parameters for the page"
                                     " after (newer); null: this is the last page."}},
                            ["previous", "next"])},
                       ["count", "events", "cursors"]),
        "EventClass": _obj({"class": {"type": "string", "enum": list(CLASSES)},
                            "console_severity": LEVEL, "keep_severity": LEVEL,
                            "set_at_run_time": BOOL, "covers": STR, "changed": BOOL},
                           ["class", "console_severity", "keep_severity",
                            "set_at_run_time"]),
        "NatTransparency": natt,
        "Warning": _obj({"kind": STR, "text": STR, "fix": STR}, ["kind", "text", "fix"]),
        "Ping": _obj({"address": STR, "source": {"type": "string", "nullable": True},
                      "sent": INT, "received": INT, "alive": BOOL,
                      "rtt_avg_ms": {"type": "number", "nullable": True}, "output": STR},
                     ["address", "sent", "received", "alive"]),
        "StatusHistory": _status_history(),
        **_cluster_schemas(),
        "Token": _obj({"token": STR, "token_type": {"type": "string", "enum": ["Bearer"]},
                       "user": STR, "idle_timeout": INT}, ["token", "token_type", "user"]),
    }


def _cluster_schemas() -> dict[str, Any]:
    """GET /cluster and /cluster/sessions (vpnhub/manager/clusterroutes.py, issue 17)."""
    num = {"type": "number"}
    nnum = {"type": "number", "nullable": True}
    member = _obj({
        "name": STR, "public_address": STR, "sessions": INT, "max_sessions": INT,
        "load": {"type": "number", "description": "sessions / max_sessions"},
        "alive": BOOL, "state": {"type": "string", "enum": ["up", "gone"]},
        "heartbeat_age": {**num, "description": "Seconds since its last heartbeat (the"
                          " database's clock)."},
        "started": STR, "version": STR, "me": {**BOOL, "description": "This member."},
        "holds_virtual_address": {**BOOL, "description": "The master: it holds the"
                                  " virtual address (as of its last heartbeat)."},
        "dead": BOOL},
        ["name", "public_address", "sessions", "max_sessions", "load", "alive", "state",
         "heartbeat_age", "me", "holds_virtual_address"], extra=True)
    cluster = _obj({
        "member": {**STR, "description": "This member's name."},
        "master": {"type": "string", "nullable": True,
                   "description": "The live member holding the virtual address."},
        "database_ok": BOOL, "last_error": STR,
        "down_since": {"type": "string", "format": "date-time", "nullable": True,
                       "description": "Since when the database is unreachable."},
        "down_for": nnum, "connected_for": nnum,
        "virtual_address": STR, "holds_virtual_address": BOOL, "load_balancing": BOOL,
        "heartbeat": num, "member_timeout": num, "outages": INT, "lease_conflicts": INT,
        "commands_received": INT, "commands_refused": INT, "queued": INT,
        "members": {"type": "array", "items": _ref("ClusterMember")},
        "pools": {"type": "object", "additionalProperties": {"type": "object"}}},
        ["member", "master", "database_ok", "last_error", "down_since", "virtual_address",
         "holds_virtual_address", "members"], extra=True)
    entry = _obj({
        "id": SESSION_ID, "member": STR, "user": STR, "group": STR,
        "assigned_ip": {"type": "string", "nullable": True}, "public_ip": STR,
        "public_port": INT, "protocol": STR, "encryption": STR,
        "login_time": {"type": "string", "description": "The member's local time"
                       " (YYYY-MM-DDTHH:MM:SS)."},
        "duration": {"type": "integer"}, "bytes_tx": INT, "bytes_rx": INT},
        ["id", "member", "user", "group", "public_ip", "public_port", "protocol",
         "login_time", "duration"], extra=True)
    sessions = _obj({
        "sessions": {"type": "array", "items": _ref("ClusterSession"),
                     "description": "This page of the cluster's Remote Access Sessions, by"
                     " login time, member and id."},
        "next_cursor": {"type": "string", "nullable": True,
                        "description": "The cursor of the next page; null on the last."},
        "limit": {"type": "integer", "minimum": 1, "maximum": clusterroutes.MAX_LIMIT},
        "summary": _obj({"remote_access": INT, "lan_to_lan": INT},
                        ["remote_access", "lan_to_lan"]),
        "members": {"type": "array", "items": STR},
        "lan_to_lan": {"type": "array", "items": _ref("ClusterSession"),
                       "description": "Every LAN-to-LAN Session (first page only)."}},
        ["sessions", "next_cursor", "limit", "summary"], extra=True)
    return {"ClusterMember": member, "Cluster": cluster, "ClusterSession": entry,
            "ClusterSessions": sessions}


def _status_history() -> dict[str, Any]:
    """vpnhub.manager.statushistory.StatusRing.history (issue 15)."""
    def series(kind: str, description: str) -> dict[str, Any]:
        return {"type": "array", "items": {"type": kind, "nullable": True},
                "description": description}

    return _obj({
        "interval": {"type": "number", "description": "Seconds between two samples."},
        "keep": {**INT, "description": "Samples kept (an hour)."},
        "samples": {**INT, "description": "Samples taken since start (the ETag)."},
        "times": {"type": "array", "items": {"type": "number"},
                  "description": "Each sample's time, Unix seconds, oldest first."},
        "sessions": series("integer", "Sessions with an IPsec SA (vpnhub_sessions)."),
        "half_open": series("integer", "Half-open IKE SAs (vpnhub_ike_half_open)."),
        "rx_bps": series("number", "Inner bits per second received through IPsec SAs."),
        "tx_bps": series("number", "Inner bits per second sent through IPsec SAs."),
        "handshakes_per_s": series("number", "Phase 1 handshakes completed per second."),
        "handshake_failures_per_s": series("number", "Phase 1 handshakes failed per second."),
        "drops": {"type": "object", "additionalProperties": series(
            "integer", "Drops in each interval (the first sample's: since start, until"
            " the hour is full)."), "description": "By \"layer/reason\""
            " (vpnhub_drops_total), only reasons with a drop in the hour."},
    }, ["interval", "keep", "samples", "times", "sessions", "half_open", "rx_bps", "tx_bps",
        "handshakes_per_s", "handshake_failures_per_s", "drops"])


def _q(name: str, schema: dict[str, Any], description: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description, **more}


def _session_params() -> list[dict[str, Any]]:
    """GET /sessions (vpnhub/manager/paging.py); any other parameter is refused."""
    text = {"type": "string", "maxLength": 64, "pattern": "^[^\\x00-\\x1f]*$"}
    return [
        _q("limit", {"type": "integer", "minimum": 1, "maximum": paging.MAX_LIMIT,
                     "default": paging.DEFAULT_LIMIT}, "Sessions per page."),
        _q("cursor", {"type": "string", "maxLength": paging.MAX_CURSOR,
                      "pattern": "^[A-Za-z0-9_-]+$"},
           "next_cursor of the previous page (opaque; same sort and order). Keyset paging:"
           " stable while sessions come and go. Absent: the first page."),
        _q("sort", {"type": "string", "enum": list(paging.SORTS), "default": "login_time"},
           "Sort key; ties are broken by session id."),
        _q("order", {"type": "string", "enum": list(paging.ORDERS), "default": "asc"},
           "Ascending or descending."),
        _q("user", text, "XAUTH user name (exact)."),
        _q("group", text, "Group name (exact)."),
        _q("public_ip", {"type": "string", "format": "ipv4"}, "Public (peer) address."),
        _q("protocol", {"type": "string", "enum": list(paging.PROTOCOLS)}, "Protocol."),
        _q("has_diagnosis", BOOL, "true: only sessions with a diagnosis (no data can"
           " pass); false: only those without."),
    ]


def _export_params() -> list[dict[str, Any]]:
    """GET /sessions/export (vpnhub/manager/export.py): the listing's filters and sort,
    no limit and no cursor (they are refused), and the format."""
    return [_q("format", {"type": "string", "enum": list(export.FORMATS),
                          "default": export.DEFAULT_FORMAT},
               "jsonl: one Session object per line (application/x-ndjson); csv: a header"
               f" line then the columns {', '.join(export.COLUMNS)} (text/csv; cells that"
               " a spreadsheet would run as a formula start with an apostrophe)."),
            *(p for p in _session_params() if p["name"] not in ("limit", "cursor"))]


def _filter_params() -> list[dict[str, Any]]:
    q = _q

    text = {"type": "string", "maxLength": 64, "pattern": "^[^\\x00-\\x1f]*$"}
    return [
        q("class", {"type": "array", "items": {"type": "string", "enum": list(CLASSES)}},
          "Event classes (repeat the parameter, or separate with commas); none: all.",
          style="form", explode=True),
        q("severity_min", {"type": "integer", "minimum": MIN_SEVERITY,
                           "maximum": MAX_SEVERITY, "default": MIN_SEVERITY},
          "Lowest severity (1 fault ... 13 everything)."),
        q("severity_max", {"type": "integer", "minimum": MIN_SEVERITY,
                           "maximum": MAX_SEVERITY, "default": MAX_SEVERITY},
          "Highest severity; not below severity_min."),
        q("peer", text, "Peer address, or address:port."),
        q("user", text, "XAUTH user name (exact)."),
        q("group", text, "Group name (exact)."),
        q("since", {"type": "string", "format": "date-time"}, "Events still repeating at or"
          " after this time (ISO 8601; without an offset: the concentrator's local time)."),
        q("until", {"type": "string", "format": "date-time"}, "Events first seen at or"
          " before this time."),
        q("text", {"type": "string", "maxLength": 200, "pattern": "^[^\\x00-\\x1f]*$"},
          "Substring of the text, case-insensitive."),
        q("after_seq", {"type": "integer", "minimum": 0, "maximum": 2**62},
          "Only events numbered above this."),
        q("before_seq", {"type": "integer", "minimum": 0, "maximum": 2**62},
          "Only events numbered below this (paging back); 0: no bound."),
        q("limit", {"type": "integer", "minimum": 1, "maximum": 5000, "default": 500},
          "At most this many (the newest matches, oldest first)."),
        q("order", {"type": "string", "enum": ["newest", "oldest"], "default": "newest"},
          "newest: the newest `limit` matches (the last page; before_seq pages back);"
          " oldest: the oldest `limit` matches (the first page; after_seq pages forward)."
          " Keyset paging on the sequence number."),
    ]


def _save_params() -> list[dict[str, Any]]:
    """GET /events/save (vpnhub/manager/logsave.py): the filter without limit and order
    (refused: it is every matching record), and the format."""
    return [_q("format", {"type": "string", "enum": list(logsave.FORMATS),
                          "default": logsave.DEFAULT_FORMAT},
               "text: the VPN 3000's log lines (text/plain); csv: a header line then the"
               f" columns {', '.join(logsave.COLUMNS)} (text/csv)."),
            *(p for p in _filter_params() if p["name"] not in ("limit", "order"))]


def _cluster_paths(sid: dict[str, Any]) -> dict[str, Any]:
    """The Cluster page's API (vpnhub/manager/clusterroutes.py, issue 17)."""
    member = {"name": "member", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": clusterroutes.MEMBER_NAME},
              "description": "The member that has the session (`member` of its entry)."}
    return {
        "/cluster": {"get": {
            "operationId": "getCluster", "tags": ["cluster"],
            "summary": "This cluster member's view: every member with its load and"
                       " heartbeat, the master, the database's state.",
            "responses": {"200": _json(_ref("Cluster"), "The cluster"),
                          **_errors(400, 401, 404)}}},
        "/cluster/sessions": {"get": {
            "operationId": "listClusterSessions", "tags": ["cluster"],
            "summary": "A page of every member's sessions (the cluster's directory).",
            "parameters": [
                _q("limit", {"type": "integer", "minimum": 1,
                             "maximum": clusterroutes.MAX_LIMIT,
                             "default": clusterroutes.DEFAULT_LIMIT}, "Sessions per page."),
                _q("cursor", {"type": "string", "maxLength": clusterroutes.MAX_CURSOR,
                              "pattern": "^[A-Za-z0-9_-]+$"},
                   "next_cursor of the previous page (opaque). Absent: the first page.")],
            "responses": {"200": _json(_ref("ClusterSessions"), "Sessions"),
                          **_errors(400, 401, 404, 503)}}},
        "/cluster/sessions/{member}/{sid}/logout": {"post": {
            "operationId": "logoutClusterSession", "tags": ["cluster"],
            "parameters": [member, sid],
            "summary": "Log a session of any member out: this member's at once, another's"
                       " by a command through the cluster database (that member sends the"
                       " DELETE).",
            "responses": {"200": _json(_obj({
                "logged_out": BOOL, "user": STR, "member": STR, "id": SESSION_ID,
                "delivered": {"type": "string", "enum": ["local", "notify"],
                              "description": "local: ended here; notify: sent to"
                              " the member that has it."}},
                ["logged_out", "member", "id", "delivered"]), "Logged out, or sent"),
                **_errors(401, 403, 404, 503)}}},
    }


def spec() -> dict[str, Any]:
    sid = {"name": "sid", "in": "path", "required": True, "schema": SESSION_ID}
    authed: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"basicAuth": []}, {"cookieAuth": []}]
    ops: dict[str, Any] = {
        "/login": {"post": {
            "operationId": "login", "tags": ["auth"], "security": [],
            "summary": "Log in; returns a bearer token (also accepts HTTP Basic).",
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": _obj({"username": {"type": "string", "minLength": 1},
                                "password": STR}, ["username", "password"])}}},
            "responses": {"200": _json(_ref("Token"), "Logged in"),
                          **_errors(400, 401)}}},
        "/logout": {"post": {
            "operationId": "logout", "tags": ["auth"],
            "summary": "End the current token or cookie session.",
            "responses": {"200": _json(_obj({"logged_out": BOOL}, ["logged_out"]),
                                       "Logged out"), **_errors(401, 403)}}},
        "/summary": {"get": {
            "operationId": "getSummary", "tags": ["sessions"],
            "summary": "The Session Summary.",
            "responses": {"200": _json(_ref("Summary"), "Counts"), **_errors(401)}}},
        "/sessions": {"get": {
            "operationId": "listSessions", "tags": ["sessions"],
            "summary": "Session Summary, a page of the Remote Access Sessions and the"
                       " LAN-to-LAN Sessions, with their SAs.",
            "parameters": _session_params(),
            "responses": {"200": _json(_ref("Sessions"), "Sessions"), **_errors(400, 401)}}},
        "/sessions/export": {"get": {
            "operationId": "exportSessions", "tags": ["sessions"],
            "parameters": _export_params(),
            "summary": "Every matching Remote Access Session as a download (streamed in"
                       " chunks; order and filters as the listing's). At most 2 at once.",
            "responses": {"200": {
                "description": "One line per session (attachment)",
                "headers": {"Content-Disposition": {
                    "description": 'attachment; filename="vpnhub-sessions-<UTC time>.<format>"',
                    "schema": STR}},
                "content": {t: {"schema": STR} for t in export.FORMATS.values()}},
                **_errors(400, 401, 429)}}},
        "/sessions/{sid}": {"get": {
            "operationId": "getSession", "tags": ["sessions"], "parameters": [sid],
            "summary": "One session: IKE SA, IPsec/NAT-T SAs, counters.",
            "responses": {"200": _json(_ref("Session"), "The session"),
                          **_errors(401, 404)}}},
        "/sessions/{sid}/logout": {"post": {
            "operationId": "logoutSession", "tags": ["sessions"], "parameters": [sid],
            "summary": "Log the user out: DELETE to the client, the session ends.",
            "responses": {"200": _json(_obj({"logged_out": BOOL, "user": STR},
                                            ["logged_out"]), "Logged out"),
                          **_errors(401, 403, 404)}}},
        "/sessions/{sid}/ping": {"post": {
            "operationId": "pingSession", "tags": ["sessions"], "parameters": [sid],
            "summary": "Ping the client's assigned address from the concentrator.",
            "responses": {"200": _json(_ref("Ping"), "Ping result"),
                          **_errors(401, 403, 404, 409)}}},
        **_cluster_paths(sid),
        "/events": {"get": {
            "operationId": "getEvents", "tags": ["events"], "parameters": _filter_params(),
            "summary": "The Filterable Event Log.",
            "responses": {"200": _json(_ref("Events"), "Matching events, oldest first"),
                          **_errors(400, 401)}}},
        "/events/stream": {"get": {
            "operationId": "streamEvents", "tags": ["events"], "parameters": _filter_params(),
            "summary": "Live tail as server-sent events (event: record, data: an Event).",
            "responses": {"200": {"description": "text/event-stream", "content": {
                "text/event-stream": {"schema": {"type": "string"}}}},
                **_errors(400, 401)}}},
        "/events/save": {"get": {
            "operationId": "saveEvents", "tags": ["events"], "parameters": _save_params(),
            "summary": "Save Log: every event of the filtered range, up to the newest at the"
                       " start, as a download (streamed in chunks). At most 2 at once.",
            "responses": {"200": {
                "description": "The events, oldest first (attachment)",
                "headers": {"Content-Disposition": {
                    "description": 'attachment; filename="vpnhub-events-<UTC time>.<txt|csv>"',
                    "schema": STR}},
                "content": {t: {"schema": STR} for t, _ in logsave.FORMATS.values()}},
                **_errors(400, 401, 429)}}},
        "/events/clear": {"post": {
            "operationId": "clearEvents", "tags": ["events"],
            "summary": "Clear Log (role admin): delete every event; the one left says who"
                       " cleared the log, from where, and how many went.",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _obj({"confirm": {"type": "boolean", "enum": [True]}},
                               ["confirm"])}}},
            "responses": {"200": _json(_obj({"cleared": BOOL, "record": _ref("Event")},
                                            ["cleared", "record"]), "Cleared"),
                          **_errors(400, 401, 403)}}},
        "/events/classes": {"get": {
            "operationId": "getEventClasses", "tags": ["events"],
            "summary": "Each event class's console (shown) and keep (stored) severities.",
            "responses": {"200": _json(_obj({"classes": {"type": "array",
                                                         "items": _ref("EventClass")}},
                                            ["classes"]), "Classes"), **_errors(401)}}},
        "/events/classes/{name}": {"put": {
            "operationId": "setEventClass", "tags": ["events"],
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": list(CLASSES)}}],
            "summary": "Change a class's severities (role admin) from the next event on;"
                       " logged, and kept across restarts over the configuration's.",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _obj({"console_severity": LEVEL, "keep_severity": LEVEL},
                               ["console_severity", "keep_severity"])}}},
            "responses": {"200": _json(_ref("EventClass"), "Applied"),
                          **_errors(400, 401, 403, 404)}}},
        "/nat-transparency": {
            "get": {"operationId": "getNatTransparency", "tags": ["settings"],
                    "summary": "NAT Transparency settings.",
                    "responses": {"200": _json(_ref("NatTransparency"), "Settings"),
                                  **_errors(401)}},
            "put": {"operationId": "setNatTransparency", "tags": ["settings"],
                    "summary": "Turn IPsec over NAT-T on or off for new IKE SAs (no restart).",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": _obj({"ipsec_over_natt": BOOL}, ["ipsec_over_natt"])}}},
                    "responses": {"200": _json(_ref("NatTransparency"), "Applied"),
                                  **_errors(400, 401, 403)}}},
        "/warnings": {"get": {
            "operationId": "getWarnings", "tags": ["sessions"],
            "summary": "Misconfigurations detected, with the fix.",
            "responses": {"200": _json(_obj({"warnings": {"type": "array",
                                                          "items": _ref("Warning")}},
                                            ["warnings"]), "Warnings"), **_errors(401)}}},
        "/status/history": {"get": {
            "operationId": "getStatusHistory", "tags": ["status"],
            "summary": "The Status page's last hour: the /metrics counters sampled every 10 s.",
            "description": "Gauges as sampled, counters as rates between consecutive"
            " samples (the first is null). The ETag is the number of samples taken: with"
            " If-None-Match the answer is 304 until the next sample.",
            "parameters": [{"name": "If-None-Match", "in": "header", "required": False,
                            "schema": STR, "description": "The ETag of the last answer."}],
            "responses": {"200": _json(_ref("StatusHistory"), "The samples, oldest first"),
                          "304": {"description": "No sample since the ETag given"},
                          **_errors(401)}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "vpnhub manager API", "version": __version__,
                 "description": "Sessions, event log and settings of a running vpnhub"
                 " concentrator (docs/MANAGER.md). Every call but /login needs a bearer token"
                 " from /login, HTTP Basic, or the web console's session cookie (then with"
                 " the X-CSRF-Token header on POST and PUT). Prometheus metrics are at"
                 " /metrics (same authentication)."},
        "servers": [{"url": "/api/v1"}],
        "security": authed,
        "paths": ops,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "basicAuth": {"type": "http", "scheme": "basic"},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "vpnhub_session"},
            },
        },
    }


def to_yaml() -> str:
    import yaml  # dev dependency (schemathesis brings it); the server serves JSON

    head = "# Generated by `python -m vpnhub.manager.openapi`: edit vpnhub/manager/openapi.py.\n"
    return head + str(yaml.safe_dump(spec(), sort_keys=False, width=100, allow_unicode=True))


if __name__ == "__main__":
    if sys.argv[1:] == ["--json"]:
        print(json.dumps(spec(), indent=2))
    else:
        sys.stdout.write(to_yaml())
