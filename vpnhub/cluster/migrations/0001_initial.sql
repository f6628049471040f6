-- vpnhub cluster schema 1 (issue 17; docs/CLUSTER.md): what the members of a
-- load-balancing cluster share. Applied by vpnhub/cluster/migrate.py at start,
-- in one transaction, under an advisory lock.

-- Every member, its load and its heartbeat. The heartbeat is the DATABASE's
-- clock (now()), so members with skewed clocks still agree on who is alive.
CREATE TABLE members (
    name text PRIMARY KEY,
    public_address inet NOT NULL,
    sessions integer NOT NULL DEFAULT 0 CHECK (sessions >= 0),
    max_sessions integer NOT NULL DEFAULT 0 CHECK (max_sessions >= 0),
    heartbeat timestamptz NOT NULL DEFAULT now(),
    started timestamptz NOT NULL DEFAULT now(),
    version text NOT NULL DEFAULT '',
    state text NOT NULL DEFAULT 'up' CHECK (state IN ('up', 'gone'))
);

-- Blocks of a group's address_pool, each granted to one member: the exclusion
-- constraint refuses any block that overlaps one already granted (the same
-- block twice, or blocks of different sizes), whatever the group, so an
-- address is never in two members' hands. Groups' pools never overlap
-- (the configuration refuses it). The private network routes each block to
-- its member.
CREATE TABLE address_blocks (
    group_name text NOT NULL,
    block cidr NOT NULL,
    member text NOT NULL REFERENCES members (name) ON DELETE CASCADE,
    granted timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, block),
    CONSTRAINT address_blocks_no_overlap EXCLUDE USING gist (block inet_ops WITH &&)
);
CREATE INDEX address_blocks_member ON address_blocks (member);

-- One row per address in use: the primary key is the address, so the
-- database itself refuses to give one twice.
CREATE TABLE leases (
    address inet PRIMARY KEY,
    group_name text NOT NULL,
    member text NOT NULL REFERENCES members (name) ON DELETE CASCADE,
    session_id text NOT NULL,
    user_name text NOT NULL DEFAULT '',
    since timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leases_member ON leases (member);

-- The session directory: every member's sessions, for the cluster-wide
-- Sessions page, the API and `vpnhub sessions --cluster`. `detail` is the
-- session as `vpnhub sessions --json` shows it, as of its last change.
CREATE TABLE sessions (
    member text NOT NULL REFERENCES members (name) ON DELETE CASCADE,
    id text NOT NULL,
    user_name text NOT NULL,
    group_name text NOT NULL,
    public_ip inet NOT NULL,
    public_port integer NOT NULL,
    assigned_ip inet,
    protocol text NOT NULL,
    transport text NOT NULL,
    lan_to_lan text NOT NULL DEFAULT '',
    login_time timestamptz NOT NULL,
    detail jsonb NOT NULL,
    updated timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member, id)
);
CREATE INDEX sessions_by_login ON sessions (login_time, member, id);
