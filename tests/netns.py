"""Two network namespaces joined by a veth pair, with a shapeable link: for tests and benchmarks.

    with NetnsLink(subnet=47) as link:
        server = link.popen(link.server_ns, [python, "-m", "tests.link_ingest", ...])
        link.shape(rate_bps=1_000_000, drop_percent=5)   # the client's egress
        ...

`server_ns` holds 10.231.<subnet>.1 and `client_ns` 10.231.<subnet>.2 on a
private /24. Before anything is created, `ip route add unreachable` for that
/24 goes into the root namespace, so nothing there can reach it by mistake; it
is removed with the namespaces on exit, on an exception and on SIGINT/SIGTERM
(turned into an exception while the harness is active). Every process is
started with `ip netns exec` (which execs, so its PID is the program's) and
killed by that PID on exit. Nothing is ever sent from the root namespace: a
probe that needs the server runs inside `client_ns`.

Shaping is what this kernel has: `tc tbf` on the client's veth (no
sch_netem here) and random drops with nft (`numgen random mod 100 < N`) as
the server receives, so both act on the client-to-server direction only.
Needs root; `require_netns()` skips a test with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import IO, Any

TBF_LATENCY_MS = 200
"""Longest a packet waits in the tbf queue before it is dropped: a modem's buffer."""
TOOLS = ("ip", "tc", "nft")
_NFT_TABLE = "luxxon_link"
_BLACKHOLE_TABLE = "luxxon_blackhole"


def netns_unavailable() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespace tests need root (CI runs them as root)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (bash .ci/system-deps installs them)"
    return None


def require_netns() -> None:
    """Skip the calling test with the reason when namespaces cannot be made."""
    import pytest

    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


class NetnsLink:
    """A server and a client namespace on one veth pair; see the module docstring."""

    def __init__(self, subnet: int = 47, name: str = "lx") -> None:
        if not 0 <= subnet <= 255:
            raise ValueError("subnet is the third octet of 10.231.x.0/24")
        tag = f"{name}{os.getpid() % 100000}"
        self.server_ns = f"{tag}s"
        self.client_ns = f"{tag}c"
        self.server_dev = f"{tag}s0"
        self.client_dev = f"{tag}c0"
        self.subnet = f"10.231.{subnet}.0/24"
        self.server_ip = f"10.231.{subnet}.1"
        self.client_ip = f"10.231.{subnet}.2"
        self._processes: list[subprocess.Popen[Any]] = []
        self._route_added = False
        self._old_handlers: dict[int, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> NetnsLink:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._interrupted)
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _interrupted(self, signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def _create(self) -> None:
        # a crashed earlier run with our PID's names would make `ip netns add` fail
        for ns in (self.server_ns, self.client_ns):
            _ip("netns", "del", ns, check=False)
        _ip("route", "add", "unreachable", self.subnet)
        self._route_added = True
        for ns in (self.server_ns, self.client_ns):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        # both ends are created inside the namespaces: the root namespace never has them
        _ip(
            "link", "add", self.server_dev, "netns", self.server_ns, "type", "veth",
            "peer", "name", self.client_dev, "netns", self.client_ns,
        )  # fmt: skip
        for ns, dev, ip in (
            (self.server_ns, self.server_dev, self.server_ip),
            (self.client_ns, self.client_dev, self.client_ip),
        ):
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")

    def close(self) -> None:
        """Kill our processes, delete the namespaces and the unreachable route. Idempotent."""
        processes, self._processes = self._processes, []
        for proc in processes:
            _stop(proc)
        for ns in (self.server_ns, self.client_ns):
            _ip("netns", "del", ns, check=False)
        if self._route_added:
            _ip("route", "del", "unreachable", self.subnet, check=False)
            self._route_added = False
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    # -- processes -------------------------------------------------------------------------

    def popen(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = None,
    ) -> subprocess.Popen[str]:
        """Start `argv` inside `ns`; it is killed (by PID) when the link closes."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
        self._processes.append(proc)
        return proc

    def run(self, ns: str, argv: Sequence[str], timeout: float = 10) -> str:
        """Run `argv` inside `ns` to completion (bounded by `timeout`); its stdout."""
        return subprocess.run(
            ["ip", "netns", "exec", ns, *argv],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        ).stdout

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 5) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit status."""
        _stop(proc, timeout)
        with contextlib.suppress(ValueError):
            self._processes.remove(proc)
        return proc.returncode

    # -- the link --------------------------------------------------------------------------

    def shape(self, rate_bps: float | None, drop_percent: int = 0) -> None:
        """Limit the client's egress to `rate_bps` (None: unshaped) and drop `drop_percent`
        of what it sends at random (client to server only)."""
        ns, dev = self.client_ns, self.client_dev
        if rate_bps is None:
            _ip("netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root", check=False)
        else:
            # a burst of 20 ms of the rate, never less than a few full packets
            burst = max(4500, int(rate_bps / 8 / 50))
            _ip(
                "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
                "rate", f"{int(rate_bps)}bit", "burst", str(burst),
                "latency", f"{TBF_LATENCY_MS}ms",
            )  # fmt: skip
        # drops happen as the server receives: a drop in the client's own output path would
        # fail the sender's sendto() with EPERM, which no real link does
        nft = ("netns", "exec", self.server_ns, "nft")
        _ip(*nft, "delete", "table", "inet", _NFT_TABLE, check=False)
        if drop_percent:
            if not 0 < drop_percent < 100:
                raise ValueError("drop_percent must be in [0, 100)")
            _ip(*nft, "add", "table", "inet", _NFT_TABLE)
            _ip(*nft, "add", "chain", "inet", _NFT_TABLE, "ingress",
                "{ type filter hook prerouting priority 0; policy accept; }")  # fmt: skip
            _ip(*nft, "add", "rule", "inet", _NFT_TABLE, "ingress", "iifname", self.server_dev,
                "numgen", "random", "mod", "100", "<", str(drop_percent), "drop")  # fmt: skip

    def blackhole(self, on: bool) -> None:
        """Drop everything between the namespaces, both ways, or stop doing so: radio loss.

        No interface, address or route changes, so no netlink event tells the
        client. Both drops happen as a side receives (each namespace's prerouting),
        so neither side's sendto() fails: packets just vanish, as on a dead link.
        """
        for ns, dev in ((self.server_ns, self.server_dev), (self.client_ns, self.client_dev)):
            nft = ("netns", "exec", ns, "nft")
            _ip(*nft, "delete", "table", "inet", _BLACKHOLE_TABLE, check=False)
            if on:
                _ip(*nft, "add", "table", "inet", _BLACKHOLE_TABLE)
                _ip(*nft, "add", "chain", "inet", _BLACKHOLE_TABLE, "ingress",
                    "{ type filter hook prerouting priority -10; policy accept; }")  # fmt: skip
                _ip(*nft, "add", "rule", "inet", _BLACKHOLE_TABLE, "ingress", "iifname", dev,
                    "drop")  # fmt: skip

    def set_client_link(self, up: bool) -> None:
        """`ip link set <client veth> up|down`: a modem detaching and re-attaching."""
        _ip("-n", self.client_ns, "link", "set", self.client_dev, "up" if up else "down")

    def tbf_drops(self) -> int:
        """Packets the client's tbf dropped so far (0 when unshaped)."""
        out = _ip("netns", "exec", self.client_ns, "tc", "-s", "qdisc", "show", "dev",
                  self.client_dev).stdout  # fmt: skip
        for line in out.splitlines():
            if "dropped" in line:
                return int(line.split("dropped")[1].split(",")[0])
        return 0


def read_json_line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any] | None:
    """The next JSON line `proc` prints within `timeout` s; None on timeout or its exit."""
    import json
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], max(0.0, timeout))
    if not ready:
        return None
    line = proc.stdout.readline()
    if not line:
        return None
    value = json.loads(line)
    assert isinstance(value, dict), line
    return value


