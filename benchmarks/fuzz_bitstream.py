"""Fuzz the .rvq reader and decoder with mutations of valid streams.

    python benchmarks/fuzz_bitstream.py [--cases 10000] [--seed 0] [--timeout 5]

Each case takes a valid stream (a small model, random audio of random length,
channels and bitrate), damages it one way, walks it as `codec info` does, and
decodes it as `codec decode` does, with and without ``--conceal``. Allowed outcomes:
a correct decode, or the project's own error (CodecError) with a message. Anything
else is a finding: another exception, a case slower than ``--timeout`` seconds,
or decoded audio whose size is not bounded by the input's size.

Mutations:
  flip        1 to 8 random bit flips anywhere
  truncate    cut at a random byte
  extend      random bytes appended
  splice      a random byte range replaced by random bytes
  header      one header field set to an edge value, with the header CRC recomputed
              so that the reader has to check the field itself
  count       a packet's frame count changed, with its CRC recomputed
  length      the end packet's length changed, with its CRC recomputed

Prints a table of outcomes per mutation and every finding; exits non-zero if any.
"""

from __future__ import annotations

import argparse
import io
import random
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import codec  # noqa: E402
from codec.bitstream import HEADER_SIZE, BitstreamReader  # noqa: E402
from codec.coding import DecodedStream  # noqa: E402
from codec.model import CodecConfig, CodecModel, load_model, save_model  # noqa: E402

MUTATIONS = ("flip", "truncate", "extend", "splice", "header", "count", "length")
# Header fields (struct offsets within the 38 CRC-covered bytes) and edge values to try.
HEADER_FIELDS = {
    "version": (4, "B", [0, 1, 3, 255]), "flags": (5, "B", [1, 255]), "bits": (6, "B", [0, 1, 16, 17, 255]),
    "levels": (7, "B", [0, 1, 33, 255]), "channels": (8, "B", [0, 2, 255]), "gain": (9, "b", [-128, -1, 1, 127]),
    "hop": (10, "H", [0, 1, 0xFFFF]), "rate": (12, "I", [0, 1, 8000, 0xFFFF_FFFF]),
    "orig_rate": (16, "I", [0, 1, 7, 96000, 0xFFFF_FFFF]),
    "num_samples": (20, "Q", [0, 1, 2 ** 40, 2 ** 64 - 2]), "frames_per_packet": (36, "H", [0, 1, 0xFFFF]),
}


def tiny_model(path: Path) -> Path:
    """A small random model, saved so that it has a fingerprint."""
    torch.manual_seed(0)
    config = CodecConfig(name="fuzz", channels=4, strides=(2, 4, 5, 8), dilations=(1,), latent_dim=16,
                         levels=8, codebook_bits=6)
    save_model(CodecModel(config).eval(), path)
    return path


def valid_stream(model, rng: random.Random) -> bytes:
    channels = rng.choice([1, 1, 2, 3])
    seconds = rng.choice([0.01, 0.3, 1.0, 2.2])
    rate = rng.choice([16000, 16000, 8000, 44100])
    wav = np.random.default_rng(rng.randrange(2 ** 32)).standard_normal((channels, max(1, int(seconds * rate))))
    kbps = rng.choice([0.3, 0.6, 1.5, 2.4])
    return codec.compress((0.1 * wav).astype(np.float32), rate, kbps=kbps, model=model, refine=0)


def with_header_crc(data: bytearray) -> bytes:
    struct.pack_into("<I", data, 38, zlib.crc32(bytes(data[:38])))
    return bytes(data)


