"""Speed, memory and on-disk bitrate of a model (the figures of the core-codec issue).

    python benchmarks/speed.py [--model NAME|FILE] [--threads 1]

Prints: encode and decode real-time factor (compute seconds per audio second) for a
60 s file on the given number of threads, and of encoding with refinement (the
default of `codec encode`) for 10 s of it; peak resident memory of `codec encode`
and `codec decode` on that file; and the size on disk, as kbps, at 1.5, 6 and 12
kbps for a 3 s and a 60 s file (headers, packet framing and CRCs included).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import codec
from codec.model.refine import DEFAULT_REFINE
from peak_memory import command_peak_mib

ROOT = Path(__file__).resolve().parent.parent


def speech_clips() -> np.ndarray:
    """The audio_samples clips joined: real speech, [N] float32 at 16 kHz."""
    return np.concatenate([sf.read(p, dtype="float32")[0] for p in sorted((ROOT / "audio_samples").glob("*.flac"))])


def speech(seconds: float) -> np.ndarray:
    """``seconds`` of real speech: the audio_samples clips, repeated. [1, N] float32 at 16 kHz."""
    return np.resize(speech_clips(), int(seconds * 16000))[None]


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = codec.load_model(args.model)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"model {model.config.name} ({model.fingerprint[:16]}), {params:.2f} M parameters, "
          f"{args.threads} thread(s), torch {torch.__version__}")

    wav60 = torch.from_numpy(speech(60.0))
    levels = model.levels_for_kbps(6)
    codes = model.encode(wav60, 16000, levels=levels)
    t_enc = best_of(lambda: model.encode(wav60, 16000, levels=levels))
    t_dec = best_of(lambda: model.decode(codes))
    print(f"60 s file at 6 kbps: encode RTF {t_enc / 60:.4f} ({60 / t_enc:.0f}x real time), "
          f"decode RTF {t_dec / 60:.4f} ({60 / t_dec:.0f}x real time)")
    wav10 = wav60[:, :10 * 16000]
    t_refine = best_of(lambda: model.encode(wav10, 16000, levels=levels, refine=DEFAULT_REFINE), repeats=1)
    print(f"10 s file at 6 kbps, refined as `codec encode` does ({DEFAULT_REFINE} steps): "
          f"encode RTF {t_refine / 10:.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        wav_path, rvq_path, out_path = (f"{tmp}/in.wav", f"{tmp}/in.rvq", f"{tmp}/out.wav")
        sf.write(wav_path, wav60[0].numpy(), 16000)
        model_args = ["--model", args.model] if args.model else []
        enc_mb = command_peak_mib(["encode", wav_path, rvq_path, "--kbps", "6", "--refine", "0", *model_args])
        dec_mb = command_peak_mib(["decode", rvq_path, out_path, *model_args])
        print(f"peak resident memory, 60 s file (whole process, incl. torch; encode --refine 0): "
              f"encode {enc_mb:.0f} MB, decode {dec_mb:.0f} MB")

    print("size on disk (headers, framing and CRCs included):")
    print(f"{'nominal kbps':>12} {'file':>6} {'bytes':>7} {'kbps on disk':>13} {'overhead':>9}")
    for kbps in (1.5, 6.0, 12.0):
        for seconds in (3.0, 60.0):
            data = codec.compress(speech(seconds), 16000, kbps=kbps, model=model, refine=0)   # same size
            actual = len(data) * 8 / seconds / 1000
            print(f"{kbps:>12.2f} {seconds:>5.0f}s {len(data):>7} {actual:>13.3f} {100 * (actual / kbps - 1):>8.2f}%")


if __name__ == "__main__":
    main()
