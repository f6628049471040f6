"""How many DH key pairs the concentrator keeps ready (issue 13: a login storm).

By default each pooled group is sized for a storm (ike.dhpool.DEFAULT_SIZES: 2048
for group 14, fewer for the costly MODP 15 and 16), bounded by max_sessions and
doubled for Quick Mode PFS; `[limits] dh_pool_size` overrides it for every group,
0 turns the pool off. The admin `stats` answer shows its level per group.
"""

from __future__ import annotations

import pytest
from core_harness import CoreRig, config_text

from vpnhub.concentrator.core import dh_pool_sizes, pooled_dh_groups
from vpnhub.config import ConfigError, parse_config
from vpnhub.ike.dhpool import DEFAULT_SIZES, STORM_PAIRS, default_size


def test_the_default_is_sized_for_a_storm_per_group() -> None:
    cfg = parse_config(config_text())
    assert cfg.limits.dh_pool_size is None
    assert dh_pool_sizes(cfg) == {14: STORM_PAIRS} and STORM_PAIRS == 2048
    legacy = parse_config(config_text(concentrator_extra="allow_legacy_crypto = true"))
    assert dh_pool_sizes(legacy) == {2: 2048, 14: 2048}
    # the costly groups get what the DH thread makes in about a second
    costly = parse_config(config_text(
        group_extra='ike_proposals = ["aes256-sha256-modp3072", "aes256-sha256-modp4096"]'))
    assert dh_pool_sizes(costly) == {15: 1024, 16: 512}
    assert all(DEFAULT_SIZES[g] <= STORM_PAIRS for g in DEFAULT_SIZES)


def test_the_default_is_bounded_by_max_sessions_and_doubled_for_pfs() -> None:
    small = parse_config(config_text(limits_extra="max_sessions = 100"))
    assert dh_pool_sizes(small) == {14: 100}
    pfs = parse_config(config_text(limits_extra="max_sessions = 100", group_extra="pfs = true"))
    assert dh_pool_sizes(pfs) == {14: 200}  # Quick Mode PFS takes a second pair
    # an ESP proposal's PFS group is pooled too (ike.quick takes from the pool)
    esp = parse_config(config_text(group_extra='esp_proposals = ["aes128-sha1-ecp256"]'))
    assert pooled_dh_groups(esp) == (14, 19)
    assert dh_pool_sizes(esp) == {14: 2048, 19: 2048}
    assert default_size(16, max_sessions=10_000, per_tunnel=2) == 512


def test_dh_pool_size_overrides_every_group_and_0_turns_the_pool_off() -> None:
    cfg = parse_config(config_text(limits_extra="dh_pool_size = 8",
                                   concentrator_extra="allow_legacy_crypto = true"))
    assert dh_pool_sizes(cfg) == {2: 8, 14: 8}
    off = CoreRig.from_text(config_text(limits_extra="dh_pool_size = 0"))
    assert off.core.endpoint.dh_pool is None
    assert off.core.admin_command({"cmd": "stats"})["dh_pool"] is None


@pytest.mark.parametrize("value", ["-1", "65537", '"big"'])
def test_dh_pool_size_out_of_range_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="dh_pool_size"):
        parse_config(config_text(limits_extra=f"dh_pool_size = {value}"))


def test_stats_show_the_level_per_group() -> None:
    rig = CoreRig.from_text(config_text(limits_extra="dh_pool_size = 3"))
    pool = rig.core.endpoint.dh_pool
    assert pool is not None
    before = rig.core.admin_command({"cmd": "stats"})["dh_pool"]
    assert before["groups"] == {"14": {"ready": 0, "size": 3}}
    assert (before["ready"], before["size"], before["full"]) == (0, 3, False)
    pool.fill(3)
    assert pool.take(14) is not None and pool.take(19) is None
    after = rig.core.admin_command({"cmd": "stats"})["dh_pool"]
    assert after["groups"] == {"14": {"ready": 2, "size": 3}}
    assert (after["taken"], after["missed"], after["generated"], after["full"]) == (1, 1, 3, False)
