"""Issue 17: a [cluster] member's state in the manager: the banner while the cluster
database is unreachable or a member is dead, and the /metrics series (checked with
prometheus_client's parser)."""

from __future__ import annotations

import ipaddress

import pytest
from manager_fakes import FakeConcentrator, config_text

from vpnhub.cluster.balance import MemberLoad
from vpnhub.config import parse_config
from vpnhub.eventlog import EventLog
from vpnhub.manager import metrics
from vpnhub.manager.view import ManagerView


class Member:
    """A member's state as the banners read it (ClusterLike)."""

    def __init__(self, database_ok: bool, alive: tuple[bool, ...]) -> None:
        self.name = "c1"
        self.database_ok = database_ok
        self.last_error = "connection refused"
        self.outages = 1
        self._alive = alive

    def members(self) -> list[MemberLoad]:
        return [MemberLoad(f"c{i + 1}", ipaddress.IPv4Address(f"198.51.100.{11 + i}"), 0, 10,
                           a) for i, a in enumerate(self._alive)]

    def holds_virtual_address(self) -> bool:
        return True


def view_with(member: Member | None) -> ManagerView:
    conc = FakeConcentrator(parse_config(config_text(None)), EventLog())
    conc.cluster = member  # type: ignore[attr-defined]
    return ManagerView(conc)


def kinds(view: ManagerView) -> list[str]:
    return [w.kind for w in view.warnings() if w.kind.startswith("cluster")]


def test_banners_say_database_lost_and_members_dead() -> None:
    assert kinds(view_with(None)) == []
    assert kinds(view_with(Member(True, (True, True)))) == []
    down = view_with(Member(False, (True, True)))
    assert kinds(down) == ["cluster_database_unreachable"]
    text = next(w.text for w in down.warnings() if w.kind == "cluster_database_unreachable")
    assert "connection refused" in text and "new logins are refused" in text
    dead = view_with(Member(True, (True, False)))
    assert kinds(dead) == ["cluster_member_dead"]
    assert "c2" in next(w.text for w in dead.warnings() if w.kind == "cluster_member_dead")


def test_metrics_carry_the_cluster_series() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    text = metrics.render(view_with(Member(False, (True, False))))
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert families["vpnhub_cluster_database_up"].samples[0].value == 0
    by_state = {s.labels["state"]: s.value for s in families["vpnhub_cluster_members"].samples}
    assert by_state == {"alive": 1, "dead": 1}
    assert families["vpnhub_cluster_holds_virtual_address"].samples[0].value == 1
    assert "vpnhub_cluster_database_up" not in metrics.render(view_with(None))
