"""A fast subset of the bitstream fuzzer (benchmarks/fuzz_bitstream.py runs 10,000 cases):
every mutated stream decodes or fails with the project's own one-line error."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import codec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from fuzz_bitstream import MUTATIONS, fuzz, with_header_crc  # noqa: E402


def test_fuzzed_streams_decode_or_fail_cleanly(tiny_model_file):
    counts, findings = fuzz(700, seed=1, timeout=10.0, model_path=tiny_model_file)
    assert findings == []
    for kind in MUTATIONS:
        assert counts[kind, "ok"] + counts[kind, "error"] == 100, kind
    assert sum(counts[k, "error"] for k in MUTATIONS) > 600    # most damage is caught


def test_a_forged_original_rate_is_refused_before_any_work(tiny_model_file):
    """A valid header CRC over an absurd rate: decoding would otherwise resample to 4 GHz."""
    data = bytearray(codec.compress(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1,
                                    16000, kbps=1.8, model=str(tiny_model_file)))
    struct.pack_into("<I", data, 16, 0xFFFF_FFFF)
    with pytest.raises(codec.BitstreamError, match="original sample rate 4294967295"):
        codec.decompress(with_header_crc(data), model=str(tiny_model_file))
