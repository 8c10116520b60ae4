"""Notice at once when the network under the media moves: rtnetlink notifications.

A drone that goes from Wi-Fi to LTE loses the local address its ICE pair uses;
aiortc would notice ~30 s later (consent checks), the publisher's staleness
timer after 5 s. The kernel says it the moment it happens. `NetWatch`
subscribes to the kernel's address, route and link notifications (a plain
AF_NETLINK socket read by the asyncio loop, no dependency) and reports:

- `address-removed`: one of the watched local addresses was deleted;
- `link-down`: the interface holding a watched address lost its carrier or went down;
- `default-route-changed`: the best default route (lowest metric) is another
  one, or there is none any more;
- `link-up`: an interface that was down is up again (any interface: the
  path may come back on another one);
- `address-added`: an address the host did not have appeared.

The first two mean the media's path is gone; the last three that a path may
be there again (a publisher waiting to retry goes at once).

Linux only (AF_NETLINK). Message layouts: rtnetlink(7), linux/rtnetlink.h,
linux/if_addr.h.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_NLMSG_HDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_NLMSG_DONE, _NLMSG_ERROR = 3, 2
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK = 16, 17, 18
_RTM_NEWADDR, _RTM_DELADDR, _RTM_GETADDR = 20, 21, 22
_RTM_NEWROUTE, _RTM_DELROUTE, _RTM_GETROUTE = 24, 25, 26
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_RTMGRP_LINK, _RTMGRP_IPV4_IFADDR, _RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40
_RTMGRP_IPV6_IFADDR, _RTMGRP_IPV6_ROUTE = 0x100, 0x400
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_RTA_OIF, _RTA_GATEWAY, _RTA_PRIORITY, _RTA_TABLE = 4, 5, 6, 15
_RT_TABLE_MAIN, _RTN_UNICAST = 254, 1
_IFF_UP, _IFF_LOWER_UP = 0x1, 0x10000
_DUMP_TIMEOUT_S = 2.0
_ROUTE_FLUSH_S = 0.05

DefaultRoute = tuple[int, str | None, int]
"""(metric, gateway, output interface index) of one default route."""


@dataclass(frozen=True)
class NetworkChange:
    """Something the media's path depends on changed."""

    reason: str
    """`address-removed`, `link-down`, `default-route-changed`, `link-up` or `address-added`."""
    address: str | None
    """The watched (or added) address concerned (None for a route or link change)."""
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def _attributes(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            return
        yield kind, data[offset + _RTATTR.size : offset + length]
        offset += (length + 3) & ~3


def _messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, sequence number, body) of each netlink message in a datagram."""
    offset = 0
    while offset + _NLMSG_HDR.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSG_HDR.unpack_from(data, offset)
        if length < _NLMSG_HDR.size:
            return
        yield kind, seq, data[offset + _NLMSG_HDR.size : offset + length]
        offset += (length + 3) & ~3


def _ip(raw: bytes) -> str | None:
    if len(raw) in (4, 16):
        return str(ipaddress.ip_address(raw))
    return None


class NetWatch:
    """Watches the host's addresses and routes; `next_change()` / `on_change()` report.

        async with NetWatch(["192.168.1.20"]) as watch:
            change = await watch.next_change()

    `watch()` replaces the watched addresses (the local address of the ICE pair in
    use changes with each connection).
    """

    def __init__(self, addresses: Iterable[str] = ()) -> None:
        self._addresses = {str(ipaddress.ip_address(a)) for a in addresses}
        self._index_of: dict[str, int] = {}
        self._down: set[int] = set()
        self._routes: set[DefaultRoute] = set()
        self._sock: socket.socket | None = None
        self._changes: asyncio.Queue[NetworkChange] = asyncio.Queue()
        self._listeners: list[Callable[[NetworkChange], None]] = []

    def watch(self, addresses: Iterable[str]) -> None:
        self._addresses = {str(ipaddress.ip_address(a)) for a in addresses}

    @property
    def default_route(self) -> DefaultRoute | None:
        return min(self._routes) if self._routes else None

    def on_change(self, listener: Callable[[NetworkChange], None]) -> None:
        self._listeners.append(listener)

    async def next_change(self) -> NetworkChange:
        return await self._changes.get()

    async def start(self) -> None:
        """Subscribe, then read the current addresses and routes (nothing is reported for
        the state found at start)."""
        if self._sock is not None:
            return
        groups = (
            _RTMGRP_LINK
            | _RTMGRP_IPV4_IFADDR
            | _RTMGRP_IPV6_IFADDR
            | _RTMGRP_IPV4_ROUTE
            | _RTMGRP_IPV6_ROUTE
        )
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        sock.bind((0, groups))
        sock.setblocking(False)
        # subscribed first: whatever changes during the dump is read afterwards, not lost
        self._sock = sock
        for message in (_RTM_GETLINK, _RTM_GETADDR, _RTM_GETROUTE):
            for kind, _seq, body in self._dump(message):
                self._take(kind, body, report=False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    async def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    async def __aenter__(self) -> NetWatch:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- netlink --------------------------------------------------------------------------

    def _dump(self, message: int) -> Iterator[tuple[int, int, bytes]]:
        """A dump request on its own short-lived blocking socket (bounded by a timeout)."""
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
            sock.settimeout(_DUMP_TIMEOUT_S)
            # rtgenmsg: the family only (AF_UNSPEC: IPv4 and IPv6), padded to 4 bytes
            body = struct.pack("=Bxxx", socket.AF_UNSPEC)
            header = _NLMSG_HDR.pack(
                _NLMSG_HDR.size + len(body), message, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0
            )
            sock.send(header + body)
            while True:
                for kind, seq, payload in _messages(sock.recv(1 << 16)):
                    if kind in (_NLMSG_DONE, _NLMSG_ERROR):
                        return
                    yield kind, seq, payload

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:
                # ENOBUFS: the kernel dropped notifications; the state may be stale, say so
                logger.warning("netlink: %s; re-reading addresses and routes", exc)
                self._resync()
                return
            for kind, _seq, body in _messages(data):
                self._take(kind, body, report=True)

    def _resync(self) -> None:
        self._index_of.clear()
        for kind, _seq, body in self._dump(_RTM_GETADDR):
            self._take(kind, body, report=False)
        for address in sorted(self._addresses - set(self._index_of)):
            self._report(NetworkChange("address-removed", address, f"{address} is gone"))
        self._reread_routes()

    def _take(self, kind: int, body: bytes, *, report: bool) -> None:
        if kind in (_RTM_NEWADDR, _RTM_DELADDR) and len(body) >= _IFADDRMSG.size:
            self._take_address(kind, body, report)
        elif kind in (_RTM_NEWROUTE, _RTM_DELROUTE) and len(body) >= _RTMSG.size:
            self._take_route(kind, body, report)
        elif kind in (_RTM_NEWLINK, _RTM_DELLINK) and len(body) >= _IFINFOMSG.size:
            self._take_link(kind, body, report)

    def _take_address(self, kind: int, body: bytes, report: bool) -> None:
        _family, _plen, _flags, _scope, index = _IFADDRMSG.unpack_from(body)
        attrs = dict(_attributes(body, _IFADDRMSG.size))
        address = _ip(attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS) or b"")
        if address is None:
            return
        if kind == _RTM_NEWADDR:
            # the kernel repeats NEWADDR for a known address (IPv6 lifetimes): not news
            new = address not in self._index_of
            self._index_of[address] = index
            if report and new:
                self._report(NetworkChange("address-added", address, f"{address} was added"))
            return
        self._index_of.pop(address, None)
        if report and address in self._addresses:
            self._report(NetworkChange("address-removed", address, f"{address} was removed"))
        if report:
            # the kernel drops the routes through a removed address after telling us about
            # the address, and without a notification of their own
            asyncio.get_running_loop().call_later(_ROUTE_FLUSH_S, self._reread_routes)

    def _reread_routes(self) -> None:
        if self._sock is None:
            return  # closed meanwhile
        before = self.default_route
        self._routes.clear()
        for kind, _seq, body in self._dump(_RTM_GETROUTE):
            self._take(kind, body, report=False)
        if self.default_route != before:
            self._report_route(before)

    def _take_route(self, kind: int, body: bytes, report: bool) -> None:
        _family, dst_len, _src, _tos, table, _proto, _scope, rtype, _flags = _RTMSG.unpack_from(
            body
        )
        attrs = dict(_attributes(body, _RTMSG.size))
        if _RTA_TABLE in attrs:
            table = struct.unpack("=I", attrs[_RTA_TABLE][:4])[0]
        if dst_len != 0 or table != _RT_TABLE_MAIN or rtype != _RTN_UNICAST:
            return
        metric = struct.unpack("=I", attrs[_RTA_PRIORITY][:4])[0] if _RTA_PRIORITY in attrs else 0
        oif = struct.unpack("=i", attrs[_RTA_OIF][:4])[0] if _RTA_OIF in attrs else 0
        route: DefaultRoute = (metric, _ip(attrs.get(_RTA_GATEWAY, b"")), oif)
        before = self.default_route
        if kind == _RTM_NEWROUTE:
            # `ip route replace` sends only the new one: a route for the same metric replaces
            self._routes = {r for r in self._routes if r[0] != metric} | {route}
        else:
            self._routes.discard(route)
        if report and self.default_route != before:
            self._report_route(before)

    def _take_link(self, kind: int, body: bytes, report: bool) -> None:
        _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
        up = kind == _RTM_NEWLINK and flags & _IFF_UP and flags & _IFF_LOWER_UP
        if up:
            if index in self._down:
                self._down.discard(index)
                if report:
                    self._report(NetworkChange("link-up", None, f"interface {index} is up"))
            return
        if index in self._down:
            return
        self._down.add(index)
        for address in sorted(self._addresses):
            if report and self._index_of.get(address) == index:
                self._report(
                    NetworkChange("link-down", address, f"the interface of {address} is down")
                )

    def _report_route(self, before: DefaultRoute | None) -> None:
        after = self.default_route

        def describe(route: DefaultRoute | None) -> str:
            if route is None:
                return "none"
            return f"via {route[1] or 'on-link'} (if {route[2]}, metric {route[0]})"

        self._report(
            NetworkChange("default-route-changed", None, f"{describe(before)} -> {describe(after)}")
        )

    def _report(self, change: NetworkChange) -> None:
        logger.info("network change: %s", change)
        self._changes.put_nowait(change)
        for listener in list(self._listeners):
            listener(change)
