"""NetWatch against the kernel, inside a network namespace this test creates (root only)."""

from __future__ import annotations

import sys
import time

from luxxon_agent.video.netwatch import NetWatch
from tests.netns import NetnsLink, read_json_line, require_netns

PROMPT_S = 1.0
"""How soon a change must be reported: the kernel notifies at once."""


def test_address_removal_and_default_route_change_are_reported_at_once() -> None:
    require_netns()
    with NetnsLink(subnet=47, name="lw") as link:
        ns, dev = link.client_ns, link.client_dev
        prefix = link.client_ip.rsplit(".", 1)[0]
        link.run(ns, ["ip", "route", "add", "default", "via", link.server_ip])
        link.run(ns, ["ip", "addr", "add", f"{prefix}.9/24", "dev", dev])
        probe = link.popen(ns, [sys.executable, "-m", "tests.netwatch_probe", link.client_ip])
        hello = read_json_line(probe, 10)
        assert hello is not None and hello["ready"], hello
        assert hello["default_route"][1] == link.server_ip

        # an address that is not ours goes: nothing to say
        link.run(ns, ["ip", "addr", "del", f"{prefix}.9/24", "dev", dev])
        assert read_json_line(probe, 0.5) is None

        began = time.monotonic()
        link.run(ns, ["ip", "route", "replace", "default", "via", f"{prefix}.3"])
        change = read_json_line(probe, PROMPT_S)
        assert change is not None and change["reason"] == "default-route-changed", change
        assert f"{prefix}.3" in change["detail"] and time.monotonic() - began < PROMPT_S

        began = time.monotonic()
        link.run(ns, ["ip", "addr", "del", f"{link.client_ip}/24", "dev", dev])
        changes = [read_json_line(probe, PROMPT_S), read_json_line(probe, 0.5)]
        assert time.monotonic() - began < PROMPT_S + 0.6
        reasons = {(c["reason"], c["address"]) for c in changes if c is not None}
        # the address goes, and with it the default route that used its subnet
        assert ("address-removed", link.client_ip) in reasons, changes
        assert ("default-route-changed", None) in reasons, changes

        link.run(ns, ["ip", "addr", "add", f"{link.client_ip}/24", "dev", dev])
        change = read_json_line(probe, PROMPT_S)
        assert change is not None and change["reason"] == "address-added", change
        assert change["address"] == link.client_ip
        began = time.monotonic()
        link.run(ns, ["ip", "link", "set", dev, "down"])
        change = read_json_line(probe, PROMPT_S)
        assert change is not None and change["reason"] == "link-down", change
        assert change["address"] == link.client_ip and time.monotonic() - began < PROMPT_S

        # back up: a path may be there again (the veth's carrier follows within linkwatch's 1 s)
        link.run(ns, ["ip", "link", "set", dev, "up"])
        change = read_json_line(probe, PROMPT_S + 1)
        assert change is not None and change["reason"] == "link-up", change
        assert link.stop(probe) == 0


def test_watch_replaces_the_addresses_and_rejects_a_non_address() -> None:
    watch = NetWatch(["10.0.0.1"])
    watch.watch(["fe80::1", "192.0.2.7"])
    assert watch._addresses == {"fe80::1", "192.0.2.7"}
    try:
        NetWatch(["not-an-address"])
    except ValueError as exc:
        assert "not-an-address" in str(exc)
    else:
        raise AssertionError("a bad address was accepted")
