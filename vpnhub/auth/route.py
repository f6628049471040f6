"""One backend per group: `[[group]] xauth = "local"` or `"radius"` (issue 14).

`ByGroup` is the `Authenticator` the lock-out wraps: it hands each attempt to
the backend of the group the client logged in to (its phase 1 identity). An
unknown group goes to the local users, who know no user of it.
"""

from __future__ import annotations

from collections.abc import Mapping

from vpnhub.auth.api import Authenticator, AuthRequest, AuthResult, Closeable

__all__ = ["ByGroup"]


class ByGroup:
    def __init__(self, default: Authenticator, by_group: Mapping[str, Authenticator]) -> None:
        self.default = default
        self.by_group = dict(by_group)

    def backend(self, group: str) -> Authenticator:
        return self.by_group.get(group, self.default)

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        return await self.backend(request.group).authenticate(request)

    def _backends(self) -> list[Closeable]:
        unique = {id(b): b for b in (self.default, *self.by_group.values())}
        return [b for b in unique.values() if isinstance(b, Closeable)]

    def close(self) -> None:
        for b in self._backends():
            b.close()

    async def aclose(self) -> None:
        for b in self._backends():
            await b.aclose()
