"""Audio <-> .rvq bitstream with a model: what `codec encode/decode` and the Python API do."""

from __future__ import annotations

import dataclasses
import math
from typing import BinaryIO, Iterable, Iterator

import numpy as np
import torch

from .audio import MAX_CHANNELS, StreamingResampler, is_silent
from .bitstream import MAX_SAMPLE_RATE, BitstreamReader, BitstreamWriter, StreamHeader
from .errors import AudioError, BitstreamError, ModelError
from .loudness import amplitude, gain_db
from .model import CodecModel
from .model.files import find_shipped_model, load_model
from .model.quantizer import DEFAULT_BEAM
from .model.refine import refine_or_default


def stream_fingerprint(model: CodecModel) -> bytes:
    """The 8 bytes of the model's fingerprint that bitstreams record."""
    if model.fingerprint is None:
        raise ModelError("this model has no fingerprint: save it with codec.model.save_model and load it back")
    return bytes.fromhex(model.fingerprint[:16])


def encode_to(f: BinaryIO, model: CodecModel, wav: np.ndarray | torch.Tensor, sample_rate: int,
              kbps: float, normalize: bool = True, beam: int = DEFAULT_BEAM,
              refine: int | None = None) -> StreamHeader:
    """Encode ``wav [channels, samples]`` at ``sample_rate`` into ``f`` at ``kbps``.

    With ``normalize``, the audio is coded at the model's level (codec.loudness).
    """
    wav = torch.as_tensor(wav, dtype=torch.float32)
    if wav.dim() == 1:
        wav = wav[None]
    gain = gain_db(wav, sample_rate, model.config.input_dbfs) if normalize else 0.0
    return encode_stream(f, model, [wav], sample_rate, wav.shape[0], kbps, num_samples=wav.shape[1],
                         gain_db=gain, beam=beam, refine=refine)


def encode_stream(f: BinaryIO, model: CodecModel, blocks: Iterable[np.ndarray | torch.Tensor],
                  sample_rate: int, channels: int, kbps: float, num_samples: int | None = None,
                  reject_silence: bool = False, name: str = "the audio", gain_db: float = 0.0,
                  beam: int = DEFAULT_BEAM, refine: int | None = None) -> StreamHeader:
    """Encode audio that arrives in ``blocks [channels, n]`` into ``f``, a packet at a time;
    returns the header with the length that was read.

    Memory stays constant whatever the length: each block is resampled, encoded and
    written before the next is read. ``num_samples`` goes into the header when
    known in advance (a file); a pipe's length is recorded by the end packet only.
    The codes equal ``model.encode`` of the whole audio scaled by ``gain_db``, with the
    same ``beam`` and refinement steps, however it is cut into blocks. The gain goes into
    the header (a multiple of 0.5 dB; codec.loudness gives the gain that suits the model).
    ``beam`` and ``refine`` set the encoder's search for codes (codec.model.quantizer,
    codec.model.refine); ``refine=None`` takes the file-coding default, ``DEFAULT_REFINE``.
    """
    levels = model.levels_for_kbps(kbps)
    if channels > MAX_CHANNELS:
        raise AudioError(f"{name} has {channels} channels; a .rvq stream holds at most {MAX_CHANNELS}")
    if not 1 <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{name} has a sample rate of {sample_rate} Hz; a .rvq stream holds 1 to {MAX_SAMPLE_RATE} Hz")
    header = StreamHeader(
        fingerprint=stream_fingerprint(model), sample_rate=model.sample_rate, hop=model.hop,
        codebook_bits=model.config.codebook_bits, levels=levels, channels=channels,
        original_sample_rate=sample_rate, num_samples=num_samples, gain_db=gain_db)
    writer = BitstreamWriter(f, header)             # checks the header, the gain included
    scale = amplitude(gain_db)
    resampler = StreamingResampler(sample_rate, model.sample_rate, channels)
    encoder = model.streaming_encoder(levels=levels, channels=channels, beam=beam,
                                      refine=refine_or_default(refine))
    audible = False
    for block in blocks:
        block = torch.as_tensor(block, dtype=torch.float32)
        if not torch.isfinite(block).all():
            raise AudioError(f"{name} contains NaN or infinite samples")
        audible = audible or not is_silent(block)
        writer.write(encoder.push(resampler.push(block * scale)).numpy())
    if resampler.samples_in == 0:
        raise AudioError(f"{name} contains no audio samples")
    if reject_silence and not audible:
        raise AudioError(f"{name} is silent (every sample is zero); nothing to encode")
    if num_samples is not None and resampler.samples_in != num_samples:
        raise AudioError(f"{name} is damaged: it declares {num_samples} samples but holds {resampler.samples_in}")
    writer.write(encoder.push(resampler.flush()).numpy())
    writer.write(encoder.flush().numpy())
    writer.close(resampler.samples_in)
    return dataclasses.replace(header, num_samples=resampler.samples_in)


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
    """Decode a whole stream; returns ``(wav [channels, samples], rate, header)``."""
    stream = DecodedStream(f, model, kbps, sample_rate)
    blocks = list(stream)
    return torch.cat(blocks, dim=-1), stream.rate, stream.header


