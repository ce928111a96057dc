"""Encoder-side refinement: search for the codes whose decoding sounds nearest the input.

The encoder network maps audio to latents in one pass, and the quantizer then takes
the codes nearest those latents. Neither step looks at what the decoder will make of
the codes, so the codes are good but not the best this decoder can be given: the
amortisation gap of a learned encoder. Here it is large (docs/experiments.md,
"Refining the codes", measured by benchmarks/rvq_search.py --refine).

Refinement starts from the encoder's latents and takes Adam steps on them to lower
the spectral distance (codec.spectral.SpectralDistance: log-mel at 2 to 128 ms
windows plus multi-resolution STFT) between the decoder's output and the input,
less a weighted intelligibility score (codec.intelligibility: STOI's envelope
correlation over 384 ms, which a frame-by-frame distance does not see), plus a weighted
PESQ-like perceptual disturbance (codec.perceptual: loudness on a Bark scale, with added
components weighing more than missing ones and the worst moments most).
Every step quantizes the latents first, with a straight-through gradient, so the
search sees exactly what the decoder will receive. The codes of the step with the
lowest distance win, so refinement never does worse by its own measure than the
encoder's codes (step 0). Only the encoder spends more: the bitstream and the
decoder do not change.

Streams are refined in blocks of ``block`` frames at fixed positions (frame 0,
``block``, ``2 * block``, ...). Each block is decoded behind the final codes of the
``context`` frames before it, which covers the decoder's receptive field, so the
block decodes exactly as it will in the stream. The decoder runs the context once per
block, and each step from the state it left (stateful.Continuation). The same blocks
hold the same numbers however the audio arrives, so streaming still equals whole-file coding; the
codes come out a block at a time, which is the latency refinement adds. A block's
last frames are chosen without seeing their effect on the next block.

Shapes: latents ``[channels, dim, frames]``, audio ``[channels, samples]``,
codes ``[channels, levels, frames]``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import torch
from torch import nn

from ..errors import whole_number
from ..schedule import half_cosine
from .. import intelligibility, perceptual
from ..spectral import LowBandDistance, SpectralDistance
from .stateful import Continuation

if TYPE_CHECKING:
    from .codec_model import CodecModel

# The steps `codec encode`, `codec.compress` and `codec eval` take unless told otherwise
# (benchmarks/rvq_search.py --refine). The model-level API (CodecModel.encode,
# streaming_encoder) takes 0: the network's own codes, at the network's speed, with a
# latency of one frame.
DEFAULT_REFINE = 30
BLOCK_FRAMES = 50           # 1 s at 50 frames/s
# the fewest frames of final codes kept before each block; a decoder that sees further back
# (Decoder.history_frames: speech16k's sees at most 13) gets as many as it sees (context_frames)
CONTEXT_FRAMES = 16
LEARNING_RATE = 0.1         # Adam's step, as a fraction of the block's latent RMS
# the step's size at the last step, as a fraction of LEARNING_RATE, reached along a half cosine
# (1 keeps it constant; benchmarks/rvq_search.py --learning-rates --lr-final-fractions)
LR_FINAL_FRACTION = 1.0
# 2 ms windows resolve single pitch periods, so the search also fixes harmonics whose
# phases have drifted apart (see test_short_mel_windows_hear_the_phase_of_harmonics...)
MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
STFT_WINDOWS = (512, 1024, 2048)                 # a subset of MEL_WINDOWS: their spectra serve both
# The weights of (1 - STOI) and of the PESQ-like perceptual disturbance beside the spectral
# distance (benchmarks/rvq_search.py --stoi-weights --perceptual-weights). Blocks shorter than
# one 384 ms STOI segment (a stream's last) are refined without the first, and blocks shorter
# than one 32 ms frame without the second.
INTELLIGIBILITY_WEIGHT = 2.0
PERCEPTUAL_WEIGHT = 3.0
# The weight of the distance of the STFT phases below LOW_BAND_HZ (spectral.LowBandDistance),
# which PESQ-WB hears and the other terms leave free (benchmarks/rvq_search.py --low-band-weights)
LOW_BAND_WEIGHT = 0.0
LOW_BAND_HZ = 1000.0


def check_refine(steps: int) -> int:
    """``steps`` as an int, or ValueError if it is not a whole number of at least 0."""
    return whole_number("refine", steps, 0)


def refine_or_default(steps: int | None) -> int:
    """``steps``, or ``DEFAULT_REFINE`` (looked up now, not when a caller was defined) if None."""
    return check_refine(DEFAULT_REFINE if steps is None else steps)


def refine_codes(model: CodecModel, latent: torch.Tensor, target: torch.Tensor,
                 levels: int, beam: int, steps: int, context: torch.Tensor) -> torch.Tensor:
    """The best codes found in ``steps`` steps of the search, for one channel.

    Args:
        latent: the encoder's latents ``[1, dim, frames]``: where the search starts.
        target: the audio they encode, ``[1, frames * hop]``, as the encoder saw it.
        levels: how many levels to code with.
        beam: the width of the quantizer's search at each step (ResidualVectorQuantizer.encode).
        steps: Adam steps; 0 returns the quantizer's codes of ``latent``.
        context: final codes of the frames just before, ``[1, levels, <= context_frames(model)]``.
    Returns:
        codes ``[1, levels, frames]``.
    """
    quantizer, decoder = model.quantizer, model.decoder
    codes = quantizer.encode(latent, levels, beam)
    if steps == 0 or target.shape[-1] < MEL_WINDOWS[0]:
        return codes
    # Out of inference mode, if a caller is in it: its tensors cannot be saved for backward.
    with torch.inference_mode(False), torch.enable_grad(), frozen(decoder):
        # the decoder runs the context frames once, and each step's block from where they left it
        decode_block = Continuation(decoder.net, quantizer.decode(context.clone()))
        distance = Objective(target.clone()[:, None], model.sample_rate)
        z = latent.clone().detach().requires_grad_(True)
        peak = LEARNING_RATE * float(latent.pow(2).mean().sqrt())
        optimizer = torch.optim.Adam([z], lr=peak)
        best_distance, best_codes = float("inf"), codes
        for step in range(steps + 1):
            if step:
                codes = quantizer.encode(z.detach(), levels, beam)
            straight_through = z + (quantizer.decode(codes) - z).detach()
            d = distance(decode_block(straight_through))
            if d.item() < best_distance:
                best_distance, best_codes = d.item(), codes
            if step < steps:
                (z.grad,) = torch.autograd.grad(d, z)
                optimizer.param_groups[0]["lr"] = peak * step_size(step, steps)
                optimizer.step()
    return best_codes


def step_size(step: int, steps: int) -> float:
    """The size of step ``step`` of ``steps`` (counted from 0) as a fraction of the first's:
    a half cosine from 1 down to LR_FINAL_FRACTION at the last step."""
    return half_cosine(step / (steps - 1), LR_FINAL_FRACTION) if steps > 1 else 1.0


def context_frames(model: CodecModel) -> int:
    """Frames of final codes kept before each block: all the decoder can see, and at least
    CONTEXT_FRAMES, so that the codes of models that see less do not change with this rule."""
    return max(CONTEXT_FRAMES, model.decoder.history_frames())


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s weights need no gradient inside: refinement wants only the latents' (and
    adversarial training only the decoded audio's), and the weights' would cost time (Snake's,
    for one, takes a sine of its own). Restored on the way out. The flags belong to the shared
    module, so nothing may train it meanwhile."""
    needs_grad = [p for p in module.parameters() if p.requires_grad]
    for p in needs_grad:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in needs_grad:
            p.requires_grad_(True)


