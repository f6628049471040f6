"""PkiSigner: the concentrator's credentials as the IKE engine's `SigCredentials`.

The engine (vpnhub.ike.sigauth) knows no X.509: it hands certificates and an ID
in and gets a key that verifies SIG_I, or the refusal to log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vpnhub.config import PkiConfig
from vpnhub.crypto.rsasig import sign_pkcs1_null, verify_pkcs1_null
from vpnhub.pki.credentials import Credentials, load_credentials
from vpnhub.pki.verify import CertificateRefused, verify_peer


@dataclass(frozen=True)
class VerifiedPeer:
    """A peer whose certificate passed every check: its key verifies SIG_I."""

    subject: str
    groups: tuple[str, ...]  # the subject's OU values (the VPN 3000's group from a cert)
    key: rsa.RSAPublicKey

    def verify(self, data: bytes, signature: bytes) -> bool:
        return verify_pkcs1_null(self.key, data, signature)


class PkiSigner:
    """Our certificate and key, the CAs we ask for (CERTREQ) and trust."""

    def __init__(self, creds: Credentials, wall: Callable[[], float], *,
                 peer_is_server: bool = False) -> None:
        """`peer_is_server`: a client's, whose peer must show a gateway's certificate."""
        self._creds = creds
        self._peer_is_server = peer_is_server
        self._key = creds.key  # None: a hybrid client, which only verifies
        self._wall = wall
        cert = creds.certificate
        self.certificate = cert.public_bytes(serialization.Encoding.DER) if cert else b""
        self.subject_der = cert.subject.public_bytes() if cert else b""
        # RFC 2408 3.10: the Certification Authority field of a CR is the CA's DN
        self.ca_names = tuple(ca.subject.public_bytes() for ca in creds.cas)

    def sign(self, data: bytes) -> bytes:
        if self._key is None:  # the engine signs only in the methods that need our key
            raise ValueError("no private key configured to sign with")
        return sign_pkcs1_null(self._key, data)

    def check_peer(self, certs: list[bytes], id_type: int, id_data: bytes) -> VerifiedPeer | str:
        """The verified peer, or "check: detail" naming the check that failed."""
        at = datetime.fromtimestamp(self._wall(), UTC)
        try:
            peer = verify_peer(self._creds, certs, id_type, id_data, at,
                               server=self._peer_is_server)
        except CertificateRefused as refused:
            return str(refused)
        return VerifiedPeer(peer.subject, peer.organizational_units, peer.public_key)


def build_signer(cfg: PkiConfig | None, wall: Callable[[], float]) -> PkiSigner | None:
    """The signer of a configuration with a [pki] certificate; PkiError if a file is bad."""
    if cfg is None or cfg.certificate is None:
        return None
    return PkiSigner(load_credentials(cfg), wall)
