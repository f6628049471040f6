"""A load-balancing cluster of concentrators (issue 17; docs/CLUSTER.md).

    balance.py   the load-balancing rule (pure): which member a new client goes to
"""
