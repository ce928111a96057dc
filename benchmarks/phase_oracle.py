"""What PESQ-WB hears in the decoder's output: its band envelope, or the fine structure and phase?

    python benchmarks/phase_oracle.py [REFS] [--model NAME|FILE] [--kbps 6] [--below 500,1000,2000]
        [--shift-below 1000,2000,8000] [--shift-frames 1,3]

Each file of a sample of REFS (first ``--seconds``) is decoded from the model's codes at
``--kbps`` (unrefined), and oracle hybrids of the decoding and the reference are scored
against the reference. All go through the same STFT (32 ms Hann windows, 8 ms hop) and
back, so the analysis and synthesis cost every row alike:

- the decoding's fine structure under the reference's band envelope (the energy of each
  of 40 mel bands in each frame), and the reference's fine structure under the decoding's
  envelope: which of the two costs more;
- the decoding with the reference's STFT phase below each of ``--below`` Hz (its own
  magnitudes kept), and with the reference's whole spectrum there: what a decoder that
  followed the reference's phase in the low band would score;
- with ``--shift-below``: the decoding with its band below each of those Hz delayed, frame by
  frame, by the shift (within +-5 ms, whole samples) that best matches the reference's, one
  shift for every ``--shift-frames`` STFT frames: what a side channel of a few bits a frame
  that moved the decoder's pitch pulses onto the reference's could give.

Printed: mean PESQ-WB and STOI of each, and its difference from the decoding, paired per
file (mean ± standard error).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torchaudio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.dev_sample import add_sample_arguments, add_scores, load_sample, print_paired  # noqa: E402
from codec.evaluation.run import load_reference  # noqa: E402

WINDOW, HOP, SAMPLE_RATE, ENVELOPE_BANDS = 512, 128, 16000, 40
FREQUENCIES = torch.from_numpy(np.fft.rfftfreq(WINDOW, 1 / SAMPLE_RATE))     # of the STFT's bins, Hz


def stft(x: np.ndarray) -> torch.Tensor:
    """``[N] -> [WINDOW / 2 + 1, frames]`` complex."""
    return torch.stft(torch.from_numpy(x).double(), WINDOW, HOP, window=torch.hann_window(WINDOW, dtype=torch.float64),
                      return_complex=True)


def istft(spectrum: torch.Tensor, length: int) -> np.ndarray:
    return torch.istft(spectrum, WINDOW, HOP, window=torch.hann_window(WINDOW, dtype=torch.float64),
                       length=length).float().numpy()


def with_envelope(source: np.ndarray, envelope_of: np.ndarray) -> np.ndarray:
    """``source`` with each frame's energy in each of ENVELOPE_BANDS mel bands set to
    ``envelope_of``'s: source's fine structure under the other's envelope."""
    filters = torchaudio.functional.melscale_fbanks(WINDOW // 2 + 1, 0.0, SAMPLE_RATE / 2, ENVELOPE_BANDS,
                                                    SAMPLE_RATE).double()    # [bins, ENVELOPE_BANDS]
    ours, theirs = stft(source), stft(envelope_of)
    band_energy = lambda s: (s.abs() ** 2).T @ filters + 1e-12                   # noqa: E731  [frames, bands]
    gain = torch.sqrt(band_energy(theirs) / band_energy(ours))
    # each bin's gain: its bands' gains, weighted as the filters weight the bin
    bin_gain = (gain @ filters.T) / (filters.sum(dim=1) + 1e-9)
    return istft(ours * bin_gain.T, len(source))


def with_low_band(decoded: np.ndarray, reference: np.ndarray, below_hz: float, phase_only: bool) -> np.ndarray:
    """``decoded`` with the reference's STFT phase (or whole spectrum) below ``below_hz``."""
    ours, theirs = stft(decoded), stft(reference)
    low = FREQUENCIES < below_hz
    ours[low] = ours[low].abs() * torch.exp(1j * theirs[low].angle()) if phase_only else theirs[low]
    return istft(ours, len(decoded))


MAX_SHIFT = 80      # samples: 5 ms, most of a pitch period


def with_low_band_shifted(decoded: np.ndarray, reference: np.ndarray, below_hz: float, frames: int) -> np.ndarray:
    """``decoded`` with its STFT below ``below_hz`` delayed, ``frames`` frames at a time, by the
    whole-sample shift that brings it closest to the reference's (the largest real part of their
    cross-spectrum there)."""
    ours, theirs = stft(decoded), stft(reference)
    low = FREQUENCIES < below_hz
    shifts = torch.arange(-MAX_SHIFT, MAX_SHIFT + 1, dtype=torch.float64)
    radians = 2 * np.pi * FREQUENCIES[low] / SAMPLE_RATE                        # per sample of delay
    match = ((theirs[low] * ours[low].conj()).T @ torch.exp(1j * radians[:, None] * shifts)).real
    group = torch.arange(match.shape[0]) // frames                        # [frames] -> its group
    per_group = torch.zeros(int(group[-1]) + 1, len(shifts), dtype=torch.float64).index_add_(0, group, match)
    best = shifts[per_group.argmax(dim=1)][group]                         # [frames]
    ours[low] = ours[low] * torch.exp(-1j * radians[:, None] * best)
    return istft(ours, len(decoded))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sample_arguments(parser, limit=24, threads=2)
    parser.add_argument("--kbps", type=float, default=6.0)
    parser.add_argument("--below", default="500,1000,2000", help="comma-separated Hz")
    parser.add_argument("--shift-below", default="", help="comma-separated Hz; none by default")
    parser.add_argument("--shift-frames", default="1", help="STFT frames (8 ms) a shift, comma-separated")
    args = parser.parse_args()
    model, files = load_sample(args)
    below = [float(hz) for hz in args.below.split(",")]

    scores: dict[str, list[tuple[float, float]]] = {}
    for path in files:
        reference = load_reference(path)[:int(args.seconds * SAMPLE_RATE)]
        with torch.no_grad():
            decoded = model.decode_batch(model.encode_batch(
                torch.from_numpy(reference)[None, None], model.levels_for_kbps(args.kbps), beam=1))
        decoded = decoded[0, 0, :len(reference)].numpy()
        conditions = {
            "decoded": istft(stft(decoded), len(decoded)),
            "decoded fine structure, reference envelope": with_envelope(decoded, reference),
            "reference fine structure, decoded envelope": with_envelope(reference, decoded),
        }
        for hz in below:
            conditions[f"decoded, reference phase below {hz:g} Hz"] = with_low_band(decoded, reference, hz, True)
            conditions[f"decoded, reference spectrum below {hz:g} Hz"] = with_low_band(decoded, reference, hz, False)
        for hz in [float(hz) for hz in args.shift_below.split(",") if hz]:
            for frames in (int(n) for n in args.shift_frames.split(",")):
                conditions[f"decoded, shifted below {hz:g} Hz every {frames} frames"] = with_low_band_shifted(
                    decoded, reference, hz, frames)
        add_scores(scores, reference, conditions)

    print(f"{len(files)} files of {args.refs}, first {args.seconds:g} s, {args.kbps:g} kbps unrefined, "
          f"model {model.config.name} ({model.fingerprint[:16]})")
    print_paired(scores, "decoded")


if __name__ == "__main__":
    main()
