"""The .rvq container: codes ``[channels, levels, frames]`` as a checked byte stream.

A stream is a 42-byte header, then packets of up to ``frames_per_packet`` frames,
then an end packet that gives the exact length of the original audio::

    header   "RVQC" version flags bits levels channels gain hop rate orig_rate
             num_samples fingerprint frames_per_packet crc32          (42 bytes)
    packet   u16 n (1..frames_per_packet) | n frames of codes, `bits` bits each,
             MSB first, zero-padded to a byte | crc32 of count + payload
    end      u16 0 | u64 num_samples | crc32 of those 10 bytes

All integers are little-endian; codes are packed frame-major (frame, channel,
level). Every packet but the last is full, so packet ``i`` starts at frame
``i * frames_per_packet``. docs/bitstream.md is the full specification.

Anything wrong with the bytes raises `BitstreamError` with a one-line message
naming the packet and its time; misuse of the writer raises ValueError.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np

from .errors import BitstreamError
from .rates import resampled_length

MAGIC = b"RVQC"
VERSION = 2
READABLE_VERSIONS = (1, 2)   # version 1 had no gain: its byte 9 is 0, which reads as 0 dB
GAIN_STEP_DB = 0.5           # the header's gain is a signed byte of 0.5 dB steps:
MIN_GAIN_DB, MAX_GAIN_DB = -128 * GAIN_STEP_DB, 127 * GAIN_STEP_DB   # -64 to 63.5 dB
UNKNOWN_LENGTH = 0xFFFF_FFFF_FFFF_FFFF  # num_samples sentinel: "see the end packet"
HEADER_SIZE = 42
# Rates above this are refused: a decoder restores the original rate, and a forged
# header must not make it produce gigasamples per second of output.
MAX_SAMPLE_RATE = 768_000
_HEADER = struct.Struct("<4sBBBBBbHIIQ8sH")  # the 38 bytes the header CRC covers
_COUNT = struct.Struct("<H")
_CRC = struct.Struct("<I")
_END = struct.Struct("<HQ")
_READ_CHUNK = 1 << 20  # read big payloads piecewise so a lying file cannot force a huge allocation


@dataclass(frozen=True)
class StreamHeader:
    """What a decoder needs before the first packet."""

    fingerprint: bytes          # first 8 bytes of the model's fingerprint
    sample_rate: int            # the model's rate
    hop: int                    # samples per frame at the model's rate
    codebook_bits: int
    levels: int                 # levels coded in this stream
    channels: int
    original_sample_rate: int   # the rate of the audio that was encoded
    num_samples: int | None     # its exact length at that rate; None = unknown until the end packet
    frames_per_packet: int = 50
    # the gain the encoder applied before coding (codec.loudness); the decoder divides it out
    gain_db: float = 0.0

    def problem(self) -> str | None:
        """Why these fields cannot be written or decoded, or None if they can."""
        if not isinstance(self.fingerprint, bytes) or len(self.fingerprint) != 8:
            return "the model fingerprint is not 8 bytes"
        checks = [("codebook bits", self.codebook_bits, 1, 16), ("levels", self.levels, 1, 255),
                  ("channels", self.channels, 1, 255), ("hop", self.hop, 1, 0xFFFF),
                  ("sample rate", self.sample_rate, 1, MAX_SAMPLE_RATE),
                  ("original sample rate", self.original_sample_rate, 1, MAX_SAMPLE_RATE),
                  ("frames per packet", self.frames_per_packet, 1, 0xFFFF)]
        for name, value, low, high in checks:
            if not isinstance(value, int) or not low <= value <= high:
                return f"{name} {value} is outside {low}..{high}"
        if not (isinstance(self.gain_db, (int, float)) and MIN_GAIN_DB <= self.gain_db <= MAX_GAIN_DB
                and float(self.gain_db / GAIN_STEP_DB).is_integer()):
            return f"gain {self.gain_db} dB is not a multiple of {GAIN_STEP_DB} dB in {MIN_GAIN_DB}..{MAX_GAIN_DB}"
        n = self.num_samples
        if n is not None and (not isinstance(n, int) or not 0 <= n < UNKNOWN_LENGTH):
            return f"num_samples {n} is not a sample count"
        return None

    def to_bytes(self) -> bytes:
        """The 42-byte header."""
        if (why := self.problem()) is not None:
            raise ValueError(f"invalid stream header: {why}")
        n = UNKNOWN_LENGTH if self.num_samples is None else self.num_samples
        body = _HEADER.pack(MAGIC, VERSION, 0, self.codebook_bits, self.levels, self.channels,
                            round(self.gain_db / GAIN_STEP_DB),
                            self.hop, self.sample_rate, self.original_sample_rate, n,
                            self.fingerprint, self.frames_per_packet)
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> "StreamHeader":
        """Parse and verify a header (``data`` may run on past it); raises BitstreamError."""
        data = bytes(data[:HEADER_SIZE])
        if not data:
            raise BitstreamError("not a .rvq bitstream: the input is empty")
        if data[:4] != MAGIC[:len(data)]:
            raise BitstreamError("not a .rvq bitstream (it does not start with 'RVQC')")
        # The version comes before the CRC: a newer layout may put its CRC elsewhere.
        if len(data) > 4 and data[4] > VERSION:
            raise BitstreamError(f"this bitstream was made by a newer codec, format version {data[4]}; "
                                 f"this codec reads versions up to {VERSION}")
        if len(data) > 4 and data[4] not in READABLE_VERSIONS:
            raise BitstreamError(f"not a .rvq bitstream: unknown format version {data[4]}")
        if len(data) < HEADER_SIZE:
            raise BitstreamError(f"truncated bitstream: ends inside the header "
                                 f"({len(data)} of {HEADER_SIZE} bytes)")
        if zlib.crc32(data[:-4]) != _CRC.unpack_from(data, HEADER_SIZE - 4)[0]:
            raise BitstreamError("corrupt bitstream: the header fails its CRC check")
        (_, version, flags, bits, levels, channels, gain, hop, rate, orig_rate, n, fingerprint,
         fpp) = _HEADER.unpack_from(data)
        if flags or (version == 1 and gain):
            raise BitstreamError("bitstream header sets reserved fields: it was made by an "
                                 "incompatible codec")
        header = cls(fingerprint, rate, hop, bits, levels, channels, orig_rate,
                     None if n == UNKNOWN_LENGTH else n, fpp, gain * GAIN_STEP_DB)
        if (why := header.problem()) is not None:
            raise BitstreamError(f"corrupt bitstream header: {why}")
        return header

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop

    @property
    def bits_per_frame(self) -> int:
        """Code bits in one frame, all channels and levels."""
        return self.channels * self.levels * self.codebook_bits

    @property
    def nominal_kbps(self) -> float:
        """Code bitrate per channel (as the model counts it), without container overhead."""
        return self.levels * self.codebook_bits * self.sample_rate / self.hop / 1000

    def packet_time(self, index: int) -> float:
        """Where packet ``index`` starts, in seconds."""
        return index * self.frames_per_packet * self.hop / self.sample_rate


def pack_codes(codes_frame_major: np.ndarray, bits: int) -> bytes:
    """Codes (any shape, read in C order) as ``bits``-bit MSB-first fields, zero-padded to a byte."""
    flat = np.asarray(codes_frame_major).reshape(-1).astype(np.uint32)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    fields = ((flat[:, None] >> shifts) & 1).astype(np.uint8)  # [count, bits], MSB first
    return np.packbits(fields.reshape(-1)).tobytes()           # packbits pads the tail with zeros


def unpack_codes(data: bytes, count: int, bits: int) -> np.ndarray:
    """The inverse of `pack_codes`: ``count`` codes as int64 ``[count]``."""
    need = (count * bits + 7) // 8
    if len(data) < need:
        raise ValueError(f"{count} codes of {bits} bits need {need} bytes, got {len(data)}")
    fields = np.unpackbits(np.frombuffer(data, np.uint8, count=need), count=count * bits)
    weights = np.int64(1) << np.arange(bits - 1, -1, -1, dtype=np.int64)
    return fields.reshape(count, bits).astype(np.int64) @ weights


class BitstreamWriter:
    """Writes a stream incrementally: memory stays at one packet whatever the length."""

    def __init__(self, f: BinaryIO, header: StreamHeader):
        self.f, self.header = f, header
        f.write(header.to_bytes())
        self._pending = np.zeros((header.channels, header.levels, 0), np.int64)
        self._closed = False

    def write(self, codes: np.ndarray) -> None:
        """Append codes ``[channels, levels, t]`` (any ``t >= 0``); emits every full packet."""
        if self._closed:
            raise ValueError("write() after close()")
        h = self.header
        codes = np.asarray(codes)
        if codes.ndim != 3 or codes.shape[:2] != (h.channels, h.levels):
            raise ValueError(f"codes must be [{h.channels}, {h.levels}, frames], got {list(codes.shape)}")
        if codes.size and not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        if codes.size and (codes.min() < 0 or codes.max() >= 1 << h.codebook_bits):
            raise ValueError(f"codes must lie in [0, {1 << h.codebook_bits})")
        buf = np.concatenate([self._pending, codes.astype(np.int64)], axis=2)
        full = buf.shape[2] - buf.shape[2] % h.frames_per_packet
        for start in range(0, full, h.frames_per_packet):
            self._packet(buf[:, :, start:start + h.frames_per_packet])
        self._pending = buf[:, :, full:]

    def close(self, num_samples: int) -> None:
        """Flush the last partial packet and write the end packet; ``f`` stays open."""
        if self._closed:
            raise ValueError("close() called twice")
        known = self.header.num_samples
        if not (isinstance(num_samples, (int, np.integer)) and 0 <= num_samples < UNKNOWN_LENGTH):
            raise ValueError(f"num_samples {num_samples} is not a sample count")
        if known is not None and num_samples != known:
            raise ValueError(f"num_samples {num_samples} disagrees with the header's {known}")
        if self._pending.shape[2]:
            self._packet(self._pending)
        end = _END.pack(0, int(num_samples))
        self.f.write(end + _CRC.pack(zlib.crc32(end)))
        self._closed = True

    def _packet(self, codes: np.ndarray) -> None:
        body = _COUNT.pack(codes.shape[2]) + pack_codes(codes.transpose(2, 0, 1), self.header.codebook_bits)
        self.f.write(body + _CRC.pack(zlib.crc32(body)))


class BitstreamReader:
    """Reads and verifies a stream; iterate for each packet's codes ``[channels, k, n]``."""

    def __init__(self, f: BinaryIO, levels: int | None = None, conceal: bool = False):
        self.f = f
        self.header = StreamHeader.from_bytes(_read(f, HEADER_SIZE))
        self.num_samples: int | None = self.header.num_samples
        self._keep = self._check_levels(levels)
        # With ``conceal``, a packet that fails its CRC is yielded as codes of -1 (to be
        # filled in by the decoder) instead of stopping the stream; ``damaged`` lists
        # (packet index, start time in seconds, frames) of each.
        self.conceal = conceal
        self.damaged: list[tuple[int, float, int]] = []
        self._pushback = b""            # bytes read ahead, given back to be read again
        self._last = b""

    def _check_levels(self, levels: int | None) -> int:
        if levels is None:
            return self.header.levels
        if not 1 <= levels <= self.header.levels:
            raise BitstreamError(f"cannot decode {levels} levels: this bitstream holds "
                                 f"1 to {self.header.levels}")
        return levels

    def with_levels(self, levels: int | None) -> "BitstreamReader":
        """This reader (before iterating), keeping only the first ``levels`` levels."""
        self._keep = self._check_levels(levels)
        return self

    def __iter__(self) -> Iterator[np.ndarray]:
        h = self.header
        index, frames = 0, 0
        # With the length in the header, every packet's frame count is known in advance, so
        # concealment can step over a packet whose count field itself is damaged.
        total = (None if h.num_samples is None
                 else -(-resampled_length(h.num_samples, h.original_sample_rate, h.sample_rate) // h.hop))
        while True:
            where = f"packet {index} (at {h.packet_time(index):.2f} s)"
            count = self._take(2)
            if len(count) < 2:
                raise BitstreamError(f"truncated bitstream: ends {'inside' if count else 'before'} "
                                     f"{where} without an end packet")
            n = _COUNT.unpack(count)[0]
            if n == 0:
                break
            if frames % h.frames_per_packet:  # the previous packet was short, so it had to be the last
                raise BitstreamError(f"corrupt bitstream: {where} follows a short packet")
            plausible = n <= h.frames_per_packet
            if not plausible and not self.conceal:
                raise BitstreamError(f"corrupt bitstream: {where} declares {n} frames, "
                                     f"more than the {h.frames_per_packet} per packet of its header")
            codes = self._packet(n, count, where) if plausible else None
            if codes is None:
                if not self.conceal:
                    raise BitstreamError(f"corrupt bitstream: {where} fails its CRC check")
                # A packet that fails its CRC may have a damaged count and hold the frames the
                # length implies: concealment then gives its bytes back and steps over those.
                expected = None if total is None else min(h.frames_per_packet, total - frames)
                recount = expected is not None and 0 < expected != n
                if recount or not plausible:
                    if plausible:
                        self._unread()
                    # the count the length implies, or (unknown length) a full packet
                    n = h.frames_per_packet if expected is None or expected <= 0 else expected
                    self._skip(n, where)
                self.damaged.append((index, h.packet_time(index), n))
                codes = np.full((h.channels, self._keep, n), -1, np.int64)
            yield codes
            index, frames = index + 1, frames + n
        self.num_samples = self._end(count, index, frames)

    def _take(self, size: int) -> bytes:
        """``size`` bytes of the stream, bytes given back by ``_unread`` first."""
        head, self._pushback = self._pushback[:size], self._pushback[size:]
        return head + _read(self.f, size - len(head)) if len(head) < size else head

    def _packet(self, n: int, count: bytes, where: str) -> np.ndarray | None:
        """Read a packet of ``n`` frames (its count already read): its codes
        ``[channels, keep, n]``, or None if it fails its CRC. Raises on truncation."""
        h = self.header
        size = (n * h.bits_per_frame + 7) // 8  # bounded by verified header fields
        payload, crc = self._take(size), self._take(4)
        if len(payload) < size or len(crc) < 4:
            raise BitstreamError(f"truncated bitstream: ends inside {where}")
        if zlib.crc32(payload, zlib.crc32(count)) != _CRC.unpack(crc)[0]:
            self._last = payload + crc        # kept only for a damaged packet, for _unread
            return None
        codes = unpack_codes(payload, n * h.channels * h.levels, h.codebook_bits)
        codes = codes.reshape(n, h.channels, h.levels).transpose(1, 2, 0)
        return np.ascontiguousarray(codes[:, :self._keep])

    def _unread(self) -> None:
        """Give back the bytes of the last packet that failed its CRC."""
        self._pushback = self._last + self._pushback

    def _skip(self, n: int, where: str) -> None:
        """Step over a damaged packet of ``n`` frames (its count already read)."""
        size = (n * self.header.bits_per_frame + 7) // 8 + 4
        if len(self._take(size)) < size:
            raise BitstreamError(f"truncated bitstream: ends inside {where}")

    def _end(self, count: bytes, index: int, frames: int) -> int:
        """Verify the end packet (its count already read) and what follows; returns num_samples."""
        h = self.header
        where = f"the end packet (at {h.packet_time(index):.2f} s)"
        rest = self._take(12)
        if len(rest) < 12:
            raise BitstreamError(f"truncated bitstream: ends inside {where}")
        if zlib.crc32(rest[:8], zlib.crc32(count)) != _CRC.unpack_from(rest, 8)[0]:
            raise BitstreamError(f"corrupt bitstream: {where} fails its CRC check")
        n = struct.unpack_from("<Q", rest)[0]
        if n == UNKNOWN_LENGTH:
            raise BitstreamError(f"corrupt bitstream: {where} does not give the audio length")
        if h.num_samples is not None and n != h.num_samples:
            raise BitstreamError(f"corrupt bitstream: {where} gives {n} samples "
                                 f"but the header gives {h.num_samples}")
        # The frames cover the audio (rounded up to a frame), so a longer claim is a lie that
        # would make a decoder pad with an unbounded amount of silence.
        if resampled_length(n, h.original_sample_rate, h.sample_rate) > (frames + 1) * h.hop:
            raise BitstreamError(f"corrupt bitstream: {where} gives {n} samples, more than "
                                 f"its {frames} frames can hold")
        if self._take(1):
            raise BitstreamError(f"corrupt bitstream: trailing data after {where}")
        return n


def _read(f: BinaryIO, size: int) -> bytes:
    """``size`` bytes, or fewer only at the end of the input.

    Reads in bounded chunks, so a header that declares huge packets cannot force a huge
    allocation before the data is there, and loops because raw files and pipes may
    return short reads before their end.
    """
    parts, left = [], size
    while left:
        part = f.read(min(left, _READ_CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def encode_bytes(header: StreamHeader, codes: np.ndarray, num_samples: int) -> bytes:
    """A complete stream of ``codes [channels, levels, frames]``."""
    out = io.BytesIO()
    writer = BitstreamWriter(out, header)
    writer.write(codes)
    writer.close(num_samples)
    return out.getvalue()


def decode_bytes(data: bytes, levels: int | None = None) -> tuple[StreamHeader, np.ndarray, int]:
    """``(header, codes [channels, k, frames] int64, num_samples)`` of a complete stream."""
    reader = BitstreamReader(io.BytesIO(data), levels)
    packets = list(reader)
    h = reader.header
    codes = (np.concatenate(packets, axis=2) if packets
             else np.zeros((h.channels, reader._keep, 0), np.int64))
    assert reader.num_samples is not None  # set by the end packet
    return h, codes, reader.num_samples
