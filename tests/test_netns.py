"""The namespace harness itself: the link exists, tbf and nft shape it, nothing is left over."""

from __future__ import annotations

import subprocess
import sys

from tests.netns import NetnsLink, require_netns

RECEIVER = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 9999))
sock.settimeout(1.0)
print("ready", flush=True)
got = 0
try:
    while True:
        sock.recv(2048)
        got += 1
except TimeoutError:
    print(got, flush=True)
"""
SENDER = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[2])):
    sock.sendto(b"x" * 200, (sys.argv[1], 9999))
    time.sleep(0.002)
"""


def udp_loss(link: NetnsLink, count: int = 200) -> float:
    """Share of `count` UDP datagrams from the client namespace that the server's got (0..1),
    both ends inside the namespaces."""
    receiver = link.popen(link.server_ns, [sys.executable, "-c", RECEIVER, link.server_ip])
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    link.run(link.client_ns, [sys.executable, "-c", SENDER, link.server_ip, str(count)])
    got = int(receiver.stdout.readline())
    link.stop(receiver)
    return 1 - got / count


def test_link_shapes_drops_and_cleans_up() -> None:
    require_netns()
    with NetnsLink(subnet=46, name="lh") as link:
        names = (link.server_ns, link.client_ns)
        assert set(names) <= set(
            subprocess.check_output(["ip", "netns", "list"], text=True).split()
        )
        assert "unreachable 10.231.46.0/24" in subprocess.check_output(["ip", "route"], text=True)
        assert udp_loss(link) == 0
        link.shape(1_000_000, drop_percent=50)
        assert "tbf" in link.run(link.client_ns, ["tc", "qdisc", "show", "dev", link.client_dev])
        assert 0.2 < udp_loss(link) < 0.8
        link.shape(None)
        assert udp_loss(link) == 0
        sleeper = link.popen(link.server_ns, ["sleep", "60"])
    assert sleeper.returncode is not None  # killed by PID on the way out
    left = subprocess.check_output(["ip", "netns", "list"], text=True).split()
    assert not set(names) & set(left)
    assert "10.231.46.0/24" not in subprocess.check_output(["ip", "route"], text=True)
