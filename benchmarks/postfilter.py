"""Would a pitch postfilter, as speech codecs have, raise the decoder's PESQ-WB?

    python benchmarks/postfilter.py [REFS] [--model NAME|FILE] [--kbps 6] [--gains 0.3,0.5,0.7]
                                    [--below 1000,2000,4000] [--refine 0] [--limit 24]

The decoder's voiced speech is less periodic than the reference's: noise fills the
valleys between its harmonics (benchmarks/harmonics.py). AMR-WB, EVS and Opus face the same
fault in their own decoders and answer it with a postfilter that deepens those valleys at
the pitch the decoded audio itself shows: no bits are spent. This measures what one would give.

For each 10 ms frame of the decoding, the pitch period T (2.5 to 20 ms, between samples)
and the normalised correlation r at T are found in a 24 ms window centred on the frame.
The frame is then moved toward ``0.25 x[n - T] + 0.5 x[n] + 0.25 x[n + T]``, which keeps
the harmonics of T and cancels what lies midway between them, by a gain ``g * (r - 0.5) / 0.5``
(0 below r = 0.5: unvoiced frames are left alone), the change low-passed to ``--below`` Hz.
Frames are joined by triangular cross-fades. It looks one period ahead (up to 20 ms), so it
would add that much latency to a streaming decoder; here it is scored before paying for that.

Printed: PESQ-WB and STOI of the decoding (codes at ``--kbps``, refined with ``--refine``) and of each
postfiltered version, paired per file against the decoding.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.dev_sample import add_sample_arguments, add_scores, load_sample, print_paired  # noqa: E402
from benchmarks.harmonics import band_pass, decodings, first_peak, vertex  # noqa: E402
from codec.evaluation.run import load_reference  # noqa: E402
from codec.evaluation.scores import SCORE_RATE  # noqa: E402

HOP = 160                   # 10 ms
WINDOW = 384                # 24 ms: two periods of a 12 ms (83 Hz) pitch
MIN_LAG, MAX_LAG = 40, 320  # 400 Hz down to 50 Hz
VOICED = 0.5                # correlation at which the filter starts to act


def pitch_track(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 10 ms frame of ``x``: the pitch period in samples (between samples, by a parabola
    through the peak) and the normalised correlation at it. Shapes: ``(len(x) // HOP,)`` twice."""
    frames = len(x) // HOP
    lags = np.arange(MIN_LAG, MAX_LAG + 1)
    pad = MAX_LAG + WINDOW
    padded = np.concatenate([np.zeros(pad), x, np.zeros(pad)])
    period, strength = np.zeros(frames), np.zeros(frames)
    for f in range(frames):
        end = pad + f * HOP + HOP // 2 + WINDOW // 2
        a = padded[end - WINDOW:end]
        if a @ a < 1e-10:
            continue
        earlier = padded[end - WINDOW - lags[:, None] + np.arange(WINDOW)[None]]
        r = earlier @ a / np.sqrt((a @ a) * (earlier * earlier).sum(1) + 1e-12)
        i = first_peak(r, 0.85)
        period[f], strength[f] = lags[i] + vertex(r, i), r[i]
    return period, strength


def delayed(x: np.ndarray, at: np.ndarray, lag: float) -> np.ndarray:
    """``x[n - lag]`` for each sample index ``n`` of ``at``, for a lag between samples (linear
    interpolation; negative: ahead), with ``x`` zero outside its ends."""
    def sample(i: np.ndarray) -> np.ndarray:
        return np.where((i >= 0) & (i < len(x)), x[np.clip(i, 0, len(x) - 1)], 0.0)
    k = int(np.floor(lag))
    return (1 - (lag - k)) * sample(at - k) + (lag - k) * sample(at - k - 1)


def postfilter(x: np.ndarray, period: np.ndarray, strength: np.ndarray, gain: float, below: float) -> np.ndarray:
    """``x`` with the valleys between its harmonics deepened, frame by frame (see the module's text)."""
    change = np.zeros_like(x)
    n = np.arange(len(x))
    for f, (lag, r) in enumerate(zip(period, strength)):
        g = gain * np.clip((r - VOICED) / (1 - VOICED), 0, 1)
        if g == 0:
            continue
        centre = f * HOP + HOP // 2
        span = slice(max(0, centre - HOP), min(len(x), centre + HOP))
        fade = 1 - np.abs(n[span] - centre) / HOP
        comb = 0.25 * delayed(x, n[span], lag) + 0.5 * x[span] + 0.25 * delayed(x, n[span], -lag)
        change[span] += fade * g * (comb - x[span])
    return x + band_pass(change, 0, below, SCORE_RATE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sample_arguments(parser, limit=24, threads=2)
    parser.add_argument("--kbps", type=float, default=6.0)
    parser.add_argument("--refine", type=int, default=0, help="refinement steps (0: the encoder's own codes)")
    parser.add_argument("--gains", default="0.3,0.5,0.7")
    parser.add_argument("--below", default="1000,2000,4000", help="comma-separated Hz")
    args = parser.parse_args()
    model, files = load_sample(args)

    scores: dict[str, list[tuple[float, float]]] = {}
    for path in files:
        reference = load_reference(path)[:int(args.seconds * SCORE_RATE)]
        decoded = next(iter(decodings(model, reference, args.kbps, args.refine).values())).astype(np.float64)
        track = pitch_track(decoded)
        conditions = {"decoded": decoded}
        for gain in (float(g) for g in args.gains.split(",")):
            for below in (float(hz) for hz in args.below.split(",")):
                conditions[f"gain {gain:g}, below {below:g} Hz"] = postfilter(decoded, *track, gain, below)
        add_scores(scores, reference, {name: x.astype(np.float32) for name, x in conditions.items()})

    print(f"{len(files)} files of {args.refs}, first {args.seconds:g} s, {args.kbps:g} kbps, {args.refine} refinement steps, "
          f"model {model.config.name} ({model.fingerprint[:16]})")
    print_paired(scores, "decoded")


if __name__ == "__main__":
    main()
