"""Streaming: the encoder and decoder run on chunks of any size and keep their state.

Every convolution of the model is causal (conv.py), so a network can run on a
stream if each layer keeps what it needs of the past:

- a causal convolution keeps its last ``left_pad`` input samples and puts them
  in front of the next chunk, where the whole-file pass has the zero padding;
- a transposed convolution keeps the ``kernel - stride`` samples that spill past
  the end of a chunk and adds them to the start of the next (overlap-add);
- activations and 1x1 convolutions need nothing.

Bit-exact codes. A convolution over a long input does not sum in the same order
as over a short one, so chunked and whole-file latents differ in the last bits,
and a nearest-code search can flip on such a difference. The encoder therefore
always runs one frame (``hop`` samples) per step, in streaming and whole-file
coding alike (``CodecModel.encode`` uses ``StreamingEncoder``): the same
operations on the same numbers, hence the same codes for any chunking.
The decoder's output only has to agree within float tolerance, so it runs on
whatever frames it is given.

Shapes: audio chunks ``[channels, samples]``; codes ``[channels, levels, frames]``.
A stream's state lives in its own wrappers around the model's layers, never in
the layers, so any number of streams can share one model (and its weights).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .conv import CausalConv1d, CausalConvTranspose1d
from .quantizer import DEFAULT_BEAM
from .refine import BlockRefiner
from .seanet import ResidualUnit

Step = Callable[[torch.Tensor], torch.Tensor]


class _ConvState:
    """A causal convolution that remembers its last ``left_pad`` input samples."""

    def __init__(self, conv: CausalConv1d) -> None:
        self.conv = conv
        self.past: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.past is None:      # the zeros the whole-file pass pads with
            self.past = x.new_zeros(x.shape[0], x.shape[1], self.conv.left_pad)
        x = torch.cat([self.past, x], dim=-1)
        self.past = x[..., x.shape[-1] - self.conv.left_pad:].clone()   # not a view of the whole chunk
        c = self.conv
        return F.conv1d(x, c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


class _TransposedConvState:
    """A causal transposed convolution that carries its overlap into the next chunk."""

    def __init__(self, conv: CausalConvTranspose1d) -> None:
        self.conv = conv
        self.spill: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        # Without the bias: it belongs once to each output sample, not to each overlapping part.
        y = F.conv_transpose1d(x, c.weight, None, c.stride)
        if self.spill is not None:
            y[..., : self.spill.shape[-1]] += self.spill
        emitted = x.shape[-1] * c.stride[0]
        self.spill = y[..., emitted:].clone()
        y = y[..., :emitted]
        return y if c.bias is None else y + c.bias[:, None]


class _ResidualState:
    def __init__(self, unit: ResidualUnit) -> None:
        self.block = _stateful(unit.block)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class _SequentialState:
    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        return x


def _stateful(module: nn.Module) -> Step:
    """A stateful callable that computes what ``module`` computes, chunk after chunk."""
    if isinstance(module, CausalConv1d):
        return _ConvState(module) if module.left_pad else module
    if isinstance(module, CausalConvTranspose1d):
        return _TransposedConvState(module)
    if isinstance(module, ResidualUnit):
        return _ResidualState(module)
    if isinstance(module, nn.Sequential):
        return _SequentialState([_stateful(m) for m in module])
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        raise TypeError(f"{type(module).__name__} is not causal and cannot stream")
    if any(True for _ in module.children()):
        raise TypeError(f"no streaming rule for {type(module).__name__}")
    return module                   # pointwise: activations


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
        self.encoder = _stateful(model.encoder.net)
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
        self.decoder = _stateful(model.decoder.net)

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        codes = torch.as_tensor(codes, dtype=torch.int64)
        if codes.shape[-1] == 0:
            return torch.zeros(codes.shape[0], 0)
        return self.decoder(self.model.quantizer.decode(codes))[:, 0]
