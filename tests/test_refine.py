"""Encoder-side refinement (codec.model.refine): codes whose decoding sounds nearer the input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import codec
from codec.bitstream import decode_bytes
from codec.model import CodecModel, load_model
from codec.model import refine as refinement
from codec.model.refine import CONTEXT_FRAMES, DEFAULT_REFINE, MEL_WINDOWS, STFT_WINDOWS, context_frames, refine_codes
from codec.spectral import LowBandDistance, SpectralDistance

from .conftest import one_line_error, run, speech_like, tiny_config, tiny_istft


def distance_of(model, codes: torch.Tensor, audio: torch.Tensor) -> float:
    """Spectral distance of the decoding of ``codes [1, levels, T]`` from ``audio [1, T * hop]``."""
    with torch.no_grad():
        distance = SpectralDistance(audio[:, None], model.sample_rate, MEL_WINDOWS, STFT_WINDOWS)
        return distance(model.decode_batch(codes)).item()


def test_refined_codes_decode_nearer_the_audio_and_leave_the_weights_alone(shared_tiny_model_file):
    model = load_model(shared_tiny_model_file)
    audio = torch.from_numpy(speech_like(0.4))
    latent = model.encoder(model.pad_to_hop(audio[:, None])).detach()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    empty = torch.zeros(1, 4, 0, dtype=torch.int64)

    unrefined = refine_codes(model, latent, audio, 4, 8, 0, empty)
    refined = refine_codes(model, latent, audio, 4, 8, 10, empty)
    assert torch.equal(unrefined, model.quantizer.encode(latent, 4, 8))      # 0 steps: the encoder's codes
    assert distance_of(model, refined, audio) < 0.99 * distance_of(model, unrefined, audio)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())             # frozen only while refining


def test_the_objective_adds_each_term_at_its_weight(monkeypatch):
    from codec.intelligibility import Intelligibility
    from codec.perceptual import PerceptualDisturbance, min_samples

    rate = 16000
    target = torch.from_numpy(speech_like(0.6))[:, None]
    decoded = target + 0.01 * torch.randn_like(target)
    spectral = SpectralDistance(target, rate, MEL_WINDOWS, STFT_WINDOWS)(decoded)
    stoi = Intelligibility(target, rate)(decoded)
    perceptual = PerceptualDisturbance(target, rate)(decoded)
    low_band = LowBandDistance(rate, refinement.LOW_BAND_HZ)(decoded, target)
    assert perceptual > 0 and stoi < 1 and low_band > 0
    for stoi_weight, perceptual_weight, low_band_weight in [(0.0, 0.0, 0.0), (2.0, 0.0, 0.0), (0.0, 3.0, 0.0),
                                                            (0.0, 0.0, 1.5), (2.0, 3.0, 1.5)]:
        monkeypatch.setattr(refinement, "INTELLIGIBILITY_WEIGHT", stoi_weight)
        monkeypatch.setattr(refinement, "PERCEPTUAL_WEIGHT", perceptual_weight)
        monkeypatch.setattr(refinement, "LOW_BAND_WEIGHT", low_band_weight)
        expected = spectral + stoi_weight * (1 - stoi) + perceptual_weight * perceptual + low_band_weight * low_band
        assert refinement.Objective(target, rate)(decoded).item() == pytest.approx(expected.item(), rel=1e-5)
    # a block too short for the perceptual frame is refined on the other terms
    short = target[..., :min_samples(rate) - 2]
    alone = SpectralDistance(short, rate, MEL_WINDOWS, STFT_WINDOWS)(short * 0.9)
    assert refinement.Objective(short, rate)(short * 0.9).item() == pytest.approx(alone.item(), rel=1e-5)


def test_refined_streaming_equals_whole_file_coding_across_blocks(shared_tiny_model_file):
    """Three blocks of 50 frames and a partial one, pushed in uneven chunks."""
    model = load_model(shared_tiny_model_file)
    audio = torch.from_numpy(speech_like(3.3))
    whole = model.encode(audio, 16000, levels=3, refine=2)
    assert whole.shape == (1, 3, 165)
    assert not torch.equal(whole, model.encode(audio, 16000, levels=3))       # refinement changed codes

    encoder = model.streaming_encoder(levels=3, refine=2)
    rng = np.random.default_rng(1)
    parts, start = [], 0
    while start < audio.shape[-1]:
        n = int(rng.integers(1, 12000))
        parts.append(encoder.push(audio[:, start:start + n]))
        start += n
    assert [p.shape[-1] for p in parts if p.shape[-1]] == [50, 50, 50]       # a block at a time
    parts.append(encoder.flush())
    assert parts[-1].shape[-1] == 15
    assert torch.equal(torch.cat(parts, dim=-1), whole)


def test_each_block_is_decoded_behind_the_codes_before_it(shared_tiny_model_file, monkeypatch):
    model = load_model(shared_tiny_model_file)
    contexts = []

    def recording(model, latent, target, levels, beam, steps, context):
        contexts.append(context.clone())
        return refine_codes(model, latent, target, levels, beam, steps, context)

    monkeypatch.setattr(refinement, "refine_codes", recording)
    codes = model.encode(torch.from_numpy(speech_like(3.1)), 16000, levels=3, refine=1)
    assert [c.shape[-1] for c in contexts] == [0, CONTEXT_FRAMES, CONTEXT_FRAMES, CONTEXT_FRAMES]
    assert torch.equal(contexts[2], codes[:, :, 100 - CONTEXT_FRAMES:100])


@pytest.mark.parametrize("model_name", ["tiny", "speech16k", "deep decoder", "istft decoder"])
def test_the_context_covers_the_decoders_receptive_field(shared_tiny_model_file, model_name):
    """A block decoded behind context_frames(model) frames sounds as it does in the whole
    stream; a decoder that sees further back than CONTEXT_FRAMES gets a longer context."""
    if model_name == "deep decoder":        # a unit of dilation 81 in each stage
        model = CodecModel(tiny_config(decoder_dilations=(1, 81))).eval()
    elif model_name == "istft decoder":     # istft.py's, which sees 24 frames back
        model = CodecModel(tiny_istft()).eval()
    else:
        model = load_model(shared_tiny_model_file if model_name == "tiny" else None)
    context = context_frames(model)
    start = context + 10                    # the block's first frame
    latent = 0.2 * torch.randn(1, model.config.latent_dim, start + 10)

    def behind(frames: int) -> torch.Tensor:
        with torch.no_grad():
            return model.decoder(latent[..., start - frames:])[..., frames * model.hop:]

    whole = behind(start)
    torch.testing.assert_close(behind(context), whole, rtol=0, atol=1e-5)
    if model_name in ("deep decoder", "istft decoder"):
        assert context > CONTEXT_FRAMES and not torch.allclose(behind(CONTEXT_FRAMES), whole, atol=1e-5)
    else:
        assert context == CONTEXT_FRAMES        # these models' codes do not change with the rule


def test_refinement_works_in_inference_mode_and_on_odd_lengths(shared_tiny_model_file):
    model = load_model(shared_tiny_model_file)
    with torch.inference_mode():
        assert model.encode(torch.from_numpy(speech_like(1.02)), 16000, levels=2, refine=2).shape == (1, 2, 51)
    assert model.encode(torch.from_numpy(speech_like(0.01)), 16000, levels=2, refine=2).shape == (1, 2, 1)
    silent = codec.compress(np.zeros((1, 8000), np.float32), 16000, kbps=1, model=model, refine=2)
    assert decode_bytes(silent)[1].shape == (1, 3, 25)                  # 3 levels of 0.3 kbps
    assert model.streaming_encoder(levels=2, refine=2).flush().shape == (1, 2, 0)


def test_each_channel_is_refined_on_its_own(shared_tiny_model_file):
    # Given the same latents, a channel's codes do not depend on the other channels. (The
    # encoder network itself may round a batch of channels differently from one alone.)
    model = load_model(shared_tiny_model_file)
    stereo = torch.from_numpy(speech_like(1.2, channels=2))            # a block and a part, with context
    frames = stereo.shape[-1] // model.hop
    audio = stereo[:, :frames * model.hop].reshape(2, frames, model.hop)
    latents = torch.randn(2, model.config.latent_dim, frames, generator=torch.Generator().manual_seed(0))

    def refined(channels: slice) -> torch.Tensor:
        refiner = refinement.BlockRefiner(model, levels=2, channels=channels.stop - channels.start, beam=1, steps=3)
        pushed = [refiner.push(latents[channels, :, t:t + 1], audio[channels, t]) for t in range(frames)]
        return torch.cat(pushed + [refiner.flush()], dim=-1)

    both = refined(slice(0, 2))
    assert both.shape[-1] == frames
    for c in range(2):
        assert torch.equal(both[c], refined(slice(c, c + 1))[0])


@pytest.mark.parametrize("steps", [-1, 2.5, True])
def test_refine_steps_that_are_not_a_whole_number_are_refused(shared_tiny_model_file, steps):
    model = load_model(shared_tiny_model_file)
    with pytest.raises(ValueError, match="refine"):
        model.streaming_encoder(levels=2, refine=steps)
    with pytest.raises(ValueError, match="refine"):
        codec.compress(speech_like(0.2), 16000, kbps=1, model=model, refine=steps)


@pytest.mark.default_refine
def test_file_coding_refines_by_default(tmp_path, wav_file, shared_tiny_model_file):
    model = load_model(shared_tiny_model_file)
    wav, rate = sf.read(wav_file, dtype="float32", always_2d=True)
    expected = model.encode(wav.T, rate, kbps=1.5, refine=DEFAULT_REFINE).numpy()
    assert not np.array_equal(expected, model.encode(wav.T, rate, kbps=1.5, refine=0).numpy())
    data = codec.compress(wav.T, rate, kbps=1.5, model=model, normalize=False)
    assert np.array_equal(decode_bytes(data)[1], expected)

    out = tmp_path / "a.rvq"
    result = run("encode", wav_file, out, "--kbps", "1.5", "--no-normalize", "--model", shared_tiny_model_file)
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(decode_bytes(out.read_bytes())[1], expected)
    assert f"(default {DEFAULT_REFINE})" in run("encode", "--help").stdout


def test_encode_refines_with_the_steps_it_is_given(tmp_path, wav_file, shared_tiny_model_file):
    model = load_model(shared_tiny_model_file)
    wav, rate = sf.read(wav_file, dtype="float32", always_2d=True)
    out = tmp_path / "a.rvq"
    result = run("encode", wav_file, out, "--kbps", "1.5", "--no-normalize", "--refine", "3",
                 "--model", shared_tiny_model_file)
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(decode_bytes(out.read_bytes())[1], model.encode(wav.T, rate, kbps=1.5, refine=3).numpy())
    one_line_error(run("encode", wav_file, tmp_path / "b.rvq", "--refine", "-1"),
                   "--refine", "codec encode --help")
    assert not (tmp_path / "b.rvq").exists()


@pytest.mark.parametrize("final", [1.0, 0.1])
def test_the_search_steps_shrink_along_the_schedule(shared_tiny_model_file, monkeypatch, final):
    """Adam's step size follows step_size: constant by default, else a half cosine to the final fraction."""
    model = load_model(shared_tiny_model_file)
    audio = torch.from_numpy(speech_like(0.4))
    latent = model.encoder(model.pad_to_hop(audio[:, None])).detach()
    monkeypatch.setattr(refinement, "LR_FINAL_FRACTION", final)
    sizes: list[float] = []
    adam_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        sizes.append(self.param_groups[0]["lr"])
        return adam_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    refine_codes(model, latent, audio, 4, 1, 6, torch.zeros(1, 4, 0, dtype=torch.int64))
    peak = refinement.LEARNING_RATE * float(latent.pow(2).mean().sqrt())
    assert len(sizes) == 6
    assert sizes[0] == pytest.approx(peak) and sizes[-1] == pytest.approx(final * peak)
    assert all(a >= b for a, b in zip(sizes, sizes[1:]))
    if final < 1:
        assert sizes[2] < sizes[1] < sizes[0]
