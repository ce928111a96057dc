"""A trained decoder grown by more residual units starts as the trained decoder and learns."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from codec.errors import ModelError
from codec.model import load_model, save_model
from codec.train.config import TrainConfig
from codec.train.export import inference_model, training_model
from codec.train.growth import new_units

from .conftest import speech_like


def grown_config(start, decoder_dilations: tuple[int, ...]) -> TrainConfig:
    return TrainConfig(model=dataclasses.replace(start.config, decoder_dilations=decoder_dilations),
                       decoder_only=True, init_from="unused: the model is passed in")


def new_units_of(model) -> list:
    """The tiny model's units of dilation 3: what growing its (1,) to (1, 3) adds."""
    return [m for m in model.decoder.net if getattr(m, "block", None) is not None and m.block[1].dilation == (3,)]


def decode(model, wav: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(wav, 6)[0]


def test_a_grown_decoder_decodes_as_the_trained_one_then_its_new_units_learn(tmp_path, shared_tiny_model_file):
    start = load_model(shared_tiny_model_file)                  # dilations (1,)
    config = grown_config(start, (1, 3))
    model = training_model(config, start)
    wav = torch.from_numpy(speech_like(1.0, seed=3))[None]
    torch.testing.assert_close(decode(model, wav), decode(start, wav), rtol=0, atol=1e-6)
    assert sum(p.numel() for p in model.decoder.parameters()) > sum(p.numel() for p in start.decoder.parameters())

    # the new units' output magnitudes, zero at the start, are what the gradient reaches first
    model.train()
    model(wav, 6)[0].pow(2).mean().backward()
    new_units = new_units_of(model)
    assert len(new_units) == len(start.config.strides)
    for unit in new_units:
        g = unit.block[-1].parametrizations.weight.original0
        assert g.grad is not None and g.grad.abs().sum() > 0
    with torch.no_grad():
        for unit in new_units:
            unit.block[-1].parametrizations.weight.original0.add_(0.1)
    assert not torch.allclose(decode(model, wav), decode(start, wav), atol=1e-4)

    # exported and loaded again, the grown model keeps its shape and its function
    exported = inference_model(config, model.state_dict())
    path = tmp_path / "grown.safetensors"
    save_model(exported, path)
    loaded = load_model(path)
    assert loaded.config.decoder_dilations == (1, 3)
    torch.testing.assert_close(decode(loaded, wav), decode(exported, wav), rtol=0, atol=1e-5)


@pytest.mark.parametrize("decoder_dilations", [(3,), (3, 9)], ids=["replaces", "drops"])
def test_a_decoder_can_grow_but_not_lose_or_replace_units(shared_tiny_model_file, decoder_dilations):
    start = load_model(shared_tiny_model_file)
    with pytest.raises(ModelError, match="cannot grow"):
        training_model(grown_config(start, decoder_dilations), start)


def test_growth_may_insert_units_before_the_trained_ones(shared_tiny_model_file):
    start = load_model(shared_tiny_model_file)
    model = training_model(grown_config(start, (9, 1)), start)
    wav = torch.from_numpy(speech_like(0.5, seed=1))[None]
    np.testing.assert_allclose(decode(model, wav).numpy(), decode(start, wav).numpy(), atol=1e-6)


def test_the_new_units_learn_at_their_own_rate(shared_tiny_model_file):
    from codec.train.train import build_optimizer, learning_rate, set_learning_rate

    start = load_model(shared_tiny_model_file)
    config = dataclasses.replace(grown_config(start, (1, 3)), grown_lr_scale=10.0)
    model = training_model(config, start)
    old, new = build_optimizer(model, config, start.config).param_groups
    new_ids = {id(p) for p in new["params"]}
    assert new_ids == {id(p) for unit in new_units_of(model) for p in unit.parameters()}
    assert {id(p) for p in old["params"]} | new_ids == {id(p) for p in model.parameters() if p.requires_grad}
    optimizer = build_optimizer(model, config, start.config)
    set_learning_rate(optimizer, 100, config)
    assert optimizer.param_groups[1]["lr"] == pytest.approx(10 * optimizer.param_groups[0]["lr"])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(learning_rate(100, config))
    # a model that did not grow has one group, and so has a grown one fine-tuned as it is
    plain = TrainConfig(model=start.config)
    assert len(build_optimizer(training_model(plain, start), plain, start.config).param_groups) == 1
    grown = inference_model(config, model.state_dict())
    assert len(build_optimizer(training_model(config, grown), config, grown.config).param_groups) == 1


def test_a_grown_decoder_grows_again_and_only_the_newest_units_are_new(shared_tiny_model_file):
    start = load_model(shared_tiny_model_file)
    once = grown_config(start, (1, 3))
    grown = inference_model(once, training_model(once, start).state_dict())     # in memory, weight norm folded
    twice = grown_config(grown, (1, 3, 9))
    model = training_model(twice, grown)
    added = new_units(model, grown.config)
    assert [unit.block[1].dilation for unit in added] == [(9,)] * len(start.config.strides)
    wav = torch.from_numpy(speech_like(0.5, seed=2))[None]
    torch.testing.assert_close(decode(model, wav), decode(start, wav), rtol=0, atol=1e-6)


def test_the_encoder_alone_cannot_train_a_grown_decoder(shared_tiny_model_file):
    start = load_model(shared_tiny_model_file)
    config = dataclasses.replace(grown_config(start, (1, 3)), decoder_only=False, encoder_only=True)
    with pytest.raises(ModelError, match="new units would never learn"):
        training_model(config, start)
