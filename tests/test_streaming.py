"""Streaming: chunks of any size give the whole-file codes exactly and the whole-file audio
within float tolerance, on random weights and on the shipped model."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import soundfile as sf
import torch

import codec
from codec.model import CodecModel

from .conftest import SAMPLES, tiny_config, tiny_istft


def chunk_sizes(kind: str, total: int, hop: int) -> list[int]:
    """Sizes that add up to ``total``: fixed (1, 17, one hop, one second) or random."""
    fixed = {"1": 1, "17": 17, "hop": hop, "second": 16000}
    sizes = []
    rng = random.Random(kind)
    while sum(sizes) < total:
        sizes.append(fixed[kind] if kind in fixed else rng.randint(1, 3 * hop))
    sizes[-1] -= sum(sizes) - total
    return sizes


def stream_encode(model: CodecModel, wav: torch.Tensor, levels: int, sizes: list[int]) -> torch.Tensor:
    encoder = model.streaming_encoder(levels=levels, channels=wav.shape[0])
    parts, start = [], 0
    for n in sizes:
        parts.append(encoder.push(wav[:, start:start + n]))
        start += n
    parts.append(encoder.flush())
    return torch.cat(parts, dim=-1)


def stream_decode(model: CodecModel, codes: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    decoder = model.streaming_decoder(channels=codes.shape[0])
    parts, start = [], 0
    for n in sizes:
        parts.append(decoder.push(codes[..., start:start + n]))
        start += n
    return torch.cat(parts, dim=-1)


@pytest.mark.parametrize("kind", ["1", "17", "hop", "second", "random"])
@pytest.mark.parametrize("strides", [(2, 4, 5, 8), (4, 8, 10)])
def test_streamed_codes_equal_whole_file_codes(kind, strides):
    model = CodecModel(tiny_config(strides=strides)).eval()
    seconds = 0.3 if kind == "1" else 1.3           # one sample at a time is slow in Python
    wav = torch.randn(2, int(seconds * 16000) + 7)   # two channels; not a whole number of frames
    whole = model.encode(wav, 16000, levels=5)
    streamed = stream_encode(model, wav, 5, chunk_sizes(kind, wav.shape[-1], model.hop))
    assert streamed.shape == whole.shape == (2, 5, -(-wav.shape[-1] // model.hop))
    assert torch.equal(streamed, whole)


def test_the_frame_by_frame_encoder_computes_what_the_whole_file_encoder_does(tiny_model):
    """The stream's state handling, checked against one convolution pass over the whole input."""
    from codec.model.stateful import stateful

    wav = torch.randn(2, 1, 25 * tiny_model.hop)
    encoder = stateful(tiny_model.encoder.net)
    with torch.no_grad():
        frames = [encoder(wav[..., i:i + tiny_model.hop]) for i in range(0, wav.shape[-1], tiny_model.hop)]
        torch.testing.assert_close(torch.cat(frames, -1), tiny_model.encoder(wav), rtol=1e-4, atol=1e-5)


def test_codes_come_out_as_soon_as_a_frame_is_complete(tiny_model):
    hop = tiny_model.hop
    encoder = tiny_model.streaming_encoder(levels=3)
    assert encoder.push(torch.randn(1, hop - 1)).shape == (1, 3, 0)
    assert encoder.push(torch.randn(1, 1)).shape == (1, 3, 1)          # the frame is complete
    assert encoder.push(torch.randn(1, 2 * hop + 5)).shape == (1, 3, 2)
    assert encoder.flush().shape == (1, 3, 1)                          # the 5 samples, zero-padded
    assert encoder.flush().shape == (1, 3, 0)


@pytest.mark.parametrize("kind", ["1", "17", "random"])
@pytest.mark.parametrize("decoder", ["seanet", "istft"])
def test_streamed_audio_equals_whole_file_audio(kind, decoder):
    model = CodecModel(tiny_istft() if decoder == "istft" else tiny_config()).eval()
    codes = torch.randint(0, 64, (2, 8, 60))
    whole = model.decode(codes)
    sizes = {"1": [1] * 60, "17": [17, 17, 17, 9], "random": chunk_sizes("random", 60, 7)}[kind]
    streamed = stream_decode(model, codes, sizes)
    assert streamed.shape == whole.shape == (2, 60 * model.hop)
    torch.testing.assert_close(streamed, whole, rtol=1e-4, atol=1e-5)


def test_the_shipped_model_streams_exactly():
    model = codec.load_model()
    wav, rate = sf.read(SAMPLES / "librispeech_5456.flac", dtype="float32", frames=8000)
    wav = torch.from_numpy(wav)[None]
    assert rate == model.sample_rate
    whole = model.encode(wav, rate, kbps=6)
    streamed = stream_encode(model, wav, 12, chunk_sizes("random", wav.shape[-1], model.hop))
    assert torch.equal(streamed, whole)
    # Whole-file decoding runs the decoder once over all frames; streaming, a few at a time.
    audio = stream_decode(model, streamed, chunk_sizes("random", streamed.shape[-1], 4))
    torch.testing.assert_close(audio, model.decode(whole), rtol=1e-3, atol=1e-4)


def test_streams_on_one_model_do_not_share_state(tiny_model):
    a, b = torch.randn(1, 3200), torch.randn(1, 3200)
    one, two = tiny_model.streaming_encoder(levels=4), tiny_model.streaming_encoder(levels=4)
    interleaved_a, interleaved_b = [], []
    for start in range(0, 3200, 320):
        interleaved_a.append(one.push(a[:, start:start + 320]))
        interleaved_b.append(two.push(b[:, start:start + 320]))
    assert torch.equal(torch.cat(interleaved_a, -1), tiny_model.encode(a, 16000, levels=4))
    assert torch.equal(torch.cat(interleaved_b, -1), tiny_model.encode(b, 16000, levels=4))


