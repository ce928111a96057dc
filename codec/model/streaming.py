"""Streaming: the encoder and decoder run on chunks of any size and keep their state.

Each network runs through stateful wrappers of its layers (stateful.py), which keep
what the next chunk needs of the past.

Bit-exact codes. A convolution over a long input does not sum in the same order
as over a short one, so chunked and whole-file latents differ in the last bits,
and a nearest-code search can flip on such a difference. The encoder therefore
always runs one frame (``hop`` samples) per step, in streaming and whole-file
coding alike (``CodecModel.encode`` uses ``StreamingEncoder``): the same
operations on the same numbers, hence the same codes for any chunking.
The decoder's output only has to agree within float tolerance, so it runs on
whatever frames it is given.

Shapes: audio chunks ``[channels, samples]``; codes ``[channels, levels, frames]``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .quantizer import DEFAULT_BEAM
from .refine import BlockRefiner
from .stateful import stateful


class StreamingEncoder:
    """Audio in chunks of any size, at the model's rate, to codes as soon as they are known.

    ``push(chunk [channels, n]) -> codes [channels, levels, frames]`` returns the
    frames completed by the chunk (possibly none); ``flush()`` zero-pads the last
    partial frame, as the whole-file pass does, and returns it and any frames still held.
    A frame's codes are determined once its ``hop`` samples have arrived: the
    algorithmic latency is one frame. With ``refine`` steps (refine.py) the codes
    come out a block of frames at a time instead, each block once its last frame
    has arrived.
    """

    def __init__(self, model: nn.Module, levels: int, channels: int = 1, beam: int = DEFAULT_BEAM,
                 refine: int = 0) -> None:
        self.model = model
        self.levels = levels
        self.beam = beam
        self.channels = channels
        self.hop = model.hop
        self.encoder = stateful(model.encoder.net)
        self.refiner = BlockRefiner(model, levels, channels, beam, refine) if refine else None
        self.pending = torch.zeros(channels, 0)
        self.samples_in = 0

    @torch.no_grad()
    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        chunk = torch.as_tensor(chunk, dtype=torch.float32)
        if chunk.dim() == 1:
            chunk = chunk[None]
        if chunk.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {chunk.shape[0]}")
        self.samples_in += chunk.shape[-1]
        self.pending = torch.cat([self.pending, chunk], dim=-1)
        frames = self.pending.shape[-1] // self.hop
        codes = [self._frame(self.pending[:, i * self.hop:(i + 1) * self.hop]) for i in range(frames)]
        self.pending = self.pending[:, frames * self.hop:]
        if not codes:
            return torch.zeros(self.channels, self.levels, 0, dtype=torch.int64)
        return torch.cat(codes, dim=-1)

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        """Codes of the last, zero-padded partial frame (none if the input ended on a frame),
        and of the frames a refining encoder still holds."""
        codes = torch.zeros(self.channels, self.levels, 0, dtype=torch.int64)
        if self.pending.shape[-1]:
            self.pending = F.pad(self.pending, (0, self.hop - self.pending.shape[-1]))
            codes = self.push(torch.zeros(self.channels, 0))
        if self.refiner is not None:
            codes = torch.cat([codes, self.refiner.flush()], dim=-1)
        return codes

    def _frame(self, frame: torch.Tensor) -> torch.Tensor:
        """``[channels, hop] -> codes [channels, levels, 0 or more]``."""
        latent = self.encoder(frame[:, None])
        if self.refiner is not None:
            return self.refiner.push(latent, frame)
        return self.model.quantizer.encode(latent, self.levels, self.beam)


class StreamingDecoder:
    """Codes in chunks of any number of frames to audio at the model's rate, with no look-ahead.

    ``push(codes [channels, levels, frames]) -> audio [channels, frames * hop]``.
    """

    def __init__(self, model: nn.Module, channels: int = 1) -> None:
        self.model = model
        self.channels = channels
        self.decoder = stateful(model.decoder.net)

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        codes = torch.as_tensor(codes, dtype=torch.int64)
        if codes.shape[-1] == 0:
            return torch.zeros(codes.shape[0], 0)
        return self.decoder(self.model.quantizer.decode(codes))[:, 0]