class Objective:
    """What refinement lowers: how far decoded audio ``[1, 1, N]`` is from the fixed target
    ``[1, 1, N]``, a scalar tensor: SpectralDistance + INTELLIGIBILITY_WEIGHT * (1 - STOI)
    + PERCEPTUAL_WEIGHT * PerceptualDisturbance + LOW_BAND_WEIGHT * LowBandDistance."""

    def __init__(self, target: torch.Tensor, sample_rate: int) -> None:
        self.spectral = SpectralDistance(target, sample_rate, MEL_WINDOWS, STFT_WINDOWS)
        # the weights are read now, not at import: benchmarks set them between runs
        self.stoi_weight, self.perceptual_weight = INTELLIGIBILITY_WEIGHT, PERCEPTUAL_WEIGHT
        self.intelligibility = (intelligibility.Intelligibility(target, sample_rate) if self.stoi_weight
                                and target.shape[-1] >= intelligibility.min_samples(sample_rate) else None)
        self.perceptual = (perceptual.PerceptualDisturbance(target, sample_rate) if self.perceptual_weight
                           and target.shape[-1] >= perceptual.min_samples(sample_rate) else None)
        self.low_band_weight = LOW_BAND_WEIGHT
        self.low_band = (LowBandDistance(sample_rate, LOW_BAND_HZ) if self.low_band_weight
                         and target.shape[-1] >= LowBandDistance.WINDOW else None)
        self.target_low_band = self.low_band.spectrum(target) if self.low_band is not None else None

    def __call__(self, decoded: torch.Tensor) -> torch.Tensor:
        d = self.spectral(decoded)
        if self.intelligibility is not None:
            d = d + self.stoi_weight * (1 - self.intelligibility(decoded))
        if self.perceptual is not None:
            d = d + self.perceptual_weight * self.perceptual(decoded)
        if self.low_band is not None:
            d = d + self.low_band_weight * self.low_band.from_spectra(self.low_band.spectrum(decoded),
                                                                      self.target_low_band)
        return d


