"""Sessions and address pools, each behind a Protocol with an in-memory implementation.

- `model.py`: `Session` (the store's record), `SessionView` (read-only), `ChildInfo`.
- `events.py`: `SessionStarted`, `SessionChanged`, `SessionEnded` (frozen snapshots).
- `store.py`: `SessionStore` and `MemorySessionStore`: every change goes through it
  and is told to its subscribers (the manager today; accounting, a cluster later).
- `pool.py`: `AddressPool` and `MemoryAddressPool`: the inner addresses of a group.
"""
