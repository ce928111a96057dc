"""Streaming figures: memory against file length, real-time factor and time per 20 ms frame.

    python benchmarks/streaming.py [--minutes 1 60] [--model NAME|FILE] [--threads 1]

Prints, for a file of each length in ``--minutes`` (real speech from audio_samples/,
repeated): the peak resident memory of `codec encode` and of `codec decode`, each in
a fresh process (benchmarks/peak_memory.py), and how long each took. Flat memory
across lengths is the point: both commands read, code and write incrementally.
Encoding runs with ``--refine 0``, the network's own codes: refinement (the default
of `codec encode`) works a 1 s block at a time and is timed by benchmarks/speed.py.

Then, in this process on ``--threads`` threads: the real-time factor of streaming
encoding and decoding with 20 ms chunks (320 samples at 16 kHz, one frame), and the
processing time per frame (mean and 99th percentile over 30 s of audio). The
algorithmic latency is one frame: codes for a frame are known once its last sample
has arrived, and the decoder has no look-ahead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import codec  # noqa: E402
from peak_memory import command_peak_mib  # noqa: E402
from speed import speech, speech_clips  # noqa: E402


def write_long_speech(path: str, minutes: float) -> None:
    """A 16 kHz 16-bit WAV of ``minutes`` of speech, written a block at a time."""
    clips = speech_clips()
    total = int(minutes * 60 * 16000)
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as f:
        written = 0
        while written < total:
            block = clips[: total - written]
            f.write(block)
            written += len(block)


def timed_peak(args: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    peak = command_peak_mib(args)
    return peak, time.perf_counter() - start


def frame_times(model, seconds: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame processing times (s) of a streaming encoder and decoder fed 20 ms chunks."""
    wav = torch.from_numpy(speech(seconds))
    encoder, decoder = model.streaming_encoder(kbps=6), model.streaming_decoder()
    enc, dec = [], []
    for start in range(0, wav.shape[-1] - model.hop + 1, model.hop):
        t0 = time.perf_counter()
        codes = encoder.push(wav[:, start:start + model.hop])
        t1 = time.perf_counter()
        decoder.push(codes)
        t2 = time.perf_counter()
        enc.append(t1 - t0)
        dec.append(t2 - t1)
    return np.array(enc), np.array(dec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 60.0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = codec.load_model(args.model)
    model_args = ["--model", args.model] if args.model else []
    print(f"model {model.config.name} ({model.fingerprint[:16]}), {args.threads} thread(s), torch {torch.__version__}")

    print(f"{'file':>8} {'encode peak':>12} {'encode time':>12} {'decode peak':>12} {'decode time':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            wav, rvq, out = f"{tmp}/in.wav", f"{tmp}/in.rvq", f"{tmp}/out.wav"
            write_long_speech(wav, minutes)
            enc_mb, enc_s = timed_peak(["encode", wav, rvq, "--kbps", "6", "--refine", "0", "--force", *model_args])
            dec_mb, dec_s = timed_peak(["decode", rvq, out, "--force", *model_args])
            print(f"{minutes:>6g} m {enc_mb:>9.0f} MB {enc_s:>10.0f} s {dec_mb:>9.0f} MB {dec_s:>10.0f} s", flush=True)

    enc, dec = frame_times(model)
    frame = model.hop / model.sample_rate
    print(f"streaming with {1000 * frame:.0f} ms chunks (one frame), 6 kbps, {len(enc)} frames:")
    for name, times in (("encode", enc), ("decode", dec)):
        print(f"  {name}: RTF {times.mean() / frame:.3f}, {1000 * times.mean():.2f} ms per frame "
              f"(99th percentile {1000 * np.percentile(times, 99):.2f} ms)")
    print(f"algorithmic latency: {1000 * frame:.0f} ms (one frame; the decoder has no look-ahead)")


if __name__ == "__main__":
    main()
