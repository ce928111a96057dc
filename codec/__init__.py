"""codec: a neural speech codec (causal SEANet encoder, residual vector quantizer, decoder).

    import codec
    model = codec.load_model()                        # the shipped default speech model
    codes = model.encode(wav, sample_rate, kbps=6)    # int64 [channels, levels, frames]
    audio = model.decode(codes)                       # [channels, samples] at model.sample_rate
    data = codec.compress(wav, sample_rate, kbps=6)   # a complete .rvq bitstream (bytes)
    wav, sample_rate = codec.decompress(data)

``compress`` first scales the audio to the level the model was trained at and records
the gain (codec.loudness), so its codes are ``model.encode`` of the scaled audio;
``model.encode`` codes the audio exactly as given.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from . import loudness
from .errors import AudioError, BitrateError, BitstreamError, CodecError, ModelError
from .model import CodecConfig, CodecModel, load_model, save_model
from .model.quantizer import DEFAULT_BEAM

__all__ = ["load_model", "save_model", "compress", "decompress", "loudness", "CodecModel", "CodecConfig",
           "CodecError", "AudioError", "BitrateError", "BitstreamError", "ModelError"]


def compress(wav: torch.Tensor | np.ndarray, sample_rate: int, kbps: float = 6.0,
             model: CodecModel | str | None = None, normalize: bool = True, beam: int = DEFAULT_BEAM,
             refine: int | None = None) -> bytes:
    """Encode ``wav`` (``[samples]`` or ``[channels, samples]``) into .rvq bytes.

    With ``normalize`` the audio is coded at the level the model was trained at, and
    the gain recorded in the stream is undone by `decompress` (codec.loudness).
    ``beam`` is the width of the quantizer's search for codes (1 = greedy, faster); it
    changes which codes are chosen, not how they decode. ``refine`` is the number of steps
    of the search for codes whose decoding sounds nearest the input (codec.model.refine):
    much better codes at 3 kbps and up, 10 to 20 times slower encoding; 0 is fast, and None
    takes ``codec.model.refine.DEFAULT_REFINE``.
    """
    from .audio import check_audio
    from .coding import encode_to

    model = model if isinstance(model, CodecModel) else load_model(model)
    wav = torch.as_tensor(np.asarray(wav) if not torch.is_tensor(wav) else wav, dtype=torch.float32)
    wav = wav[None] if wav.dim() == 1 else wav
    check_audio(wav.numpy(), "audio", reject_silence=False)
    out = io.BytesIO()
    encode_to(out, model, wav, sample_rate, kbps, normalize=normalize, beam=beam, refine=refine)
    return out.getvalue()


def decompress(data: bytes, kbps: float | None = None, model: CodecModel | str | None = None,
               sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Decode .rvq bytes; returns ``(wav [channels, samples], sample_rate)`` at the original rate.

    ``kbps`` decodes with fewer levels than were coded; ``model`` defaults to the
    shipped model whose fingerprint the stream records.
    """
    from .coding import decode_from

    wav, rate, _ = decode_from(io.BytesIO(data), model, kbps=kbps, sample_rate=sample_rate)
    return wav, rate