# -- files and pipes: incremental, in constant memory ------------------------------------


def test_encoding_writes_packets_while_the_audio_is_still_arriving(tiny_model_file):
    from codec.bitstream import HEADER_SIZE
    from codec.coding import encode_stream
    from codec.model import load_model

    model = load_model(tiny_model_file)
    out = io.BytesIO()
    sizes = []

    def blocks():
        for _ in range(5):                       # five 1 s blocks; a packet is one second
            yield torch.randn(1, 16000) * 0.1
            sizes.append(len(out.getvalue()))

    encode_stream(out, model, blocks(), 16000, 1, kbps=1.8)
    # a packet (one second) is out as soon as its second of audio has come in
    assert HEADER_SIZE < sizes[0] < sizes[1] < sizes[2] < sizes[3] < sizes[4] < len(out.getvalue())


def test_decoding_starts_before_the_stream_is_complete(tiny_model_file):
    """A decoder reading a pipe gets audio for the packets that have arrived."""
    from codec.coding import DecodedStream
    from codec.errors import BitstreamError

    wav = torch.randn(1, 5 * 16000) * 0.1
    data = codec.compress(wav, 16000, kbps=1.8, model=str(tiny_model_file))
    stream = DecodedStream(io.BytesIO(data[: len(data) // 2]), str(tiny_model_file))
    received = 0
    with pytest.raises(BitstreamError, match="truncated"):
        for block in stream:
            received += block.shape[-1]
    assert received >= 16000                      # at least the first second was playable


@pytest.mark.parametrize("rate", [16000, 44100, 8000])
def test_file_coding_equals_whole_array_coding(tmp_path, tiny_model_file, rate):
    """The CLI reads and writes in blocks; its codes and audio equal the Python API's."""
    from click.testing import CliRunner

    from codec.bitstream import decode_bytes
    from codec.cli import main
    from codec.loudness import amplitude, gain_db
    from codec.model import load_model

    model = load_model(tiny_model_file)
    wav = (np.random.default_rng(0).standard_normal((2, int(2.7 * rate))) * 0.1).astype(np.float32)
    src, rvq, out = tmp_path / "in.wav", tmp_path / "in.rvq", tmp_path / "out.wav"
    sf.write(src, wav.T, rate, subtype="FLOAT")
    runner = CliRunner()
    assert runner.invoke(main, ["encode", str(src), str(rvq), "--kbps", "2.4", "--model", str(tiny_model_file)]).exit_code == 0
    assert runner.invoke(main, ["decode", str(rvq), str(out), "--model", str(tiny_model_file)]).exit_code == 0
    header, codes, num_samples = decode_bytes(rvq.read_bytes())
    assert num_samples == wav.shape[1]
    # the CLI measures the level in a first pass over the file; compress measures the array
    assert header.gain_db == gain_db(wav, rate, model.config.input_dbfs)
    scale = amplitude(header.gain_db)
    assert torch.equal(torch.from_numpy(codes), model.encode(wav * scale, rate, kbps=2.4))
    decoded, out_rate = sf.read(out, dtype="float32", always_2d=True)
    expected, expected_rate = codec.decompress(rvq.read_bytes(), model=str(tiny_model_file))
    assert out_rate == expected_rate == rate and decoded.shape == (wav.shape[1], 2)
    np.testing.assert_allclose(decoded.T, np.clip(expected.numpy(), -1, 1), atol=1 / 32768 + 1e-6)
    # and the streamed decoder agrees with one pass of the batch decoder
    batch = model.decode(torch.from_numpy(codes))
    from codec.audio import resample
    whole = resample(batch, model.sample_rate, rate)[:, : wav.shape[1]] / scale
    torch.testing.assert_close(expected, whole, rtol=1e-3, atol=1e-4)


def test_decoding_to_an_odd_rate_gives_the_exact_length(tiny_model_file):
    """16000 -> 79992 Hz resamples with a rounded ratio, so the audio runs a little long; the
    decoder must still give exactly the length the stream records, and no error."""
    from codec.bitstream import encode_bytes
    from codec.coding import DecodedStream, stream_fingerprint
    from codec.model import load_model
    from codec.bitstream import StreamHeader

    model = load_model(tiny_model_file)
    frames = 240 * 50                                         # four minutes
    h = StreamHeader(stream_fingerprint(model), 16000, 320, 6, 2, 1, 16000, frames * 320)
    codes = np.random.default_rng(0).integers(0, 64, (1, 2, frames))
    stream = DecodedStream(io.BytesIO(encode_bytes(h, codes, frames * 320)), model, sample_rate=79992)
    assert sum(block.shape[-1] for block in stream) == round(frames * 320 * 79992 / 16000)


def test_a_failed_decode_leaves_no_libsndfile_handle_on_the_descriptor(tmp_path):
    """A writer abandoned by an exception must let go of its descriptor at once: left to the
    garbage collector, it would write a WAV header into whatever file reuses that number."""
    import gc

    from codec.audio import AudioWriter

    def failing_decode():
        with open(tmp_path / "first.wav", "wb") as f, AudioWriter(f, 16000, 1) as writer:
            writer.write(np.zeros((1, 100), np.float32))
            raise RuntimeError("decoding failed")

    second = tmp_path / "second.bin"
    try:
        failing_decode()
    except RuntimeError:
        # The traceback still holds the writer; first.wav's descriptor is closed, and the
        # next file opened gets its number.
        g = open(second, "wb")
    g.write(b"x" * 100)          # the writer is unreferenced now: any late close has happened
    g.close()
    gc.collect()
    assert second.read_bytes() == b"x" * 100
