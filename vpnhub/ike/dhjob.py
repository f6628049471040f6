"""The phase 1 shared secret g^xy, computed off the IKE loop while it is not needed yet.

With a pre-shared key, SKEYID = prf(pre-shared-key, Ni_b | Nr_b) (RFC 2409
section 5) does not involve g^xy, and neither does HASH_R: the responder's
Aggressive Mode message 2 and Main Mode message 4 go out in the clear without
it. Only SKEYID_d, SKEYID_a, SKEYID_e and the encryption key derived from it
(appendix B) need g^xy, and they are first used when the peer's next message
arrives encrypted, one round trip later. So the modular exponentiation (about
0.5 ms for group 14 with gmpy2, a fifth of a whole remote-access handshake)
can run meanwhile on another core: the concentrator's shell hands the job to a
worker thread (gmpy2 lets go of the GIL inside powmod there, crypto.dh), and
the SA takes the result when it first needs a key.

Correctness never depends on the worker: whoever comes first computes g^xy;
with no worker, or one that has not reached the job, the SA computes it on
first use, as before. A worker that is at it right now is waited for rather
than raced (`settle`, the shell's: this module holds no lock, the core has no
threads). The job carries its SA's cookies (`key`) so that the shell can hold
back the SA's next message until the worker is done with it, rather than let
the loop wait (net.dhworker `park`); that is the shell's business, the core
sees the message later, in order, as if it had come then.

The peer's public value is checked before the job is made (NIST SP 800-56A
5.6.2.3.1, crypto.dh), so a bad KE payload is still refused in answer to the
message that carried it.
"""

from __future__ import annotations

from collections.abc import Callable

from vpnhub.crypto.dh import DHKeyPair

#: What the shell gives the endpoint: run this job on another thread, soon.
DhOffload = Callable[["SharedSecretJob"], None]


class SharedSecretJob:
    """g^xy of one key pair and one (checked) peer public value, computed once.

    Written for two threads without a lock of its own: each side reads the key
    pair before the value and the worker stores the value before it drops the
    key pair, so a reader that finds the key pair gone finds the value there
    (attribute reads and writes are atomic under the GIL).
    """

    # __weakref__: the shell keeps a job the DH worker's full backlog left out by a weak
    # reference only (net.dhworker), so that the private value dies with its SA
    __slots__ = ("__weakref__", "_kp", "_peer", "_value", "key", "ran_on_worker", "settle")

    def __init__(self, kp: DHKeyPair, peer_public: bytes, key: bytes = b"") -> None:
        self._kp: DHKeyPair | None = kp
        self._peer = peer_public
        # The IKE SA's cookies, CKY-I | CKY-R: the first 16 bytes of the ISAKMP header
        # of each of its messages (RFC 2408 3.1). The shell holds back a message of
        # that SA while the job is pending (net.dhworker `park`) instead of letting
        # the SA wait for, or compute, g^xy on its loop; b"": not known.
        self.key = key
        self._value: bytes | None = None
        self.ran_on_worker = False
        # set by the shell's worker: returns once the worker is not computing this job
        self.settle: Callable[[SharedSecretJob], None] | None = None

    def run(self) -> None:
        """The worker's call: compute unless the SA got there first."""
        kp = self._kp
        if kp is None or self._value is not None:
            return
        try:
            value = kp.shared_secret(self._peer)
        except Exception:  # checked before; the SA's own call will say why
            return
        self._value = value
        self.ran_on_worker = True
        self._kp = None  # x is not needed any more (RFC 2409 3.3)

    @property
    def done(self) -> bool:
        """g^xy is here (whoever computed it): taking it blocks nobody."""
        return self._value is not None

    def result(self) -> bytes:
        """The SA's call: g^xy, computed here if no worker has; the private value goes."""
        if self._value is None and self.settle is not None:
            self.settle(self)  # a worker in the middle of it: wait, do not compute twice
        kp = self._kp
        value = self._value
        if value is None:
            assert kp is not None
            value = self._value = kp.shared_secret(self._peer)
        self._kp = None  # forward secrecy: x is not needed any more (RFC 2409 3.3)
        return value
