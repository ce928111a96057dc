"""How periodic the decoded speech is, band by band: the listening check in figures.

    python benchmarks/harmonics.py [REFS] [--model shipped,FILE,...] [--kbps 6] [--refine 0] [--limit 24]
                                   [--plot harmonics.png]

Spectrograms of this codec's output show the reference's harmonics up to about 1 kHz and
noise where the reference has harmonics above that: voiced speech that sounds rough or
breathy. PESQ and STOI weigh that loss without naming it; this benchmark measures it.

For each voiced frame of the reference (40 ms, every 10 ms; pitch found from the
reference's autocorrelation from 150 Hz to 1 kHz), each signal is band-passed and its normalised
autocorrelation at the reference's pitch period is taken (the best of the lags within
2 samples, so that a pitch off by a fraction of a percent is not counted as noise). 1 is
a perfectly periodic band, 0 one with no periodicity at the pitch. Printed: the mean over
the voiced frames of every file, per band, for the reference, each model's decoding of its
codes at ``--kbps`` and its decoding of the encoder's continuous latents (no quantizer),
which is what the decoder makes of everything the encoder gives it.

The same spectrograms show faint vertical stripes every 20 ms, loudest in pauses: the
decoder's output repeats at the frame rate. A deterministic decoder turns a steady run of
latent frames into a waveform that repeats every hop, and its transposed convolutions
imprint the hop on whatever they make. Printed second: the normalised autocorrelation of
each signal's 2-8 kHz band at a lag of one hop (20 ms), in quiet frames (more than 40 dB
below the loudest) and loud ones (within 20 dB): a buzz at the frame rate where the
reference has none.

Printed third: how far the decoded pitch is from the reference's in the voiced frames
(the period found the same way in each signal's 150 Hz to 1 kHz band, between samples).

``--plot`` draws the reference and each model's decoding of its codes, one stretch of the
first file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import codec  # noqa: E402
from benchmarks.dev_sample import add_sample_arguments, add_scores, print_paired, sample_files  # noqa: E402
from benchmarks.phase_oracle import WINDOW, istft, stft  # noqa: E402
from codec.evaluation.run import load_reference  # noqa: E402
from codec.evaluation.scores import SCORE_RATE  # noqa: E402

FRAME = 640  # 40 ms at 16 kHz: two periods of the lowest pitch searched
HOP = 160
MIN_LAG, MAX_LAG = 40, 267  # pitch from 400 Hz down to 60 Hz
BANDS_HZ = ((0, 1000), (1000, 2000), (2000, 3000), (3000, 4000), (4000, 6000), (6000, 8000))


def band_pass(x: np.ndarray, low: float, high: float, sample_rate: int) -> np.ndarray:
    """``x`` with every frequency outside [low, high) zeroed (a brick wall, by FFT)."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / sample_rate)
    spectrum[(freqs < low) | (freqs >= high)] = 0
    return np.fft.irfft(spectrum, len(x))


def correlation(x: np.ndarray, start: int, lag: int) -> float:
    """Normalised correlation of the frame at ``start`` with the frame ``lag`` samples later."""
    a, b = x[start:start + FRAME], x[start + lag:start + lag + FRAME]
    denominator = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / denominator) if denominator > 0 else 0.0


