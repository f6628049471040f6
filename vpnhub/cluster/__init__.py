"""A load-balancing cluster of concentrators (issue 17; docs/CLUSTER.md).

    balance.py   the load-balancing rule (pure): which member a new client goes to
    member.py    ClusterMember: the PostgreSQL side, from its own threads (heartbeat and
                 load, the members snapshot as the Balancer, the session directory,
                 leases and blocks, dead members, NOTIFY commands, outages)
    pool.py      ClusterAddressPool: a group's addresses from this member's blocks
    db.py        ClusterDb: the SQL (psycopg 3), used by the member's thread only
    migrate.py   the shipped schema (migrations/NNNN_*.sql) applied at start
"""
