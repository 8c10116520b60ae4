"""`open_source(url)`: pick and build a position source from a URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.errors import PositionSourceError
from luxxon_agent.position.position_source import PositionSource
from luxxon_agent.secret import strip_userinfo

SCHEMES = ("serial", "tcp", "gpsd", "mavlink", "nmea-file", "sim", "fixed")


def open_source(url: str, *, clock: Clock = SYSTEM_CLOCK) -> PositionSource:
    """Build the source a URL names; nothing is opened until it is iterated.

    serial:///dev/ttyUSB0[?baud=9600]          NMEA receiver, baud detected if absent
    tcp://HOST:PORT                            raw NMEA over TCP
    gpsd://HOST[:2947]                         gpsd JSON (TPV, GST)
    mavlink://udpin:0.0.0.0:14550              MAVLink over UDP (any pymavlink device string)
    mavlink:///dev/ttyAMA0?baud=921600         MAVLink over serial
    nmea-file://PATH[?speed=1]                 replay a capture; speed=0 as fast as possible
    sim://?lat=..&lng=..[&radius_m=50&speed_mps=2&hz=1&accuracy_m=3&count=N]
    fixed://LAT,LNG[,ACCURACY_M]               a surveyed, unmoving position (or ?lat=&lng=)

    Raises PositionSourceError (one line, credentials redacted) for a bad URL.
    """
    shown = strip_userinfo(url)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        choices = ", ".join(f"{s}://" for s in SCHEMES)
        raise PositionSourceError(f"unknown position source {shown!r}: use one of {choices}")
    target, _, query = rest.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    try:
        return _build(scheme, target, params, shown, clock)
    except ValueError as exc:
        raise PositionSourceError(f"bad position source {shown!r}: {exc}") from None


def _build(
    scheme: str, target: str, params: dict[str, str], shown: str, clock: Clock
) -> PositionSource:
    if scheme == "fixed":
        from luxxon_agent.position.fixed_source import FixedSource, parse_fixed_url

        return FixedSource(shown, parse_fixed_url(shown), clock=clock)
    if scheme == "sim":
        from luxxon_agent.position.sim_source import SimSource

        if "lat" not in params or "lng" not in params:
            raise ValueError("sim:// needs lat= and lng=")
        count = params.get("count")
        return SimSource(
            shown,
            lat=_bounded(params["lat"], -90, 90, "lat"),
            lng=_bounded(params["lng"], -180, 180, "lng"),
            radius_m=_bounded(params.get("radius_m", "50"), 0, 1e6, "radius_m"),
            speed_mps=_bounded(params.get("speed_mps", "2"), 0, 1e4, "speed_mps"),
            hz=_bounded(params.get("hz", "1"), 0.01, 100, "hz"),
            accuracy_m=_bounded(params.get("accuracy_m", "3"), 0, 1e5, "accuracy_m"),
            count=int(count) if count is not None else None,
            clock=clock,
        )
    if scheme == "nmea-file":
        from luxxon_agent.position.file_source import FileSource

        if not target:
            raise ValueError("nmea-file:// needs a path")
        speed = _bounded(params.get("speed", "1"), 0, 1e6, "speed")
        return FileSource(shown, Path(target), speed=speed, clock=clock)
    if scheme == "serial":
        from luxxon_agent.position.serial_source import SerialSource

        if not target:
            raise ValueError("serial:// needs a device path")
        baud = int(params["baud"]) if params.get("baud") else None
        if baud is not None and baud <= 0:
            raise ValueError("baud must be positive")
        return SerialSource(shown, target, baud=baud, clock=clock)
    if scheme == "mavlink":
        from luxxon_agent.position.mavlink_source import MavlinkSource

        if not target:
            raise ValueError("mavlink:// needs a device (udpin:HOST:PORT or a serial path)")
        return MavlinkSource(shown, target, baud=int(params.get("baud", "57600")), clock=clock)
    if scheme == "gpsd":
        from luxxon_agent.position.gpsd_source import DEFAULT_PORT, GpsdSource

        host, port = _host_port(target, DEFAULT_PORT)
        return GpsdSource(shown, host, port, clock=clock)
    from luxxon_agent.position.tcp_source import TcpSource

    host, port = _host_port(target, None)
    return TcpSource(shown, host, port, clock=clock)


def _host_port(target: str, default_port: int | None) -> tuple[str, int]:
    parts = urlsplit("//" + target.rstrip("/"))
    if not parts.hostname:
        raise ValueError("needs HOST:PORT")
    port = parts.port or default_port  # urlsplit raises ValueError for a bad port
    if port is None:
        raise ValueError("needs a port")
    return parts.hostname, port


def _bounded(text: str, low: float, high: float, name: str) -> float:
    value = float(text)
    if not low <= value <= high:  # also rejects NaN
        raise ValueError(f"{name} must be in [{low:g}, {high:g}]")
    return value
