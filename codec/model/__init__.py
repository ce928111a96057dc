"""The neural codec: causal SEANet encoder, residual vector quantizer, decoder (mirrored, or at frame rates with an inverse STFT)."""

from .codec_model import CodecConfig, CodecModel
from .files import load_model, read_config, save_model
from .streaming import StreamingDecoder, StreamingEncoder

__all__ = ["CodecConfig", "CodecModel", "load_model", "read_config", "save_model", "StreamingDecoder", "StreamingEncoder"]