class BlockRefiner:
    """Collects a stream's latents and audio frame by frame and refines them a block at a time.

    ``push(latent [channels, dim, 1], frame [channels, hop]) -> codes`` returns
    ``[channels, levels, block]`` when a block is complete and ``[channels, levels, 0]``
    otherwise; ``flush()`` refines what is left (possibly nothing).
    """

    def __init__(self, model: CodecModel, levels: int, channels: int, beam: int, steps: int,
                 block: int = BLOCK_FRAMES, context: int | None = None) -> None:
        self.model, self.levels, self.channels, self.beam, self.steps = model, levels, channels, beam, steps
        self.block = whole_number("block", block, 1)
        self.context_frames = context_frames(model) if context is None else whole_number("context", context, 0)
        self.latents: list[torch.Tensor] = []
        self.frames: list[torch.Tensor] = []
        self.context: torch.Tensor | None = None     # [channels, levels, <= context], made on the latents' device

    def push(self, latent: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        self.latents.append(latent)
        self.frames.append(frame)
        return self._refine() if len(self.latents) == self.block else self._no_codes()

    def flush(self) -> torch.Tensor:
        return self._refine() if self.latents else self._no_codes()

    def _no_codes(self) -> torch.Tensor:
        return torch.zeros(self.channels, self.levels, 0, dtype=torch.int64)

    def _refine(self) -> torch.Tensor:
        latent, audio = torch.cat(self.latents, dim=-1), torch.cat(self.frames, dim=-1)
        self.latents, self.frames = [], []
        if self.context is None:
            self.context = latent.new_zeros(self.channels, self.levels, 0, dtype=torch.int64)
        codes = torch.cat([
            refine_codes(self.model, latent[c:c + 1], audio[c:c + 1], self.levels,
                         self.beam, self.steps, self.context[c:c + 1])
            for c in range(self.channels)])
        history = torch.cat([self.context, codes], dim=-1)
        self.context = history[..., max(0, history.shape[-1] - self.context_frames):]
        return codes
