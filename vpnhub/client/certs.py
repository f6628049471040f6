"""The client's certificates (issue 14): the profile's files as the engine's
`SigCredentials` (vpnhub.pki), or a ProfileError naming the file."""

from __future__ import annotations

import time

from vpnhub.client.profile import ClientProfile, ProfileError
from vpnhub.config import PkiConfig
from vpnhub.pki.credentials import PkiError, load_credentials
from vpnhub.pki.signer import PkiSigner


def client_signer(profile: ClientProfile) -> PkiSigner | None:
    """None for a PSK profile; for hybrid the CA bundle only, for rsa also our own."""
    if profile.auth == "psk" or profile.ca_file is None:
        return None
    cfg = PkiConfig(ca=profile.ca_file, certificate=profile.certificate, key=profile.key)
    try:
        return PkiSigner(load_credentials(cfg), time.time, peer_is_server=True)
    except PkiError as e:
        raise ProfileError(str(e).replace("[pki] ", "").replace("ca ", "ca_file ", 1),
                           source=str(profile.source or "<profile>")) from None
