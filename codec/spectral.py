"""Spectra and spectral distances, shared by training and the encoder's refinement.

Training's losses (codec/train/losses.py) compare batches of decoded and real audio;
the encoder's refinement (codec/model/refine.py) compares many decodings with one
fixed input, so `SpectralDistance` computes the input's spectra once.
Shapes: audio ``[B, 1, N]``; spectra ``[B, bins, frames]``.
"""

from __future__ import annotations

from functools import lru_cache

import torch

MAGNITUDE_FLOOR = 1e-5      # below any audible bin of speech at -20 dBFS, as training's log-mel


def stft(audio: torch.Tensor, window: int) -> torch.Tensor:
    """Complex STFT of ``audio [B, 1, N]`` with a Hann window, hop ``window / 4`` and no
    padding: ``[B, window / 2 + 1, frames]``. ``N`` must be at least ``window``."""
    hann = torch.hann_window(window, device=audio.device)
    return torch.stft(audio.flatten(0, 1), window, window // 4, window=hann, center=False, return_complex=True)


def magnitudes(audio: torch.Tensor, window: int) -> torch.Tensor:
    """``|stft(audio, window)|``."""
    return stft(audio, window).abs()


@lru_cache(maxsize=None)
def mel_filters(sample_rate: int, window: int) -> torch.Tensor:
    """Mel filterbank ``[window / 2 + 1, n_mels]`` for a window of ``window`` samples.

    The mel count grows with the window (``window / 8``, at most 128) so that no filter
    is narrower than an FFT bin.
    """
    import torchaudio    # here, not at the top: coding at the model's rate otherwise needs only torch

    return torchaudio.functional.melscale_fbanks(window // 2 + 1, 0.0, sample_rate / 2, min(128, window // 8),
                                                 sample_rate)


def log_mel(spectrum: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Log of the mel spectrum of magnitudes ``[B, bins, frames]``: ``[B, n_mels, frames]``."""
    return torch.log((filters.t().to(spectrum.device) @ spectrum).clamp_min(MAGNITUDE_FLOOR))


class SpectralDistance:
    """How far decoded audio sounds from one fixed ``target [1, 1, N]``.

    The mean log-mel L1 distance over ``mel_windows``, plus, for ``stft_windows`` (which must
    be among them, so that one STFT serves both), spectral convergence and log-magnitude
    L1 distance, like training's multi-resolution STFT loss. Windows longer than the target
    are left out, so a short target is measured with the windows that fit in it.
    """

    def __init__(self, target: torch.Tensor, sample_rate: int, mel_windows: tuple[int, ...],
                 stft_windows: tuple[int, ...]) -> None:
        self.mel_windows = [w for w in mel_windows if w <= target.shape[-1]]
        if not self.mel_windows:
            raise ValueError(f"a target of {target.shape[-1]} samples is shorter than every window")
        self.stft_windows = [w for w in stft_windows if w in self.mel_windows]
        self.filters = {w: mel_filters(sample_rate, w) for w in self.mel_windows}
        spectra = {w: magnitudes(target, w) for w in self.mel_windows}
        self.target_mels = {w: log_mel(spectra[w], self.filters[w]) for w in self.mel_windows}
        self.target_spectra = {w: spectra[w].clamp_min(MAGNITUDE_FLOOR) for w in self.stft_windows}

    def __call__(self, decoded: torch.Tensor) -> torch.Tensor:
        """``decoded [1, 1, N]`` -> scalar distance (differentiable)."""
        spectra = {w: magnitudes(decoded, w) for w in self.mel_windows}
        mel = sum((log_mel(spectra[w], self.filters[w]) - self.target_mels[w]).abs().mean() for w in self.mel_windows)
        stft = 0
        for w in self.stft_windows:
            ours, theirs = spectra[w].clamp_min(MAGNITUDE_FLOOR), self.target_spectra[w]
            stft = stft + torch.linalg.norm(theirs - ours) / torch.linalg.norm(theirs)  # spectral convergence
            stft = stft + (ours.log() - theirs.log()).abs().mean()                    # log magnitude
        return mel / len(self.mel_windows) + stft / max(1, len(self.stft_windows))


class LowBandDistance(torch.nn.Module):
    """How far the STFT below ``cutoff_hz`` is from the target's, relative to the target's
    mean magnitude there: 0 for the target's waveform, about 1.3 for its magnitudes with
    random phases.

    PESQ-WB hears the phase of the low band: the decoder's output with the reference's
    STFT phase below 1 kHz, its own magnitudes kept, scores about 0.6 higher
    (benchmarks/phase_oracle.py). Yet lowering this distance, in training or in the
    encoder's refinement, has so far lowered PESQ-WB (docs/experiments.md, "The listening
    check"), so both use it only when asked to. ``compare="phase"`` measures the distance of unit
    phasors, each bin weighted by the target's magnitude, and leaves magnitudes to the
    other terms; ``"complex"`` measures the distance of the complex values, whose minimum
    where the phase is uncertain is a smaller magnitude.
    Shapes: ``[B, 1, N]`` for both arguments, ``N`` at least ``WINDOW``.
    """

    WINDOW = 512       # 32 ms: resolves the harmonics of any voice above 60 Hz

    def __init__(self, sample_rate: int, cutoff_hz: float, compare: str = "phase") -> None:
        super().__init__()
        self.compare = compare
        self.bins = int(cutoff_hz * self.WINDOW / sample_rate)

    def spectrum(self, audio: torch.Tensor) -> torch.Tensor:
        """The STFT bins that this distance compares: ``[B, bins, frames]`` complex."""
        return stft(audio, self.WINDOW)[:, :self.bins]

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.from_spectra(self.spectrum(recon), self.spectrum(target))

    def from_spectra(self, ours: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
        """The distance of two ``spectrum`` results: the encoder's refinement computes its
        fixed target's once, not at every step."""
        scale = theirs.abs().mean().clamp_min(1e-8)
        if self.compare == "phase":
            # The floor keeps the gradient of a near-silent bin's phase finite.
            floor = 1e-3 * scale
            ours = theirs.abs() * ours / (ours.abs() ** 2 + floor ** 2).sqrt()
        return (ours - theirs).abs().mean() / scale
