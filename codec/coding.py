"""Audio <-> .rvq bitstream with a model: what `codec encode/decode` and the Python API do."""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
import torch

from .audio import resample
from .bitstream import BitstreamReader, BitstreamWriter, StreamHeader
from .errors import BitstreamError, ModelError
from .model import CodecModel
from .model.files import find_shipped_model, load_model


def stream_fingerprint(model: CodecModel) -> bytes:
    """The 8 bytes of the model's fingerprint that bitstreams record."""
    if model.fingerprint is None:
        raise ModelError("this model has no fingerprint: save it with codec.model.save_model and load it back")
    return bytes.fromhex(model.fingerprint[:16])


def encode_to(f: BinaryIO, model: CodecModel, wav: np.ndarray | torch.Tensor, sample_rate: int,
              kbps: float) -> StreamHeader:
    """Encode ``wav [channels, samples]`` at ``sample_rate`` into ``f`` at ``kbps``."""
    wav = torch.as_tensor(wav, dtype=torch.float32)
    if wav.dim() == 1:
        wav = wav[None]
    levels = model.levels_for_kbps(kbps)
    codes = model.encode(wav, sample_rate, levels=levels)
    header = StreamHeader(
        fingerprint=stream_fingerprint(model), sample_rate=model.sample_rate, hop=model.hop,
        codebook_bits=model.config.codebook_bits, levels=levels, channels=wav.shape[0],
        original_sample_rate=sample_rate, num_samples=wav.shape[1])
    writer = BitstreamWriter(f, header)
    writer.write(codes.numpy())
    writer.close(wav.shape[1])
    return header


def model_for(header: StreamHeader, model: CodecModel | str | None) -> CodecModel:
    """The model that made a stream: the one given, or the shipped one with its fingerprint.

    Raises ModelError naming both fingerprints if the given model did not make it.
    """
    if model is None:
        path = find_shipped_model(header.fingerprint.hex())
        if path is None:
            raise ModelError(f"this bitstream was made by model {header.fingerprint.hex()}, "
                             f"which is not a shipped model; pass the model file with --model")
        model = path
    if not isinstance(model, CodecModel):
        model = load_model(model)
    if stream_fingerprint(model) != header.fingerprint:
        raise ModelError(f"this bitstream was made by model {header.fingerprint.hex()}, "
                         f"not by the given model {model.fingerprint[:16]}")
    if header.levels > model.config.levels:
        raise BitstreamError(f"bitstream declares {header.levels} levels; its model has {model.config.levels}")
    if (model.sample_rate, model.hop, model.config.codebook_bits) != (
            header.sample_rate, header.hop, header.codebook_bits):
        raise BitstreamError("bitstream header disagrees with its model's sample rate, hop or codebook size")
    return model


def decode_from(f: BinaryIO, model: CodecModel | str | None = None, kbps: float | None = None,
                sample_rate: int | None = None) -> tuple[torch.Tensor, int, StreamHeader]:
    """Decode a stream; returns ``(wav [channels, samples], rate, header)``.

    ``kbps`` decodes with the first levels only (at most the stream's);
    ``sample_rate`` overrides the original rate that the output is restored to.
    """
    reader = BitstreamReader(f)
    header = reader.header
    model = model_for(header, model)
    levels = header.levels
    if kbps is not None:
        levels = min(model.levels_for_kbps(kbps), header.levels)
    reader = reader.with_levels(levels)
    packets = list(reader)
    codes = np.concatenate(packets, axis=2) if packets else np.zeros((header.channels, levels, 0), np.int64)
    wav = model.decode(torch.from_numpy(codes))
    rate = sample_rate or header.original_sample_rate
    wav = resample(wav, model.sample_rate, rate)
    length = round(reader.num_samples * rate / header.original_sample_rate)
    wav = torch.nn.functional.pad(wav, (0, max(0, length - wav.shape[-1])))[:, :length]
    return wav, rate, header
