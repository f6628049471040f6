"""The concentrator: `vpnhub serve` (IKE driver, data plane, sessions, admin socket)."""
