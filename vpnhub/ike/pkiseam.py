"""The seam between the IKE engine and X.509 (issue 14): what signature
authentication needs, as Protocols, so the engine imports no certificate code.

vpnhub.pki.signer.PkiSigner implements `SigCredentials`; ike/sigauth.py uses it.
"""

from __future__ import annotations

from typing import Protocol


class PeerKey(Protocol):
    """A peer whose certificate chain, validity, revocation and ID were checked."""

    @property
    def subject(self) -> str: ...

    @property
    def groups(self) -> tuple[str, ...]: ...  # the subject's OU values

    def verify(self, data: bytes, signature: bytes) -> bool: ...


class SigCredentials(Protocol):
    """Our certificate and key, the CAs we trust (named in CERTREQ), peer checks."""

    @property
    def certificate(self) -> bytes: ...  # DER, sent in CERT (X.509 signature, 4)

    @property
    def subject_der(self) -> bytes: ...  # our ID_DER_ASN1_DN (RFC 4945 3.1)

    @property
    def ca_names(self) -> tuple[bytes, ...]: ...  # DER DNs for CERTREQ (RFC 2408 3.10)

    def sign(self, data: bytes) -> bytes: ...

    def check_peer(self, certs: list[bytes], id_type: int, id_data: bytes) -> PeerKey | str:
        """The verified peer, or a refusal "check: detail" for the log."""
        ...
