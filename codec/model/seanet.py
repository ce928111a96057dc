"""SEANet-style causal encoder and mirrored decoder.

The encoder is a stack of stages, each a few dilated residual units followed by
a strided convolution that halves time resolution by its stride and doubles the
channels. The decoder undoes this stage by stage with transposed convolutions.
With strides (2, 4, 5, 8) the hop is 320 samples: 50 latent frames per second at
16 kHz. Every convolution is causal (see conv.py), so neither network looks
ahead.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .conv import CausalConv1d, CausalConvTranspose1d, Residual, history_frames


class Snake(nn.Module):
    """Snake activation ``x + sin(alpha * x)^2 / alpha`` with a learned alpha per channel.

    A periodic inductive bias that helps generators model pitch harmonics
    (Ziyin et al. 2020; used by BigVGAN and DAC). Shapes: ``[B, C, T] -> [B, C, T]``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or self.alpha.requires_grad):
            return _SnakeFunction.apply(x, self.alpha)
        return snake(x, self.alpha)


def snake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    # The epsilon keeps 1/alpha finite if training drives an alpha to zero.
    return x + torch.sin(alpha * x).pow(2) / (alpha + 1e-9)


class _SnakeFunction(torch.autograd.Function):
    """Snake with a hand-written backward that keeps only its inputs for the backward pass.

    Autograd through the plain formula keeps four full-size intermediates per
    activation, and activations at 16 kHz dominate training memory; recomputing
    ``sin(2 alpha x)`` in the backward costs less than storing them. The forward
    is the same arithmetic as ``snake``, so outputs are identical.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, alpha)
        return snake(x, alpha)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, alpha = ctx.saved_tensors
        a = alpha + 1e-9
        ax = alpha * x
        sin2 = torch.sin(2 * ax)                     # 2 sin(ax) cos(ax)
        grad_x = grad * (1 + alpha / a * sin2)       # d/dx: 1 + sin(2ax) (alpha / a = 1 up to eps)
        if not ctx.needs_input_grad[1]:
            return grad_x, None             # frozen weights (the encoder's refinement): skip a second sin
        # d/dalpha: x sin(2ax) / a - sin(ax)^2 / a^2
        grad_alpha = (grad * (x * sin2 / a - torch.sin(ax).pow(2) / a.pow(2))).sum(dim=(0, 2), keepdim=True)
        return grad_x, grad_alpha


def activation(name: str, channels: int) -> nn.Module:
    if name == "elu":
        return nn.ELU()
    if name == "snake":
        return Snake(channels)
    raise ValueError(f"unknown activation {name!r} (choose elu or snake)")


class ResidualUnit(Residual):
    """``x + conv1x1(act(conv_k_dilated(act(x))))`` with a halved hidden width.

    Shapes: ``[B, C, T] -> [B, C, T]``.
    """

    def __init__(self, channels: int, dilation: int, kernel_size: int, act: str) -> None:
        super().__init__()
        hidden = channels // 2
        self.block = nn.Sequential(
            activation(act, channels),
            CausalConv1d(channels, hidden, kernel_size, dilation=dilation),
            activation(act, hidden),
            CausalConv1d(hidden, channels, 1),
        )


class Encoder(nn.Module):
    """Waveform to latent frames.

    Shapes: ``[B, 1, T * hop] -> [B, latent_dim, T]`` with ``hop = prod(strides)``.
    The input length must be a multiple of the hop; the model pads to one.
    """

    def __init__(self, channels: int, strides: Sequence[int], latent_dim: int,
                 dilations: Sequence[int], kernel_size: int = 7,
                 residual_kernel_size: int = 3, act: str = "elu") -> None:
        super().__init__()
        layers: list[nn.Module] = [CausalConv1d(1, channels, kernel_size)]
        width = channels
        for stride in strides:
            layers += [ResidualUnit(width, d, residual_kernel_size, act) for d in dilations]
            layers += [activation(act, width),
                        CausalConv1d(width, 2 * width, 2 * stride, stride=stride)]
            width *= 2
        layers += [activation(act, width), CausalConv1d(width, latent_dim, kernel_size)]
        self.net = nn.Sequential(*layers)
        self.hop = math.prod(strides)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.net(wav)


class Decoder(nn.Module):
    """Latent frames to waveform, the encoder's mirror image.

    Shapes: ``[B, latent_dim, T] -> [B, 1, T * hop]``.
    """

    def __init__(self, channels: int, strides: Sequence[int], latent_dim: int,
                 dilations: Sequence[int], kernel_size: int = 7,
                 residual_kernel_size: int = 3, act: str = "elu") -> None:
        super().__init__()
        width = channels * 2 ** len(strides)
        layers: list[nn.Module] = [CausalConv1d(latent_dim, width, kernel_size)]
        for stride in reversed(strides):
            layers += [activation(act, width),
                       CausalConvTranspose1d(width, width // 2, 2 * stride, stride)]
            width //= 2
            layers += [ResidualUnit(width, d, residual_kernel_size, act) for d in dilations]
        layers += [activation(act, width), CausalConv1d(width, 1, kernel_size)]
        self.net = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)

    def history_frames(self) -> int:
        """Latent frames of context an output sample can depend on (conv.history_frames)."""
        return history_frames(self.net)
