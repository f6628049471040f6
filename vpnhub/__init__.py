"""vpnhub: an IPsec (IKEv1) remote-access concentrator and client with NAT traversal."""

__version__ = "0.1.0"
PRODUCT = "vpnhub"
