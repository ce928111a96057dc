"""Encoder-side refinement: search for the codes whose decoding sounds nearest the input.

The encoder network maps audio to latents in one pass, and the quantizer then takes
the codes nearest those latents. Neither step looks at what the decoder will make of
the codes, so the codes are good but not the best this decoder can be given. This
is the amortisation gap of a learned encoder, and it is large here: on dev speech at
6 kbps, 60 steps of the search below raise PESQ-WB by about 0.4 (docs/model_card.md).

Refinement starts from the encoder's latents and takes Adam steps on them to lower
the spectral distance (log-mel at 2 to 128 ms windows plus multi-resolution STFT)
between the decoder's output and the input. Every step quantizes the latents first,
with a straight-through gradient, so the search sees exactly what the decoder will
receive. The codes of the step with the lowest distance win, so refinement never
does worse by its own measure than the encoder's codes. Only the encoder spends
more: the bitstream and the decoder do not change.

Streams are refined in blocks of ``block`` frames at fixed positions (frame 0,
``block``, ``2 * block``, ...). Each block is decoded behind the final codes of
the ``context`` frames before it, so the causal decoder starts from nearly the
state it will be in when the block is decoded for real. The same blocks hold the
same numbers however the audio arrives, so streaming still equals whole-file coding;
a stream's codes come out a block at a time, which is the latency refinement adds.

Shapes: latents ``[channels, dim, frames]``, audio ``[channels, samples]``,
codes ``[channels, levels, frames]``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import whole_number
from ..spectral import log_mel, magnitudes, mel_filters

# The steps `codec encode`, `codec.compress` and `codec eval` take unless told otherwise.
# The model-level API (CodecModel.encode, streaming_encoder) takes 0: the network's own
# codes, at the network's speed, with a latency of one frame.
DEFAULT_REFINE = 30
BLOCK_FRAMES = 50           # 1 s at 50 frames/s
CONTEXT_FRAMES = 16         # longer than the decoder's receptive field needs to settle
LEARNING_RATE = 0.1         # Adam's step, as a fraction of the block's latent RMS
# 2 ms windows resolve single pitch periods, so the search also fixes harmonics whose
# phases have drifted apart (see test_short_mel_windows_hear_the_phase_of_harmonics...)
MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
STFT_WINDOWS = (512, 1024, 2048)                 # a subset of MEL_WINDOWS: their spectra serve both


def check_refine(steps: int) -> int:
    """``steps`` as an int, or ValueError if it is not a whole number of at least 0."""
    return whole_number("refine", steps, 0)


def refine_or_default(steps: int | None) -> int:
    """``steps``, or ``DEFAULT_REFINE`` (looked up now, not when a caller was defined) if None."""
    return check_refine(DEFAULT_REFINE if steps is None else steps)


class SpectralDistance:
    """How far decoded audio sounds from one fixed ``target [1, 1, N]``: the mean log-mel
    L1 distance over ``MEL_WINDOWS`` plus, at 512 to 2048 samples, the spectral convergence
    and log-magnitude distance (as training's multi-resolution STFT loss). The target's
    spectra are computed once, since the search decodes against it many times."""

    def __init__(self, target: torch.Tensor, sample_rate: int) -> None:
        # a short last block is measured with the windows that fit in it (one frame: 20 ms)
        self.mel_windows = [w for w in MEL_WINDOWS if w <= target.shape[-1]]
        self.stft_windows = [w for w in STFT_WINDOWS if w in self.mel_windows]
        self.filters = {w: mel_filters(sample_rate, w).to(target.device) for w in self.mel_windows}
        spectra = {w: magnitudes(target, w) for w in self.mel_windows}
        self.target_mels = {w: log_mel(spectra[w], self.filters[w]) for w in self.mel_windows}
        self.target_spectra = {w: spectra[w].clamp_min(1e-7) for w in self.stft_windows}

    def __call__(self, decoded: torch.Tensor) -> torch.Tensor:
        spectra = {w: magnitudes(decoded, w) for w in self.mel_windows}
        mel = sum((log_mel(spectra[w], self.filters[w]) - self.target_mels[w]).abs().mean() for w in self.mel_windows)
        stft = 0
        for w in self.stft_windows:
            ours, theirs = spectra[w].clamp_min(1e-7), self.target_spectra[w]
            stft = stft + torch.linalg.norm(theirs - ours) / torch.linalg.norm(theirs)  # spectral convergence
            stft = stft + (ours.log() - theirs.log()).abs().mean()                    # log magnitude
        return mel / len(self.mel_windows) + stft / max(1, len(self.stft_windows))


def refine_codes(model: nn.Module, latent: torch.Tensor, target: torch.Tensor,
                 levels: int, beam: int, steps: int, context: torch.Tensor) -> torch.Tensor:
    """The best codes found in ``steps`` steps for one channel.

    Args:
        latent: the encoder's latents ``[1, dim, frames]``: where the search starts.
        target: the audio they encode, ``[1, frames * hop]``, as the encoder saw it.
        context: final codes of the frames just before, ``[1, levels, <= CONTEXT_FRAMES]``.
    Returns:
        codes ``[1, levels, frames]``.
    """
    quantizer, decoder = model.quantizer, model.decoder
    start = context.shape[-1] * model.hop
    context_vectors = quantizer.decode(context)
    distance = SpectralDistance(target[:, None], model.sample_rate)
    z = latent.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=LEARNING_RATE * float(latent.pow(2).mean().sqrt()))
    best_distance, best_codes = float("inf"), None
    with torch.enable_grad():
        for step in range(steps + 1):
            codes = quantizer.encode(z.detach(), levels, beam)
            quantized = quantizer.decode(codes)
            straight_through = z + (quantized - z).detach()
            decoded = decoder(torch.cat([context_vectors, straight_through], dim=-1))[..., start:]
            d = distance(decoded)
            if d.item() < best_distance:
                best_distance, best_codes = d.item(), codes
            if step < steps:
                # only z's gradient: the weights' would cost time and are never used
                (grad,) = torch.autograd.grad(d, z)
                z.grad = grad
                optimizer.step()
    return best_codes


class BlockRefiner:
    """Collects a stream's latents and audio frame by frame and refines them a block at a time.

    ``push(latent [channels, dim, 1], frame [channels, hop]) -> codes`` returns
    ``[channels, levels, block]`` when a block is complete and ``[channels, levels, 0]``
    otherwise; ``flush()`` refines what is left.
    """

    def __init__(self, model: nn.Module, levels: int, channels: int, beam: int, steps: int,
                 block: int = BLOCK_FRAMES, context: int = CONTEXT_FRAMES) -> None:
        self.model, self.levels, self.beam, self.steps = model, levels, beam, steps
        self.block, self.context_frames = block, context
        self.latents: list[torch.Tensor] = []
        self.frames: list[torch.Tensor] = []
        self.context = torch.zeros(channels, levels, 0, dtype=torch.int64)

    def push(self, latent: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        self.latents.append(latent)
        self.frames.append(frame)
        return self._refine() if len(self.latents) == self.block else self._none()

    def flush(self) -> torch.Tensor:
        return self._refine() if self.latents else self._none()

    def _none(self) -> torch.Tensor:
        return self.context.new_zeros(self.context.shape[0], self.levels, 0)

    def _refine(self) -> torch.Tensor:
        latent, audio = torch.cat(self.latents, dim=-1), torch.cat(self.frames, dim=-1)
        self.latents, self.frames = [], []
        codes = torch.cat([
            refine_codes(self.model, latent[c:c + 1], audio[c:c + 1], self.levels,
                         self.beam, self.steps, self.context[c:c + 1])
            for c in range(latent.shape[0])])
        self.context = torch.cat([self.context, codes], dim=-1)[..., -self.context_frames:]
        return codes
