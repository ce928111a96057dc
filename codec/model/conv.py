"""Causal 1-D convolutions: output at time t never depends on input after t.

Causality is what lets the codec stream (issue 5) and what makes the first
seconds of a file code the same whether or not the rest of the file exists.
Both layers here pad or trim on one side only, so that every output sample is a
function of the present and the past. The networks (seanet.py, istft.py) are
sequences of these, pointwise layers and ``Residual`` blocks of them, which is
all that streaming (stateful.py) and ``history_frames`` need to know.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class CausalConv1d(nn.Conv1d):
    """A Conv1d that pads only on the left.

    With stride s and kernel k the layer pads ``(k - 1) * dilation + 1 - s``
    zeros on the left, so an input of length ``L`` (a multiple of ``s``) gives
    exactly ``L // s`` outputs, and output frame ``t`` sees inputs up to
    ``t * s + s - 1``: the last sample of its own stride, nothing later.

    Shapes: ``[batch, in_channels, L] -> [batch, out_channels, L // stride]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, dilation: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         dilation=dilation, groups=groups, padding=0)
        self.left_pad = (kernel_size - 1) * dilation + 1 - stride
        if self.left_pad < 0:
            raise ValueError("kernel footprint must be at least the stride")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.stride[0]:
            raise ValueError(f"length {x.shape[-1]} is not a multiple of stride {self.stride[0]}")
        return super().forward(F.pad(x, (self.left_pad, 0)))


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """A ConvTranspose1d trimmed on the right so that it stays causal.

    A transposed convolution with kernel k and stride s spreads each input frame
    over k outputs; the last ``k - s`` outputs belong to frames that have not
    arrived yet, so they are dropped. ``T`` frames give exactly ``T * s`` samples.

    Shapes: ``[batch, in_channels, T] -> [batch, out_channels, T * stride]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        if kernel_size < stride:
            raise ValueError("kernel must be at least the stride")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)
        self.right_trim = kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y[..., : y.shape[-1] - self.right_trim]


class Residual(nn.Module):
    """``x + block(x)``: the residual blocks of both decoders (seanet.ResidualUnit,
    istft.ConvNeXtBlock). ``block`` is an ``nn.Sequential`` of causal convolutions and
    pointwise layers. Shapes: ``[B, C, T] -> [B, C, T]``."""

    block: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def history_frames(net: nn.Sequential) -> int:
    """How many latent frames before its own frame an output sample of ``net`` (a decoder,
    latent frames in) can depend on: the context a block needs to decode as it does inside
    the whole stream (refine.py). An upper bound, summed layer by layer along the longest
    path (through every residual branch), each layer's reach measured at the rate it runs at."""
    frames, rate = 0.0, 1           # rate: samples of the layer's input per latent frame
    for layer in net:
        for conv in layer.block if isinstance(layer, Residual) else [layer]:
            if isinstance(conv, CausalConvTranspose1d):
                frames += math.ceil((conv.kernel_size[0] - 1) / conv.stride[0]) / rate
                rate *= conv.stride[0]
            elif isinstance(conv, CausalConv1d):
                frames += (conv.kernel_size[0] - 1) * conv.dilation[0] / rate
    return math.ceil(frames)
