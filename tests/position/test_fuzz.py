"""Garbage in never raises out of a source and never becomes a fix."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from luxxon_agent.position import Fix, NmeaAssembler, NoFix, SourceKind, open_source
from tests.position.nmea_util import cycle, sentence

VALID_RMC = cycle("120000")[1]
VALID_LINES = [*cycle("120000"), sentence("GPGSA,A,3,01,02,03,04,,,,,,,,,1.8,1.2,1.3")]
VALID_LINES += [sentence("GPGST,120000,1.1,3.0,2.0,45.0,3.0,4.0,5.0")]
VALID_LINES += [sentence("GNGNS,120001,0442.6600,N,07404.3200,W,AA,10,0.8,2600.0,4.0,,")]
VALID_LINES += [sentence("GPGLL,0442.6600,N,07404.3200,W,120002,A,A")]
VALID_LINES += [sentence("GPVTG,45.0,T,,M,1.0,N,3.6,K,A")]
VALID_LINES += [sentence("GPZDA,120003,13,05,2026,00,00")]

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed_all(lines: list[bytes | str]) -> list[object]:
    assembler = NmeaAssembler(SourceKind.SERIAL, host_date=True)
    out: list[object] = []
    for line in lines:
        out.extend(assembler.feed_line(line))
    out.extend(assembler.flush())
    return out


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_arbitrary_bytes_never_raise_or_fix(lines: list[bytes]) -> None:
    assert not any(isinstance(r, Fix) for r in feed_all(list(lines)))


@FUZZ
@given(st.lists(st.text(alphabet="$!*,.0123456789ABCDEFGNPRMSVWZ\r", max_size=90), max_size=20))
def test_nmea_looking_noise_never_raises(lines: list[str]) -> None:
    feed_all(list(lines))  # property: no exception, whatever the parser sees


@FUZZ
@given(st.sampled_from(VALID_LINES), st.data())
def test_truncated_sentence_never_gives_a_fix(line: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(line) - 1))
    assert not any(isinstance(r, Fix) for r in feed_all([line[:cut]]))


@FUZZ
@given(st.data())
def test_mutated_rmc_never_gives_a_fix(data: st.DataObject) -> None:
    # the valid RMC alone is a complete fix; a changed byte anywhere before the
    # checksum must make it count as a checksum failure, never as a fix
    assert any(isinstance(r, Fix) for r in feed_all([VALID_RMC]))
    star = VALID_RMC.index("*")
    where = data.draw(st.integers(min_value=1, max_value=star - 1))
    new = data.draw(st.characters(min_codepoint=32, max_codepoint=126))
    if new == VALID_RMC[where]:
        new = chr(ord(new) ^ 1)
    mutated = VALID_RMC[:where] + new + VALID_RMC[where + 1 :]
    assert not any(isinstance(r, Fix) for r in feed_all([mutated]))


@FUZZ
@given(st.lists(st.sampled_from(VALID_LINES), min_size=1, max_size=8), st.data())
def test_a_mutated_line_in_a_stream_only_drops_its_own_epoch(
    lines: list[str], data: st.DataObject
) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
    line = lines[index]
    star = line.index("*")
    where = data.draw(st.integers(min_value=1, max_value=star - 1))
    mutated = line[:where] + chr(ord(line[where]) ^ 0x01) + line[where + 1 :]
    clean = [r for r in feed_all(list(lines)) if isinstance(r, Fix)]
    dirty = [
        r for r in feed_all([*lines[:index], mutated, *lines[index + 1 :]]) if isinstance(r, Fix)
    ]
    # every fix from the mutated stream also exists, identical in position, without the mutation
    clean_positions = {(f.time, f.lat, f.lng) for f in clean}
    assert all((f.time, f.lat, f.lng) in clean_positions for f in dirty)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_file_source_survives_garbage(blob: bytes) -> None:
    async def consume() -> list[object]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "garbage.log"
            path.write_bytes(blob)
            source = open_source(f"nmea-file://{path}?speed=0")
            try:
                return [report async for report in source]
            finally:
                await source.close()

    assert not any(isinstance(r, Fix) for r in asyncio.run(consume()))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
TPV_KEYS = st.sampled_from(["class", "mode", "lat", "lon", "time", "status", "eph", "epx", "epy"])


@FUZZ
@given(st.lists(st.dictionaries(TPV_KEYS, JSON_VALUES, max_size=6) | st.binary(max_size=80)))
def test_gpsd_reports_never_raise_and_garbage_is_no_fix(objects: list[object]) -> None:
    import json

    from luxxon_agent.position.gpsd_source import GpsdSource

    source = GpsdSource("gpsd://fuzz", "127.0.0.1")
    for obj in objects:
        line = obj if isinstance(obj, bytes) else json.dumps({**obj, "class": "TPV"}).encode()
        for report in source._feed(line):
            if isinstance(report, Fix):  # only a well-formed mode>=2 TPV may become a fix
                assert -90 <= report.lat <= 90 and -180 <= report.lng <= 180
    source._flush()


def test_gpsd_malformed_tpvs_are_no_fix() -> None:
    from luxxon_agent.position.gpsd_source import GpsdSource

    good = b'"time":"2026-01-01T00:00:00.000Z"'
    for body in (
        b'"mode":Infinity,' + good,
        b'"mode":3,"lat":true,"lon":2,' + good,
        b'"mode":3,"lat":1.5,"lon":2,"eph":"x",' + good,
        b'"mode":3,"lat":91.0,"lon":2,' + good,
    ):
        source = GpsdSource("gpsd://fuzz", "127.0.0.1")
        assert source._feed(b'{"class":"TPV",' + body + b"}") == []
        [report] = source._flush()
        assert isinstance(report, NoFix) and report.reason == "malformed TPV from gpsd"