def _packet_offsets(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each complete data packet of a valid stream."""
    h = BitstreamReader(io.BytesIO(data)).header
    offsets, at = [], HEADER_SIZE
    while at + 2 <= len(data):
        n = struct.unpack_from("<H", data, at)[0]
        if n == 0:
            break
        size = 2 + (n * h.bits_per_frame + 7) // 8 + 4
        offsets.append((at, size))
        at += size
    return offsets


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    b = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == "truncate":
        return bytes(b[: rng.randrange(len(b))])
    if kind == "extend":
        return bytes(b) + rng.randbytes(rng.choice([1, 2, 14, 100, 5000]))
    if kind == "splice":
        i = rng.randrange(len(b))
        j = min(len(b), i + rng.randint(1, 64))
        b[i:j] = rng.randbytes(rng.randint(0, 64))
        return bytes(b)
    if kind == "header":
        offset, fmt, values = HEADER_FIELDS[rng.choice(sorted(HEADER_FIELDS))]
        struct.pack_into("<" + fmt, b, offset, rng.choice(values))
        return with_header_crc(b)
    if kind == "count":
        packets = _packet_offsets(data)
        if not packets:
            return mutate(data, "flip", rng)
        at, size = rng.choice(packets)
        struct.pack_into("<H", b, at, rng.choice([1, 2, 49, 51, 0xFFFF]))
        struct.pack_into("<I", b, at + size - 4, zlib.crc32(bytes(b[at:at + size - 4])))
        return bytes(b)
    if kind == "length":
        end = len(b) - 14                       # u16 0 | u64 num_samples | crc32
        value = rng.choice([0, 1, struct.unpack_from("<Q", b, end + 2)[0] + rng.choice([-400, 400, 2 ** 40]),
                            2 ** 64 - 1])
        struct.pack_into("<Q", b, end + 2, max(0, value) % 2 ** 64)
        struct.pack_into("<I", b, end + 10, zlib.crc32(bytes(b[end:end + 10])))
        return bytes(b)
    raise ValueError(kind)


def run_case(data: bytes, model) -> tuple[str, str]:
    """('ok' or 'error', the same with concealment): how a plain decode and one with
    `--conceal` ended; 'error' is a CodecError. Raises anything else."""
    concealed = _decode(data, model, conceal=True)
    plain = _decode(data, model, conceal=False)
    if plain != "error" and concealed == "error":
        raise AssertionError("concealment failed on a stream that decodes without it")
    return plain, concealed


def _decode(data: bytes, model, conceal: bool) -> str:
    try:
        reader = BitstreamReader(io.BytesIO(data), conceal=conceal)     # as `codec info` walks it
        for _ in reader:
            pass
        stream = DecodedStream(io.BytesIO(data), model, conceal=conceal)
        wav, rate = torch.cat(list(stream), dim=-1), stream.rate
    except codec.CodecError as e:
        if not str(e) or "\n" in str(e):
            raise AssertionError(f"error message is not one line: {str(e)!r}") from None
        return "error"
    # The decoded audio is bounded by what the stream can hold: its frames at most.
    h = reader.header
    frames = (len(data) * 8) // max(1, h.bits_per_frame) + 1
    limit = h.channels * (frames + 1) * h.hop * rate / h.sample_rate + 1
    if wav.numel() > limit:
        raise AssertionError(f"decoded {wav.numel()} samples from {len(data)} bytes (limit {limit:.0f})")
    return "ok"


def fuzz(cases: int, seed: int = 0, timeout: float = 5.0, model_path: Path | None = None,
         progress: bool = False) -> tuple[Counter, list[str]]:
    """Run ``cases`` mutations; returns (outcome counts per (mutation, outcome), findings)."""
    import tempfile

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(model_path or tiny_model(Path(tmp) / "fuzz.safetensors"))
    sources = [valid_stream(model, rng) for _ in range(16)]
    counts: Counter = Counter()
    findings: list[str] = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cases, unit="case")
    for case in range(cases):
        kind = MUTATIONS[case % len(MUTATIONS)]
        data = mutate(rng.choice(sources), kind, rng)
        start = time.perf_counter()
        try:
            outcome, concealed = run_case(data, model)
            counts[kind, f"conceal-{concealed}"] += 1
        except Exception as e:  # noqa: BLE001 - every other exception is a finding
            outcome = "finding"
            where = traceback.extract_tb(e.__traceback__)[-1]
            findings.append(f"case {case} ({kind}): {type(e).__name__}: {e} at {where.filename}:{where.lineno}")
        elapsed = time.perf_counter() - start
        if elapsed > timeout:
            findings.append(f"case {case} ({kind}): took {elapsed:.1f} s")
        counts[kind, outcome] += 1
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return counts, findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    counts, findings = fuzz(args.cases, args.seed, args.timeout, progress=True)
    print(f"{args.cases} cases in {time.perf_counter() - start:.0f} s (seed {args.seed})")
    print(f"{'mutation':>10} {'decoded':>8} {'error':>8} {'finding':>8}   with --conceal: {'decoded':>8} {'error':>8}")
    for kind in MUTATIONS:
        print(f"{kind:>10} {counts[kind, 'ok']:>8} {counts[kind, 'error']:>8} {counts[kind, 'finding']:>8}"
              f"   {'':>15} {counts[kind, 'conceal-ok']:>8} {counts[kind, 'conceal-error']:>8}")
    for line in findings:
        print(line)
    print(f"{len(findings)} findings")
    sys.exit(1 if findings else 0)


if __name__ == "__main__":
    main()
