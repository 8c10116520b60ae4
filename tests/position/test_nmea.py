"""The NMEA rules of docs/position.md, one by one."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest

from luxxon_agent.position import UERE_M, Fix, FixQuality, NmeaAssembler, NoFix, SourceKind
from luxxon_agent.position.fix import TimeSource
from tests.position.nmea_util import cycle, sentence


def run(lines: list[str], **kwargs: object) -> tuple[list[Fix | NoFix], NmeaAssembler]:
    assembler = NmeaAssembler(SourceKind.FILE, **kwargs)  # type: ignore[arg-type]
    out: list[Fix | NoFix] = []
    for line in lines:
        out.extend(assembler.feed_line(line))
    out.extend(assembler.flush())
    return out, assembler


def fixes(reports: list[Fix | NoFix]) -> list[Fix]:
    return [r for r in reports if isinstance(r, Fix)]


def test_one_cycle_is_one_fix_with_every_field() -> None:
    reports, _ = run(cycle("084200.12"))
    [fix] = reports
    assert isinstance(fix, Fix)
    assert fix.time == datetime(2026, 5, 13, 8, 42, 0, 120000, tzinfo=UTC)
    assert fix.time_source is TimeSource.RECEIVER
    assert fix.lat == pytest.approx(4.711, abs=1e-9)
    assert fix.lng == pytest.approx(-74.072, abs=1e-9)
    assert fix.altitude_m == 2600.0
    assert fix.satellites == 8
    assert fix.speed_mps == pytest.approx(0.5 * 1852 / 3600, abs=1e-3)
    assert fix.course_deg == 90.0
    assert fix.quality is FixQuality.GPS
    assert fix.accuracy_m == pytest.approx(0.9 * UERE_M[FixQuality.GPS])


def test_consecutive_cycles_are_separate_epochs_south_east() -> None:
    lines = cycle("235958", ns="S", ew="E") + cycle("235959", ns="S", ew="E")
    found = fixes(run(lines)[0])
    assert [f.time.second for f in found] == [58, 59]
    assert all(f.lat < 0 and f.lng > 0 for f in found)


@pytest.mark.parametrize("talker", ["GP", "GN", "GL", "GA", "GB", "BD", "QZ"])
def test_any_talker(talker: str) -> None:
    assert len(fixes(run(cycle("120000", talker=talker))[0])) == 1


def test_bad_checksum_never_contributes_and_is_counted() -> None:
    good = cycle("120000")
    bad_gga = good[0][:-2] + ("00" if good[0][-2:] != "00" else "01")
    reports, assembler = run([bad_gga, good[1].replace("*", "")])
    assert fixes(reports) == []
    assert assembler.stats.checksum_failures == 2
    assert assembler.stats.sentences["GGA"] == 0


def test_lower_case_checksum_is_valid() -> None:
    line = sentence("GPGLL,0442.6600,N,07404.3200,W,120008,A,A")
    body, checksum = line.split("*")
    assert checksum.lower() != checksum
    reports, assembler = run([cycle("120000")[1], f"{body}*{checksum.lower()}"])
    assert assembler.stats.checksum_failures == 0
    assert [f.time.second for f in fixes(reports)] == [0, 8]


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [({"status": "V"}, "RMC status V"), ({"quality": "0"}, "GGA quality 0")],
)
def test_no_fix_states_never_give_a_position(kwargs: dict[str, str], reason: str) -> None:
    reports, _ = run(cycle("120000", **kwargs))
    assert fixes(reports) == []
    assert any(isinstance(r, NoFix) and r.reason == reason for r in reports)


def test_gsa_mode_1_means_no_fix() -> None:
    lines = cycle("120000") + [sentence("GPGSA,A,1,,,,,,,,,,,,,,,")]
    reports, _ = run(lines)
    assert fixes(reports) == []
    assert reports[0].reason == "GSA mode 1 (no fix)"  # type: ignore[union-attr]


def test_gsa_mode_3_keeps_the_fix_and_gives_hdop_when_gga_has_none() -> None:
    lines = cycle("120000", hdop="") + [sentence("GPGSA,A,3,01,02,03,04,,,,,,,,,1.8,1.2,1.3")]
    [fix] = fixes(run(lines)[0])
    assert fix.accuracy_m == pytest.approx(1.2 * UERE_M[FixQuality.GPS])


def test_gst_accuracy_is_root_sum_of_squares() -> None:
    lines = cycle("120000") + [sentence("GPGST,120000,1.1,3.0,2.0,45.0,3.0,4.0,5.0")]
    [fix] = fixes(run(lines)[0])
    assert fix.accuracy_m == pytest.approx(math.hypot(3.0, 4.0))


def test_uere_depends_on_solution_type() -> None:
    [fix] = fixes(run(cycle("120000", quality="4", hdop="1.0"))[0])
    assert fix.quality is FixQuality.RTK_FIXED
    assert fix.accuracy_m == pytest.approx(UERE_M[FixQuality.RTK_FIXED])


def test_midnight_rollover_without_a_new_date() -> None:
    lines = cycle("235959.0", date="311226") + [cycle("235959.5")[0]]
    lines += [sentence("GPGGA,000000.5,0442.6600,N,07404.3200,W,1,08,0.9,2600.0,M,4.0,M,,")]
    times = [f.time for f in fixes(run(lines)[0])]
    assert times[-1] == datetime(2027, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert times[0] == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_rmc_date_wins_over_the_rollover_guess() -> None:
    lines = cycle("235959", date="311226") + cycle("000000", date="010127")
    times = [f.time.date() for f in fixes(run(lines)[0])]
    assert times == [date(2026, 12, 31), date(2027, 1, 1)]


def test_no_date_means_no_fix_for_files_and_host_date_for_live() -> None:
    gga = [cycle("120000")[0]]
    reports, _ = run(gga)
    assert fixes(reports) == [] and reports[0].reason == "no receiver date yet"  # type: ignore[union-attr]
    live = NmeaAssembler(SourceKind.SERIAL, host_date=True)
    live.feed_line(gga[0], datetime(2026, 5, 13, 12, 0, 1, tzinfo=UTC))
    [fix] = live.flush(datetime(2026, 5, 13, 12, 0, 1, tzinfo=UTC))
    assert isinstance(fix, Fix)
    assert fix.time_source is TimeSource.RECEIVER_TIME_HOST_DATE
    assert fix.time == datetime(2026, 5, 13, 12, 0, 0, tzinfo=UTC)


def test_week_rollover_is_repaired_against_a_reference() -> None:
    lines = cycle("000231.42", date="220899")
    [raw] = fixes(run(lines)[0])
    assert raw.time.year == 1999 and not raw.rollover_corrected
    [fixed] = fixes(run(lines, reference=date(2019, 4, 10))[0])
    assert fixed.time == datetime(2019, 4, 7, 0, 2, 31, 420000, tzinfo=UTC)
    assert fixed.rollover_corrected


def test_two_sentences_on_one_line_and_doubled_dollar() -> None:
    gga, rmc = cycle("120000")
    [fix] = fixes(run([gga + rmc])[0])
    assert fix.satellites == 8
    reports, assembler = run(["$" + gga, "$" + rmc])
    assert len(fixes(reports)) == 1 and assembler.stats.checksum_failures == 0


def test_impossible_coordinates_are_rejected() -> None:
    reports, assembler = run(cycle("120000", lat="8960.0000"))
    assert fixes(reports) == []
    assert assembler.stats.parse_failures >= 1


def test_late_sentence_of_a_reported_epoch_does_not_reopen_it() -> None:
    assembler = NmeaAssembler(SourceKind.SERIAL)
    gga, rmc = cycle("120000")
    assert assembler.feed_line(rmc) == []
    assert len(assembler.flush()) == 1
    assert assembler.feed_line(gga) == [] and assembler.flush() == []


def test_vtg_sets_speed_and_course_gll_and_gns_give_positions() -> None:
    lines = [
        cycle("120000")[1],
        sentence("GPVTG,45.0,T,,M,1.0,N,3.6,K,A"),
        sentence("GNGNS,120001,0442.6600,N,07404.3200,W,AA,10,0.8,2600.0,4.0,,"),
        sentence("GPGLL,0442.6600,N,07404.3200,W,120002,A,A"),
        sentence("GNGNS,120003,0442.6600,N,07404.3200,W,NN,00,,,,,"),
    ]
    reports, _ = run(lines)
    first, gns, gll, gns_none = reports
    assert isinstance(first, Fix) and first.course_deg == 45.0 and first.speed_mps == 1.0
    assert isinstance(gns, Fix) and gns.satellites == 10
    assert isinstance(gll, Fix) and gll.time.second == 2
    assert isinstance(gns_none, NoFix)
