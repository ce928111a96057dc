"""The codec: encoder, residual vector quantizer and decoder in one module.

``CodecModel`` works on the model's own sample rate and on mono items of a batch;
``encode``/``decode`` add what users need around that (any rate, any channel
count, a bitrate in kbps) and return codes as plain integer tensors
``[channels, levels, frames]`` that double as tokens for speech language models.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import AudioError, BitrateError
from .quantizer import DEFAULT_BEAM, QuantizerOutput, ResidualVectorQuantizer, check_beam
from .refine import check_refine
from .istft import ISTFTDecoder
from .seanet import Decoder, Encoder
from .streaming import StreamingDecoder, StreamingEncoder


@dataclass
class CodecConfig:
    """Everything needed to rebuild a model; saved inside every model file."""

    name: str = "speech16k"
    sample_rate: int = 16000
    channels: int = 32                      # width of the first encoder stage; doubles per stage
    strides: tuple[int, ...] = (2, 4, 5, 8)  # encoder order; the hop is their product
    dilations: tuple[int, ...] = (1, 3, 9)  # one residual unit per dilation in each stage
    # the decoder's own units per stage, if it is to be deeper than the encoder; () = dilations.
    # A trained decoder can grow this way (training's init_from: the new units start as identities)
    decoder_dilations: tuple[int, ...] = ()
    # "seanet": the encoder's mirror image (seanet.py); "istft": ConvNeXt blocks at 50 and
    # 200 frames/s and an inverse STFT (istft.py), shaped by the istft_ fields
    decoder: str = "seanet"
    istft_widths: tuple[int, ...] = (384, 256)   # channels at the frame rate, then after upsampling
    istft_blocks: tuple[int, ...] = (4, 6)       # ConvNeXt blocks at each of those rates
    istft_upsample: int = 4                      # spectra per latent frame
    istft_window: int = 160                      # samples per spectrum; the hop is half of it
    latent_dim: int = 128
    levels: int = 32                        # RVQ codebooks
    codebook_bits: int = 10                 # 2**bits entries per codebook
    activation: str = "elu"
    kernel_size: int = 7
    residual_kernel_size: int = 3
    ema_decay: float = 0.99
    dead_code_fraction: float = 0.1
    # the loudness (dBFS) of the speech it was trained on; `codec.compress` and
    # `codec encode` scale their input to it (codec.loudness)
    input_dbfs: float = -20.0

    def __post_init__(self) -> None:
        if self.decoder not in ("seanet", "istft"):
            raise ValueError(f"decoder is 'seanet' or 'istft', not {self.decoder!r}")
        if len(self.istft_widths) != 2 or len(self.istft_blocks) != 2:
            raise ValueError("istft_widths and istft_blocks give two numbers: the frame rate's, then the upsampled")

    @property
    def decoder_layout(self) -> dict:
        """The fields that shape the decoder beyond what it shares with the encoder."""
        if self.decoder == "seanet":
            return {"decoder": "seanet"}
        return {k: v for k, v in self.to_dict().items() if k == "decoder" or k.startswith("istft_")}

    @property
    def decoder_units(self) -> tuple[int, ...]:
        """The dilations of the decoder's residual units in each stage."""
        return self.decoder_dilations or self.dilations

    @property
    def hop(self) -> int:
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def kbps_per_level(self) -> float:
        return self.frame_rate * self.codebook_bits / 1000

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CodecConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


def _stack_args(config: CodecConfig, dilations: tuple[int, ...]) -> dict:
    """What the encoder and the decoder are both built from; only their units' dilations may differ."""
    return dict(channels=config.channels, strides=config.strides, latent_dim=config.latent_dim,
                dilations=dilations, kernel_size=config.kernel_size,
                residual_kernel_size=config.residual_kernel_size, act=config.activation)


def decoder_for(config: CodecConfig) -> Decoder | ISTFTDecoder:
    """A fresh decoder of ``config``'s layout."""
    if config.decoder == "istft":
        return ISTFTDecoder(config.latent_dim, config.hop, tuple(config.istft_widths), tuple(config.istft_blocks),
                            config.istft_upsample, config.istft_window, config.kernel_size)
    return Decoder(**_stack_args(config, config.decoder_units))


