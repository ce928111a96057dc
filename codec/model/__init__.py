"""The neural codec: causal SEANet encoder, residual vector quantizer, and a decoder (the
encoder's mirror image, or one at frame rates with an inverse STFT)."""

from .codec_model import CodecConfig, CodecModel
from .files import load_model, read_config, save_model
from .streaming import StreamingDecoder, StreamingEncoder

__all__ = ["CodecConfig", "CodecModel", "load_model", "read_config", "save_model", "StreamingDecoder", "StreamingEncoder"]
