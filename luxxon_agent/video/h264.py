"""H.264 bitstream facts the publisher needs: NAL units, the SPS profile and level.

Only the three bytes after the SPS NAL header are read (profile_idc,
constraint flags, level_idc); they come before any emulation-prevention byte.
"""

from __future__ import annotations

from dataclasses import dataclass

NAL_SPS = 7
NAL_PPS = 8
START_CODE = b"\x00\x00\x00\x01"

PROFILE_BASELINE = 66


@dataclass(frozen=True)
class H264Profile:
    """What an SPS says about a stream."""

    profile_idc: int
    """66 Baseline, 77 Main, 100 High, ..."""
    constraints: int
    """The constraint_set flags byte (constraint_set1 = 0x40 marks Constrained Baseline)."""
    level_idc: int
    """Level times ten: 31 is level 3.1."""

    @property
    def profile_level_id(self) -> str:
        """The SDP `profile-level-id` form, e.g. `42e01f`."""
        return f"{self.profile_idc:02x}{self.constraints:02x}{self.level_idc:02x}"

    @property
    def constrained_baseline(self) -> bool:
        """Constrained Baseline: no B-frames, no FMO/ASO, what every WebRTC peer decodes."""
        return self.profile_idc == PROFILE_BASELINE and bool(self.constraints & 0x40)

    def passthrough_refusal(self, max_level: int | None = None) -> str | None:
        """Why this stream cannot be sent as is to a Cloudflare-like endpoint, or None."""
        if not self.constrained_baseline:
            return (
                f"camera sends H.264 profile-level-id {self.profile_level_id}, not Constrained "
                "Baseline (42e0xx): it may carry B-frames the endpoint refuses"
            )
        if max_level is not None and self.level_idc > max_level:
            return (
                f"camera sends H.264 level {self.level_idc / 10:.1f}, above the allowed "
                f"{max_level / 10:.1f}"
            )
        return None


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex B buffer (start codes removed)."""
    units: list[bytes] = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        start = i + 3
        nxt = data.find(b"\x00\x00\x01", start)
        end = len(data) if nxt == -1 else (nxt - 1 if data[nxt - 1] == 0 else nxt)
        if end > start:
            units.append(data[start:end])
        i = nxt
    return units


def nal_type(unit: bytes) -> int:
    return unit[0] & 0x1F


def avcc_to_annexb(extradata: bytes) -> bytes:
    """SPS and PPS of an `avcC` record (MP4 extradata) as Annex B."""
    if len(extradata) < 7 or extradata[0] != 1:
        return b""
    out = bytearray()
    pos = 5
    count = extradata[pos] & 0x1F
    pos += 1
    for table in range(2):
        if table == 1:
            if pos >= len(extradata):
                break
            count = extradata[pos]
            pos += 1
        for _ in range(count):
            size = int.from_bytes(extradata[pos : pos + 2], "big")
            pos += 2
            out += START_CODE + extradata[pos : pos + size]
            pos += size
    return bytes(out)


def parameter_sets(extradata: bytes | None) -> bytes:
    """SPS/PPS from codec extradata (Annex B or avcC) as Annex B, or b""."""
    if not extradata:
        return b""
    if extradata[0] == 1:
        return avcc_to_annexb(extradata)
    units = [u for u in split_annexb(extradata) if nal_type(u) in (NAL_SPS, NAL_PPS)]
    return b"".join(START_CODE + u for u in units)


def find_profile(annexb: bytes) -> H264Profile | None:
    """Profile and level from the first SPS in an Annex B buffer."""
    for unit in split_annexb(annexb):
        if nal_type(unit) == NAL_SPS and len(unit) >= 4:
            return H264Profile(unit[1], unit[2], unit[3])
    return None
