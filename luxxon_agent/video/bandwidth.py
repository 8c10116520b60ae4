"""How much the link takes: a send-side bandwidth estimate in the spirit of GCC.

`BandwidthEstimator` follows draft-ietf-rmcat-gcc-02 and libwebrtc's send-side
controllers, cut to what a WHIP publisher hears back from any receiver:

- RTCP receiver reports (always): fraction lost, jitter, the round-trip time
  from LSR/DLSR (matched against the sender reports we sent), and, from the
  highest sequence number and cumulative loss against the sizes of the packets
  we sent, the rate that actually arrived, on the media stream and on its RTX
  stream (retransmissions and padding probes) together;
- REMB (when the receiver sends it): the receiver's answer to a queue its delay
  detector saw says what arrived; less than the link should have carried of what
  we sent cuts the estimate at once, to 0.85 x that or to what arrived between two
  such REMBs; no bound otherwise;
- transport-wide feedback (when negotiated): one-way delays and arrival rate.

Two controllers, the lower wins (GCC's A = min(As, Ad)):

- loss: below 2 % grow, 2-10 % hold, above 10 % back off to
  estimate x (1 - 0.5 x loss);
- delay: queuing delay (the smoothed delay minus its 10 s minimum) above
  30 ms while not falling is overuse: back off to 0.85 x the measured receive
  rate. Falling delay is a queue draining: hold. Otherwise grow, by 25 % a
  second below the rate of the last congestion, by about one packet per
  response time (RTT + 100 ms) near it, and by 50 % a second at three times
  it (the link has opened: find out how far, fast).

The estimate never leaves [min_bps, max_bps], never grows past 1.5 x what
arrived (+10 kbit/s: an encoder that sends less than allowed proves nothing
above it; `padding_bps` says how much padding would prove it), and growing
rises at once to 0.9 x what the link carried of what we sent (a probe's
result). Decreases on reports come at most once per RTT + 300 ms, and are
not cut to what arrived while that is what we sent (the link keeps up: it
measured us).
Everything here is synchronous and reads time from the injected clock; the
aiortc boundary is `rtcp_tap`.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from luxxon_agent.clock import SYSTEM_CLOCK, Clock

DEFAULT_MIN_BPS = 80_000.0
"""The floor: below it a 180p15 picture is no longer worth its overhead."""
DEFAULT_START_BPS = 1_000_000.0
LOSS_GROW_BELOW = 0.02
LOSS_BACKOFF_ABOVE = 0.10
"""GCC's loss thresholds: random loss up to 2 % is noise, above 10 % is congestion."""
LOSS_NOISE_SIGMAS = 2.0
"""Above 10 % by more than this many standard deviations of a count at 10 %: a second of
30 packets at 5 % random loss reads over 10 % one time in 25, and each such back-off
throws away a fifth of the rate on a link that had room."""
RANDOM_LOSS_QUEUE_MS = 10.0
"""Loss between the thresholds with less queuing delay than this is the radio's, not
congestion (a full bottleneck queue shows as delay first): it does not stop growth, or a
link with steady 5 % loss would hold the estimate wherever the last back-off left it."""
OVERUSE_QUEUE_MS = 30.0
"""Queuing delay that counts as a standing queue (GCC's threshold is 12.5 ms on a
gradient sampled per frame group; RTT samples arrive once a second and carry both
directions' jitter, so the bar is higher)."""
DRAINING_SLOPE_MS_PER_S = -10.0
"""A delay falling faster than this is a queue emptying after a back-off: hold."""
BASE_WINDOW_S = 10.0
"""The minimum delay over this window is the empty-queue delay."""
SLOPE_WINDOW_S = 3.0
DELAY_SMOOTHING = 0.6
"""Weight of a new delay sample (RTT samples come about once a second)."""
DELAY_BACKOFF = 0.85
"""GCC's beta: on overuse, 0.85 x the measured receive rate."""
GROW_PER_S = 1.25
"""Multiplicative growth far from congestion. GCC grows 8 %/s and relies on
probing to find capacity fast; without probes, 25 %/s gets from 300 kbit/s to
80 % of 2 Mbit/s within 10 s, and the back-offs catch an overshoot within a report."""
FAR_GROW_PER_S = 1.5
FAR_FROM_CONGESTION = 3.0
"""Growth with no congestion point to respect: before any, and at FAR_FROM_CONGESTION x
the rate of the last one (the link opened; nearer, a sawtooth around a narrow link would
overshoot by half). ACKED_HEADROOM bounds it per report anyway."""
NEAR_BAND = 0.15
"""Within +-15 % of the last congestion rate growth is additive (libwebrtc uses 3 standard
deviations of its link capacity estimate, typically about this)."""
NEAR_MAX_SHARE_PER_S = 0.10
"""Near it, at most +10 % a second: on a 300 kbit/s link GCC's packet per response time
is +20 %/s, an overshoot of half the link before the next report says so."""
TRANSPORT_CC_NEAR_SHARE_PER_S = 0.2
"""With transport-wide feedback (an overshoot seen within 100 ms, not a second) growth
near the last congestion may be twice as fast, and multiplicative growth FAR_GROW_PER_S."""
CAPACITY_SMOOTHING = 0.3
RESPONSE_TIME_EXTRA_S = 0.1
DEFAULT_PACKET_BYTES = 1200
MIN_ADDITIVE_BPS_PER_S = 4_000.0
ACKED_HEADROOM = 1.5
ACKED_HEADROOM_BPS = 10_000.0
PROVEN_SHARE = 0.9
"""Growing, the estimate rises at once to this share of what the link carried of what we
sent (the lesser of the receive rate and the rate the same packets went out at), as
libwebrtc takes a probe's result: packets above the estimate (an encoder that does not
follow it, a keyframe) that all arrived at a flat delay were a probe that passed. Measured:
an encoder at 290 kbit/s on a link just reopened, all of it arriving, and the estimate
climbing from the 80 kbit/s floor at 25 %/s took 8-10 s to reach it. Sending at the
estimate (the adaptive encoder and its padding) this never fires."""
KEEPING_UP = 0.95
"""What arrived (and what was lost) over what was sent at or above this share: the link
keeps up with us. A
standing queue that is not growing then needs no further back-off (it drains), and a
back-off is not cut to what arrived: that measured our own sending, not the link."""
DECREASE_EXTRA_S = 0.3
"""After a back-off, wait RTT + this before the next one (libwebrtc's 300 ms)."""
COLLAPSE_SHARE = 0.75
COLLAPSE_WINDOW_S = 2.5
"""A back-off that takes the estimate under COLLAPSE_SHARE of what it was before the
congestion began (back-offs less than COLLAPSE_WINDOW_S apart are one congestion), with
loss above LOSS_BACKOFF_ABOVE, is a collapse: the link narrowed (a step down, a handover),
and the bottleneck dropped more before the reports said so than any retransmission budget
repairs. A step down often shows first as delay (a back-off with no loss yet) and a report
later as loss: measured, 2 Mbit/s to 1.13 Mbit/s on +151 ms, then to 919 kbit/s on 37 %
loss, neither step under 75 % of the one before, and the picture froze 2.7 s on holes.
Without the loss (a refused padding probe: the padding stops and the queue drains by
itself) there are no holes to flush. A REMB that says the link carried less than
COLLAPSE_SHARE of what we sent (over its second, or between two answers where that is
lower) stands for the loss: a 200 ms queue that takes a quarter less than it is given
overflows within the second, and the report saying so comes up to a second later.
Measured in bench_link: REMB cuts from 1 Mbit/s to 300 kbit/s with no loss reported yet
sent the ladder's 180p15 keyframe into the old queue, and the picture froze 1.9-2.5 s."""
REMB_AIMD_STEP = 1.09
"""aiortc's receiver (like libwebrtc's) lowers its REMB only when its delay detector sees
a queue, and then answers 0.85 x what arrived over its last second, at once and again with
every packet while the queue lasts, where receiver reports come a second apart (measured in
bench_link: the first such REMB came 0.36 s after a step down from 2 Mbit/s to 1 Mbit/s,
the back-off on the next receiver report 1.1 s after that). On its timer it grows 8 % a
second at most, once per REMB at most 8 %. So a REMB under the one before, more than this
over it, or one of a dense run (REMB_OVERUSE_SPACING_S) is an overuse answer: it says what
arrived."""
REMB_LAGGING_SHARE = 0.95
"""An overuse answer is congestion only where what it says arrived (the loss up to the
loss controller's bar counted as arrived) is under this share of what we sent those packets
at: the receiver's detector also fires on a queue of our own making that the link drains
at once (a keyframe, padding paced a little over the link), and answers with what we sent.
Measured in bench_link: such a fall on the 1 Mbit/s link, 773 kbit/s sent, cut the estimate
from 1024 to 592 kbit/s, and growth waited 3 s. And aiortc's own estimate, recovering 8 %/s
after a fall, is often under its overuse answer, so its REMB rises when a queue starts: a
climb after the 300 kbit/s phase passed the 1 Mbit/s link by 16-27 % with no REMB fall, and
the next receiver report found 8-16 % lost."""
REMB_BURST_S = 0.25
REMB_BURST_SHARE = 1.2
"""Where we sent at above this share of that second's rate over its last REMB_BURST_S (a
burst: the pacer lets a keyframe out at 1.5 x the estimate, for up to 0.25 s), what we sent
is read over the second that ends REMB_BURST_S earlier too, the lesser counting. The
receiver's second ends with the packets of the burst still in the bottleneck's queue, so
the second we sent over holds more than its second received although the link carries all
of it. Measured in bench_link: the ladder's step to 360p30 in the climb after the
300 kbit/s phase, 820 kbit/s sent on the 1 Mbit/s link, read 743 arriving and cut the
estimate from 882 to 631 kbit/s, and growth took 6 s back. Not for a climb: read over an
earlier second, an estimate rising 25-50 %/s passed the modelled link by a third before an
answer cut it."""
REMB_THROUGHPUT_SHARE = 0.85
REMB_WINDOW_S = 1.0
"""While its delay detector sees overuse, aiortc's receiver (like libwebrtc's AIMD rate
control) sends 0.85 x the payload that arrived over its last second, with every packet."""
REMB_OVERUSE_SPACING_S = 0.15
"""REMBs that come closer together than this are the overuse's, one a packet: otherwise
aiortc sends one every 200 ms to 1 s (its feedback interval), holding or growing, and that
one is no measure of what arrived. A REMB under the one before starts such a run."""
REMB_SLOPE_MIN_S = 0.15
REMB_SLOPE_MAX_S = 0.5
"""Two REMBs of one overuse this far apart tell what arrived between them (`_arrived_between`):
their difference is what arrived between them less what arrived over the same span a second
before, and a second before, the link open, that was what we sent (a base round trip
earlier). Measured in tests/video/test_bandwidth.py against aiortc's own estimator: the
REMB alone reached a step from 2 Mbit/s to 1 Mbit/s 0.8 s after it, 0.5 s after the tbf
queue was full and dropping; what arrived between two REMBs said 1 Mbit/s 0.15 s after the
first fall."""
REMB_QUIET_S = 2.0
"""...provided nothing was cut from this long before that span of a second before to its
end: after a cut the queue drains, more arrives than was sent, and the difference would
read too low. Measured in bench_link: a fall that went on from the end of the 1 Mbit/s
phase into the 300 kbit/s one, its span of a second before draining the first cut's queue,
read 136 kbit/s on the 300 kbit/s link."""
REMB_ARRIVED_FLOOR = 0.3
"""A cut to what arrived goes no lower than this share of the REMB: the span holds a few
packets at a narrow link's rate, and a REMB is a second of them."""
REMB_ARRIVED_IMPLAUSIBLE = 0.15
"""A reading whose cut would be under this share of the REMB is left out (the cut goes to
what the REMB itself says arrived): the REMBs fell by more than we had sent a second
before, which no link does (a burst queued on its way, leaving the receiver's window later
than we sent it). A step from
1 Mbit/s to 300 kbit/s cuts to about 0.3 x the first falling REMB. Measured in bench_link:
such a reading cut a 1 Mbit/s link's estimate from 925 to 247 kbit/s (the floor) and took
the ladder to 180p15."""
SENT_HISTORY_S = REMB_WINDOW_S + max(REMB_SLOPE_MAX_S, REMB_BURST_S) + 1.0
REMB_PROBE_SHARE = 0.25
"""An overuse REMB over a window where padding was at least this share of what we sent
answered our probe: the estimate goes to what arrived (not 0.85 x it; a cut to what
arrived between two answers stays 0.85 x that) and may grow again at once (no
REMB_GROWTH_HOLD_S); the padding stops with the cut, so the queue it built drains without
a back-off of the media. Measured in bench_link's software step ups from 300 kbit/s to
1 Mbit/s: with 0.85 x and the hold such a cut right at the step began each miss, and 3 of
8 reached 80 % of the link within 10 s; with this rule 6 of 8 and 5 of 8."""
REMB_GROWTH_HOLD_S = 2.0
"""No growth for this long after a REMB fall was taken: the reports' loss window (2 s) and
rate window still span the fall. Measured in bench_link: 1.25 s after a fall on the step to
1 Mbit/s a report with 10 % loss but no queue in its RTT sample read as random loss, and
grew the estimate from 796 to 1152 kbit/s, with padding, while the picture was frozen."""
STALE_FEEDBACK_S = 2.5
"""Without a report for this long the estimate holds: growing blind is not safe."""
MIN_RATE_PACKETS = 20
"""A receive rate over fewer packets (the report right after a back-off, at a narrow link's
packet rate) says more about when the reports came than about the link: a back-off is not
cut to it (one such, over 14 packets, cut 241 kbit/s to the 80 kbit/s floor on a 300 kbit/s
link)."""
RECEIVE_WINDOW_S = 1.0
"""Receive rate over the last report interval: after a step down the rate must be
the new link's, not an average with the old."""
MIN_FEEDBACK_SPAN_S = 0.2
"""Transport-wide feedback measures rates once its packets span this long."""
LOSS_WINDOW_S = 2.0
"""Loss from cumulative counts over this window (one report of 50 packets is noise),
but never from before the last back-off."""
SENT_WINDOW_S = 1.0
HISTORY_PACKETS = 8192
WIRE_OVERHEAD_BYTES = 20 + 8 + 10
"""IPv4 + UDP + SRTP auth tag, on top of the RTP packet: what a link shaper counts."""
_NTP_TO_S = 1 / 65536
LINK_CLEAR = "link clear"
ENCODER_SHARE = 0.85
"""Share of the estimate (wire bytes) the publisher's encoder aims at: the rest is RTP/SRTP
overhead and the retransmission budget (15 %), so repairs never push past the link.
Padding fills up to this share too: a probe sends what the media will once it has
succeeded, so an estimate grown past the link overloads it no more than the media would."""
PROBE_APP_LIMITED_SHARE = 0.75
"""Padding fills the gap up to the estimate only while the media sends less than this
share of it (an app-limited sender: the estimate cannot grow past 1.5 x what arrived, so
without padding a sender held low by a narrow phase stays low after the link opens)."""
BAND_TEST_SHARE = 1.0
"""With the estimate back at the last congestion's rate (the capacity), padding fills up to
the whole estimate, media or not: growth there is additive until more *arrives* than
1.15 x the capacity, and at ENCODER_SHARE that took an estimate of 1.35-1.4 x it, seconds
of additive growth on a link that had opened (bench_link: 10 s at 7 %/s from 700 kbit/s
after the drop phase). On a link that has not moved, the padding meets it a little
sooner than the media would; the refused-probe hold then keeps it under the link."""
PROBE_HOLD_S = 2.0
"""No padding for this long after any back-off."""
REFUSED_HOLD_S = 4.0
"""A back-off within PROBE_REFUSED_S of padding refused the probe: for this long (doubled
with each refusal in a row, to MAX_REFUSED_HOLD_S) padding fills only up to REFUSED_SHARE
of what arrived when it was refused: it keeps the estimate proven just under the link
without knocking on it again. Back to REFUSED_HOLD_S once what arrived has grown
PROBE_REOPENED x past the refused rate (the link has changed)."""
MAX_REFUSED_HOLD_S = 8.0
REFUSED_SHARE = 0.9
PROBE_REFUSED_S = 3.0
PROBE_REOPENED = 1.3
PROBE_UNHEARD_S = 4.0
"""Padding for this long with no receiver report about the RTX stream: the receiver does
not report on it, so padding proves nothing there; it stops for this connection."""