def pitch_band(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """The band in which the pitch is found. From 150 Hz: below it some recordings carry
    mains hum, which is periodic but not voice; a low voice's pitch still shows in its
    harmonics from the second up."""
    return band_pass(x, 150, 1000, sample_rate)


def first_peak(r: np.ndarray, share: float) -> int:
    """The index of the first peak of the correlations ``r`` (over rising lags) that is
    above ``share`` of the highest: a multiple of the period correlates about as well as the
    period, so the highest alone would often name an octave below."""
    i = int(np.argmax(r > share * r.max()))
    while i + 1 < len(r) and r[i + 1] > r[i]:
        i += 1
    return i


def vertex(r, i: int) -> float:
    """Where the parabola through ``r[i - 1 : i + 2]`` peaks, relative to ``i``: the peak
    placed between lags. 0 at either end of ``r`` or where the three do not bend down."""
    if 0 < i < len(r) - 1 and r[i - 1] - 2 * r[i] + r[i + 1] < 0:
        return 0.5 * (r[i - 1] - r[i + 1]) / (r[i - 1] - 2 * r[i] + r[i + 1])
    return 0.0


def voiced_frames(reference: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
    """(start, pitch period in samples) of each voiced frame of ``reference``: a frame
    within 35 dB of the loudest whose low band repeats with correlation above 0.7."""
    low = pitch_band(reference, sample_rate)
    energy = frame_energies(reference, MAX_LAG)
    frames = []
    for start in HOP * np.flatnonzero(energy > energy.max() * 10 ** -3.5):
        r = np.array([correlation(low, start, lag) for lag in range(MIN_LAG, MAX_LAG + 1)])
        i = first_peak(r, 0.9)
        if r.max() > 0.7 and MIN_LAG + i < MAX_LAG:
            frames.append((int(start), MIN_LAG + i))
    return frames


def periodicity(x: np.ndarray, frames: list[tuple[int, int]], sample_rate: int) -> np.ndarray:
    """Mean over ``frames`` of each band's best correlation within 2 samples of the period.
    Shape: (len(BANDS_HZ),)."""
    out = np.zeros(len(BANDS_HZ))
    for b, (low, high) in enumerate(BANDS_HZ):
        band = band_pass(x, low, high, sample_rate)
        out[b] = np.mean([max(correlation(band, start, lag + d) for d in range(-2, 3))
                          for start, lag in frames])
    return out


def period(x: np.ndarray, start: int, lag: int) -> float:
    """The pitch period of ``x`` (already band-passed to the pitch band) in the frame at
    ``start``, in samples, searched within 8 samples of ``lag`` and placed between samples
    by a parabola through the best correlation and its neighbours."""
    lags = range(max(MIN_LAG, lag - 8), min(MAX_LAG, lag + 8) + 1)
    r = [correlation(x, start, k) for k in lags]
    i = int(np.argmax(r))
    return lags[i] + vertex(r, i)


def periods(x: np.ndarray, frames: list[tuple[int, int]], sample_rate: int) -> np.ndarray:
    """The pitch period of ``x`` in each of ``frames``, near the reference's. Shape: (len(frames),).
    The pitch error of a decoding is ``|periods(decoded) / periods(reference) - 1|``."""
    band = pitch_band(x, sample_rate)
    return np.array([period(band, start, lag) for start, lag in frames])


def frame_rate_buzz(x: np.ndarray, loudness: np.ndarray, hop: int, sample_rate: int) -> tuple[float, float]:
    """Mean correlation of the 2-8 kHz band with itself one ``hop`` later, over the quiet
    and over the loud frames of ``loudness`` (frame energies of the reference, every HOP)."""
    band = band_pass(x, 2000, 8000, sample_rate)
    r = np.array([correlation(band, i * HOP, hop) for i in range(len(loudness))])
    quiet, loud = loudness < loudness.max() * 1e-4, loudness > loudness.max() * 1e-2
    return tuple(float(r[kind].mean()) if kind.any() else np.nan for kind in (quiet, loud))


def frame_energies(x: np.ndarray, after: int) -> np.ndarray:
    """Energy of each FRAME-long frame, every HOP, that has ``after`` samples after it."""
    return np.array([np.dot(x[s:s + FRAME], x[s:s + FRAME]) for s in range(0, len(x) - FRAME - after, HOP)])


def scramble_phase(x: np.ndarray, low: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` with the phase of every STFT bin from ``low`` Hz up replaced by a random one
    (32 ms windows, 8 ms hop): whatever repeats at the frame rate there is gone, and so is
    any other structure in time finer than a window, while the magnitudes stay roughly."""
    spectrum = stft(x)
    above = torch.from_numpy(np.fft.rfftfreq(WINDOW, 1 / sample_rate) >= low)
    phase = torch.from_numpy(np.exp(2j * np.pi * rng.random(spectrum.shape)))
    spectrum[above] = spectrum[above].abs() * phase[above]
    return istft(spectrum, len(x))


def decodings(model: codec.CodecModel, reference: np.ndarray, kbps: float, refine: int) -> dict[str, np.ndarray]:
    """The model's output from its codes at ``kbps`` and from its continuous latents. With
    ``refine`` steps the codes are those ``codec.compress`` refines (as ``codec encode``)."""
    with torch.no_grad():
        x = torch.from_numpy(reference)[None, None].float()
        latent = model.encoder(model.pad_to_hop(x))
        continuous = model.decoder(latent)[0, 0, :len(reference)].numpy()
        if not refine:
            codes = model.quantizer.encode(latent, model.levels_for_kbps(kbps))
            return {f"{kbps:g} kbps": model.decoder(model.quantizer.decode(codes))[0, 0, :len(reference)].numpy(),
                    "continuous": continuous}
    data = codec.compress(reference, SCORE_RATE, kbps=kbps, model=model, refine=refine)
    decoded = codec.decompress(data, model=model, sample_rate=SCORE_RATE)[0][0].numpy()
    return {f"{kbps:g} kbps, refined": decoded[:len(reference)], "continuous": continuous}


def plot(path: str, signals: dict[str, np.ndarray], sample_rate: int, seconds: tuple[float, float]) -> None:
    """Spectrograms, one above the other, of ``seconds`` of each signal, 0 to 8 kHz."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(signals), 1, figsize=(9, 2.4 * len(signals)), sharex=True)
    first, last = (int(t * sample_rate) for t in seconds)
    for ax, (name, x) in zip(np.atleast_1d(axes), signals.items()):
        # 32 ms windows resolve the harmonics of any voice above 60 Hz.
        ax.specgram(x[first:last], NFFT=512, Fs=sample_rate, noverlap=448, cmap="magma", vmin=-130)
        ax.set_ylabel("Hz")
        ax.set_title(name, fontsize=10)
    np.atleast_1d(axes)[-1].set_xlabel(f"seconds from {seconds[0]:g} s")
    fig.tight_layout()
    fig.savefig(path, dpi=64)
    print(f"wrote {path}")


def labels(names: list[str]) -> list[str]:
    """Each model's name in the tables: its file's stem, or folder/stem where stems repeat
    (runs/a/model.safetensors and runs/b/model.safetensors)."""
    stems = [Path(name).stem for name in names]
    return [f"{Path(name).parent.name}/{stem}" if stems.count(stem) > 1 else stem for name, stem in zip(names, stems)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sample_arguments(parser, limit=24, threads=2)
    parser.add_argument("--kbps", type=float, default=6.0)
    parser.add_argument("--refine", type=int, default=0, help="refinement steps (0: the encoder's own codes)")
    parser.add_argument("--plot", default=None, help="PNG of spectrograms of the first file")
    parser.add_argument("--plot-seconds", default="2,4", help="the stretch of the first file to plot")
    parser.add_argument("--scramble-above", default="", help="comma-separated Hz: also score the first "
                        "model's decoding with its phase randomized above each (does PESQ hear the buzz?)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    # --model takes a comma-separated list here; "shipped" (or none) is the default model
    names = (args.model or "shipped").split(",")
    models = {label: codec.load_model(None if name == "shipped" else name) for name, label in zip(names, labels(names))}
    files = sample_files(args.refs, args.limit)
    rows: dict[str, list[np.ndarray]] = {"reference": []}
    buzz: dict[str, list[tuple[float, float]]] = {}
    pitch: dict[str, list[np.ndarray]] = {}
    hop = next(iter(models.values())).hop
    scramble = [float(hz) for hz in args.scramble_above.split(",") if hz]
    scrambled: dict[str, list[tuple[float, float]]] = {}
    rng = np.random.default_rng(0)
    frames_total = 0
    for i, path in enumerate(files):
        reference = load_reference(path)[:int(args.seconds * SCORE_RATE)]
        frames = voiced_frames(reference, SCORE_RATE)
        frames_total += len(frames)
        reference_periods = periods(reference, frames, SCORE_RATE)
        signals = {"reference": reference}
        for name, model in models.items():
            for kind, x in decodings(model, reference, args.kbps, args.refine).items():
                signals[f"{name}, {kind}"] = x
        loudness = frame_energies(reference, hop)
        for name, x in signals.items():
            buzz.setdefault(name, []).append(frame_rate_buzz(x, loudness, hop, SCORE_RATE))
            if frames:
                rows.setdefault(name, []).append(periodicity(x, frames, SCORE_RATE) * len(frames))
                if name != "reference":
                    pitch.setdefault(name, []).append(np.abs(periods(x, frames, SCORE_RATE) / reference_periods - 1))
        if scramble:
            decoded = list(signals.values())[1]            # the first model's decoding of its codes
            variants = {"decoded": decoded} | {f"phase random above {hz:g} Hz": scramble_phase(decoded, hz, SCORE_RATE, rng)
                                               for hz in scramble}
            add_scores(scrambled, reference, variants)
        if i == 0 and args.plot:
            shown = {name: x for name, x in signals.items() if not name.endswith("continuous")}
            plot(args.plot, shown, SCORE_RATE, tuple(float(t) for t in args.plot_seconds.split(",")))

    print(f"{len(files)} files of {args.refs}, first {args.seconds:g} s, {frames_total} voiced frames")
    print("periodicity at the reference's pitch (1 = periodic, 0 = none), by band:")
    width = max(len(name) for name in rows)
    print(f"{'':>{width}} " + " ".join(f"{f'{lo / 1000:g}-{hi / 1000:g} kHz':>9}" for lo, hi in BANDS_HZ))
    for name, values in rows.items():
        mean = np.sum(values, axis=0) / frames_total
        print(f"{name:>{width}} " + " ".join(f"{v:9.3f}" for v in mean))
    print(f"\nframe-rate buzz: correlation of the 2-8 kHz band with itself {hop} samples later")
    print(f"{'':>{width}} {'quiet':>9} {'loud':>9}")
    for name, values in buzz.items():
        quiet, loud = np.nanmean(np.array(values), axis=0)
        print(f"{name:>{width}} {quiet:9.3f} {loud:9.3f}")
    print("\npitch error: |decoded period / reference period - 1| over the voiced frames")
    print(f"{'':>{width}} {'median':>9} {'> 1%':>9} {'> 3%':>9}")
    for name, values in pitch.items():
        errors = np.concatenate(values)
        print(f"{name:>{width}} {np.median(errors):9.2%} {np.mean(errors > 0.01):9.1%} {np.mean(errors > 0.03):9.1%}")
    if scramble:
        print(f"\n{next(iter(models))} at {args.kbps:g} kbps, paired per file:")
        print_paired(scrambled, "decoded")


if __name__ == "__main__":
    main()
