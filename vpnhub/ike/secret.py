"""Re-export of the one `Secret` (vpnhub/secret.py) for the IKE engine's imports."""

from vpnhub.secret import Secret

__all__ = ["Secret"]
