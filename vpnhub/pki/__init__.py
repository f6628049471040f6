"""X.509 for IKEv1 signature authentication (issue 14): the [pki] files and the checks.

    credentials.py  load_credentials: the CA bundle, our certificate and key, CRLs,
                    each refused with the file and the reason (PkiError)
    verify.py       verify_peer: a peer's chain to a configured CA, validity, CRL
                    revocation, its IKE identity bound to the subject or a SAN;
                    a refusal names the check that failed (CertificateRefused)
    signer.py       PkiSigner: what the IKE engine's sigauth needs (sign, our
                    certificate, CERTREQ names, peer checks), built on the two

Sans-I/O apart from credentials.py reading files: the time of a check is passed in.
"""
