"""NMEA benchmark: sentences parsed per second on one core, and the CPU share of a 10 Hz receiver.

    python benchmarks/bench_nmea.py [--seconds 3] [--stream-seconds 5]

1. Throughput: every line of the gpsd corpus (tests/data/gpsd-nmea) through
   `NmeaAssembler.feed_line`, repeated for `--seconds` of process CPU time.
2. Live share: a child process plays a 10 Hz receiver (GGA, GSA, RMC, GST, VTG
   and 3 GSV per epoch, 80 sentences/s) into a pty; `serial://` reads it the way
   the agent does (pyserial in the executor, epoch assembly, quiet flush). The
   figure is this process's CPU time / wall time while it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from luxxon_agent.position import Fix, NmeaAssembler, SourceKind, open_source  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "gpsd-nmea"

WRITER = r"""
import os, sys, time, datetime
fd = int(sys.argv[1]); seconds = float(sys.argv[2])
def s(body):
    c = 0
    for ch in body: c ^= ord(ch)
    return "$%s*%02X\r\n" % (body, c)
end = time.monotonic() + seconds
tick = time.monotonic()
while time.monotonic() < end:
    now = datetime.datetime.now(datetime.timezone.utc)
    t = now.strftime("%H%M%S.") + "%02d" % (now.microsecond // 10000); d = now.strftime("%d%m%y")
    cycle = [
        "GNGGA,%s,4734.0523,N,00733.5634,E,4,24,0.6,275.3,M,47.6,M,1.0,0000" % t,
        "GNGSA,A,3,01,03,04,08,09,16,21,26,27,31,,,1.1,0.6,0.9",
        "GNRMC,%s,A,4734.0523,N,00733.5634,E,0.02,,%s,,,R" % (t, d),
        "GNGST,%s,0.9,0.012,0.009,87.0,0.011,0.010,0.020" % t,
        "GNVTG,,T,,M,0.02,N,0.04,K,R",
        "GPGSV,3,1,10,01,40,083,46,03,61,296,48,04,41,143,47,08,22,048,44",
        "GPGSV,3,2,10,09,14,213,40,16,36,182,45,21,70,104,49,26,21,266,43",
        "GPGSV,3,3,10,27,12,318,39,31,53,233,47",
    ]
    os.write(fd, "".join(s(b) for b in cycle).encode())
    tick += 0.1
    time.sleep(max(0.0, tick - time.monotonic()))
"""


def corpus_lines() -> list[bytes]:
    lines: list[bytes] = []
    for log in sorted(CORPUS.glob("*.log")):
        lines += [x for x in log.read_bytes().splitlines() if x and not x.startswith(b"#")]
    return lines


def throughput(seconds: float) -> tuple[float, int]:
    lines = corpus_lines()
    start = time.process_time()
    passes = 0
    sentences = 0
    while time.process_time() - start < seconds:
        assembler = NmeaAssembler(SourceKind.FILE)
        for line in lines:
            assembler.feed_line(line)
        assembler.flush()
        stats = assembler.stats
        sentences += sum(stats.sentences.values()) + stats.checksum_failures
        sentences += stats.parse_failures
        passes += 1
    return sentences / (time.process_time() - start), passes


async def live_share(seconds: float) -> tuple[float, int, int]:
    master, slave = pty.openpty()
    path = os.ttyname(slave)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(master), str(seconds + 2)], pass_fds=(master,)
    )
    source = open_source(f"serial://{path}?baud=115200")
    fixes = 0
    iterator = aiter(source)
    first = await anext(iterator)  # opening and the first epoch are not measured
    assert isinstance(first, Fix), first
    cpu0, wall0 = time.process_time(), time.monotonic()
    while time.monotonic() - wall0 < seconds:
        if isinstance(await anext(iterator), Fix):
            fixes += 1
    share = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    sentences = sum(source.stats.sentences.values())
    await source.close()
    writer.wait(timeout=seconds + 10)
    os.close(master)
    os.close(slave)
    return share, fixes, sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--stream-seconds", type=float, default=5.0)
    args = parser.parse_args()
    rate, passes = throughput(args.seconds)
    print(f"parse: {rate:,.0f} sentences/s on one core ({passes} passes over the corpus)")
    share, fixes, sentences = asyncio.run(live_share(args.stream_seconds))
    print(
        f"10 Hz stream: {share * 100:.2f}% of one core "
        f"({fixes} fixes, {sentences} sentences in {args.stream_seconds:.0f} s)"
    )


if __name__ == "__main__":
    main()
