"""Tools that drive vpnhub from outside: the handshake load generator (benchmarks)."""
