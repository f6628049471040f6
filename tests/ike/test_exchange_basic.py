from ike_harness import Lab

from vpnhub.ike import events as ev


def test_aggressive_xauth_modecfg_quick_behind_nat() -> None:
    lab = Lab()
    c = lab.add_client()
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established, [e for e in c.events if isinstance(e, ev.LogLine)][-5:]
    assert len(c.children) == 1
    srv = lab.server_children()
    assert len(srv) == 1
    assert srv[0].enc_key_in == c.children[0].enc_key_out
    assert srv[0].spi_in == c.children[0].spi_out
