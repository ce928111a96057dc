"""Layers that remember the past: the model's networks run on chunks and keep their state.

Every convolution of the model is causal (conv.py), so a network can run on a
stream if each layer keeps what it needs of the past:

- a causal convolution keeps its last ``left_pad`` input samples and puts them
  in front of the next chunk, where the whole-file pass has the zero padding;
- a transposed convolution keeps the ``kernel - stride`` samples that spill past
  the end of a chunk and adds them to the start of the next (overlap-add);
- pointwise layers (activations, norms over channels, 1x1 convolutions) need nothing.

A layer's state is its ``memory``. It lives in wrappers around the model's layers,
never in the layers, so any number of streams can share one model (and its weights).
Streaming coding (streaming.py) runs chunk after chunk; the encoder's refinement
(refine.py) runs the decoder on many candidate blocks behind the same past
(``Continuation``).

Shapes: ``[batch, channels, time]``, as the wrapped network takes.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from .conv import CausalConv1d, CausalConvTranspose1d, Residual

Step = Callable[[torch.Tensor], torch.Tensor]


class _ConvState:
    """A causal convolution that remembers its last ``left_pad`` input samples."""

    def __init__(self, conv: CausalConv1d) -> None:
        self.conv = conv
        self.memory: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.memory is None:      # the zeros the whole-file pass pads with
            self.memory = x.new_zeros(x.shape[0], x.shape[1], self.conv.left_pad)
        x = torch.cat([self.memory, x], dim=-1)
        self.memory = x[..., x.shape[-1] - self.conv.left_pad:].clone()   # not a view of the whole chunk
        c = self.conv
        return F.conv1d(x, c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


class _TransposedConvState:
    """A causal transposed convolution that carries its overlap into the next chunk."""

    def __init__(self, conv: CausalConvTranspose1d) -> None:
        self.conv = conv
        self.memory: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        # Without the bias: it belongs once to each output sample, not to each overlapping part.
        y = F.conv_transpose1d(x, c.weight, None, c.stride)
        if self.memory is not None:
            y[..., : self.memory.shape[-1]] += self.memory
        emitted = x.shape[-1] * c.stride[0]
        self.memory = y[..., emitted:].clone()
        y = y[..., :emitted]
        return y if c.bias is None else y + c.bias[:, None]


class _ResidualState:
    def __init__(self, unit: Residual) -> None:
        self.block = stateful(unit.block)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class _SequentialState:
    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        return x


def stateful(module: nn.Module) -> Step:
    """A stateful callable that computes what ``module`` computes, chunk after chunk."""
    if isinstance(module, CausalConv1d):
        return _ConvState(module) if module.left_pad else module
    if isinstance(module, CausalConvTranspose1d):
        return _TransposedConvState(module)
    if isinstance(module, Residual):
        return _ResidualState(module)
    if isinstance(module, nn.Sequential):
        return _SequentialState([stateful(m) for m in module])
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        raise TypeError(f"{type(module).__name__} is not causal and cannot stream")
    if any(True for _ in module.children()):
        raise TypeError(f"no streaming rule for {type(module).__name__}")
    return module                   # pointwise: activations


def memories(step: Step) -> Iterator[_ConvState | _TransposedConvState]:
    """The layers of a ``stateful`` network that carry a memory from chunk to chunk."""
    if isinstance(step, (_ConvState, _TransposedConvState)):
        yield step
    elif isinstance(step, _ResidualState):
        yield from memories(step.block)
    elif isinstance(step, _SequentialState):
        for s in step.steps:
            yield from memories(s)


class Continuation:
    """``module`` run on what follows a fixed ``past [B, C, T]``: each call on ``x [B, C, T']``
    starts from the state that ``past`` left, so it returns the tail of ``module(cat(past, x))``
    that ``x`` produces (within float rounding), however many times it is called.

    The encoder's refinement decodes a candidate block at every step behind the same
    context frames: the context's share of the work is then done once, not at every step.
    Gradients flow through the calls, not into ``past``.
    """

    def __init__(self, module: nn.Module, past: torch.Tensor) -> None:
        self.network = stateful(module)
        if past.shape[-1]:
            with torch.no_grad():
                self.network(past)
        self.saved = [(layer, layer.memory) for layer in memories(self.network)]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for layer, memory in self.saved:      # a layer replaces its memory, never changes it in place
            layer.memory = memory
        return self.network(x)