class DecodedStream:
    """A stream's audio, decoded packet by packet: iterate for ``[channels, n]`` blocks.

    ``kbps`` decodes with the first levels only (at most the stream's);
    ``sample_rate`` overrides the original rate that the output is restored to.
    The header is read and the model checked on construction, so ``rate``,
    ``channels`` and ``header`` are known before the first block. Memory stays
    constant: each packet is decoded, resampled and handed on before the next is
    read, so a decoder can start while its encoder is still writing.

    The exact length comes from the end packet (or the header): the last frame is
    zero-padded audio, so the audio of one frame is held back until it is known.

    With ``conceal``, packets that fail their CRC become silence instead of stopping
    the decoding; ``concealed`` then lists (packet, start time in s, seconds) of each.
    """

    def __init__(self, f: BinaryIO, model: CodecModel | str | None = None, kbps: float | None = None,
                 sample_rate: int | None = None, conceal: bool = False) -> None:
        self.reader = BitstreamReader(f, conceal=conceal)
        self.header = h = self.reader.header
        self.model = model_for(h, model)
        levels = h.levels if kbps is None else min(self.model.levels_for_kbps(kbps), h.levels)
        self.reader.with_levels(levels)
        self.channels = h.channels
        self.rate = sample_rate or h.original_sample_rate

    @property
    def concealed(self) -> list[tuple[int, float, float]]:
        return [(i, t, n * self.header.hop / self.header.sample_rate) for i, t, n in self.reader.damaged]

    def __iter__(self) -> Iterator[torch.Tensor]:
        h, model = self.header, self.model
        decoder = model.streaming_decoder(self.channels)
        resampler = StreamingResampler(model.sample_rate, self.rate, self.channels)
        hold = math.ceil(h.hop * self.rate / model.sample_rate) + 2   # covers the padding of the last frame
        unscale = 1 / amplitude(h.gain_db)                            # undo the encoder's gain
        held = torch.zeros(self.channels, 0)
        emitted = 0
        # With the length in the header, nothing past it is ever emitted (with a rounded
        # resampling ratio the audio may run a little long); otherwise the end packet says.
        def output_length(samples: int) -> int:
            return round(samples * self.rate / h.original_sample_rate)

        known = None if h.num_samples is None else output_length(h.num_samples)
        for codes in self.reader:
            if codes.size and codes[0, 0, 0] < 0:
                # A damaged packet (conceal mode): silence for its frames, and the decoder
                # starts afresh after it, as at the start of a stream.
                audio = torch.zeros(self.channels, codes.shape[-1] * h.hop)
                decoder = model.streaming_decoder(self.channels)
            else:
                audio = decoder.push(torch.from_numpy(codes)) * unscale
            held = torch.cat([held, resampler.push(audio)], dim=-1)
            if held.shape[-1] > hold:
                out, held = held[:, :-hold], held[:, -hold:]
                if known is not None:
                    out = out[:, : max(0, known - emitted)]
                emitted += out.shape[-1]
                yield out
        held = torch.cat([held, resampler.flush()], dim=-1)
        length = output_length(self.reader.num_samples)
        last = max(0, length - emitted)
        yield torch.nn.functional.pad(held, (0, max(0, last - held.shape[-1])))[:, :last]
