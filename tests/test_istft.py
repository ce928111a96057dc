"""The decoder at frame rates (istft.py): it starts as an inverse STFT and can replace a
trained model's decoder behind its encoder and codebooks. (Its streaming is tested with
SEANet's in test_streaming.py, its context for refinement in test_refine.py.)"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from codec.errors import ModelError
from codec.model import CodecModel, load_model, save_model
from codec.model.istft import inverse_stft_synthesis
from codec.train.config import TrainConfig
from codec.train.export import inference_model, training_model
from codec.train.growth import new_units

from .conftest import TINY_ISTFT, speech_like, tiny_config, tiny_istft


def test_the_synthesis_starts_as_an_inverse_stft():
    """Spectra of 160-sample frames at 80-sample steps, overlap-added through Hann windows
    (which sum to one at that step), give the signal back wherever two frames cover it."""
    x = torch.randn(1, 1600, dtype=torch.float64)
    spectra = torch.stft(x, 160, 80, window=torch.ones(160, dtype=torch.float64), center=False,
                         return_complex=True)                                     # [1, 81, 19]
    with torch.no_grad():
        y = inverse_stft_synthesis(160).double()(torch.cat([spectra.real, spectra.imag], dim=1))
    assert y.shape == (1, 1, 19 * 80)
    torch.testing.assert_close(y[0, 0, 80:19 * 80], x[0, 80:19 * 80], rtol=0, atol=1e-6)   # float32 weights


def test_a_decoder_of_another_hop_or_kind_is_refused():
    with pytest.raises(ValueError, match="not the encoder's 320"):
        CodecModel(tiny_istft(istft_window=128))
    with pytest.raises(ValueError, match="'seanet' or 'istft'"):
        tiny_config(decoder="wavenet")
    with pytest.raises(ValueError, match="two numbers"):
        tiny_istft(istft_blocks=(1, 1, 1))


def test_it_replaces_a_trained_decoder_behind_the_trained_encoder(tmp_path, shared_tiny_model_file):
    start = load_model(shared_tiny_model_file)              # a SEANet decoder
    config = TrainConfig(model=dataclasses.replace(start.config, **TINY_ISTFT), decoder_only=True,
                         init_from="unused: the model is passed in")
    model = training_model(config, start)
    wav = torch.from_numpy(speech_like(0.5, seed=1))[None]        # [1, 1, N]
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(wav), start.encoder(wav), rtol=0, atol=1e-5)
    for ours, theirs in zip(model.quantizer.levels, start.quantizer.levels):
        assert torch.equal(ours.embed, theirs.embed)
    assert new_units(model, start.config) == []              # nothing grew: the decoder is new
    # the encoder is frozen and every decoder weight learns
    assert not any(p.requires_grad for p in model.encoder.parameters())
    model.train()
    model.quantizer.eval()
    model(wav, 4)[0].pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    with pytest.raises(ModelError, match="new weights would never learn"):
        training_model(dataclasses.replace(config, decoder_only=False, encoder_only=True), start)

    # exported and loaded again, it keeps its kind, its shape and its function
    exported = inference_model(config, model.state_dict())
    path = tmp_path / "istft.safetensors"
    save_model(exported, path)
    loaded = load_model(path)
    assert loaded.config.decoder == "istft" and loaded.config.istft_blocks == (2, 2)
    codes = loaded.encode(wav[0], 16000, levels=4)
    torch.testing.assert_close(loaded.decode(codes), exported.decode(codes), rtol=1e-4, atol=1e-6)
