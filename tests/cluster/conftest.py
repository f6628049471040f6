"""PostgreSQL for the cluster tests: a real server (tests/pgserver.py) per module,
a fresh database per test; `pg_own` is a server of the test's own (outages)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from netns_util import unavailable
from pgserver import PgServer, pg_problem


def _server() -> PgServer:
    problem = pg_problem()
    if problem is not None:
        unavailable(problem)
    return PgServer()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    with _server() as pg:
        yield pg


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """A fresh database on the module's server."""
    return pg_server.new_database()


@pytest.fixture
def pg_own() -> Iterator[PgServer]:
    """A server of the test's own, which it may stop and start."""
    with _server() as pg:
        yield pg
