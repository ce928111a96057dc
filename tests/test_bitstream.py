"""The .rvq container: round trips, scalable decoding, and every way a stream can be bad."""

from __future__ import annotations

import io
import math
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.bitstream import (HEADER_SIZE, UNKNOWN_LENGTH, BitstreamReader, BitstreamWriter, StreamHeader,
                             decode_bytes, encode_bytes, pack_codes, unpack_codes)
from codec.errors import BitstreamError

FP = bytes.fromhex("0123456789abcdef")


def header(**kw) -> StreamHeader:
    base = dict(fingerprint=FP, sample_rate=16000, hop=320, codebook_bits=10, levels=4, channels=1,
                original_sample_rate=16000, num_samples=None, frames_per_packet=50)
    base.update(kw)
    return StreamHeader(**base)


def random_codes(h: StreamHeader, frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1 << h.codebook_bits, (h.channels, h.levels, frames))


def small_stream(frames: int = 7, fpp: int = 3, **kw) -> tuple[bytes, np.ndarray]:
    """A stream of 3 packets (3+3+1 frames) with a known length: small enough to truncate everywhere."""
    h = header(frames_per_packet=fpp, levels=2, codebook_bits=5, num_samples=frames * 320, **kw)
    codes = random_codes(h, frames)
    return encode_bytes(h, codes, frames * 320), codes


def reseal_header(data: bytes, offset: int, value: int) -> bytes:
    """Set header byte ``offset`` to ``value`` and recompute the header CRC (a well-formed lie)."""
    head = bytearray(data[:HEADER_SIZE - 4])
    head[offset] = value
    return bytes(head) + struct.pack("<I", zlib.crc32(head)) + data[HEADER_SIZE:]


def bad(data: bytes, levels: int | None = None) -> str:
    with pytest.raises(BitstreamError) as e:
        decode_bytes(data, levels)
    message = str(e.value)
    assert "\n" not in message
    return message


# -- round trips ---------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 16), levels=st.integers(1, 32), channels=st.integers(1, 4),
       frames=st.integers(0, 300), fpp=st.integers(1, 100), known=st.booleans(),
       seed=st.integers(0, 2**32 - 1), chunks=st.lists(st.integers(0, 120), max_size=8))