def _stop(proc: subprocess.Popen[Any], timeout: float = 5) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    for stream in (proc.stdout, proc.stdin, proc.stderr):
        if stream is not None:
            stream.close()


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_ingest(
    link: NetnsLink,
    out: str,
    port: int = 8080,
    *,
    refuse_until_delete: bool = False,
    transport_cc: bool = False,
) -> subprocess.Popen[Any]:
    """The stub's ingest (tests/link_ingest.py) in the server namespace, once ready;
    `refuse_until_delete`: a POST is refused 403 while the last resource lives;
    `transport_cc`: it sends transport-cc feedback."""
    import sys

    argv = [sys.executable, "-m", "tests.link_ingest", "--host", link.server_ip,
            "--port", str(port), "--out", out]  # fmt: skip
    if refuse_until_delete:
        argv.append("--refuse-until-delete")
    if transport_cc:
        argv.append("--transport-cc")
    ingest = link.popen(link.server_ns, argv, cwd=_ROOT)
    assert ingest.stdout is not None
    assert ingest.stdout.readline().strip() == "ready", "the ingest did not start"
    return ingest


def start_cbr_camera(link: NetnsLink, port: int, *, detail: bool = False) -> subprocess.Popen[Any]:
    """The 2.5 Mbit/s CBR test camera (benchmarks/_cbr_camera.py) in the client namespace;
    with `detail`, a picture that needs its bits when transcoded (not the ball)."""
    flags = ["--detail"] if detail else []
    camera = link.popen(
        link.client_ns,
        ["/usr/bin/python3", os.path.join(_ROOT, "benchmarks", "_cbr_camera.py"), *flags,
         str(port), "constrained-baseline", "1280", "720"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert camera.stdout is not None
    assert camera.stdout.readline().strip() == "ready", "the camera did not start"
    return camera
