"""Garbage in never raises out of a source and never becomes a fix."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from luxxon_agent.position import Fix, NmeaAssembler, SourceKind, open_source
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