def test_round_trip_through_writer_in_chunks(bits, levels, channels, frames, fpp, known, seed, chunks):
    h = header(codebook_bits=bits, levels=levels, channels=channels, frames_per_packet=fpp,
               num_samples=frames * 320 if known else None)
    codes = random_codes(h, frames, seed)
    out = io.BytesIO()
    writer = BitstreamWriter(out, h)
    start = 0
    for size in chunks + [frames]:  # the last chunk takes whatever is left
        writer.write(codes[:, :, start:start + size])
        start = min(frames, start + size)
    writer.close(frames * 320)

    reader = BitstreamReader(io.BytesIO(out.getvalue()))
    assert reader.header == h
    packets = list(reader)
    assert [p.shape[2] for p in packets] == [fpp] * (frames // fpp) + ([frames % fpp] if frames % fpp else [])
    assert all(p.dtype == np.int64 for p in packets)
    got = np.concatenate(packets, axis=2) if packets else np.zeros((channels, levels, 0), np.int64)
    np.testing.assert_array_equal(got, codes)
    assert reader.num_samples == frames * 320
    # The size is exactly what docs/bitstream.md says.
    packet_bytes = sum(2 + (p.shape[2] * channels * levels * bits + 7) // 8 + 4 for p in packets)
    assert len(out.getvalue()) == HEADER_SIZE + packet_bytes + 14


@pytest.mark.parametrize("k", [1, 2, 5, 8])
def test_scalable_decoding_keeps_exactly_the_first_levels(k):
    h = header(levels=8, channels=2, frames_per_packet=7)
    codes = random_codes(h, 30)
    data = encode_bytes(h, codes, 30 * 320)
    got_header, got, n = decode_bytes(data, levels=k)
    assert got_header.levels == 8 and n == 30 * 320
    assert got.shape == (2, k, 30)
    np.testing.assert_array_equal(got, codes[:, :k])
    reader = BitstreamReader(io.BytesIO(data)).with_levels(k)
    np.testing.assert_array_equal(np.concatenate(list(reader), axis=2), codes[:, :k])


@pytest.mark.parametrize("k", [0, 9, -1])
def test_scalable_decoding_rejects_levels_the_stream_lacks(k):
    data = encode_bytes(header(levels=8), random_codes(header(levels=8), 5), 1600)
    assert "levels" in bad(data, levels=k)


def test_empty_stream_round_trips():
    h = header(channels=3, levels=2)
    got_header, codes, n = decode_bytes(encode_bytes(h, np.zeros((3, 2, 0), np.int64), 0))
    assert got_header == h and codes.shape == (3, 2, 0) and n == 0


def test_header_round_trip_and_fields():
    h = header(codebook_bits=16, levels=255, channels=255, hop=65535, sample_rate=768_000,
               original_sample_rate=44100, num_samples=2**63, frames_per_packet=65535, gain_db=-64.0)
    data = h.to_bytes()
    assert len(data) == HEADER_SIZE == 42 and data[:4] == b"RVQC" and data[4] == 2
    assert StreamHeader.from_bytes(data) == h
    unknown = header(num_samples=None).to_bytes()
    assert unknown[20:28] == b"\xff" * 8
    assert StreamHeader.from_bytes(unknown).num_samples is None
    assert UNKNOWN_LENGTH == 2**64 - 1
    six = header(levels=12, codebook_bits=10)
    assert six.frame_rate == 50 and six.nominal_kbps == 6.0 and six.bits_per_frame == 120


def test_header_layout_is_little_endian_at_documented_offsets():
    data = header(codebook_bits=10, levels=12, channels=2, hop=320, sample_rate=16000,
                  original_sample_rate=44100, num_samples=441000, frames_per_packet=50,
                  gain_db=-7.5).to_bytes()
    assert struct.unpack_from("<BBBBBbHIIQ8sHI", data, 4) == (
        2, 0, 10, 12, 2, -15, 320, 16000, 44100, 441000, FP, 50, zlib.crc32(data[:38]))


@pytest.mark.parametrize("gain", [63.5, -64.0, 0.0, 12.5])
def test_gain_round_trips_in_half_decibel_steps(gain):
    assert StreamHeader.from_bytes(header(gain_db=gain).to_bytes()).gain_db == gain


def test_a_version_1_stream_still_reads_with_no_gain():
    data, codes = small_stream()
    v1 = reseal_header(data, 4, 1)                     # what the codec wrote before the gain byte
    got_header, got_codes, _ = decode_bytes(v1)
    assert got_header.gain_db == 0.0
    np.testing.assert_array_equal(got_codes, codes)
    # version 1 kept byte 9 at zero; a version-1 stream with it set is not ours
    assert "reserved" in bad(reseal_header(v1, 9, 3))


@pytest.mark.parametrize("bad_field", [dict(codebook_bits=0), dict(codebook_bits=17), dict(levels=0),
                                       dict(channels=0), dict(hop=0), dict(sample_rate=0),
                                       dict(original_sample_rate=0), dict(frames_per_packet=0),
                                       dict(fingerprint=b"short"), dict(num_samples=-1),
                                       dict(gain_db=0.25), dict(gain_db=64.0), dict(gain_db=-64.5),
                                       dict(gain_db=float("nan"))])
def test_writer_refuses_invalid_headers(bad_field):
    with pytest.raises(ValueError):
        BitstreamWriter(io.BytesIO(), header(**bad_field))


def test_writer_validates_codes():
    writer = BitstreamWriter(io.BytesIO(), header(levels=2, channels=1, codebook_bits=4))
    for codes in [np.zeros((2, 2, 3), int), np.zeros((1, 3, 3), int), np.zeros((1, 2), int),
                  np.full((1, 2, 3), 16), np.full((1, 2, 3), -1), np.zeros((1, 2, 3), np.float32)]:
        with pytest.raises(ValueError):
            writer.write(codes)
    with pytest.raises(ValueError, match="disagrees"):
        BitstreamWriter(io.BytesIO(), header(num_samples=100)).close(99)


def test_bit_packing_order_matches_the_spec():
    # docs/bitstream.md: 10-bit codes 1 and 1023 -> 0000000001 1111111111 0000 -> 00 7f f0
    assert pack_codes(np.array([1, 1023]), 10) == bytes([0x00, 0x7F, 0xF0])
    assert pack_codes(np.array([[1, 0], [1, 1]]), 1) == bytes([0b10110000])
    assert pack_codes(np.array([0xBEEF]), 16) == b"\xbe\xef"
    np.testing.assert_array_equal(unpack_codes(b"\x00\x7f\xf0", 2, 10), [1, 1023])
    assert unpack_codes(b"", 0, 7).shape == (0,)
    rng = np.random.default_rng(1)
    for bits in range(1, 17):
        codes = rng.integers(0, 1 << bits, 37)
        packed = pack_codes(codes, bits)
        assert len(packed) == math.ceil(37 * bits / 8)
        np.testing.assert_array_equal(unpack_codes(packed, 37, bits), codes)


# -- errors --------------------------------------------------------------------

def test_rejects_what_is_not_a_stream():
    data, _ = small_stream()
    assert "not a .rvq bitstream" in bad(b"RIFF" + data[4:])
    assert "not a .rvq bitstream" in bad(b"hello world, this is plainly text and not a codec stream")
    assert "empty" in bad(b"")


def test_rejects_a_newer_version():
    data, _ = small_stream()
    message = bad(reseal_header(data, 4, 3))
    assert message == ("this bitstream was made by a newer codec, format version 3; "
                       "this codec reads versions up to 2")
    # Even with a header CRC that no longer fits (the layout may have changed), the version wins.
    assert "newer codec, format version 7" in bad(data[:4] + b"\x07" + data[5:])


@pytest.mark.parametrize("offset", [5, 6, 9, 12, 20, 30, 37, 38, 41])
def test_header_crc_catches_any_changed_byte(offset):
    data, _ = small_stream()
    flipped = bytearray(data)
    flipped[offset] ^= 0x10
    assert "header fails its CRC check" in bad(bytes(flipped))


@pytest.mark.parametrize("offset,value,word", [(6, 0, "codebook bits"), (6, 17, "codebook bits"),
                                               (7, 0, "levels"), (8, 0, "channels"), (10, 0, "hop"),
                                               (5, 1, "reserved")])
def test_rejects_absurd_header_fields_even_with_a_valid_crc(offset, value, word):
    data, _ = small_stream()
    data = reseal_header(data, offset, value)
    if offset == 10:  # hop is a u16: zero both bytes
        data = reseal_header(data, 11, 0)
    assert word in bad(data)


def test_rejects_zero_rates_and_packet_size():
    for field in ["sample_rate", "original_sample_rate", "frames_per_packet"]:
        h = header()
        good = h.to_bytes()
        offset = {"sample_rate": 12, "original_sample_rate": 16, "frames_per_packet": 36}[field]
        width = 2 if field == "frames_per_packet" else 4
        head = bytearray(good[:38])
        head[offset:offset + width] = bytes(width)
        with pytest.raises(BitstreamError, match="corrupt bitstream header"):
            StreamHeader.from_bytes(bytes(head) + struct.pack("<I", zlib.crc32(head)))


def test_payload_bit_flips_name_the_right_packet():
    h = header(levels=12, codebook_bits=10, frames_per_packet=50, num_samples=5 * 16000)
    data = encode_bytes(h, random_codes(h, 250), 5 * 16000)
    packet = 2 + 750 + 4  # 50 frames x 12 levels x 10 bits = 750 bytes
    for index in range(5):
        start = HEADER_SIZE + index * packet
        for offset in [0, 1, 2, 400, packet - 5, packet - 1]:  # count, payload, padding end, CRC
            flipped = bytearray(data)
            flipped[start + offset] ^= 0x04
            message = bad(bytes(flipped))
            assert message.startswith(f"corrupt bitstream: packet {index} (at {index:.2f} s)"), message
    crc_of_packet_3 = HEADER_SIZE + 4 * packet - 1
    flipped = bytearray(data)
    flipped[crc_of_packet_3] ^= 1
    assert bad(bytes(flipped)) == "corrupt bitstream: packet 3 (at 3.00 s) fails its CRC check"


def test_truncation_at_every_byte_is_a_bitstream_error():
    data, codes = small_stream()
    assert np.array_equal(decode_bytes(data)[1], codes)
    packet_sizes = [2 + 4 + 4, 2 + 4 + 4, 2 + 2 + 4]  # 3*2*5=30 bits -> 4 bytes; 1 frame: 10 bits -> 2
    assert len(data) == HEADER_SIZE + sum(packet_sizes) + 14
    for end in range(len(data)):
        message = bad(data[:end])
        if 0 < end < HEADER_SIZE:
            assert "ends inside the header" in message
        elif end >= HEADER_SIZE:
            assert message.startswith("truncated bitstream: ends"), (end, message)
    first = HEADER_SIZE + packet_sizes[0]
    assert bad(data[:first + 3]) == "truncated bitstream: ends inside packet 1 (at 0.06 s)"
    assert "ends before packet 3" in bad(data[:len(data) - 14])
    assert "inside the end packet" in bad(data[:len(data) - 1])


def test_streaming_header_without_a_length_still_detects_truncation():
    h = header(num_samples=None, frames_per_packet=4)
    data = encode_bytes(h, random_codes(h, 8), 2560)
    assert decode_bytes(data)[2] == 2560
    assert "truncated bitstream" in bad(data[:-14])


def test_trailing_data_is_an_error():
    data, _ = small_stream()
    assert "trailing data" in bad(data + b"\x00")
    assert "trailing data" in bad(data + data)


def test_end_packet_must_agree_with_the_header():
    data, _ = small_stream()  # header says 7 * 320 samples
    end = struct.pack("<HQ", 0, 7 * 320 + 1)
    forged = data[:-14] + end + struct.pack("<I", zlib.crc32(end))
    assert "end packet" in (message := bad(forged)) and "2241" in message and "2240" in message
    flipped = bytearray(data)
    flipped[-6] ^= 1  # inside the end packet's length: its own CRC fails
    assert "end packet" in bad(bytes(flipped)) and "CRC" in bad(bytes(flipped))


def test_end_packet_cannot_claim_more_audio_than_its_frames():
    h = header(num_samples=None, frames_per_packet=4)
    data = encode_bytes(h, random_codes(h, 8), 2560)
    end = struct.pack("<HQ", 0, 2**40)
    assert "more than" in bad(data[:-14] + end + struct.pack("<I", zlib.crc32(end)))


def test_declared_frame_count_above_frames_per_packet_is_rejected_before_reading():
    data, _ = small_stream(fpp=3)
    count = struct.pack("<H", 4)  # a well-formed packet header that declares too many frames
    forged = data[:HEADER_SIZE] + count + b"\x00" * 3
    assert bad(forged) == ("corrupt bitstream: packet 0 (at 0.00 s) declares 4 frames, "
                           "more than the 3 per packet of its header")


def test_short_packet_must_be_the_last():
    h = header(frames_per_packet=4, levels=1, codebook_bits=8)
    one = encode_bytes(h, random_codes(h, 1), 320)  # one short packet
    packet = one[HEADER_SIZE:-14]
    assert "follows a short packet" in bad(one[:HEADER_SIZE] + packet + packet + one[-14:])


# -- overhead --------------------------------------------------------------------

@pytest.mark.parametrize("seconds,levels,limit", [(10, 12, 6.12), (3, 3, None)])
def test_container_overhead(seconds, levels, limit):
    h = header(levels=levels, codebook_bits=10, hop=320, sample_rate=16000, num_samples=seconds * 16000)
    frames = seconds * 50
    data = encode_bytes(h, random_codes(h, frames), seconds * 16000)
    packets = math.ceil(frames / 50)
    payload = packets * math.ceil(50 * levels * 10 / 8)  # both cases: whole packets only
    assert len(data) == 42 + 6 * packets + payload + 14
    kbps = len(data) * 8 / seconds / 1000
    assert kbps >= h.nominal_kbps
    if limit is not None:
        assert len(data) == 7616 and kbps <= limit


def test_odd_rates_use_the_encoders_rounded_ratio_for_the_length_check():
    """15997 Hz -> 16000 Hz has no affordable exact kernel: the encoder resamples with a rounded
    ratio, and a reader must bound the length with that same ratio (or refuse valid streams)."""
    from codec.rates import resampled_length

    n = 15997 * 200 + 5                                   # 200 s at 15997 Hz
    h = header(levels=2, original_sample_rate=15997, num_samples=n)
    frames = -(-resampled_length(n, 15997, h.sample_rate) // h.hop)
    got_header, codes, num_samples = decode_bytes(encode_bytes(h, random_codes(h, frames), n))
    assert num_samples == n and codes.shape[-1] == frames