class RateState(StrEnum):
    INCREASE = "increase"
    HOLD = "hold"
    DECREASE = "decrease"


class DelaySignal(StrEnum):
    NORMAL = "normal"
    OVERUSE = "overuse"
    UNDERUSE = "underuse"


@dataclass(frozen=True)
class PacketResult:
    """One packet of a transport-wide feedback message."""

    sent_at: float
    """Our monotonic clock when the packet left."""
    size: int
    received_at: float | None
    """The receiver's clock (seconds, any origin), or None when it never arrived."""


@dataclass(frozen=True)
class BandwidthSnapshot:
    """What the estimator knows, for the encoder, status lines and metrics."""

    estimate_bps: float
    state: RateState
    reason: str
    """Why the last change (or hold) happened, e.g. `loss 14 %`, `delay +45 ms`."""
    loss: float
    """Fraction lost over the last 2 s of receiver reports, 0..1."""
    rtt_s: float | None
    jitter_s: float | None
    delay_signal: DelaySignal
    queuing_delay_ms: float | None
    delay_flat: bool
    """No standing queue (under RANDOM_LOSS_QUEUE_MS, no overuse) and no REMB fall taken
    for REMB_GROWTH_HOLD_S: loss now is the radio's, not a full link's."""
    near_congestion: bool
    """The estimate is within NEAR_BAND of (or above) the receive rate at the last
    congestion: the link was full about here."""
    sent_bps: float
    """Everything sent over the last second, retransmissions included, on the wire."""
    receive_bps: float | None
    """What arrived, from receiver reports (or transport-wide feedback)."""
    passed_bps: float | None
    """What the link passed of what we sent: what arrived, with the loss up to the loss
    controller's bar counted in (random loss is no narrower link)."""
    remb_bps: float | None
    retransmitted_bytes: int
    padding_bytes: int
    """Padding-only probe bytes sent (on the wire), in all."""
    reports: int
    """Receiver reports taken in."""
    transport_cc: bool = False
    """Delay and arrivals come from transport-wide feedback (heard within
    STALE_FEEDBACK_S), not from receiver reports."""

    @property
    def keep_headroom(self) -> bool:
        """Whether an encoder is to leave its shortfall under the target unmade (see
        encoder.MAX_TRIM): near the last congestion point, unless the loss there is the
        radio's (between the loss thresholds with the delay flat). With no queue the link
        is not full now, and the shortfall only withholds media: untrimmed at 360p30 it
        sent 0.83 of its target on bench_link's 1 Mbit/s link with 5 % drop (608-691
        kbit/s for 732-831), and never reached 80 % of the link in two runs of five."""
        random_loss = self.delay_flat and LOSS_GROW_BELOW <= self.loss <= LOSS_BACKOFF_ABOVE
        return self.near_congestion and not random_loss

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _DelayTrend:
    """Queuing delay and its slope from delay samples (RTT or one-way, any offset)."""

    def __init__(self) -> None:
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        self._smoothed: float | None = None

    def add(self, at: float, delay_ms: float) -> None:
        self._smoothed = (
            delay_ms
            if self._smoothed is None
            else DELAY_SMOOTHING * delay_ms + (1 - DELAY_SMOOTHING) * self._smoothed
        )
        self._samples.append((at, delay_ms))
        while self._samples and self._samples[0][0] < at - BASE_WINDOW_S:
            self._samples.popleft()

    def queuing_ms(self) -> float | None:
        if self._smoothed is None:
            return None
        return max(0.0, self._smoothed - min(d for _, d in self._samples))

    def base_ms(self) -> float | None:
        """The lowest delay over BASE_WINDOW_S: the empty-queue delay (None: no sample)."""
        return min((d for _, d in self._samples), default=None)

    def queuing_now_ms(self) -> float | None:
        """The queuing delay, or the last sample's if that is lower: the smoothing keeps 40 %
        of a drained queue for another sample (a second), which is not a queue any more."""
        queuing = self.queuing_ms()
        if queuing is None:
            return None
        latest = self._samples[-1][1] - min(d for _, d in self._samples)
        return max(0.0, min(queuing, latest))

    def slope_ms_per_s(self) -> float:
        """Least-squares slope of the samples in the last SLOPE_WINDOW_S (0 with < 2)."""
        if not self._samples:
            return 0.0
        last = self._samples[-1][0]
        recent = [(t, d) for t, d in self._samples if t >= last - SLOPE_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        mean_t = sum(t for t, _ in recent) / len(recent)
        mean_d = sum(d for _, d in recent) / len(recent)
        var = sum((t - mean_t) ** 2 for t, _ in recent)
        if var <= 0:
            return 0.0
        return sum((t - mean_t) * (d - mean_d) for t, d in recent) / var

    def rising(self) -> bool:
        """Whether the latest sample is above the one before it."""
        return len(self._samples) >= 2 and self._samples[-1][1] > self._samples[-2][1]

    def falling(self) -> bool:
        """Whether the latest sample is below the one before it."""
        return len(self._samples) >= 2 and self._samples[-1][1] < self._samples[-2][1]

    def signal(self) -> DelaySignal:
        queuing = self.queuing_ms()
        if queuing is None:
            return DelaySignal.NORMAL
        slope = self.slope_ms_per_s()
        # a falling delay is a queue draining until there is none left to drain
        left = self.queuing_now_ms() or 0.0
        if slope < DRAINING_SLOPE_MS_PER_S and left >= RANDOM_LOSS_QUEUE_MS:
            return DelaySignal.UNDERUSE
        if queuing > OVERUSE_QUEUE_MS:
            return DelaySignal.OVERUSE
        return DelaySignal.NORMAL


class _ProbeState:
    """Padding probes on one connection: when they ran, whether the receiver reports on
    them, and how long to wait after one was refused."""

    def __init__(self) -> None:
        self.refused_hold_s = REFUSED_HOLD_S
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.heard = False
        self.unheard = False
        self.refused_bps: float | None = None
        self.refused_at: float | None = None

    def sending(self, now: float) -> None:
        if self.first_at is None:
            self.first_at = now
        self.last_at = now

    def backed_off(self, now: float, carried_bps: float | None) -> None:
        if self.last_at is None or now - self.last_at >= PROBE_REFUSED_S or not carried_bps:
            return
        if self.refused_at is not None and now - self.refused_at < 2 * self.refused_hold_s:
            self.refused_hold_s = min(MAX_REFUSED_HOLD_S, self.refused_hold_s * 2)
            # the same episode's later back-offs measure our own reduced sending
            carried_bps = max(carried_bps, self.refused_bps or 0.0)
        self.refused_bps, self.refused_at = carried_bps, now

    def ceiling(self, now: float) -> float | None:
        """The most padding may bring the total to now (None: the estimate)."""
        if self.refused_at is None or self.refused_bps is None:
            return None
        if now - self.refused_at >= self.refused_hold_s:
            return None
        return REFUSED_SHARE * self.refused_bps

    def carried(self, receive_bps: float | None) -> None:
        """What arrived: past the refused rate by PROBE_REOPENED, the link has changed."""
        if (
            self.refused_bps is not None
            and receive_bps is not None
            and receive_bps >= self.refused_bps * PROBE_REOPENED
        ):
            self.refused_bps = self.refused_at = None
            self.refused_hold_s = REFUSED_HOLD_S


class _Point(NamedTuple):
    """The receiver's cumulative counts about one stream at one report."""

    at: float
    highest: int
    """Extended highest sequence number, numbers skipped by jumps left out."""
    lost: int
    """Cumulative lost, numbers skipped by jumps left out."""
    sent_bytes: float
    """Wire bytes we sent up to `highest`."""
    sent_at: float | None
    """When we sent the packet numbered `highest` (None: not in our history)."""


class _Stream:
    """One SSRC as sent (wire size and send time by sequence number) and the receiver's
    cumulative counts about it, one `_Point` per report.

    Numbers skipped by a sequence jump were never sent: the receiver counts them as
    expected and lost once it reports past them, and the points here leave them out of
    both, so loss and the receive rate read through a jump as if it had not happened.
    """

    def __init__(self) -> None:
        self.sizes: dict[int, tuple[int, float]] = {}
        """Wire size and send time by 16-bit sequence number."""
        self.order: collections.deque[int] = collections.deque()
        self.points: collections.deque[_Point] = collections.deque()
        self.bytes = 0.0
        self.packet_bytes = float(DEFAULT_PACKET_BYTES)
        self.skipped: set[int] = set()
        """Numbers skipped by jumps the receiver has not reported past yet."""
        self.skipped_reported = 0
        """Skipped numbers the receiver has reported past (and counted lost), in all."""
        self.last_highest: int | None = None
        """The last report's 16-bit highest sequence number, as the receiver sent it."""

    def clear(self) -> None:
        self.sizes.clear()
        self.order.clear()
        self.points.clear()
        self.skipped.clear()
        self.skipped_reported = 0
        self.last_highest = None

    def sent(self, seq: int, wire: int, at: float) -> None:
        seq &= 0xFFFF
        if seq not in self.sizes:
            self.order.append(seq)
            if len(self.order) > HISTORY_PACKETS:
                self.sizes.pop(self.order.popleft(), None)
        self.sizes[seq] = (wire, at)
        self.packet_bytes = 0.95 * self.packet_bytes + 0.05 * wire

    def jump(self, first_sequence: int, skipped: int) -> None:
        """The `skipped` numbers before `first_sequence` will never be sent."""
        self.skipped.update((first_sequence - 1 - k) & 0xFFFF for k in range(skipped))

    def _sent_at(self, seq: int) -> float | None:
        known = self.sizes.get(seq & 0xFFFF)
        return known[1] if known is not None else None

    def restart_counts(self, now: float, highest: int, lost: int) -> None:
        self.points.clear()
        self.last_highest = highest
        self.points.append(
            _Point(now, highest, lost - self.skipped_reported, self.bytes, self._sent_at(highest))
        )

    def take(self, now: float, highest: int, lost: int) -> None:
        """One report's counts. Receivers that send the 16-bit sequence number only
        (aiortc) are unwrapped here."""
        if not self.points or self.last_highest is None:
            self.restart_counts(now, highest, lost)
            return
        step = (highest - self.last_highest) & 0xFFFF
        if step >= 0x8000:
            # an older report arriving late, or a stream that restarted: count from here
            self.restart_counts(now, highest, lost)
            return
        skipped = 0
        for offset in range(1, min(step, HISTORY_PACKETS) + 1):
            seq = (self.last_highest + offset) & 0xFFFF
            if seq in self.skipped:
                self.skipped.discard(seq)
                skipped += 1
            else:
                known = self.sizes.get(seq)
                self.bytes += known[0] if known is not None else self.packet_bytes
        self.skipped_reported += skipped
        self.last_highest = highest
        extended = self.points[-1].highest + step - skipped
        self.points.append(
            _Point(now, extended, lost - self.skipped_reported, self.bytes, self._sent_at(highest))
        )
        while len(self.points) > 2 and self.points[1].at <= now - LOSS_WINDOW_S:
            self.points.popleft()

    def first_since(self, since: float | None) -> _Point | None:
        """The first point at or after `since` (the last back-off), else the oldest."""
        if not self.points:
            return None
        return next((p for p in self.points if since is not None and p.at >= since), self.points[0])

    def loss_counts(self, since: float | None) -> tuple[int, int]:
        """(lost, expected) over the loss window, never from before `since`; where the
        back-off at `since` came after the report before this one (transport-wide feedback
        or a REMB acts between reports), over the interval up to this report, which spans
        it: the receiver's own fraction for it counts a sequence jump's numbers as lost
        (measured: 94-98 % read after the jumps of a step down, and the estimate cut to the
        floor)."""
        first = self.first_since(since)
        if first is None:
            return 0, 0
        last = self.points[-1]
        if first is last and len(self.points) >= 2:
            first = self.points[-2]
        return last.lost - first.lost, last.highest - first.highest

    def _rate_window(self, now: float, since: float | None) -> tuple[_Point, _Point] | None:
        """The points spanning about the last RECEIVE_WINDOW_S, never from before `since`."""
        first = self.first_since(since)
        if first is None:
            return None
        start = next(
            p for p in reversed(self.points) if p.at <= now - RECEIVE_WINDOW_S or p is first
        )
        last = self.points[-1]
        if now - start.at < 0.2 or last.highest <= start.highest:
            return None
        return start, last

    def arrived_bps(self, now: float, since: float | None) -> tuple[float, float] | None:
        """What arrived over about the last RECEIVE_WINDOW_S (our sizes for the new sequence
        numbers, scaled by the share that arrived), and what passed: the same with the
        packets lost over that window, up to LOSS_BACKOFF_ABOVE of them, counted as arrived,
        random loss apart. (The loss of another window, the 2 s one, put beside it read a
        link with 5 % random loss at 360p15 as carrying 0.92 x what we sent.)"""
        window = self._rate_window(now, since)
        if window is None:
            return None
        start, last = window
        expected = last.highest - start.highest
        lost = max(0.0, min(1.0, (last.lost - start.lost) / expected))
        sent = (last.sent_bytes - start.sent_bytes) * 8 / (now - start.at)
        return sent * (1 - lost), sent * (1 - lost) / (1 - min(lost, LOSS_BACKOFF_ABOVE))

    def send_bps(self, now: float, since: float | None) -> float | None:
        """The rate we sent the packets of `arrived_bps`'s window at (None: their send times
        are not known): the same packets, so the two compare like for like."""
        window = self._rate_window(now, since)
        if window is None:
            return None
        start, last = window
        if start.sent_at is None or last.sent_at is None or last.sent_at - start.sent_at < 0.1:
            return None
        return (last.sent_bytes - start.sent_bytes) * 8 / (last.sent_at - start.sent_at)


class BandwidthEstimator:
    """Send-side estimate of the link's rate; feed it, read `estimate_bps` or `snapshot()`."""

    def __init__(
        self,
        *,
        max_bps: float,
        min_bps: float = DEFAULT_MIN_BPS,
        start_bps: float | None = None,
        clock_rate: int = 90000,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not 0 < min_bps <= max_bps:
            raise ValueError(f"need 0 < min_bps <= max_bps, got {min_bps} and {max_bps}")
        self.max_bps = max_bps
        self.min_bps = min_bps
        self._clock = clock
        self._clock_rate = clock_rate
        start = DEFAULT_START_BPS if start_bps is None else start_bps
        self._estimate = min(max_bps, max(min_bps, start))
        self._state = RateState.HOLD
        self._reason = "start"
        self._signal = DelaySignal.NORMAL
        # what we sent, per stream (media and its RTX), and one-second windows of wire bytes
        self._media = _Stream()
        self._rtx = _Stream()
        self._sent: collections.deque[tuple[float, int, bool]] = collections.deque()
        self._sent_window_bytes = 0
        self._padding_window_bytes = 0
        self._retransmitted = 0
        self._padding_sent = 0
        self._sr_sent: dict[int, float] = {}
        # what came back
        self._reports = 0
        self._loss = 0.0
        self._loss_expected = 0
        """Packets the loss fraction was counted over (0: from the report's fraction)."""
        self._loss_fresh = False
        """`_loss` is from a report not yet acted on (see `_update`)."""
        self._rtt: float | None = None
        self._jitter: float | None = None
        self._receive_bps: float | None = None
        self._passed_bps: float | None = None
        """`_receive_bps` with the loss up to the loss controller's bar counted as arrived."""
        self._send_bps: float | None = None
        """The rate we sent the packets `_receive_bps` was measured over at."""
        self._remb: float | None = None
        self._remb_cut_at: float | None = None
        """When the estimate was last cut on a REMB."""
        self._remb_at: float | None = None
        self._overuse_rembs: collections.deque[tuple[float, float]] = collections.deque()
        """The REMBs of the receiver's current overuse and when each came, over
        REMB_SLOPE_MAX_S (see REMB_OVERUSE_SPACING_S)."""
        self._cuts: collections.deque[float] = collections.deque()
        """When the estimate was lowered, over SENT_HISTORY_S + REMB_QUIET_S."""
        self._payload_sent: collections.deque[tuple[float, int, int, bool]] = collections.deque()
        """(when, RTP payload and padding bytes, wire bytes, whether padding only) of every
        packet sent, over SENT_HISTORY_S: what a REMB counts, and what it costs on the wire."""
        self._rtt_trend = _DelayTrend()
        self._owd_trend = _DelayTrend()
        self._twcc_at: float | None = None
        self._twcc_arrivals: collections.deque[tuple[float, float, int]] = collections.deque()
        """(arrival on the receiver's clock, when it left on ours, wire bytes) per packet."""
        self._last_feedback: float | None = None
        self._last_update: float | None = None
        self._last_decrease: float | None = None
        self._capacity: float | None = None
        self._congested_bps: float | None = None
        """The receive rate at the last back-off the link limited (unlike `_capacity`, never
        forgotten). A back-off while the link keeps up with us measured our own sending."""
        self._before_congestion = self._estimate
        """The estimate before the first back-off of the current congestion."""
        self._congested_at: float | None = None
        """When the last back-off (or REMB fall) was: the current congestion's latest."""
        self._collapsed = False
        self._probe = _ProbeState()

    def restart_stream(self) -> None:
        """A new connection (new SSRC, new sequence numbers): forget the old stream's
        packets and reports, keep the estimate and what was learnt about the link."""
        self._media.clear()
        self._rtx.clear()
        self._sr_sent.clear()
        self._last_decrease = self._congested_at = None
        self._remb = self._remb_at = self._remb_cut_at = None
        self._overuse_rembs.clear()
        self._probe = _ProbeState()

    # -- what the sender sent -------------------------------------------------------------

    def on_packet_sent(
        self,
        seq: int,
        size: int,
        *,
        retransmission: bool = False,
        rtx: bool = False,
        padding: bool = False,
        payload: int | None = None,
    ) -> None:
        """An RTP packet of `size` bytes (as serialized, before SRTP) left: on the media
        stream, or with `rtx` on its retransmission stream (a retransmission or, with
        `padding`, a padding-only probe packet). `payload` is what follows its header
        (payload and padding; None: all but a 12-byte header)."""
        now = self._clock.monotonic()
        wire = size + WIRE_OVERHEAD_BYTES
        self._payload_sent.append((now, size - 12 if payload is None else payload, wire, padding))
        while self._payload_sent and self._payload_sent[0][0] < now - SENT_HISTORY_S:
            self._payload_sent.popleft()
        self._sent.append((now, wire, padding))
        self._sent_window_bytes += wire
        if padding:
            self._padding_window_bytes += wire
            self._padding_sent += wire
            self._probe.sending(now)
        if retransmission:
            self._retransmitted += wire
        if rtx:
            self._rtx.sent(seq, wire, now)
        elif not retransmission:
            self._media.sent(seq, wire, now)

    def on_sender_report_sent(self, ntp_timestamp: int) -> None:
        """A sender report with this 64-bit NTP timestamp left: its LSR comes back in RRs."""
        lsr = (ntp_timestamp >> 16) & 0xFFFFFFFF
        self._sr_sent[lsr] = self._clock.monotonic()
        if len(self._sr_sent) > 32:
            self._sr_sent.pop(next(iter(self._sr_sent)))

    # -- what the receiver said -----------------------------------------------------------

    def on_receiver_report(
        self,
        *,
        fraction_lost: int,
        packets_lost: int,
        highest_sequence: int,
        jitter: int,
        lsr: int,
        dlsr: int,
    ) -> None:
        """One RTCP report block about our stream (RFC 3550 6.4.1 fields, as on the wire)."""
        now = self._clock.monotonic()
        self._reports += 1
        self._last_feedback = now
        self._jitter = jitter / self._clock_rate
        sent_at = self._sr_sent.get(lsr) if lsr else None
        if sent_at is not None:
            rtt = now - sent_at - dlsr * _NTP_TO_S
            if rtt >= 0:
                self._rtt = rtt if self._rtt is None else 0.8 * self._rtt + 0.2 * rtt
                self._rtt_trend.add(now, rtt * 1000)
        self._take_counts(now, highest_sequence, packets_lost, max(0, fraction_lost))
        self._update(now)

    def on_rtx_report(self, *, packets_lost: int, highest_sequence: int) -> None:
        """The receiver's report block about our RTX stream (retransmissions and padding).
        Take it before the media block of the same RTCP packet, which updates the estimate."""
        self._probe.heard = True
        self._rtx.take(self._clock.monotonic(), highest_sequence, packets_lost)

    def on_sequence_jump(self, first_sequence: int, skipped: int) -> None:
        """Our sequence numbers skipped `skipped` ahead to `first_sequence` (16-bit): the
        receiver will count the skipped ones as lost; they are left out of loss and rate."""
        self._media.jump(first_sequence, skipped)

    def take_collapse(self) -> bool:
        """Whether a back-off since the last call was a collapse (see COLLAPSE_SHARE)."""
        collapsed, self._collapsed = self._collapsed, False
        return collapsed

    def on_remb(self, bitrate_bps: float) -> None:
        """The receiver's estimated maximum bitrate. Its overuse answers (see
        REMB_AIMD_STEP) say what arrived over its last second; where that is less than the
        link should have carried of what we sent (REMB_LAGGING_SHARE), the estimate is cut
        at once to 0.85 x it (to it, where the REMB answered our padding: REMB_PROBE_SHARE),
        or to 0.85 x what arrived since an earlier REMB of the same overuse where that is
        lower (REMB_SLOPE_MIN_S). It is no bound otherwise: aiortc's grows 8 %/s at most
        after a fall, which would hold a publisher far under a link that reopened; receiver
        reports decide growth."""
        remb = max(0.0, bitrate_bps)
        now = self._clock.monotonic()
        previous, self._remb = self._remb, remb
        previous_at, self._remb_at = self._remb_at, now
        if previous is None:
            return
        dense = previous_at is not None and now - previous_at < REMB_OVERUSE_SPACING_S
        if not (dense or remb < previous or remb > REMB_AIMD_STEP * previous):
            self._overuse_rembs.clear()  # a REMB on the receiver's timer: overuse is over
            return
        self._overuse_rembs.append((now, remb))
        while self._overuse_rembs and self._overuse_rembs[0][0] < now - REMB_SLOPE_MAX_S:
            self._overuse_rembs.popleft()
        reading = self._remb_reading(now, remb)
        if reading is None:
            return  # nothing sent to compare with
        carried, sent, padding_share = reading
        if self._loss_counted(carried) >= REMB_LAGGING_SHARE * sent:
            return  # the link carried what we sent
        probed = padding_share >= REMB_PROBE_SHARE
        cut = carried if probed else DELAY_BACKOFF * carried
        reason = f"REMB overuse, {carried / 1000:.0f} kbit/s arriving"
        between = self._arrived_between(now, remb)
        if (
            between is not None
            and between < carried
            and DELAY_BACKOFF * between >= REMB_ARRIVED_IMPLAUSIBLE * remb
        ):
            # GCC's back-off from what arrives now, as the REMB itself says a second later
            carried = between
            cut = max(REMB_ARRIVED_FLOOR * remb, DELAY_BACKOFF * between)
            reason = f"REMB overuse, {between / 1000:.0f} kbit/s arriving now"
        if probed:
            reason += " (probe)"
        if cut >= self._estimate:
            return
        # what the link carries, where growth near it is to be careful next
        self._link_carried(carried)
        if not probed:
            self._remb_cut_at = now
        # a congestion episode for the collapse rule, but not a back-off of ours: the
        # receiver report that follows still backs off on what it measured
        # what arrives now (between two answers, where that was lower) against what we sent
        overflowing = self._loss_counted(carried) < COLLAPSE_SHARE * sent
        self._note_collapse(now, cut, overflowing=overflowing)
        self._set(cut, RateState.DECREASE, reason)

    def _remb_reading(self, now: float, remb: float) -> tuple[float, float, float] | None:
        """The wire rate that arrived over the receiver's last second by an overuse REMB
        (0.85 x its payload), and the wire rate we sent those packets at, a base round trip
        earlier, or REMB_BURST_S before that where less and a burst of ours came between
        (see REMB_BURST_S); with the share of the wire bytes sent a base round trip earlier
        that was padding (REMB_PROBE_SHARE). None: nothing sent then."""
        end = now - self._base_delay_s()
        sent = self._sent_between(end - REMB_WINDOW_S, end)
        padding_share = sent[2] / sent[1] if sent[1] else 0.0
        tail_bps = self._sent_between(end - REMB_BURST_S, end)[1] * 8 / REMB_BURST_S
        if tail_bps > REMB_BURST_SHARE * sent[1] * 8 / REMB_WINDOW_S:
            earlier = self._sent_between(end - REMB_WINDOW_S - REMB_BURST_S, end - REMB_BURST_S)
            sent = min(sent, earlier, key=lambda window: window[1])
        payload, wire, _ = sent
        if payload <= 0:
            return None
        carried = remb / REMB_THROUGHPUT_SHARE * wire / payload
        return carried, wire * 8 / REMB_WINDOW_S, padding_share

    def _loss_counted(self, arrived_bps: float) -> float:
        """`arrived_bps` with the loss up to the loss controller's bar counted as arrived."""
        return arrived_bps / (1 - min(self._loss, LOSS_BACKOFF_ABOVE))

    def _base_delay_s(self) -> float:
        """The empty-queue round trip (0 before any RTT sample)."""
        return (self._rtt_trend.base_ms() or 0.0) / 1000

    def _sent_between(self, start: float, end: float) -> tuple[int, int, int]:
        """(RTP payload and padding bytes, wire bytes, wire bytes of padding-only packets)
        we sent after `start` until `end`."""
        window = [(p, w, pad) for t, p, w, pad in self._payload_sent if start < t <= end]
        return (
            sum(p for p, _, _ in window),
            sum(w for _, w, _ in window),
            sum(w for _, w, pad in window if pad),
        )

    def _arrived_between(self, now: float, remb: float) -> float | None:
        """The wire rate that arrived since an earlier REMB of this overuse, from REMBs that
        are 0.85 x the payload arrived over the receiver's last second (see
        REMB_SLOPE_MIN_S); None when no REMB is far enough back, or the span a second before
        was not on a quiet link (REMB_QUIET_S)."""
        earlier = next(
            ((at, value) for at, value in self._overuse_rembs if now - at >= REMB_SLOPE_MIN_S),
            None,
        )
        if earlier is None:
            return None
        at, earlier_remb = earlier
        base_s = self._base_delay_s()
        start, end = at - REMB_WINDOW_S - base_s, now - REMB_WINDOW_S - base_s
        if any(start - REMB_QUIET_S <= cut <= end for cut in self._cuts):
            return None
        payload, wire, _ = self._sent_between(start, end)
        if payload <= 0:
            return None
        wire_share = wire / payload
        arrived_bits = (remb - earlier_remb) / REMB_THROUGHPUT_SHARE * REMB_WINDOW_S
        arrived_bits += payload * 8
        return max(0.0, arrived_bits) * wire_share / (now - at)

    def on_transport_feedback(self, packets: Sequence[PacketResult]) -> None:
        """A transport-wide congestion control feedback, matched to our send times: one
        one-way delay sample (the mean of its packets'; the receiver's clock has its own
        origin, only changes count), and what arrived against the rate the same packets
        left at, over the last RECEIVE_WINDOW_S of arrivals."""
        received = [packet for packet in packets if packet.received_at is not None]
        if not received:
            return
        now = self._clock.monotonic()
        self._twcc_at = self._last_feedback = now
        delays = [(packet.received_at or 0.0) - packet.sent_at for packet in received]
        self._owd_trend.add(now, sum(delays) / len(delays) * 1000)
        for packet in received:
            self._twcc_arrivals.append((packet.received_at or 0.0, packet.sent_at, packet.size))
        arrivals = self._twcc_arrivals
        while len(arrivals) > 1 and arrivals[-1][0] - arrivals[0][0] > RECEIVE_WINDOW_S:
            arrivals.popleft()
        span = arrivals[-1][0] - arrivals[0][0]
        sent_span = max(at for _, at, _ in arrivals) - min(at for _, at, _ in arrivals)
        if span >= MIN_FEEDBACK_SPAN_S and sent_span > 0:
            # the first packet's bytes start the span: the others arrived within it
            bits = sum(size for _, _, size in list(arrivals)[1:]) * 8
            self._receive_bps = bits / span
            self._passed_bps = self._loss_counted(self._receive_bps)
            self._send_bps = bits / sent_span
        self._update(now)

    # -- reading --------------------------------------------------------------------------

    @property
    def estimate_bps(self) -> float:
        return self._estimate

    def snapshot(self) -> BandwidthSnapshot:
        queuing = self._trend().queuing_ms()
        return BandwidthSnapshot(
            estimate_bps=self._estimate,
            state=self._state,
            reason=self._reason,
            loss=self._loss,
            rtt_s=self._rtt,
            jitter_s=self._jitter,
            delay_signal=self._signal,
            queuing_delay_ms=queuing,
            delay_flat=self._delay_flat(queuing),
            near_congestion=self._near_congestion(),
            sent_bps=self.sent_bps(),
            receive_bps=self._receive_bps,
            passed_bps=self._passed_bps,
            remb_bps=self._remb,
            retransmitted_bytes=self._retransmitted,
            padding_bytes=self._padding_sent,
            reports=self._reports,
            transport_cc=self._trend() is self._owd_trend,
        )

    def _delay_flat(self, queuing_ms: float | None) -> bool:
        if queuing_ms is None or queuing_ms >= RANDOM_LOSS_QUEUE_MS:
            return False
        if self._signal is not DelaySignal.NORMAL:
            return False
        # the receiver saw its queue grow; our RTT samples, a second apart, have not yet
        # (measured in bench_link: 3 x the repair budget sent 46 kB in the half second after
        # such a fall on the step to 300 kbit/s, and the picture froze 1.4 s)
        cut_at = self._remb_cut_at
        return cut_at is None or self._clock.monotonic() - cut_at >= REMB_GROWTH_HOLD_S

    def sent_bps(self) -> float:
        """Wire bit/s over the last second, retransmissions included."""
        self._trim_sent()
        return self._sent_window_bytes * 8 / SENT_WINDOW_S

    def wire_sent_since(self, start: float) -> int | None:
        """Wire bytes sent since monotonic `start`; None when `start` is further back than
        the history kept (SENT_HISTORY_S)."""
        now = self._clock.monotonic()
        if start < now - SENT_HISTORY_S:
            return None
        return self._sent_between(start, now)[1]

    def padding_sent_bps(self) -> float:
        """Padding bit/s (on the wire) over the last second."""
        self._trim_sent()
        return self._padding_window_bytes * 8 / SENT_WINDOW_S

    @property
    def padding_heard(self) -> bool:
        """Whether padding can prove anything here: not yet found unreported on this
        connection (True until then)."""
        return not self._probe.unheard

    def padding_bps(self, wanted_bps: float) -> float:
        """Padding bit/s to send beside the media now, so that what arrives can prove the
        estimate (0: none). The total stays within ENCODER_SHARE of the estimate (within
        BAND_TEST_SHARE once it is back at the last congestion's rate) and within
        `wanted_bps`, what the sender would use if the link allowed (0: it wants no more
        than it has). Only while the media is app-limited (under PROBE_APP_LIMITED_SHARE of
        the estimate; any media while testing the band) and the link clear, not within
        PROBE_HOLD_S of a back-off, and only where the receiver reports on the RTX stream
        the padding goes on."""
        now = self._clock.monotonic()
        probe = self._probe
        if (
            probe.first_at is not None
            and not probe.heard
            and now - probe.first_at > PROBE_UNHEARD_S
        ):
            probe.unheard = True
        # "link clear" even when the estimate is pinned (HOLD) by what arrived: padding is
        # how a pinned estimate gets out
        if probe.unheard or wanted_bps <= 0 or self._reason != LINK_CLEAR:
            return 0.0
        if self._last_feedback is None or now - self._last_feedback > STALE_FEEDBACK_S:
            return 0.0
        if self._last_decrease is not None and now - self._last_decrease < PROBE_HOLD_S:
            return 0.0
        self._trim_sent()
        media_bps = (self._sent_window_bytes - self._padding_window_bytes) * 8 / SENT_WINDOW_S
        testing = self._capacity is not None and self._estimate >= self._capacity
        share = BAND_TEST_SHARE if testing else ENCODER_SHARE
        if not testing and media_bps >= PROBE_APP_LIMITED_SHARE * self._estimate:
            return 0.0
        ceiling = probe.ceiling(now)
        total = min(share * self._estimate, wanted_bps, math.inf if ceiling is None else ceiling)
        return max(0.0, total - media_bps)

    def _trim_sent(self) -> None:
        now = self._clock.monotonic()
        while self._sent and self._sent[0][0] < now - SENT_WINDOW_S:
            _, wire, padding = self._sent.popleft()
            self._sent_window_bytes -= wire
            if padding:
                self._padding_window_bytes -= wire

    # -- control --------------------------------------------------------------------------

    def _take_counts(self, now: float, highest: int, lost: int, fraction_lost: int) -> None:
        """Loss and receive rate from the cumulative counts of successive reports, over
        the media stream and its RTX stream (where padding probes go) together."""
        self._media.take(now, highest, lost)
        # loss counted before the last back-off says nothing about the new rate
        since = self._last_decrease
        lost_packets, expected = (
            sum(pair)
            for pair in zip(
                self._media.loss_counts(since), self._rtx.loss_counts(since), strict=True
            )
        )
        self._loss = (
            min(1.0, max(0.0, lost_packets / expected))
            if expected > 0
            else min(1.0, fraction_lost / 256)
        )
        self._loss_expected = max(0, expected)
        self._loss_fresh = True
        if self._trend() is self._owd_trend:
            return  # transport-wide feedback measures arrivals better
        media = self._media.arrived_bps(now, since)
        if media is None:
            return
        rtx = self._rtx.arrived_bps(now, since) or (0.0, 0.0)
        self._receive_bps = media[0] + rtx[0]
        self._passed_bps = media[1] + rtx[1]
        media_sent = self._media.send_bps(now, since)
        self._send_bps = (
            None if media_sent is None else media_sent + (self._rtx.send_bps(now, since) or 0.0)
        )

    def _trend(self) -> _DelayTrend:
        if self._twcc_at is not None and self._clock.monotonic() - self._twcc_at < STALE_FEEDBACK_S:
            return self._owd_trend
        return self._rtt_trend

    def _update(self, now: float) -> None:
        elapsed = 0.0 if self._last_update is None else min(1.0, now - self._last_update)
        self._last_update = now
        trend = self._trend()
        self._signal = trend.signal()
        rtt = self._rtt if self._rtt is not None else 0.1
        since = math.inf if self._last_decrease is None else now - self._last_decrease
        may_decrease = since >= rtt + DECREASE_EXTRA_S
        candidates: list[tuple[float, str]] = []
        keeping_up = self._keeping_up()
        # what arrived, where enough packets measured it to cut a back-off to
        measured = self._receive_bps if self._loss_expected >= MIN_RATE_PACKETS else None
        # a loss back-off once per report that measured it: transport-wide feedback
        # updates ten times a second, and one report's 94 % cut 4 Mbit/s to the floor
        # in six steps (measured, bench_link)
        fresh, self._loss_fresh = self._loss_fresh, False
        if fresh and self._congestion_loss():
            backed_off = self._estimate * (1 - 0.5 * self._loss)
            if measured is not None and not keeping_up:
                # losing that much, the link carried what arrived and no more
                backed_off = min(backed_off, measured)
            candidates.append((backed_off, f"loss {self._loss * 100:.0f} %"))
        # a queue left by the last back-off drains slowly in RTT samples a second apart:
        # while it shrinks, or while the link keeps up with what we send, only a queue still
        # growing is overuse (the packets of a shrinking queue were sent before the back-off,
        # faster than they arrive: they say nothing about now)
        falling_behind = not keeping_up and not trend.falling()
        if self._signal is DelaySignal.OVERUSE and (trend.rising() or falling_behind):
            base = measured if measured is not None else self._estimate
            queuing = trend.queuing_ms() or 0.0
            candidates.append((DELAY_BACKOFF * base, f"delay +{queuing:.0f} ms"))
        if candidates:
            if not may_decrease:
                self._set(self._estimate, RateState.HOLD, "waiting after a back-off")
                return
            target, reason = min(candidates)
            self._note_collapse(now, min(self._estimate, target))
            self._probe.backed_off(now, self._receive_bps)
            self._last_decrease = now
            if measured is not None and not keeping_up:
                # keeping up, what arrived is what we sent (held back after a collapse, or
                # an encoder under its target): it measured us, not the link (measured: such
                # a point at 146 kbit/s on a 300 kbit/s link was passed by 15 % at once, and
                # growth went multiplicative into an overshoot, 1.34 s frozen)
                self._link_carried(measured)
            self._set(min(self._estimate, target), RateState.DECREASE, reason)
            return
        standing = trend.queuing_now_ms()
        random_loss = standing is not None and standing < RANDOM_LOSS_QUEUE_MS
        if self._loss >= LOSS_GROW_BELOW and not random_loss:
            self._set(self._estimate, RateState.HOLD, f"loss {self._loss * 100:.0f} %")
            return
        if self._signal is DelaySignal.UNDERUSE:
            self._set(self._estimate, RateState.HOLD, "queue draining")
            return
        if self._signal is DelaySignal.OVERUSE:
            # a standing queue the link is draining (see above): no back-off, no growth
            self._set(self._estimate, RateState.HOLD, "queue standing")
            return
        if self._send_bps is not None and not keeping_up and self._passed_bps is not None:
            # less arrived than we sent of the same packets: the link is full, whatever the
            # RTT samples (one a second) say yet, and carries what arrived (the loss up to
            # the loss controller's bar counted in); above that the estimate has proven
            # nothing, and an encoder or ladder following it overloads the link further
            passed = self._passed_bps
            if self._loss_expected >= MIN_RATE_PACKETS:
                self._link_carried(passed)
            if passed < self._estimate:
                self._set(passed, RateState.DECREASE, "link full")
            else:
                self._set(self._estimate, RateState.HOLD, "link full")
            return
        if self._remb_cut_at is not None and now - self._remb_cut_at < REMB_GROWTH_HOLD_S:
            # the receiver saw its queue grow a moment ago; this report measured before that
            self._set(self._estimate, RateState.HOLD, "REMB overuse")
            return
        self._set(self._grown(elapsed, rtt), RateState.INCREASE, LINK_CLEAR)

    def _link_carried(self, measured: float) -> None:
        """The link carried `measured` and no more: the congestion point growth respects."""
        self._congested_bps = measured
        # congestion outside the band around the last is another link (a step down): start
        # over from it, as libwebrtc resets its capacity estimate
        last = self._capacity
        if last is None or abs(measured - last) > NEAR_BAND * last:
            self._capacity = measured
        else:
            self._capacity = CAPACITY_SMOOTHING * measured + (1 - CAPACITY_SMOOTHING) * last

    def _note_collapse(self, now: float, backed_off: float, *, overflowing: bool = False) -> None:
        """A back-off to `backed_off`; `overflowing`: a REMB says the link carried less than
        COLLAPSE_SHARE of what we sent, so the bottleneck's queue is dropping before any
        report can say so."""
        if self._congested_at is None or now - self._congested_at > COLLAPSE_WINDOW_S:
            self._before_congestion = self._estimate
        self._congested_at = now
        if (
            self._loss > LOSS_BACKOFF_ABOVE or overflowing
        ) and backed_off < COLLAPSE_SHARE * self._before_congestion:
            self._collapsed = True
            # measured from here on: a further collapse needs another fall as large
            self._before_congestion = backed_off

    def _congestion_loss(self) -> bool:
        """Loss above LOSS_BACKOFF_ABOVE, and by more than counting noise where the loss
        was counted over few packets (see LOSS_NOISE_SIGMAS)."""
        if self._loss <= LOSS_BACKOFF_ABOVE:
            return False
        n = self._loss_expected
        if n == 0:
            return True
        noise = LOSS_NOISE_SIGMAS * math.sqrt(LOSS_BACKOFF_ABOVE * (1 - LOSS_BACKOFF_ABOVE) / n)
        return self._loss > LOSS_BACKOFF_ABOVE + noise

    def _keeping_up(self) -> bool:
        """Whether the link passes packets as fast as we send them (see below), the ones
        lost up to the loss controller's bar counted as passed (on a link with 5 % random
        loss what arrives is never 95 % of what was sent; more is the link's limit)."""
        # against the rate the same packets were sent at and against our sending now: right
        # after a back-off (or a collapse's hold) we send less than arrives, and what
        # arrives then measures the queue we left, not the link
        sent = self.sent_bps()
        if self._send_bps is not None:
            sent = min(sent, self._send_bps)
        if self._passed_bps is None or sent <= 0:
            return False
        return self._passed_bps >= KEEPING_UP * sent

    def _near_congestion(self) -> bool:
        """Whether the estimate is in (or above) the band around the last congestion point."""
        # less a bit/s: a back-off to 0.85 x the capacity is in the band, float or not
        return self._capacity is not None and self._estimate >= self._capacity * (1 - NEAR_BAND) - 1

    def _grown(self, elapsed: float, rtt: float) -> float:
        estimate = self._estimate
        # what arrived decides, not the estimate: an estimate past the band has proven
        # nothing (it grew to 1.5 x a 300 kbit/s link that way, and the padding with it).
        # Growing, any loss is the radio's (see `_update`), so it counts as passed: on a link
        # that loses 5 % what arrives reaches the bar only at 1.21 x the capacity sent
        passed = self._passed_bps if self._passed_bps is not None else self._receive_bps
        above = self._capacity is not None and (passed or 0.0) > self._capacity * (1 + NEAR_BAND)
        if above:
            # more got through than the link took at the last congestion (libwebrtc resets its
            # link capacity estimate the same way): it is not where it was, search fast
            self._capacity = None
        per_feedback = self._trend() is self._owd_trend
        if self._near_congestion():
            near_share = TRANSPORT_CC_NEAR_SHARE_PER_S if per_feedback else NEAR_MAX_SHARE_PER_S
            per_s = max(
                MIN_ADDITIVE_BPS_PER_S,
                min(
                    near_share * estimate,
                    self._media.packet_bytes * 8 / (rtt + RESPONSE_TIME_EXTRA_S),
                ),
            )
            grown = estimate + per_s * elapsed
        else:
            far = (
                self._congested_bps is None or estimate >= self._congested_bps * FAR_FROM_CONGESTION
            )
            rate = FAR_GROW_PER_S if far or per_feedback else GROW_PER_S
            grown = estimate * math.pow(rate, elapsed)
        if self._receive_bps is not None:
            grown = min(
                grown, max(estimate, ACKED_HEADROOM * self._receive_bps + ACKED_HEADROOM_BPS)
            )
        if (
            self._receive_bps is not None
            and self._send_bps is not None
            and self._loss_expected >= MIN_RATE_PACKETS
        ):
            # called only while the link keeps up with us (see `_update`)
            grown = max(grown, PROVEN_SHARE * min(self._receive_bps, self._send_bps))
        return grown

    def _bounded(self, value: float) -> float:
        return min(self.max_bps, max(self.min_bps, value))

    def _set(self, value: float, state: RateState, reason: str) -> None:
        if (
            state is RateState.INCREASE
            and self._last_feedback is not None
            and self._clock.monotonic() - self._last_feedback > STALE_FEEDBACK_S
        ):
            state, reason = RateState.HOLD, "no recent feedback"
            value = self._estimate
        bounded = self._bounded(value)
        now = self._clock.monotonic()
        if bounded < self._estimate:
            self._cuts.append(now)
        while self._cuts and self._cuts[0] < now - SENT_HISTORY_S - REMB_QUIET_S:
            self._cuts.popleft()
        if state is RateState.INCREASE and bounded <= self._estimate:
            state = RateState.HOLD
            reason = "at the cap" if bounded >= self.max_bps else reason
        self._estimate = bounded
        self._state = state
        self._reason = reason
        self._probe.carried(self._receive_bps)


FLAT_DELAY_GROWTH_PER_S = 1.0
MAX_FLAT_DELAY_FACTOR = 3.0
"""While the delay stays flat the budget grows by its share once a second, to 3 x: loss
with no queue behind it is the radio's, and repairs cost a link with headroom nothing."""
BURST_WINDOW_S = 0.25
BURST_SHARE = 0.2
BURST_MIN_PACKETS = 8
"""BURST_MIN_PACKETS or more distinct packets asked for over the last BURST_WINDOW_S,
worth more than BURST_SHARE of the estimate, are a queue overflowing, not the radio's
loss (which stays far under: the loss controller's bar is 10 %), whatever the delay has
said so far. The count keeps two random losses among the 7 packets a quarter second
carries at 300 kbit/s from reading as a burst. In bench_link, the step from the unshaped
camera to 1 Mbit/s had 55-57 kB of repairs sent within half a second, under the
flat-delay budget (3 x), into a link already dropping 60 % of what it got; the picture
froze 1.1-1.3 s while they and the first transcoded keyframe queued."""


class RetransmissionBudget:
    """NACK retransmissions may use at most `share` of the estimate, over `window_s`.

    Congestion shows as loss; answering loss with unbounded retransmissions adds
    to the congestion (the issue measured 18,317 drops for 920 packets through).
    Random loss is not congestion: with `delay_flat` (no standing queue) the share
    grows with the time the delay has stayed flat, up to MAX_FLAT_DELAY_FACTOR x.
    A burst of requests (BURST_SHARE) is congestion: the plain share, of what the
    link passes (the estimate less what was asked for).
    """

    def __init__(
        self, share: float = 0.15, *, window_s: float = 1.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        if not 0 <= share <= 1 or window_s <= 0:
            raise ValueError("share must be in [0, 1] and window_s positive")
        self.share = share
        self.window_s = window_s
        self._clock = clock
        self._spent: collections.deque[tuple[float, int]] = collections.deque()
        self._spent_bytes = 0
        self._asked: collections.deque[tuple[float, int | None, int]] = collections.deque()
        self._asked_seqs: set[int] = set()
        self._asked_bytes = 0
        self._flat_since: float | None = None
        self.denied = 0
        self.bursts = 0
        """Requests that found a burst (BURST_SHARE), in all."""

    def allow(
        self, size: int, estimate_bps: float, *, delay_flat: bool = False, seq: int | None = None
    ) -> bool:
        """Whether a retransmission of `size` bytes (of packet `seq`: a packet asked for
        again within BURST_WINDOW_S counts once towards a burst) fits; an allowed one is
        counted."""
        now = self._clock.monotonic()
        while self._spent and self._spent[0][0] <= now - self.window_s:
            self._spent_bytes -= self._spent.popleft()[1]
        asked_bps = self._asked_bps(now, seq, size)
        basis = estimate_bps
        if len(self._asked) >= BURST_MIN_PACKETS and asked_bps > BURST_SHARE * estimate_bps:
            self.bursts += 1
            delay_flat = False
            basis = max(0.0, estimate_bps - asked_bps)
        if not delay_flat:
            self._flat_since = None
        elif self._flat_since is None:
            self._flat_since = now
        factor = 1.0
        if self._flat_since is not None:
            flat_s = now - self._flat_since
            factor = min(MAX_FLAT_DELAY_FACTOR, 1 + FLAT_DELAY_GROWTH_PER_S * flat_s)
        if (self._spent_bytes + size) * 8 > factor * self.share * basis * self.window_s:
            self.denied += 1
            return False
        self._spent.append((now, size))
        self._spent_bytes += size
        return True

    def _asked_bps(self, now: float, seq: int | None, size: int) -> float:
        """Bit/s of distinct packets asked for over the last BURST_WINDOW_S, this one in."""
        while self._asked and self._asked[0][0] <= now - BURST_WINDOW_S:
            _, old_seq, old_size = self._asked.popleft()
            self._asked_bytes -= old_size
            if old_seq is not None:
                self._asked_seqs.discard(old_seq)
        if seq is None or seq not in self._asked_seqs:
            self._asked.append((now, seq, size))
            self._asked_bytes += size
            if seq is not None:
                self._asked_seqs.add(seq)
        return self._asked_bytes * 8 / BURST_WINDOW_S


class KeyframeLimiter:
    """At most one forced keyframe per `min_interval_s`: receivers repeat PLIs while they
    wait, and every keyframe costs several frames' worth of bytes on a congested link."""

    def __init__(self, min_interval_s: float = 2.0, *, clock: Clock = SYSTEM_CLOCK) -> None:
        if min_interval_s < 0:
            raise ValueError("min_interval_s must not be negative")
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._last: float | None = None
        self.denied = 0

    def allow(self) -> bool:
        now = self._clock.monotonic()
        if self._last is not None and now - self._last < self.min_interval_s:
            self.denied += 1
            return False
        self._last = now
        return True