class CodecModel(nn.Module):
    """Causal SEANet encoder + RVQ + decoder (the encoder's mirror image, or istft.py's).

    ``fingerprint`` is set when the model is loaded from a file: a hash of its
    weights that bitstreams record, so that codes are never decoded by a model
    that did not make them.
    """

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(**_stack_args(config, config.dilations))
        self.quantizer = ResidualVectorQuantizer(
            config.latent_dim, config.levels, 2 ** config.codebook_bits,
            decay=config.ema_decay, dead_fraction=config.dead_code_fraction)
        self.decoder = decoder_for(config)
        self.fingerprint: str | None = None

    # -- bitrate ---------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop(self) -> int:
        return self.config.hop

    def kbps_for_levels(self, levels: int) -> float:
        return levels * self.config.kbps_per_level

    def levels_for_kbps(self, kbps: float) -> int:
        """The most levels whose bitrate does not exceed ``kbps``.

        Raises BitrateError, naming the valid range, outside what the model can do.
        """
        step = self.config.kbps_per_level
        low, high = step, self.config.levels * step
        if not (isinstance(kbps, (int, float)) and math.isfinite(kbps)) or not low <= kbps <= high + 1e-9:
            raise BitrateError(f"bitrate {kbps} kbps is outside this model's range: "
                               f"{low:g} to {high:g} kbps in steps of {step:g}")
        return min(self.config.levels, int(math.floor(kbps / step + 1e-9)))

    # -- batch-level computation at the model's rate ----------------------------

    def pad_to_hop(self, wav: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``[..., N]`` on the right to a whole number of frames."""
        return F.pad(wav, (0, -wav.shape[-1] % self.hop))

    def forward(self, wav: torch.Tensor, n_levels: torch.Tensor | int | None = None
                ) -> tuple[torch.Tensor, QuantizerOutput]:
        """Training pass: ``[B, 1, N] -> (reconstruction [B, 1, N'], quantizer output)``.

        ``N' = N`` rounded up to a whole number of hops.
        """
        latent = self.encoder(self.pad_to_hop(wav))
        q = self.quantizer(latent, n_levels)
        return self.decoder(q.quantized), q

    @torch.no_grad()
    def encode_batch(self, wav: torch.Tensor, levels: int, beam: int = DEFAULT_BEAM) -> torch.Tensor:
        """``[B, 1, N]`` at the model rate ``-> codes [B, levels, ceil(N / hop)]``, found by
        a search ``beam`` wide (ResidualVectorQuantizer.encode)."""
        return self.quantizer.encode(self.encoder(self.pad_to_hop(wav)), levels, beam)

    @torch.no_grad()
    def decode_batch(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, levels, T] -> [B, 1, T * hop]`` at the model rate."""
        return self.decoder(self.quantizer.decode(codes))

    # -- user-facing API --------------------------------------------------------

    def encode(self, wav: torch.Tensor | np.ndarray, sample_rate: int,
               kbps: float | None = None, levels: int | None = None, beam: int = DEFAULT_BEAM,
               refine: int = 0) -> torch.Tensor:
        """Audio to codes.

        Args:
            wav: ``[samples]`` or ``[channels, samples]``, float, at any rate.
            sample_rate: the rate of ``wav``; it is resampled to the model's.
            kbps: target bitrate (default: all levels); or give ``levels``.
            beam: code sequences the quantizer's search keeps per frame; 1 is greedy
                (ResidualVectorQuantizer.encode). Any width decodes with the same decoder.
            refine: steps of the search for codes whose decoding is nearest the audio
                (refine.py): better codes, much slower encoding; 0 takes the encoder's.
        Returns:
            int64 codes ``[channels, levels, frames]``; channels are coded independently.
        """
        from ..audio import StreamingResampler  # audio I/O stays out of the model package

        wav = torch.as_tensor(np.asarray(wav) if not torch.is_tensor(wav) else wav, dtype=torch.float32)
        if wav.dim() == 1:
            wav = wav[None]
        if wav.dim() != 2 or wav.shape[-1] == 0:
            raise AudioError(f"expected audio shaped [samples] or [channels, samples], got {tuple(wav.shape)}")
        if not torch.isfinite(wav).all():
            raise AudioError("audio contains NaN or infinite samples")
        # As a stream would: the codes of a file are then the same however it is
        # chunked (see streaming.py and audio.StreamingResampler).
        encoder = self.streaming_encoder(kbps, levels, channels=wav.shape[0], beam=beam, refine=refine)
        resampler = StreamingResampler(sample_rate, self.sample_rate, wav.shape[0])
        return torch.cat([encoder.push(resampler.push(wav)), encoder.push(resampler.flush()), encoder.flush()],
                         dim=-1)

    def streaming_encoder(self, kbps: float | None = None, levels: int | None = None,
                          channels: int = 1, beam: int = DEFAULT_BEAM, refine: int = 0) -> StreamingEncoder:
        """A stateful encoder for audio at the model's rate that arrives in chunks of any size;
        ``beam`` is the width of its search for codes (ResidualVectorQuantizer.encode), and
        ``refine`` the steps of its search for codes that decode nearer the audio (refine.py).
        Refining, it returns codes a block of ``refine.BLOCK_FRAMES`` frames (1 s) at a time."""
        if levels is None:
            levels = self.config.levels if kbps is None else self.levels_for_kbps(kbps)
        if not 1 <= levels <= self.config.levels:
            raise BitrateError(f"levels must be 1 to {self.config.levels}, got {levels}")
        return StreamingEncoder(self, levels, channels, check_beam(beam), check_refine(refine))

    def streaming_decoder(self, channels: int = 1) -> StreamingDecoder:
        """A stateful decoder for codes that arrive a few frames at a time."""
        return StreamingDecoder(self, channels)

    def decode(self, codes: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Codes ``[channels, levels, frames]`` to audio ``[channels, frames * hop]`` at the model rate."""
        codes = torch.as_tensor(codes, dtype=torch.int64)
        if codes.dim() == 2:
            codes = codes[None]
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.config.levels:
            raise ValueError(f"codes must be [channels, 1..{self.config.levels}, frames], got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= 2 ** self.config.codebook_bits):
            raise ValueError(f"codes must lie in [0, {2 ** self.config.codebook_bits})")
        return self.decode_batch(codes)[:, 0]
